"""One window's failure never stops the monitor (no services: ClickHouse I/O is replaced in ``monitor.job``).

A window that raises while it is scored is logged with its start, counted, stored as ``failed`` and retried
after a backoff; the windows after it are scored in the same run. A hand-off (alerts, labeling) that fails
for a window fails that window only. The leader timer never lets an exception reach Faust, and a Kafka send
of the labeling queue that the broker did not acknowledge raises.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import monitor.job as job_module
from detectors.suite import MonitorSuite
from detectors.synthetic import make_rows
from monitor.job import HandoffError, MonitorJob, WindowNotScoredError
from monitor.labeling_sink import LabelingPublishError, LabelingSink
from monitor.metrics import monitor_metrics
from monitor.reference import NotEnoughReferenceError, Reference
from monitor.service import MonitorRuntime, attach_monitor, leader_tick
from monitor.storage import ObservedWindow, ScoredWindow, WindowFacts
from tests.conftest import make_test_settings

T0 = datetime(2026, 3, 1, 12, 0)
NOW = T0 + timedelta(hours=1)
CLOCK = (NOW - datetime(1970, 1, 1)).total_seconds()  # real time of the first run (naive UTC)


@pytest.fixture(autouse=True)
def no_evidently_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_module, "save_evidently_report", lambda reference, current, path: None)


@pytest.fixture(scope="module")
def reference() -> Reference:
    rows = make_rows(1200, seed=1)
    suite = MonitorSuite.from_reference(rows, {"accuracy": 0.9}, window_size=200, fpr=0.05, n_windows=10,
                                        max_sample=200)
    return Reference(suite, rows, "package", 200)


class FakeClient:
    def execute(self, query: str, params: Any = None, **_: Any) -> list:
        return []  # system.columns: "no such table", nothing to migrate

    def disconnect(self) -> None:
        pass


class FakeClickHouse:
    """Stands in for the storage functions ``monitor.job`` calls, and keeps what was inserted."""

    def __init__(self, windows: list[ObservedWindow]) -> None:
        self.windows = windows
        self.inserted: dict[str, list[dict]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(job_module, "observed_windows", lambda client, w, since, until: list(self.windows))
        monkeypatch.setattr(job_module, "scored_windows", lambda client, w, since, until: self.stored())
        monkeypatch.setattr(job_module, "read_predictions", self.read)
        monkeypatch.setattr(job_module, "window_facts",
                            lambda client, start, end: WindowFacts({"shopper": 140, "associate": 60}, 0, 40.0,
                                                                   "e2e_ms", 0))
        monkeypatch.setattr(job_module, "insert_rows", self.insert)

    def read(self, client, start, end, limit, *args, **kwargs):
        rows = make_rows(200, seed=int(start.timestamp()) % 1000)
        return rows.assign(text_scrubbed=[f"text {i}" for i in range(len(rows))])

    def insert(self, client, table, columns, rows):
        rows = [dict(row) for row in rows]
        for row in rows:
            assert set(columns) <= set(row), f"{table} row lacks {set(columns) - set(row)}"
        self.inserted.setdefault(table, []).extend(rows)
        return len(rows)

    def stored(self) -> dict[datetime, ScoredWindow]:
        """The latest ``all`` row per window, as ``scored_windows`` reads it."""
        latest: dict[datetime, dict] = {}
        for row in self.inserted.get("monitor_windows", []):
            if row["assistant"] == "all":
                latest[row["window_start"]] = row
        return {start: ScoredWindow(row["rows"], row["scored_at"], row["status"], row["attempts"])
                for start, row in latest.items()}

    def stored_row(self, start: datetime) -> dict:
        rows = self.inserted["monitor_windows"]
        return [r for r in rows if r["window_start"] == start and r["assistant"] == "all"][-1]


def windows(n: int = 3) -> list[ObservedWindow]:
    return [ObservedWindow(T0 + timedelta(minutes=5 * i), T0 + timedelta(minutes=5 * i + 5), 200,
                           T0 + timedelta(minutes=5 * i + 5, seconds=2), "m1") for i in range(n)]


class FlakyReferences:
    """Returns ``reference``, but raises ``errors[start]`` (once, or always) for the windows named there."""

    def __init__(self, reference: Reference, errors: dict[datetime, Exception], once: bool = True) -> None:
        self.reference, self.errors, self.once = reference, dict(errors), once

    def reference_for(self, client, model_version, window_start):
        error = self.errors.get(window_start)
        if error is not None:
            if self.once:
                del self.errors[window_start]
            raise error
        return self.reference


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_job(references, registry, clock=None, handlers=()) -> MonitorJob:
    settings = make_test_settings()
    return MonitorJob(settings, FakeClient, references=references, handlers=handlers,
                      clock=clock or Clock(CLOCK), metrics=monitor_metrics(registry), report_dir=None)


def errors_counted(registry: CollectorRegistry, stage: str) -> float:
    return registry.get_sample_value("nlumon_monitor_window_errors_total", {"stage": stage}) or 0.0


def test_a_window_that_raises_is_stored_failed_and_the_next_ones_are_scored(
    monkeypatch: pytest.MonkeyPatch, reference: Reference, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeClickHouse(windows(3))
    store.install(monkeypatch)
    registry = CollectorRegistry()
    bad = store.windows[1].start
    job = make_job(FlakyReferences(reference, {bad: RuntimeError("boom")}), registry)
    with caplog.at_level(logging.ERROR, logger="monitor.job"):
        outcomes = job.run_once(now=NOW)
    assert [o.window_start for o in outcomes] == [store.windows[0].start, store.windows[2].start]
    failed = store.stored_row(bad)
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert failed["reason"] == "score: RuntimeError: boom"
    assert failed["rows"] == 200 and failed["model_version"] == "m1"
    assert {r["status"] for r in store.inserted["monitor_windows"] if r["window_start"] != bad} == {"scored"}
    assert errors_counted(registry, "score") == 1.0
    assert registry.get_sample_value("nlumon_monitor_windows_total", {"status": "scored"}) == 2.0
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged and str(bad) in logged[0].getMessage() and logged[0].exc_info[1].args == ("boom",)
    assert [r.status for r in job.last_run.results] == ["scored", "failed", "scored"]


def test_a_failed_window_is_retried_after_its_backoff_and_then_scored(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    store = FakeClickHouse(windows(3))
    store.install(monkeypatch)
    clock = Clock(CLOCK)
    bad = store.windows[0].start  # the oldest: it must not hold back the two after it
    job = make_job(FlakyReferences(reference, {bad: ValueError("a cannot be empty")}), CollectorRegistry(), clock)
    assert len(job.run_once(now=NOW)) == 2
    clock.now += 59
    assert job.run_once(now=NOW) == []  # within the 60 s backoff: not due, and the scored ones stay scored
    clock.now += 1
    retried = job.run_once(now=NOW)
    assert [o.window_start for o in retried] == [bad]
    assert store.stored_row(bad)["status"] == "scored" and store.stored_row(bad)["attempts"] == 0


def test_a_window_failing_again_waits_twice_as_long(monkeypatch: pytest.MonkeyPatch, reference: Reference) -> None:
    store = FakeClickHouse(windows(1))
    store.install(monkeypatch)
    clock = Clock(CLOCK)
    start = store.windows[0].start
    job = make_job(FlakyReferences(reference, {start: OSError("disk")}, once=False), CollectorRegistry(), clock)
    job.run_once(now=NOW)
    clock.now += 60
    job.run_once(now=NOW)
    assert store.stored_row(start)["attempts"] == 2
    clock.now += 119
    assert job.run_once(now=NOW) == [] and job.last_run.results == ()  # the second backoff is 120 s
    clock.now += 1
    job.run_once(now=NOW)
    assert store.stored_row(start)["attempts"] == 3


def test_a_window_without_enough_reference_is_stored_not_scored(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    store = FakeClickHouse(windows(2))
    store.install(monkeypatch)
    registry = CollectorRegistry()
    missing = NotEnoughReferenceError("package clinc150-x has 12 reference rows (< 20)")
    job = make_job(FlakyReferences(reference, {store.windows[0].start: missing}), registry)
    assert len(job.run_once(now=NOW)) == 1
    row = store.stored_row(store.windows[0].start)
    assert row["status"] == "not_scored"
    assert row["reason"] == "reference_too_small: package clinc150-x has 12 reference rows (< 20)"
    assert registry.get_sample_value("nlumon_monitor_windows_not_scored_total",
                                     {"reason": "reference_too_small"}) == 1.0
    assert errors_counted(registry, "score") == 0.0


def test_an_empty_window_is_not_scored(monkeypatch: pytest.MonkeyPatch, reference: Reference) -> None:
    store = FakeClickHouse(windows(1))
    store.install(monkeypatch)
    monkeypatch.setattr(job_module, "read_predictions", lambda *a, **k: make_rows(5, seed=0).iloc[:0])
    job = make_job(FlakyReferences(reference, {}), CollectorRegistry())
    assert job.run_once(now=NOW) == []
    assert store.stored_row(store.windows[0].start)["reason"].startswith("empty_window: ")


def test_late_rows_make_a_failed_window_due_at_once(monkeypatch: pytest.MonkeyPatch, reference: Reference) -> None:
    store = FakeClickHouse(windows(1))
    store.install(monkeypatch)
    start = store.windows[0].start
    job = make_job(FlakyReferences(reference, {start: WindowNotScoredError("empty_window", "nothing")}),
                   CollectorRegistry())
    job.run_once(now=NOW)
    w = store.windows[0]
    store.windows = [ObservedWindow(w.start, w.end, w.rows + 5, w.last_ingested, w.model_version)]
    assert [o.window_start for o in job.run_once(now=NOW)] == [start]


class Handler:
    def __init__(self, name: str, fail: Any = None) -> None:
        self.name, self.fail, self.calls = name, fail, []

    def __call__(self, outcomes):
        self.calls.append([o.window_start for o in outcomes])
        if callable(self.fail):
            self.fail(outcomes)


def test_a_hand_off_failing_for_one_window_fails_only_that_window(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    store = FakeClickHouse(windows(3))
    store.install(monkeypatch)
    registry = CollectorRegistry()
    bad = store.windows[2].start

    def fail(outcomes):
        raise HandoffError({bad: "LabelingPublishError: 3 message(s) not acknowledged"})

    alerts, labeling = Handler("alerts"), Handler("labeling", fail)
    job = make_job(FlakyReferences(reference, {}), registry, handlers=[alerts, labeling])
    outcomes = job.run_once(now=NOW)
    assert len(outcomes) == 2 and alerts.calls == labeling.calls == [[w.start for w in store.windows]]
    failed = [r for r in store.inserted["monitor_windows"] if r["window_start"] == bad]
    assert {r["status"] for r in failed} == {"failed"} and {r["assistant"] for r in failed} >= {"all", "shopper"}
    assert failed[0]["reason"] == "labeling: LabelingPublishError: 3 message(s) not acknowledged"
    assert failed[0]["mean_confidence"] > 0  # the scores are kept; the status says to retry
    assert errors_counted(registry, "labeling") == 1.0


def test_a_hand_off_raising_fails_every_window_it_was_given(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    store = FakeClickHouse(windows(2))
    store.install(monkeypatch)
    registry = CollectorRegistry()

    def fail(outcomes):
        raise ConnectionError("alert store gone")

    labeling = Handler("labeling")
    job = make_job(FlakyReferences(reference, {}), registry, handlers=[Handler("alerts", fail), labeling])
    assert job.run_once(now=NOW) == []
    assert labeling.calls  # a later hand-off still gets the outcomes
    assert {store.stored_row(w.start)["reason"] for w in store.windows} == {"alerts: ConnectionError: alert store gone"}
    assert errors_counted(registry, "alerts") == 2.0


# -- the leader timer ---------------------------------------------------------------------------------
class FakeApp:
    """Records what ``attach_monitor`` registers (a Faust timer and a shutdown hook)."""

    def __init__(self) -> None:
        self.timers: list = []
        self.conf = SimpleNamespace(id="nlumon-test")
        self.on_before_shutdown = SimpleNamespace(connect=lambda fn: fn)

    def timer(self, interval: float, on_leader: bool):
        assert on_leader

        def register(fn):
            self.timers.append(fn)
            return fn

        return register


def failing_runtime(registry: CollectorRegistry, *, run_error: Exception | None = None,
                    delivery_error: Exception | None = None) -> MonitorRuntime:
    def run_once(now=None, since=None):
        if run_error is not None:
            raise run_error
        return []

    def start():
        if delivery_error is not None:
            raise delivery_error

    job = SimpleNamespace(run_once=run_once, metrics=monitor_metrics(registry), window_s=300)
    delivery = SimpleNamespace(start=start, stop=lambda: None)
    return MonitorRuntime(job, None, None, delivery)


def test_the_leader_timer_never_raises_into_faust(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    runtime = failing_runtime(registry, run_error=ConnectionError("ClickHouse down"),
                              delivery_error=RuntimeError("no thread"))
    app = FakeApp()
    attach_monitor(app, make_test_settings(), runtime=runtime)
    with caplog.at_level(logging.ERROR, logger="monitor.service"):
        asyncio.run(app.timers[0]())  # must not raise
        asyncio.run(app.timers[0]())
    assert registry.get_sample_value("nlumon_monitor_run_errors_total", {"where": "leader_timer"}) == 2.0
    assert registry.get_sample_value("nlumon_monitor_run_errors_total", {"where": "delivery_start"}) == 2.0
    assert any("ClickHouse down" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_leader_tick_that_works_counts_nothing() -> None:
    registry = CollectorRegistry()
    runtime = failing_runtime(registry)
    started = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as executor:
        asyncio.run(leader_tick(runtime, executor, started))
    assert started.is_set()
    assert registry.get_sample_value("nlumon_monitor_run_errors_total", {"where": "leader_timer"}) is None


def test_monitor_metrics_are_registered_once_per_registry() -> None:
    registry = CollectorRegistry()
    assert monitor_metrics(registry) is monitor_metrics(registry)
    assert monitor_metrics() is monitor_metrics()  # the process-wide registry: several monitors, one set


# -- the labeling queue's Kafka sends -----------------------------------------------------------------
class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None):
        if self.error is not None:
            raise self.error
        return SimpleNamespace(offset=1)


class FakeProducer:
    def __init__(self, errors: list[Exception | None], flush_error: Exception | None = None) -> None:
        self.errors, self.flush_error = list(errors), flush_error
        self.sent, self.closed = [], False

    def send(self, topic, key, value):
        self.sent.append(key)
        return FakeFuture(self.errors.pop(0) if self.errors else None)

    def flush(self, timeout=None):
        if self.flush_error is not None:
            raise self.flush_error

    def close(self, timeout=None):
        self.closed = True


def sink_with(producer: FakeProducer) -> LabelingSink:
    return LabelingSink(FakeClient, daily_budget=10, max_per_window=10, producer_factory=lambda: producer,
                        send_timeout_s=1)


def queue_rows(n: int):
    from labeling.items import LabelingItem

    rows, items = [], []
    for i in range(n):
        rows.append({"text_hash": f"h{i}", "slot_types": [], "slot_values": [], "flagged_at": T0})
        items.append(LabelingItem(id=f"p{i}", text=f"text {i}", tokens=("text", str(i)), intent="x", tags=("O", "O"),
                                  reasons=(), priority=1.0, window_start=T0, window_end=T0, model_version="m1",
                                  assistant="shopper"))
    return rows, items


def test_every_labeling_send_is_checked() -> None:
    producer = FakeProducer([None, TimeoutError("not acknowledged"), None])
    sink = sink_with(producer)
    with pytest.raises(LabelingPublishError, match="1 of 3 message"):
        sink._publish(*queue_rows(3))
    assert producer.closed and sink._producer is None  # the next window gets a fresh producer
    fine = FakeProducer([])
    sink = sink_with(fine)
    sink._publish(*queue_rows(2))
    assert fine.sent == [b"h0", b"h1"] and not fine.closed


def test_a_flush_that_times_out_raises() -> None:
    sink = sink_with(FakeProducer([], flush_error=TimeoutError("flush")))
    with pytest.raises(LabelingPublishError, match="not sent"):
        sink._publish(*queue_rows(1))


def test_a_kafka_failure_fails_that_window_and_the_rest_of_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = sink_with(FakeProducer([]))
    starts = [T0 + timedelta(minutes=5 * i) for i in range(3)]
    outcomes = [SimpleNamespace(window_start=start) for start in starts]
    queued = []

    def queue_window(client, outcome):
        if outcome.window_start == starts[1]:
            raise LabelingPublishError("broker gone")
        queued.append(outcome.window_start)
        return []

    monkeypatch.setattr(sink, "queue_window", queue_window)
    with pytest.raises(HandoffError) as raised:
        sink(outcomes)
    assert queued == starts[:1]
    assert set(raised.value.failures) == set(starts[1:])
