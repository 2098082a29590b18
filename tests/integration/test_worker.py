"""Real workers on the real broker and ClickHouse: nothing lost, nothing duplicated.

Each test has its own topics and consumer group; the model is the tiny test package.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from nlumon.records import DeadLetter
from nlumon.schema import connect
from nlumon.services.clickhouse import ClickHouseServer
from streams.replay import produce
from streams.scenarios import scenario_events
from tests.helpers import tiny_model_settings
from tests.integration.workers import Worker, isolated, stored_ids, topic_messages, wait_until

pytestmark = pytest.mark.integration

OUTAGE_S = 60.0  # the figure: a minute without ClickHouse must not cost the worker its group membership


@pytest.fixture
def settings(services, unique):
    return isolated(tiny_model_settings(services), unique)


def replay(settings, scenario: str, count: int, seed: int, **options) -> list:
    """Send a scenario to the test's topic; ids are unique per test run (the topic name is in the seed)."""
    seed += int(settings.topics.utterances.rsplit("-", 1)[1], 16) * 100
    events = list(scenario_events(scenario, count, seed=seed, ood_texts=lambda: ["what is the meaning of life"],
                                  **options))
    produce(settings, ((e.key, e.value) for e in events))
    return events


def good_ids(events) -> list[str]:
    return [e.truth["id"] for e in events if e.truth["kind"] != "malformed"]


def test_records_flow_end_to_end_and_bad_records_are_dead_lettered(settings, tmp_path):
    events = replay(settings, "malformed", 400, seed=11)
    ids = good_ids(events)
    bad = len(events) - len(ids)
    assert bad > 5
    worker = Worker(settings, "w1", tmp_path, NLUMON_LOG_FORMAT="json")
    try:
        wait_until(lambda: min(stored_ids(settings, ids).values()) == 1, 120, "every good record stored", (worker,))
        letters = topic_messages(settings, settings.topics.dead_letter)
        assert len(letters) == bad
        reasons = {DeadLetter.model_validate_json(m.value).reason.split(":")[0] for m in letters}
        # many kinds of bad input, each refused by the contract itself, none by an error of ours
        assert len(reasons) >= 5, reasons
        assert not {r for r in reasons if r.startswith(("internal error", "model error", "feature error"))}
        published = topic_messages(settings, settings.topics.predictions)
        assert sorted(json.loads(m.value)["id"] for m in published) == sorted(ids)
        client = connect(settings.clickhouse)
        versions = client.execute("SELECT DISTINCT model_version FROM predictions WHERE id IN %(ids)s",
                                  {"ids": tuple(ids)})
        client.disconnect()
        assert len(versions) == 1 and versions[0][0].startswith("retail-")
        assert worker.alive()  # bad records never stop the worker
        logged = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
        dead = [line for line in logged if line["message"].startswith("dead-lettered")]
        assert len(dead) == bad and all(line["level"] == "WARNING" for line in dead)  # one JSON object per record
        sent = [DeadLetter.model_validate_json(m.value) for m in letters]
        assert sorted((line["partition"], line["offset"], line["reason"]) for line in dead) == sorted(
            (letter.partition, letter.offset, letter.reason) for letter in sent)
        assert any(line["logger"] == "streams.agents" and "partitions" in line for line in logged)
    finally:
        worker.stop()


def test_sigkill_mid_stream_and_restart_leave_exactly_one_row_per_id(settings, tmp_path):
    events = replay(settings, "stable", 3000, seed=12)
    ids = good_ids(events)
    first = Worker(settings, "doomed", tmp_path)
    try:
        wait_until(lambda: sum(stored_ids(settings, ids).values()) >= 300, 120, "some rows", (first,))
    finally:
        first.kill()
    partial = sum(stored_ids(settings, ids).values())
    assert partial < len(ids), "the kill came too late to test anything"
    second = Worker(settings, "restarted", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids).values()) >= 1, 180, "every id after restart", (second,))
        assert set(stored_ids(settings, ids).values()) == {1}  # after FINAL: one row per id
    finally:
        second.stop()


def test_clickhouse_outage_loses_nothing(services, unique, tmp_path):
    own_clickhouse = {"port": 29100, "http_port": 28223, "database": "nlumon_outage"}
    settings = isolated(tiny_model_settings(services), unique, clickhouse=own_clickhouse,
                        services={"run_dir": tmp_path / "run"})
    server = ClickHouseServer(settings)
    server.start()
    worker = Worker(settings, "patient", tmp_path)
    try:
        before = good_ids(replay(settings, "stable", 300, seed=13))
        wait_until(lambda: min(stored_ids(settings, before).values()) == 1, 120, "rows before the outage", (worker,))
        server.stop()
        down_since = time.monotonic()
        during = good_ids(replay(settings, "stable", 300, seed=14))
        wait_until(lambda: "failed (attempt" in worker.output(), 60, "the worker to notice the outage", (worker,))
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        assert worker.alive()
        server.start()
        wait_until(lambda: min(stored_ids(settings, before + during).values()) == 1, 180,
                   "every row after the outage", (worker,))
        assert set(stored_ids(settings, before + during).values()) == {1}
        # it stayed in its group all along: one assignment, never a rebalance (the loop kept heartbeating)
        assert worker.log.read_text().count(" partition(s) of ") == 1, worker.output()[-3000:]
    finally:
        worker.stop()
        server.stop()


def samples(port: int, name: str) -> list[float] | None:
    """A metric's samples on a worker's /metrics page (None while the page does not answer)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    return [float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{")]


def metric(port: int, name: str) -> float:
    """Sum of a metric's samples (-1 while the page does not answer)."""
    values = samples(port, name)
    return -1.0 if values is None else sum(values)


def test_two_workers_share_the_partitions_and_one_takes_over_when_the_other_dies(settings, tmp_path):
    first = Worker(settings, "left", tmp_path, NLUMON_STREAM__METRICS_PORT="29464")
    second = Worker(settings, "right", tmp_path, NLUMON_STREAM__METRICS_PORT="29465")
    try:
        wait_until(lambda: metric(29464, "nlumon_assigned_partitions") > 0
                   and metric(29465, "nlumon_assigned_partitions") > 0, 120, "both workers to own partitions",
                   (first, second))
        assert metric(29464, "nlumon_assigned_partitions") + metric(29465, "nlumon_assigned_partitions") == 4
        ids = good_ids(replay(settings, "stable", 2000, seed=15))
        wait_until(lambda: min(stored_ids(settings, ids).values()) == 1, 180, "both workers' rows", (first, second))
        shares = metric(29464, "nlumon_records_in_total"), metric(29465, "nlumon_records_in_total")
        assert all(share > 0 for share in shares), f"one worker got no partition: {shares}"
        first.kill()
        later = good_ids(replay(settings, "stable", 1000, seed=16))
        wait_until(lambda: min(stored_ids(settings, later).values()) == 1, 180, "the survivor's rows", (second,))
        assert metric(29465, "nlumon_assigned_partitions") == 4
        wait_until(lambda: (samples(29465, "nlumon_consumer_lag") or [-1]) == [0.0] * 4, 30,
                   "zero consumer lag on all four partitions", (second,))
    finally:
        first.stop()
        second.stop()
