"""SIGTERM stops a worker within ``stream.shutdown_timeout_s``, whatever it is doing, and loses nothing.

States: starting (model loading, joining the group), idle, busy on a backlog, and wedged on ClickHouse —
inserts refused (nothing listens on the port: the sink retries with backoff) or blocked (a listener that
accepts and never answers: the insert hangs in a socket read). In every state the process must be gone
within the timeout plus a few seconds. What it had not acknowledged is redelivered to the next owner of its
partitions: a second worker (working ClickHouse) stores every id exactly once (after FINAL).
"""

from __future__ import annotations

import time

import pytest

from streams.replay import produce
from tests.helpers import tiny_model_settings
from tests.integration.workers import (
    BlackholeServer,
    Worker,
    crash_lines,
    free_port,
    full_log,
    group_lag,
    isolated,
    owned_partitions,
    sigterm_and_time,
    stored_ids,
    stored_summary,
    unique_events,
    wait_until,
    worker_metric,
)

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT_S = 8.0
GRACE_S = 5.0  # interpreter exit, closing sockets: the process must be gone within timeout + this


@pytest.fixture
def settings(services, unique):
    return isolated(tiny_model_settings(services), unique, stream={"shutdown_timeout_s": SHUTDOWN_TIMEOUT_S})


def send(settings, count: int, seed: int) -> list[str]:
    events = unique_events(settings, "stable", count, seed=seed)
    produce(settings, [(e.key, e.value) for e in events])
    return [e.truth["id"] for e in events]


def stop_in_time(worker: Worker) -> float | None:
    """SIGTERM; seconds until the process was gone, or None (then it is SIGKILLed so the test can go on)."""
    took = sigterm_and_time(worker, SHUTDOWN_TIMEOUT_S + GRACE_S)
    if took is None:
        worker.kill()
    return took


def next_owner_stores_everything(settings, ids: list[str], tmp_path) -> None:
    """A fresh worker of the same group gets the partitions and stores every id exactly once; lag ends at 0."""
    successor = Worker(settings, "successor", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids).values()) >= 1, 180, "every id stored by the next owner",
                   (successor,))
        wait_until(lambda: sum(group_lag(settings).values()) == 0, 60, "consumer lag back to 0", (successor,))
        counts = stored_ids(settings, ids)
        assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n != 1}
        summary = stored_summary(settings, ids)
        assert summary["rows"] == summary["distinct"] == len(ids), summary
        took = stop_in_time(successor)
        assert took is not None and successor.process.returncode == 0, (
            f"the successor did not stop cleanly: {took=}, code {successor.process.returncode}")
        assert not crash_lines(full_log(successor)), crash_lines(full_log(successor))
    finally:
        successor.stop()


@pytest.mark.parametrize("state", ["starting", "idle", "busy"])
def test_sigterm_stops_the_worker_within_the_shutdown_timeout(settings, tmp_path, state):
    ids: list[str] = []
    worker = Worker(settings, f"{state}-worker", tmp_path)
    try:
        if state == "starting":
            time.sleep(1.0)  # loading the model, not yet in the group
        else:
            wait_until(lambda: owned_partitions(worker) is not None, 120, "partitions assigned", (worker,))
        if state == "busy":
            ids = send(settings, 4000, seed=31)
            wait_until(lambda: sum(stored_ids(settings, ids).values()) >= 300, 120, "some rows", (worker,))
            assert sum(stored_ids(settings, ids).values()) < len(ids), "the backlog was drained before SIGTERM"
        took = stop_in_time(worker)
    finally:
        worker.stop()
    assert took is not None, (f"the {state} worker was still running {SHUTDOWN_TIMEOUT_S + GRACE_S} s after "
                              f"SIGTERM (shutdown_timeout_s={SHUTDOWN_TIMEOUT_S}):\n{worker.output()}")
    if state != "starting":  # a SIGTERM before Faust installed its handler ends the process the default way
        assert worker.process.returncode == 0, f"exit code {worker.process.returncode}:\n{worker.output()}"
        assert not crash_lines(full_log(worker)), crash_lines(full_log(worker))
    if state == "busy":
        next_owner_stores_everything(settings, ids, tmp_path)


@pytest.mark.parametrize("clickhouse", ["refused", "blocked"])
def test_sigterm_stops_a_worker_wedged_on_clickhouse_and_the_next_owner_gets_its_records(
    services, unique, tmp_path, clickhouse,
):
    blackhole = BlackholeServer() if clickhouse == "blocked" else None
    port = blackhole.port if blackhole else free_port()
    metrics_port = free_port()
    base = tiny_model_settings(services)
    settings = isolated(base, unique, stream={"shutdown_timeout_s": SHUTDOWN_TIMEOUT_S})
    wedged = Worker(settings, f"wedged-{clickhouse}", tmp_path,
                    NLUMON_CLICKHOUSE__PORT=str(port), NLUMON_STREAM__METRICS_PORT=str(metrics_port))
    try:
        wait_until(lambda: owned_partitions(wedged) is not None, 120, "partitions assigned", (wedged,))
        ids = send(settings, 600, seed=41)
        wait_until(lambda: worker_metric(metrics_port, "nlumon_records_in_total") >= 64, 60,
                   "the wedged worker to take records", (wedged,))
        if clickhouse == "refused":
            wait_until(lambda: "failed (attempt" in full_log(wedged), 60, "a failed insert being retried", (wedged,))
        else:
            time.sleep(3)  # past sink_flush_s: the insert is stuck in a socket read
        assert sum(stored_ids(settings, ids).values()) == 0  # nothing could be stored
        took = stop_in_time(wedged)
    finally:
        wedged.stop()
        if blackhole is not None:
            blackhole.close()
    assert took is not None, (f"the worker wedged on ClickHouse ({clickhouse}) was still running "
                              f"{SHUTDOWN_TIMEOUT_S + GRACE_S} s after SIGTERM (shutdown_timeout_s="
                              f"{SHUTDOWN_TIMEOUT_S}):\n{wedged.output()}")
    next_owner_stores_everything(settings, ids, tmp_path)
