"""Outcome events end to end on the real broker and ClickHouse: a real worker stores each valid event exactly
once and dead-letters each bad one with its reason; the simulated assistant's outcomes join the predictions and
are better where the model was right."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from nlumon.records import DeadLetter, InvalidRecord, parse_outcome
from nlumon.schema import connect
from streams.demo import settings_env
from streams.outcome_sim import load_truth
from streams.replay import send_records
from tests.helpers import tiny_model_settings
from tests.integration.workers import Worker, isolated, stored_ids, stored_summary, topic_messages, wait_until

pytestmark = pytest.mark.integration

KINDS = ("task_completed", "abandoned", "escalated", "converted", "rephrased", "coupon_applied")


def valid_events(run: str, count: int) -> list[dict]:
    """Outcome events of this run only (the ids carry the run's name), every optional field in turn absent."""
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    events = []
    for index in range(count):
        event = {"id": f"o-{run}-{index}", "ts": (start + timedelta(seconds=index)).isoformat(),
                 "session_id": f"s-{run}-{index // 4}", "kind": KINDS[index % len(KINDS)]}
        if index % 3:
            event["utterance_id"] = f"u-{run}-{index}"
        if index % 2:
            event["satisfaction"] = 1 + index % 5
        if index % 5 == 0:
            event["value"] = round(index * 1.25, 2)
        events.append(event)
    return events


def malformed_events(run: str) -> list[bytes | None]:
    """One of each way an assistant breaks the outcome contract."""
    good = {"id": f"bad-{run}", "ts": "2026-11-23T10:00:00Z", "session_id": f"s-{run}-bad", "kind": "abandoned"}

    def changed(**fields) -> bytes:
        return json.dumps({k: v for k, v in {**good, **fields}.items() if v is not ...}).encode()

    return [
        b'{"id": "truncated", "kind": ',
        changed(kind="Task Completed"),
        changed(kind="task-completed"),
        changed(satisfaction=9),
        changed(satisfaction="5"),
        changed(value="12.50"),
        changed(value=True),
        changed(session_id=...),
        changed(ts="2026-11-23 10:00:00"),
        changed(ts=1_790_000_000),
        changed(utterance_id=""),
        changed(id="o\x00ctl"),
        changed().replace(b'"abandoned"', b'"abandoned", "extra": ' + b"[" * 500 + b"]" * 500),
        changed().replace(b'"abandoned"', b'"abandoned", "value": ' + b"9" * 400),
        changed().replace(b'"abandoned"', b'"aband\xff\xfeoned"'),
        changed().replace(b'"abandoned"', b'"abandoned", "extra": "' + b"x" * 70_000 + b'"'),
        b"[1, 2, 3]",
        None,  # a tombstone
    ]


def reason_of(value: bytes | None) -> str:
    try:
        parse_outcome(value)
    except InvalidRecord as error:
        return str(error)
    raise AssertionError(f"{value!r} is valid")


def stored_outcomes(settings, ids: list[str]) -> dict[str, tuple]:
    client = connect(settings.clickhouse)
    try:
        rows = client.execute(
            "SELECT id, session_id, utterance_id, kind, satisfaction, value, ts FROM outcomes FINAL "
            "WHERE id IN %(ids)s", {"ids": tuple(ids)})
    finally:
        client.disconnect()
    return {row[0]: row[1:] for row in rows}


def test_a_worker_stores_each_outcome_once_and_dead_letters_the_bad_ones(services, unique, tmp_path):
    settings = isolated(tiny_model_settings(services), unique)
    events = valid_events(unique, 200)
    bad = malformed_events(unique) * 3  # 54 of 254 distinct records: ~20 %
    records = [(e["session_id"].encode(), json.dumps(e).encode()) for e in events]
    mixed = records + [(b"s-bad", value) for value in bad]
    random.Random(unique).shuffle(mixed)
    duplicates = records[::3]  # sent twice: a producer that retried, or a resend
    outcome = send_records(settings, mixed + duplicates, topic=settings.topics.outcomes)
    assert outcome.ok, outcome.summary()
    assert len(bad) == 54 and len(mixed) == 254
    ids = [e["id"] for e in events]
    worker = Worker(settings, "outcomes", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids, table="outcomes").values()) == 1, 120,
                   "every valid outcome stored", (worker,))
        wait_until(lambda: len(topic_messages(settings, settings.topics.dead_letter, 2000)) >= len(bad), 60,
                   "every bad outcome dead-lettered", (worker,))
        published = topic_messages(settings, settings.topics.dead_letter)
        letters = [DeadLetter.model_validate_json(m.value) for m in published]
        assert worker.alive()  # bad records never stop the worker
    finally:
        worker.stop()
    # SIGTERM drains the outcomes agent too, then the worker exits cleanly
    assert "buffered outcome rows stored and their records acknowledged" in worker.log.read_text()
    assert worker.process.returncode == 0, worker.output()
    summary = stored_summary(settings, ids, table="outcomes")
    assert summary["rows"] == summary["distinct"] == len(ids)  # FINAL: exactly once, duplicates included
    assert summary["raw_rows"] >= len(ids)
    # every bad record is on the dead-letter topic once, with the contract's own reason, and nothing else is
    assert len(letters) == len(bad)
    assert {letter.source_topic for letter in letters} == {settings.topics.outcomes}
    assert sorted((letter.original(), letter.reason) for letter in letters) == sorted(
        (value or b"", reason_of(value)) for value in bad)
    assert not [letter.reason for letter in letters if letter.reason.startswith("internal error")]
    client = connect(settings.clickhouse)
    try:
        (stored_letters,) = client.execute("SELECT count() FROM dead_letters FINAL WHERE source_topic = %(topic)s",
                                           {"topic": settings.topics.outcomes})[0]
    finally:
        client.disconnect()
    assert stored_letters == len(bad)
    # what is stored is what was sent
    stored = stored_outcomes(settings, ids)
    for event in events:
        session, utterance, kind, satisfaction, value, ts = stored[event["id"]]
        assert (session, utterance, kind) == (event["session_id"], event.get("utterance_id", ""), event["kind"])
        assert (satisfaction, value) == (event.get("satisfaction"), event.get("value"))
        assert ts == datetime.fromisoformat(event["ts"]).replace(tzinfo=None)


