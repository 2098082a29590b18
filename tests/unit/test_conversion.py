"""Conversion per window and subject: the pure parts (ranks, baseline, due windows, rows) and the scorer's run
logic with its ClickHouse reads replaced (the SQL itself runs on real ClickHouse in
tests/integration/test_conversion_alerts.py): a failing window never stops the others, is counted and retried
after a backoff; events are durable before rows are stored and are mirrored even after a failed mirror; the
monitor runtime runs the scorer after each job run and survives its failure."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import monitor.conversion as conversion
from alerts.engine import AlertEngine
from alerts.rules import Rule
from alerts.store import AlertStore
from monitor.alerting import AlertHandoff
from monitor.conversion import (
    CONVERSION_WINDOW_COLUMNS,
    INTENT,
    OOD,
    ConversionScorer,
    StoredConversion,
    SubjectCount,
    conversion_rows,
    due_conversions,
    summarise,
)
from monitor.metrics import monitor_metrics
from monitor.service import MonitorRuntime
from monitor.storage import ObservedWindow
from tests.conftest import make_test_settings

T0 = datetime(2026, 3, 2, 10, 0)
FIVE = timedelta(minutes=5)


def count(assistant: str, subject: str, traffic: int, converted: int, kind: str = INTENT) -> SubjectCount:
    return SubjectCount(assistant, kind, subject, traffic, converted)


def test_summarise_ranks_subjects_by_traffic_per_assistant_and_joins_the_baseline():
    current = [count("shopper", "track_order", 80, 4), count("shopper", "add_to_cart", 60, 36),
               count("shopper", "find_store", 60, 30), count("associate", "check_shift", 70, 42),
               count("shopper", OOD, 10, 3, OOD), count("associate", OOD, 15, 3, OOD)]
    baseline = [count("shopper", "track_order", 1000, 600), count("shopper", "add_to_cart", 800, 480),
                count("associate", "check_shift", 900, 540), count("shopper", OOD, 300, 90, OOD),
                count("associate", "gone_intent", 50, 10)]
    rows = {(s.assistant, s.subject): s for s in summarise(current, baseline)}
    assert set(rows) == {(a, s) for a, s, *_ in [
        ("shopper", "track_order"), ("shopper", "add_to_cart"), ("shopper", "find_store"), ("shopper", OOD),
        ("associate", "check_shift"), ("associate", OOD), ("all", "track_order"), ("all", "add_to_cart"),
        ("all", "find_store"), ("all", "check_shift"), ("all", OOD)]}  # no row for a subject without traffic
    shopper = sorted((s.rank, s.subject) for (a, _), s in rows.items() if a == "shopper")
    assert shopper == [(1, "track_order"), (2, "add_to_cart"), (3, "find_store"), (4, OOD)]  # a tie by name
    track = rows[("shopper", "track_order")]
    assert (track.rate, track.baseline_rate, track.drop) == (0.05, 0.6, pytest.approx(0.55))
    assert math.isnan(rows[("shopper", "find_store")].baseline_rate)  # no baseline: no drop to judge
    everyone = rows[("all", OOD)]
    assert (everyone.traffic, everyone.converted, everyone.baseline_traffic, everyone.assistants) == (25, 6, 300, 2)
    assert rows[("all", "check_shift")].rank == 2 and rows[("all", "check_shift")].assistants == 1
    assert rows[("all", "track_order")].rank == 1


def window(minute: int, rows: int = 140, ingested_after_s: int = 5) -> ObservedWindow:
    """A window of ``rows`` predictions (140: the traffic ``Reads.count`` gives a window)."""
    start = T0 + timedelta(minutes=minute)
    return ObservedWindow(start, start + FIVE, rows, start + FIVE + timedelta(seconds=ingested_after_s), "m1")


def test_windows_are_due_once_the_outcomes_are_in_and_again_only_when_they_changed():
    w = window(0)
    wait = 300 + 60
    assert due_conversions([w], {}, {}, now=w.end + timedelta(seconds=wait - 1), wait_s=wait) == []
    assert due_conversions([w], {}, {}, now=w.end + timedelta(seconds=wait), wait_s=wait) == [w]
    scored_at = w.end + timedelta(seconds=wait)
    later = scored_at + timedelta(hours=1)
    done = {w.start: StoredConversion(140, scored_at)}
    assert due_conversions([w], done, {w.start: scored_at - timedelta(seconds=1)}, now=later, wait_s=wait) == []
    assert due_conversions([w], done, {w.start: scored_at + timedelta(seconds=1)}, now=later, wait_s=wait) == [w]
    assert due_conversions([window(0, rows=141)], done, {}, now=later, wait_s=wait) != []  # late predictions
    assert due_conversions([window(0, ingested_after_s=wait + 1)], done, {}, now=later, wait_s=wait) != []


def test_rows_match_the_table_and_keep_intents_while_free_text_would_be_scrubbed():
    scored = conversion.ConversionWindow(T0, T0 + FIVE, tuple(summarise(
        [count("shopper", "track_order", 80, 4), count("shopper", "call 415 555 0134", 3, 0)],
        [count("shopper", "track_order", 1000, 600)])), scored_at=T0 + timedelta(minutes=11), row_version=7)
    rows = conversion_rows(scored)
    assert all(tuple(row) == CONVERSION_WINDOW_COLUMNS for row in rows)
    by_subject = {(row["assistant"], row["subject"]): row for row in rows}
    track = by_subject[("shopper", "track_order")]
    assert (track["traffic"], track["converted"], track["baseline_traffic"], track["row_version"]) == (80, 4, 1000, 7)
    assert track["rate"] == pytest.approx(0.05) and track["baseline_rate"] == pytest.approx(0.6)
    assert ("all", "track_order") in by_subject  # subjects are a closed vocabulary (the model's intents): kept


class Reads:
    """The scorer's ClickHouse reads and writes, replaced: windows observed, counts per window, inserts kept."""

    def __init__(self, windows: list[ObservedWindow], fail: set[datetime] = frozenset()) -> None:
        self.windows = windows
        self.fail = set(fail)
        self.stored: dict[datetime, StoredConversion] = {}
        self.inserted: dict[str, list[dict[str, Any]]] = {}
        self.fail_tables: set[str] = set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(conversion, "observed_windows", lambda client, w, since, until: list(self.windows))
        monkeypatch.setattr(conversion, "stored_conversions", lambda client, w, since, until: dict(self.stored))
        monkeypatch.setattr(conversion, "outcomes_ingested", lambda client, w, d, since, until: {})
        monkeypatch.setattr(conversion, "count_conversions", self.count)
        monkeypatch.setattr(conversion, "insert_rows", self.insert)

    def count(self, client: Any, start: datetime, end: datetime, *, window_s: int, delay_s: int) -> list:
        if start in self.fail:
            raise ValueError("Code: 241. Memory limit exceeded")
        if end - start == FIVE:  # the window: track_order stops converting
            return [count("shopper", "track_order", 80, 4), count("shopper", "add_to_cart", 60, 36)]
        return [count("shopper", "track_order", 1000, 600), count("shopper", "add_to_cart", 800, 480)]

    def insert(self, client: Any, table: str, columns: Any, rows: Any) -> int:
        if table in self.fail_tables:
            raise ConnectionError("ClickHouse went away")
        rows = list(rows)
        self.inserted.setdefault(table, []).extend(rows)
        if table == "conversion_windows":
            for row in rows:
                if row["assistant"] == "all":
                    stored = self.stored.get(row["window_start"], StoredConversion(0, row["scored_at"]))
                    self.stored[row["window_start"]] = StoredConversion(stored.traffic + row["traffic"],
                                                                        row["scored_at"])
        return len(rows)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return (self.now - datetime(1970, 1, 1)).total_seconds()


