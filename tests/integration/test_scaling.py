"""Workers join and leave one consumer group in the middle of a replay: no crash, nothing lost or doubled.

One worker is busy on a paced replay; a second and a third join (each join is a rebalance that revokes
partitions the others were reading), then one leaves with SIGTERM (another rebalance). Afterwards every id
sent is stored exactly once in ``predictions`` (after FINAL), the group's committed offsets reach the end of
every partition (lag 0), and no worker process crashed: exit code 0 on SIGTERM, and no crash in any log
(e.g. aiokafka's ``AssertionError: Partition is not assigned`` from a timer that reads a revoked partition).
"""

from __future__ import annotations

import pytest

from tests.helpers import tiny_model_settings
from tests.integration.workers import (
    BackgroundReplay,
    Worker,
    crash_lines,
    full_log,
    group_lag,
    isolated,
    owned_partitions,
    sigterm_and_time,
    stored_ids,
    stored_summary,
    unique_events,
    wait_until,
)

pytestmark = pytest.mark.integration

PARTITIONS = 6  # three workers all get partitions (2 each)
COUNT = 4000
RATE = 200.0  # events/s: the replay lasts ~20 s, longer than it takes the workers to join
HOLD_LAST = 400  # the last events wait until every join and leave happened: those happen mid-replay
SHUTDOWN_TIMEOUT_S = 10.0


@pytest.fixture
def settings(services, unique):
    return isolated(tiny_model_settings(services), unique, topics={"partitions": PARTITIONS},
                    stream={"shutdown_timeout_s": SHUTDOWN_TIMEOUT_S})


def test_workers_join_and_leave_mid_replay_without_crash_loss_or_duplicate(settings, tmp_path):
    events = unique_events(settings, "stable", COUNT, seed=21)
    ids = [e.truth["id"] for e in events]
    first = Worker(settings, "first", tmp_path)
    workers = [first]
    replay = None
    try:
        wait_until(lambda: owned_partitions(first) == PARTITIONS, 120, "the first worker to own every partition",
                   (first,))
        replay = BackgroundReplay(settings, [(e.key, e.value) for e in events], rate=RATE, hold_last=HOLD_LAST)
        wait_until(lambda: sum(stored_ids(settings, ids).values()) >= 300, 120, "the first worker's rows", (first,))

        second = Worker(settings, "second", tmp_path)
        workers.append(second)
        wait_until(lambda: (owned_partitions(second) or 0) > 0, 120, "the second worker to get partitions",
                   tuple(workers))
        third = Worker(settings, "third", tmp_path)
        workers.append(third)
        wait_until(lambda: (owned_partitions(third) or 0) > 0
                   and all((owned_partitions(w) or 0) > 0 for w in workers), 120,
                   "all three workers to own partitions", tuple(workers))
        shares = {w.name: owned_partitions(w) for w in workers}
        assert sum(shares.values()) == PARTITIONS, f"partitions owned after the joins: {shares}"

        took = sigterm_and_time(first, SHUTDOWN_TIMEOUT_S + 20)
        if took is None:
            first.kill()
        assert took is not None, f"the first worker did not stop within {SHUTDOWN_TIMEOUT_S + 20} s of SIGTERM"
        assert first.process.returncode == 0, f"first worker exit code {first.process.returncode}"
        survivors = (second, third)
        wait_until(lambda: sum(owned_partitions(w) or 0 for w in survivors) == PARTITIONS, 120,
                   "the survivors to take the leaver's partitions over", survivors)
        assert replay.progress < replay.total, "the replay ended before the workers joined and left"

        outcome = replay.join()
        assert outcome.ok, outcome.summary()
        assert outcome.confirmed == COUNT
        wait_until(lambda: min(stored_ids(settings, ids).values()) >= 1, 180, "every id stored", survivors)
        wait_until(lambda: sum(group_lag(settings).values()) == 0, 60, "consumer lag back to 0", survivors)
        assert set(group_lag(settings)) == set(range(PARTITIONS))

        counts = stored_ids(settings, ids)
        assert {i for i, n in counts.items() if n} == set(ids)
        assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n != 1}
        summary = stored_summary(settings, ids)
        assert summary["rows"] == summary["distinct"] == len(ids), summary

        for worker in survivors:
            assert worker.alive(), f"{worker.name} died:\n{worker.output()}"
            took = sigterm_and_time(worker, SHUTDOWN_TIMEOUT_S + 20)
            assert took is not None, f"{worker.name} did not stop within {SHUTDOWN_TIMEOUT_S + 20} s of SIGTERM"
            assert worker.process.returncode == 0, f"{worker.name} exit code {worker.process.returncode}"
        crashes = {w.name: crash_lines(full_log(w)) for w in workers}
        assert not any(crashes.values()), f"crash lines in the workers' logs: {crashes}"
    finally:
        if replay is not None:
            replay.release()
        for worker in workers:
            worker.stop()