def test_a_killed_worker_loses_no_outcome_and_doubles_none(services, unique, tmp_path):
    settings = isolated(tiny_model_settings(services), unique)
    events = valid_events(unique, 3000)
    ids = [e["id"] for e in events]
    assert send_records(settings, [(e["session_id"].encode(), json.dumps(e).encode()) for e in events],
                        topic=settings.topics.outcomes).ok
    first = Worker(settings, "doomed", tmp_path)
    try:
        wait_until(lambda: sum(stored_ids(settings, ids, table="outcomes").values()) >= 200, 120, "some outcomes",
                   (first,))
    finally:
        first.kill()
    partial = sum(stored_ids(settings, ids, table="outcomes").values())
    assert partial < len(ids), "the kill came too late to test anything"
    second = Worker(settings, "restarted", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids, table="outcomes").values()) == 1, 180,
                   "every outcome after the restart", (second,))
    finally:
        second.stop()
    assert set(stored_ids(settings, ids, table="outcomes").values()) == {1}


def run_cli(settings, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    env = {**settings_env(settings), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "nlumon.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def test_simulated_outcomes_join_the_predictions_and_are_better_where_the_model_was_right(
        services, unique, tmp_path, quick_model):
    settings = isolated(services, unique, model={"package_path": quick_model})
    seed = int(unique[:6], 16)  # ids of this run only
    out = tmp_path / "replay"
    worker = Worker(settings, "quick", tmp_path)
    try:
        wait_until(lambda: "serving model" in worker.output(), 120, "the worker's model", (worker,))
        done = run_cli(settings, "replay", "--scenario", "sudden-shift", "--count", "800", "--seed", str(seed),
                       "--malformed", "0.05", "--out", str(out), "--outcomes", "--outcomes-timeout-s", "240")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "utterances got outcomes" in done.stdout
        truth = load_truth(out / "truth.jsonl")
        wait_until(lambda: outcome_rows(settings, list(truth)) >= len(truth), 120, "the outcomes stored", (worker,))
    finally:
        worker.stop()
    client = connect(settings.clickhouse)
    try:
        joined = client.execute(  # USING, not ON: the join both ClickHouse 18.16 and current ones run
            "SELECT id, intent, is_ood, kind "
            "FROM (SELECT utterance_id AS id, session_id, kind FROM outcomes FINAL WHERE utterance_id IN %(ids)s) "
            "ANY INNER JOIN (SELECT id, session_id, intent, is_ood FROM predictions FINAL WHERE id IN %(ids)s) "
            "USING (id, session_id)", {"ids": tuple(truth)})
    finally:
        client.disconnect()
    kinds: dict[str, list[str]] = {}
    right: dict[str, bool] = {}
    for utterance, intent, is_ood, kind in joined:
        kinds.setdefault(utterance, []).append(kind)
        item = truth[utterance]
        right[utterance] = intent == item.intent or (item.intent == "oos" and bool(is_ood))
    assert set(kinds) == set(truth)  # every predicted utterance of the replay: its outcome, joined on both keys
    assert all(len(found) in (1, 2) for found in kinds.values())
    wrong = [u for u in kinds if not right[u]]
    assert len(wrong) >= 50, "the shift's new intents should fool the model"  # emerging intents were never trained

    def completion(utterances: list[str]) -> float:
        return sum("task_completed" in kinds[u] for u in utterances) / len(utterances)

    right_rate, wrong_rate = completion([u for u in kinds if right[u]]), completion(wrong)
    assert right_rate > wrong_rate + 0.3, (right_rate, wrong_rate)
    assert any("converted" in found for found in kinds.values())


def outcome_rows(settings, utterances: list[str]) -> int:
    """Distinct utterances with an outcome row."""
    client = connect(settings.clickhouse)
    try:
        return client.execute("SELECT uniqExact(utterance_id) FROM outcomes FINAL WHERE utterance_id IN %(ids)s",
                              {"ids": tuple(utterances)})[0][0]
    finally:
        client.disconnect()


def test_outcomes_send_puts_a_file_on_the_topic(services, unique, tmp_path):
    settings = isolated(services, unique)
    events = valid_events(unique, 5)
    source = tmp_path / "outcomes.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events) + "not json\n")
    done = run_cli(settings, "outcomes", "send", str(source), timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sent 6, confirmed 6" in done.stdout
    keys = {m.value: m.key for m in topic_messages(settings, settings.topics.outcomes)}  # 4 partitions: any order
    assert keys == {**{json.dumps(e).encode(): e["session_id"].encode() for e in events}, b"not json": None}
    assert not topic_messages(settings, settings.topics.utterances, 1000)  # the outcomes topic, not the utterances