class NullClient:
    def execute(self, *args: Any, **kwargs: Any) -> list:
        return []

    def disconnect(self) -> None:
        pass


def scorer(registry: CollectorRegistry, clock: Clock, alerts: AlertHandoff | None = None) -> ConversionScorer:
    return ConversionScorer(make_test_settings(), NullClient, alerts=alerts, clock=clock,
                            metrics=monitor_metrics(registry))


def test_a_failing_window_is_counted_and_retried_after_a_backoff_while_the_others_are_scored(monkeypatch, caplog):
    registry = CollectorRegistry()
    windows = [window(0), window(5), window(10)]
    reads = Reads(windows, fail={windows[1].start})
    reads.install(monkeypatch)
    clock = Clock(windows[-1].end + timedelta(minutes=10))
    job = scorer(registry, clock)
    run = job.run_once(now=clock.now)
    assert [w.start for w in run.windows] == [windows[0].start, windows[2].start]
    assert [start for start, _ in run.failed] == [windows[1].start] and "Memory limit" in run.failed[0][1]
    assert registry.get_sample_value("nlumon_monitor_window_errors_total", {"stage": "conversion"}) == 1.0
    assert f"conversion window {windows[1].start}" in caplog.text
    assert job.run_once(now=clock.now).windows == ()  # the failed one waits for its backoff (60 s)
    reads.fail.clear()
    clock.now += timedelta(seconds=60)
    assert [w.start for w in job.run_once(now=clock.now).windows] == [windows[1].start]
    assert job.run_once(now=clock.now).windows == ()  # scored: not again
    assert len(reads.inserted["conversion_windows"]) == 3 * 4  # per window: 2 subjects x (shopper, all)


