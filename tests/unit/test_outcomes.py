"""The outcome contract (``parse_outcome``), the parser it shares with utterances, and ``OutcomePipeline``."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlumon.pii import deidentify_value
from nlumon.records import (
    MAX_NESTING,
    OUTCOME_KIND_PATTERN,
    OUTCOME_KINDS,
    TS_MAX,
    TS_MIN,
    InvalidRecord,
    OutcomeEvent,
    UtteranceEvent,
    parse_outcome,
    parse_record,
    parse_utterance,
)
from nlumon.settings import load_settings
from streams.agents import BatchCommitter, drain_on_stop
from streams.metrics import WorkerMetrics
from streams.outcomes import OUTCOME_COLUMNS, OutcomePipeline
from streams.pipeline import DEAD_LETTER_COLUMNS, RawRecord
from streams.sink import ClickHouseSink, SinkStoppedError

GOOD = {
    "id": "o-1", "ts": "2026-11-23T10:05:00+01:00", "session_id": "s-1", "utterance_id": "u-1",
    "kind": "task_completed", "satisfaction": 5, "value": 12.5,
}
UTTERANCE = {
    "id": "u-1", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper", "session_id": "s-1",
    "text": "add milk to my cart", "channel": "voice",
}


def encode(record: dict = GOOD, **changes) -> bytes:
    merged = {**record, **changes}
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


def with_raw(record: dict, field: str, literal: bytes) -> bytes:
    """``record`` with ``field`` set to a raw JSON literal (what json.dumps would not write)."""
    return encode(record, **{field: "@@"}).replace(b'"@@"', literal)


def test_a_valid_outcome_parses_with_its_time_in_utc():
    event = parse_outcome(encode())
    assert type(event) is OutcomeEvent
    assert (event.id, event.session_id, event.utterance_id, event.kind) == ("o-1", "s-1", "u-1", "task_completed")
    assert event.ts == datetime(2026, 11, 23, 9, 5, tzinfo=UTC)
    assert (event.satisfaction, event.value, event.version) == (5, 12.5, 1)
    assert parse_outcome(event.to_json()) == event  # what the model writes, the wire reads


def test_optional_fields_may_be_absent_or_null():
    bare = parse_outcome(encode(utterance_id=..., satisfaction=..., value=...))
    assert (bare.utterance_id, bare.satisfaction, bare.value) == (None, None, None)
    null = parse_outcome(encode(utterance_id=None, satisfaction=None, value=None))
    assert (null.utterance_id, null.satisfaction, null.value) == (None, None, None)
    assert parse_outcome(encode(value=3)).value == 3.0  # a JSON integer is a number
    assert parse_outcome(encode(value=-1e300)).value == -1e300
    assert parse_outcome(encode(extra={"nested": [1]})).id == "o-1"  # unknown fields are ignored


@pytest.mark.parametrize("kind", [*OUTCOME_KINDS, "refund_issued", "nps_9", "x", "a" * 32])
def test_known_kinds_and_any_lowercase_name_are_accepted(kind: str):
    assert parse_outcome(encode(kind=kind)).kind == kind


KIND_REASON = ("field 'kind': kind must be one of task_completed, abandoned, escalated, converted, rephrased or "
               "another lowercase name [a-z][a-z0-9_]{0,31}")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (encode(kind="Task_Completed"), KIND_REASON),
        (encode(kind="task-completed"), KIND_REASON),
        (encode(kind="9lives"), KIND_REASON),
        (encode(kind=""), KIND_REASON),
        (encode(kind="a" * 33), KIND_REASON),
        (encode(kind="done\n"), KIND_REASON),
        (encode(kind=1), "field 'kind': Input should be a valid string"),
        (encode(kind=...), "missing field 'kind'"),
        (encode(satisfaction=0), "field 'satisfaction': Input should be greater than or equal to 1"),
        (encode(satisfaction=6), "field 'satisfaction': Input should be less than or equal to 5"),
        (encode(satisfaction=4.0), "field 'satisfaction': Input should be a valid integer"),
        (encode(satisfaction="4"), "field 'satisfaction': Input should be a valid integer"),
        (encode(satisfaction=True), "field 'satisfaction': Input should be a valid integer"),
        (encode(value="12.5"), "field 'value': Input should be a valid number"),
        (encode(value=True), "field 'value': Input should be a valid number"),
        (with_raw(GOOD, "value", b"1e400"), "not JSON: number is infinity when parsed as double: line 1 column 148 "
                                            "(char 147)"),
        (encode(utterance_id=""), "field 'utterance_id': String should have at least 1 character"),
        (encode(utterance_id="u" * 129), "field 'utterance_id': String should have at most 128 characters"),
        (encode(utterance_id="u\t1"), "field 'utterance_id': utterance_id contains control characters"),
        (encode(utterance_id=7), "field 'utterance_id': Input should be a valid string"),
        (encode(session_id=...), "missing field 'session_id'"),
        (encode(session_id="s\x001"), "field 'session_id': session_id contains control characters"),
        (encode(id=""), "field 'id': String should have at least 1 character"),
        (encode(ts="2026-11-23T10:05:00"), "field 'ts': ts must be an RFC 3339 date-time with a time zone, like "
                                           "2026-11-23T10:00:00Z"),
        (encode(ts=1_795_000_000), "field 'ts': Input should be a valid datetime"),
        (encode(ts="1969-07-20T20:17:00Z"), "field 'ts': ts 1969-07-20T20:17:00+00:00 is outside 1971..2105"),
        (encode(version="1"), "field 'version': Input should be a valid integer"),
        (encode(id=..., ts=..., kind="Done", satisfaction=9),
         "missing field 'id'; missing field 'ts'; " + KIND_REASON + "; field 'satisfaction': Input should be less "
         "than or equal to 5"),
    ],
)
def test_each_outcome_contract_violation_has_its_exact_reason(raw: bytes, reason: str):
    with pytest.raises(InvalidRecord) as caught:
        parse_outcome(raw)
    assert str(caught.value) == reason


# -- the shared, hardened parser: both contracts refuse the same bad input with the same reason -----------------
SHARED_CASES = [
    (lambda good: b"{not json", "not JSON: unexpected character, expected a string key: line 1 column 2 (char 1)"),
    (lambda good: b"[1, 2]", "expected a JSON object, got array"),
    (lambda good: b"null", "expected a JSON object, got null"),
    (lambda good: None, "empty record (no value)"),
    (lambda good: b"\xff\xfe", "not JSON: not valid UTF-8 (invalid start byte at byte 0)"),
    (lambda good: b"\xef\xbb\xbf" + encode(good), None),  # a byte order mark: "not JSON: ..."
    (lambda good: with_raw(good, "extra", b"[" * 100 + b"]" * 100),
     f"too deeply nested: JSON nested more than {MAX_NESTING} levels"),
    (lambda good: with_raw(good, "extra", b"[" * 5000 + b"]" * 5000),
     f"too deeply nested: JSON nested more than {MAX_NESTING} levels"),
    (lambda good: with_raw(good, "version", b"9" * 40),
     "number too long: a number literal of 40 characters, more than 32"),
    (lambda good: with_raw(good, "extra", b"7" * 5000),
     "number too long: a number literal of 5000 characters, more than 32"),
    (lambda good: encode(good, extra="x" * 70_000), None),  # "record too large: N bytes, more than 65536"
    (lambda good: with_raw(good, "session_id", rb'"\ud800"'), None),  # "not JSON: ... surrogate ..."
    (lambda good: with_raw(good, "session_id", b'"\xed\xa0\x80"'), None),  # "not JSON: not valid UTF-8 ..."
    (lambda good: encode(good, id=12), "field 'id': Input should be a valid string"),
    (lambda good: encode(good, session_id=["s"]), "field 'session_id': Input should be a valid string"),
]


@pytest.mark.parametrize(("make", "reason"), SHARED_CASES)
def test_both_contracts_read_the_wire_with_the_same_parser(make, reason):
    outcome_reason = utterance_reason = None
    try:
        parse_outcome(make(GOOD))
    except InvalidRecord as error:
        outcome_reason = str(error)
    try:
        parse_utterance(make(UTTERANCE))
    except InvalidRecord as error:
        utterance_reason = str(error)
    assert outcome_reason is not None and utterance_reason is not None
    if reason is not None:
        assert outcome_reason == utterance_reason == reason
    else:  # the reason names a position or a size that differs between the two records: same kind of reason
        assert outcome_reason.split(":")[0] == utterance_reason.split(":")[0]
        assert outcome_reason.startswith(("not JSON", "record too large")), outcome_reason


def test_the_size_limit_applies_before_parsing_and_can_be_set():
    with pytest.raises(InvalidRecord, match=r"^record too large: \d+ bytes, more than 65536$"):
        parse_outcome(encode(extra="x" * 70_000))
    with pytest.raises(InvalidRecord, match=r"^record too large: \d+ bytes, more than 100$"):
        parse_outcome(encode(), max_record_bytes=100)


def test_parse_record_takes_a_model_the_fields_the_wire_must_carry_and_a_check():
    def no_refunds(event: OutcomeEvent) -> None:
        if event.kind == "refund":
            raise InvalidRecord("refunds go elsewhere")

    assert parse_record(encode(), OutcomeEvent, check=no_refunds).kind == "task_completed"
    with pytest.raises(InvalidRecord, match=r"^refunds go elsewhere$"):
        parse_record(encode(kind="refund"), OutcomeEvent, check=no_refunds)
    with pytest.raises(InvalidRecord, match=r"^missing field 'value'$"):
        parse_record(encode(value=...), OutcomeEvent, required=("value",))

    def broken(event: OutcomeEvent) -> None:
        raise KeyError("bug")

    with pytest.raises(InvalidRecord, match=r"^internal error while parsing: KeyError: 'bug'$"):
        parse_record(encode(), OutcomeEvent, check=broken)
    with pytest.raises(InvalidRecord, match=r"^missing field 'channel'$"):  # the utterance contract still needs it
        parse_utterance(encode(UTTERANCE, channel=...))
    assert type(parse_utterance(encode(UTTERANCE))) is UtteranceEvent


# -- property tests: nothing but InvalidRecord, whatever arrives --------------------------------------------------
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(["", "\ud800", "\x00", "task_completed", "Converted", "2026-11-23T10:00:00Z", "2026-11-23",
                     "a" * 200, "5", "true"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_outcomes(draw) -> bytes:
    record = dict(GOOD)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        name = draw(st.sampled_from((*GOOD, "version", "extra")))
        if draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = draw(json_values)
    raw = json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and raw:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw = raw[:at] + draw(st.binary(min_size=0, max_size=3)) + raw[at + 1:]
    return raw


def check_event(event: OutcomeEvent) -> None:
    for name in ("id", "session_id", "utterance_id"):
        value = getattr(event, name)
        if value is not None:
            value.encode("utf-8")  # storable
            assert 1 <= len(value) <= 128 and not CONTROL.search(value), name
    assert OUTCOME_KIND_PATTERN.fullmatch(event.kind)
    assert event.ts.tzinfo == UTC and TS_MIN <= event.ts <= TS_MAX
    assert event.satisfaction is None or (type(event.satisfaction) is int and 1 <= event.satisfaction <= 5)
    assert event.value is None or (type(event.value) is float and abs(event.value) < float("inf"))


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated_outcomes(), mutated_outcomes()))
def test_parse_outcome_raises_only_invalid_record_with_a_one_line_reason(raw: bytes):
    try:
        event = parse_outcome(raw)
    except InvalidRecord as error:
        assert str(error) and "\n" not in str(error)
        return
    check_event(event)


@FUZZ
@given(st.dictionaries(st.sampled_from((*GOOD, "version")), json_values, max_size=8))
def test_arbitrary_json_objects_are_outcomes_or_invalid_records(record: dict):
    try:
        check_event(parse_outcome(json.dumps(record).encode("utf-8", "surrogatepass")))
    except InvalidRecord as error:
        assert "\n" not in str(error)


# -- OutcomePipeline: one row or one dead letter per record --------------------------------------------------------
PIPELINE = OutcomePipeline(load_settings(None, topics={"max_message_bytes": 65_536}))


def raw(value: bytes | None, offset: int) -> RawRecord:
    return RawRecord(value, b"s-1", 2, offset, "outcomes", 1_790_000_000.0)


def test_the_pipeline_turns_valid_records_into_rows_and_bad_ones_into_dead_letters():
    records = [raw(encode(), 0), raw(b"{oops", 1), raw(encode(kind="Done"), 2), raw(None, 3),
               raw(encode(id="o-2", utterance_id=..., satisfaction=..., value=...), 4)]
    result = PIPELINE.process(records)
    rows = result.rows["outcomes"]
    assert [row["id"] for row in rows] == ["o-1", "o-2"]
    assert all(tuple(row) == OUTCOME_COLUMNS for row in rows)
    first, second = rows
    assert first["ts"] == datetime(2026, 11, 23, 9, 5) and first["ts"].tzinfo is None
    assert (first["kafka_partition"], first["kafka_offset"], first["satisfaction"], first["value"]) == (2, 0, 5, 12.5)
    assert (second["utterance_id"], second["satisfaction"], second["value"]) == ("", None, None)
    assert first["row_version"] == second["row_version"] > 0
    reasons = [letter.reason for letter in result.dead_letters]
    assert reasons == ["not JSON: unexpected character, expected a string key: line 1 column 2 (char 1)", KIND_REASON,
                       "empty record (no value)"]
    assert [letter.offset for letter in result.dead_letters] == [1, 2, 3]
    assert result.dead_letters[0].original() == b"{oops" and result.dead_letters[0].source_topic == "outcomes"
    assert [tuple(row) for row in result.rows["dead_letters"]] == [DEAD_LETTER_COLUMNS] * 3


def test_rows_keep_identifiers_and_scrub_the_session_as_predictions_do():
    session = "mail-jane.doe@example.com"
    (row,) = PIPELINE.process([raw(encode(session_id=session, utterance_id="u-415-555-0134"), 0)]).rows["outcomes"]
    assert row["session_id"] == deidentify_value(session) != session  # the predictions' session_id: joinable
    assert row["utterance_id"] == "u-415-555-0134"  # the predictions' id is kept exact too
    assert (row["id"], row["kind"]) == ("o-1", "task_completed")


@FUZZ
@given(st.lists(st.one_of(st.none(), st.binary(max_size=200), mutated_outcomes()), max_size=8))
def test_the_pipeline_accounts_for_every_record_exactly_once(values: list):
    records = [raw(value, offset) for offset, value in enumerate(values)]
    result = PIPELINE.process(records)
    stored = [row["kafka_offset"] for row in result.rows.get("outcomes", [])]
    lettered = [letter.offset for letter in result.dead_letters]
    assert sorted(stored + lettered) == list(range(len(values)))
    for row in result.rows.get("outcomes", []):
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")


# -- the drain on SIGTERM: store and acknowledge what is buffered, or give up on time -------------------------------
@dataclass
class Message:
    partition: int
    offset: int
    value: bytes = b"{}"
    key: bytes = b"s-1"
    topic: str = "outcomes"


@dataclass
class Event:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


class Client:
    """Stores inserts, or fails every one with a connection error (ClickHouse down) when ``down``."""

    def __init__(self, down: bool = False) -> None:
        self.down, self.rows = down, []

    def execute(self, statement: str, columns: list, columnar: bool = False) -> None:
        if self.down:
            raise ConnectionRefusedError("clickhouse is down")
        self.rows += list(zip(*columns, strict=True))

    def disconnect(self) -> None:
        pass


def buffered(client: Client) -> tuple[BatchCommitter, ClickHouseSink, list[Event]]:
    sink = ClickHouseSink(lambda: client, columns={"outcomes": ("id", "kafka_partition", "kafka_offset")},
                          backoff_initial_s=0.05, backoff_max_s=0.05)
    committer = BatchCommitter(sink, ThreadPoolExecutor(1), WorkerMetrics("w"))
    events = [Event(Message(0, offset)) for offset in range(3)]
    for event in events:
        sink.add("outcomes", {"id": f"o-{event.message.offset}", "kafka_partition": 0,
                              "kafka_offset": event.message.offset})
    committer.unacked.extend(events)
    return committer, sink, events


def test_the_drain_stores_and_acknowledges_what_is_buffered():
    client = Client()
    committer, sink, events = buffered(client)
    stopping: list[bool] = []
    asyncio.run(drain_on_stop(committer, sink, stopping, 5.0, "w")())
    assert [row[0] for row in client.rows] == ["o-0", "o-1", "o-2"]
    assert all(event.acked for event in events) and stopping == [True]


def test_the_drain_gives_up_on_time_and_acknowledges_nothing_it_could_not_store():
    committer, sink, events = buffered(Client(down=True))
    drain = drain_on_stop(committer, sink, [], 0.5, "w")
    started = time.monotonic()
    asyncio.run(drain())
    assert 0.4 < time.monotonic() - started < 3.0
    assert not any(event.acked for event in events)  # the next owner reads them again
    with pytest.raises(SinkStoppedError):  # its retries were stopped
        sink.write(sink.batch_of("outcomes", [{"id": "o-9", "kafka_partition": 0, "kafka_offset": 9}]))
    started = time.monotonic()
    asyncio.run(drain())  # a second call (on_before_shutdown after the signal) has no budget left
    assert time.monotonic() - started < 0.5
