"""The agent's event-loop pieces without Faust: the commit point, refused rows, guarded timers, confirmed sends."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from nlumon.records import DeadLetter
from streams.agents import BatchCommitter, guarded, publish_all, refused_letters
from streams.metrics import WorkerMetrics
from streams.sink import ClickHouseSink


@dataclass
class Message:
    partition: int
    offset: int
    value: bytes
    key: bytes = b"s1"
    topic: str = "utterances"

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


class Client:
    """Refuses (for good) any predictions insert holding the value 'poison'; can be made slow to see who waits on it."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.rows: list[tuple[str, tuple]] = []
        self.delay_s = delay_s

    def execute(self, statement: str, columns: list, columnar: bool = False) -> None:
        time.sleep(self.delay_s)
        rows = list(zip(*columns, strict=True))
        if "predictions" in statement and any("poison" in str(value) for row in rows for value in row):
            raise TypeError("cannot encode 'poison'")
        self.rows += [(statement.split()[2], row) for row in rows]

    def disconnect(self) -> None:
        pass


def make_committer(client: Client, letters: list) -> tuple[BatchCommitter, ClickHouseSink]:
    sink = ClickHouseSink(lambda: client, columns={
        "utterance_log": ("id", "kafka_partition", "kafka_offset"),
        "predictions": ("id", "text_scrubbed", "kafka_partition", "kafka_offset"),
        "dead_letters": ("ts", "source_topic", "kafka_partition", "kafka_offset", "reason", "original_bytes",
                         "original_hash"),
    })

    async def on_refused(refused, events):
        found = refused_letters(refused, events, "utterances")
        letters.extend(found)
        from streams.pipeline import dead_letter_row

        return [dead_letter_row(letter) for letter in found]

    committer = BatchCommitter(sink, ThreadPoolExecutor(1), WorkerMetrics("w"), on_refused=on_refused)
    return committer, sink


def test_a_refused_row_becomes_one_dead_letter_and_every_event_is_acked():
    client, letters = Client(), []
    committer, sink = make_committer(client, letters)
    events = [Event(Message(0, offset, f'{{"n": {offset}}}'.encode())) for offset in range(6)]
    for event in events:
        offset = event.message.offset
        sink.add("utterance_log", {"id": f"u{offset}", "kafka_partition": 0, "kafka_offset": offset})
        sink.add("predictions", {"id": f"u{offset}", "text_scrubbed": "poison" if offset == 4 else "ok",
                                 "kafka_partition": 0, "kafka_offset": offset})
    committer.unacked.extend(events)
    asyncio.run(committer.flush())
    assert all(event.acked for event in events)
    assert [(letter.offset, letter.original()) for letter in letters] == [(4, b'{"n": 4}')]
    assert letters[0].reason.startswith("clickhouse refused the predictions row: TypeError: cannot encode")
    stored = {(table, row[0]) for table, row in client.rows}
    assert ("predictions", "u4") not in stored and ("predictions", "u5") in stored
    assert [row[3] for table, row in client.rows if table == "dead_letters"] == [4]


def test_the_event_loop_never_waits_for_a_slow_insert():
    client, letters = Client(delay_s=1.0), []
    committer, sink = make_committer(client, letters)

    async def scenario() -> float:
        sink.add("utterance_log", {"id": "u1", "kafka_partition": 0, "kafka_offset": 1})
        flushing = asyncio.ensure_future(committer.flush())
        await asyncio.sleep(0.05)  # the insert is now sleeping in the sink's thread
        started = time.perf_counter()
        sink.add("utterance_log", {"id": "u2", "kafka_partition": 0, "kafka_offset": 2})  # no lock wait
        await asyncio.sleep(0)
        blocked = time.perf_counter() - started
        await flushing
        return blocked

    assert asyncio.run(scenario()) < 0.1


def test_a_guarded_timer_logs_and_counts_instead_of_raising(caplog):
    metrics = WorkerMetrics("w")

    @guarded("measure_lag", "w", metrics)
    async def broken() -> None:
        raise AssertionError("Partition is not assigned")

    assert asyncio.run(broken()) is None
    assert metrics.timer_errors.labels(worker="w", timer="measure_lag")._value.get() == 1
    assert "measure_lag failed" in caplog.text and "Partition is not assigned" in caplog.text


class Topic:
    """Fails the first ``failures`` sends with a retriable error, like a broker that is restarting."""

    def __init__(self, failures: int, retriable: bool = True) -> None:
        self.failures, self.retriable, self.sent = failures, retriable, []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            error = ConnectionError("broker restarting")
            error.retriable = self.retriable
            future.set_exception(error)
        else:
            self.sent.append(value)
            future.set_result(None)
        return future


def test_publish_all_retries_failed_sends_until_the_broker_has_them(monkeypatch):
    monkeypatch.setattr("streams.agents.SEND_RETRY_MAX_S", 0.01)
    topic = Topic(failures=3)
    asyncio.run(publish_all([(topic, b"k", b"a", "a prediction"), (topic, b"k", b"b", "a prediction")]))
    assert sorted(topic.sent) == [b"a", b"b"]


def test_publish_all_raises_a_non_retriable_error():
    with pytest.raises(ConnectionError):
        asyncio.run(publish_all([(Topic(failures=2, retriable=False), b"k", b"a", "a dead letter")]))


def test_refused_letters_one_per_record_with_its_original_bytes():
    from streams.sink import Refused

    events = [Event(Message(2, 10, b"raw-10")), Event(Message(2, 11, b"raw-11"))]
    refused = [Refused("utterance_log", {"kafka_partition": 2, "kafka_offset": 11}, "X: bad"),
               Refused("predictions", {"kafka_partition": 2, "kafka_offset": 11}, "X: bad")]
    letters = refused_letters(refused, events, "utterances")
    assert len(letters) == 1 and isinstance(letters[0], DeadLetter)
    assert (letters[0].partition, letters[0].offset, letters[0].original()) == (2, 11, b"raw-11")



def test_prediction_rows_travel_as_json_with_iso_times_and_numpy_values():
    import json
    from datetime import datetime

    import numpy as np

    from streams.agents import _json_row

    row = {"id": "u1", "ts": datetime(2026, 1, 1, 10, 0), "top_scores": np.array([0.5, 0.25], dtype=np.float32),
           "confidence": np.float32(0.5), "asr_confidence": None, "text_scrubbed": "lone \ud800"}
    decoded = json.loads(_json_row(row))  # the surrogate takes the stdlib's escaping path
    assert decoded["ts"] == "2026-01-01T10:00:00" and decoded["asr_confidence"] is None
    assert decoded["text_scrubbed"] == "lone \ud800"
    del row["text_scrubbed"]
    decoded = json.loads(_json_row(row))
    assert decoded["top_scores"] == [0.5, 0.25] and decoded["confidence"] == 0.5


@pytest.mark.parametrize(("cause", "expected"), [
    ("KafkaConnectionError", True), ("NotLeaderForPartitionError", True), ("KafkaTimeoutError", True),
    ("MessageSizeTooLargeError", False), ("TopicAuthorizationFailedError", False), ("ProducerClosed", False),
])
def test_retriable_reads_the_kafka_error_faust_wraps(cause, expected):
    import aiokafka.errors
    from faust.exceptions import ProducerSendError

    from streams.agents import retriable

    wrapped = ProducerSendError("send failed")
    wrapped.__cause__ = getattr(aiokafka.errors, cause)()
    assert retriable(wrapped) is expected


def test_a_bug_is_not_retried():
    from streams.agents import retriable

    assert retriable(RuntimeError("a bug")) is False and retriable(ConnectionResetError()) is True