def test_events_are_stored_before_the_rows_and_a_failed_mirror_is_repeated(monkeypatch, tmp_path):
    reads = Reads([window(0)])
    reads.install(monkeypatch)
    rule = Rule("low-conv", "conversion_drop", ">=", 0.15, receivers=("ml-team",), kind="low_conversion")
    store = AlertStore(tmp_path / "alerts.db")
    handoff = AlertHandoff(AlertEngine([rule], store), NullClient)
    clock = Clock(window(0).end + timedelta(minutes=10))
    job = scorer(CollectorRegistry(), clock, alerts=handoff)
    reads.fail_tables = {"alert_events"}
    with pytest.raises(ConnectionError):
        job.run_once(now=clock.now)
    assert "conversion_windows" not in reads.inserted  # not committed: the window stays due
    reads.fail_tables = set()
    run = job.run_once(now=clock.now)
    assert run.events == ()  # the engine had the event already (durable in SQLite) ...
    (mirrored,) = reads.inserted["alert_events"]  # ... and the mirror sends it now
    assert (mirrored["rule"], mirrored["assistant"], mirrored["state"]) == ("low-conv", "shopper", "firing")
    assert "on track_order" in mirrored["summary"]
    assert len(run.windows) == 1 and reads.inserted["conversion_windows"]
    with store.transaction() as conn:
        assert conn.execute("SELECT group_key, status FROM alert_events").fetchall() == [
            ("low-conv|shopper|track_order", "firing")]
        assert conn.execute("SELECT receiver FROM outbox").fetchall() == [("ml-team",)]
    store.close()


def test_the_runtime_scores_conversion_after_the_job_and_survives_its_failure(monkeypatch):
    registry = CollectorRegistry()
    metrics = monitor_metrics(registry)
    calls: list[str] = []

    def failing_factory() -> Any:
        calls.append("conversion")
        raise ConnectionRefusedError("ClickHouse is down")

    settings = make_test_settings()
    job = SimpleNamespace(metrics=metrics, run_once=lambda now=None, since=None: calls.append("job") or ["outcome"])
    runtime = MonitorRuntime(job, None, None, None, ConversionScorer(settings, failing_factory, metrics=metrics))
    assert runtime.run_once() == ["outcome"]  # window scoring goes on
    assert calls == ["job", "conversion"]
    assert registry.get_sample_value("nlumon_monitor_run_errors_total", {"where": "conversion"}) == 1.0

    def broken_job(now=None, since=None):
        calls.append("job")
        raise ConnectionRefusedError("ClickHouse is down")

    runtime.job = SimpleNamespace(metrics=metrics, run_once=broken_job)
    with pytest.raises(ConnectionRefusedError):
        runtime.run_once()
    assert calls[-2:] == ["job", "conversion"]  # a failed job run does not skip the scorer
    assert MonitorRuntime(job, None, None, None).score_conversion() is None  # --no-conversion
