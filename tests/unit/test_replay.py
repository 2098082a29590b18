"""``nlumon replay``: every malformed kind breaks the contract in its own way, and sends are confirmed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from nlumon.cli import app
from nlumon.records import DeadLetter, InvalidRecord, parse_utterance
from nlumon.settings import load_settings
from streams import replay
from streams.pipeline import BatchPipeline, RawRecord
from streams.replay import (
    MALFORMED_KINDS,
    ReplayFailed,
    malformed_record,
    produce,
    send_records,
)

TS = datetime(2026, 1, 1, tzinfo=UTC)
ORIGINAL_KINDS = ("bad_json", "missing_field", "empty_text", "control_chars", "wrong_assistant", "too_long")


def record(kind: str, limit: int = 1_000_000) -> bytes | None:
    return malformed_record(7, TS, kind=kind, event_id=f"bad-{kind}", max_message_bytes=limit)


def test_the_kinds_keep_the_original_six_and_cover_every_listed_way_to_break_the_contract():
    assert MALFORMED_KINDS[: len(ORIGINAL_KINDS)] == ORIGINAL_KINDS
    assert len(set(MALFORMED_KINDS)) == len(MALFORMED_KINDS)
    assert {"ts_number", "confidence_string", "confidence_true", "missing_channel", "deep_nesting", "huge_integer",
            "lone_surrogate", "invalid_utf8", "utf8_surrogate", "nan", "infinity", "control_chars",
            "empty_string_text", "huge_text", "oversized", "null_value", "bom",
            "duplicate_keys"} <= set(MALFORMED_KINDS)
    # by index, a replay cycles through every kind
    values = [malformed_record(i, TS) for i in range(len(MALFORMED_KINDS))]
    assert len({v for v in values if v is not None}) == len(MALFORMED_KINDS) - 1
    assert values[MALFORMED_KINDS.index("null_value")] is None
    with pytest.raises(ValueError, match="unknown malformed kind"):
        malformed_record(0, kind="earthquake")


def test_each_record_has_exactly_the_defect_its_kind_names():
    valid = json.loads(record("missing_channel"))
    assert "channel" not in valid and valid["id"] == "bad-missing_channel"
    for kind in ("ts_number", "confidence_string", "confidence_true", "nan", "wrong_assistant", "empty_text"):
        assert b'"channel": "voice"' in record(kind), kind  # only the named defect
    assert isinstance(json.loads(record("ts_number"))["ts"], int)
    assert json.loads(record("confidence_string"))["asr_confidence"] == "0.9"
    assert json.loads(record("confidence_true"))["asr_confidence"] is True
    assert record("deep_nesting").count(b"[") == 5000
    assert b"9" * 5000 in record("huge_integer")
    assert b'"locale": "\\ud800"' in record("lone_surrogate")
    assert b"\xed\xa0\x80" in record("utf8_surrogate")
    for kind in ("invalid_utf8", "utf8_surrogate"):
        with pytest.raises(UnicodeDecodeError):
            record(kind).decode("utf-8")
    assert b"NaN" in record("nan") and b"Infinity" in record("infinity")
    assert b"\x00\x07" in record("raw_control_chars")  # raw, not JSON-escaped
    assert json.loads(record("empty_string_text"))["text"] == ""
    assert len(json.loads(record("huge_text"))["text"]) == 100_000
    assert record("bom").startswith(b"\xef\xbb\xbf")
    assert record("duplicate_keys").count(b'"assistant"') == 2


@pytest.mark.parametrize("limit", [1_000_000, 200_000])
def test_the_oversized_record_fits_the_topic_but_its_base64_does_not(limit):
    value = record("oversized", limit)
    assert 0.8 * limit < len(value) < limit  # the topic (max.message.bytes = limit) takes it
    assert len(base64.b64encode(value)) > limit  # a dead letter cannot carry it whole
    json.loads(value)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_the_pipeline_dead_letters_every_kind_and_never_crashes(kind):
    settings = load_settings(None)
    value = record(kind, settings.topics.max_message_bytes)
    result = BatchPipeline(settings).process([RawRecord(value, b"s-bad", 0, 7, "utterances")])
    assert not result.events, f"{kind} was accepted as a valid event"
    assert len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    assert letter.reason and "\n" not in letter.reason
    assert len(letter.to_json()) <= settings.topics.max_message_bytes, "the dead letter does not fit the topic"
    DeadLetter.model_validate_json(letter.to_json())


@pytest.mark.parametrize("kind", [k for k in MALFORMED_KINDS if k != "null_value"])
def test_the_parser_refuses_every_kind(kind):
    with pytest.raises(InvalidRecord):
        parse_utterance(record(kind))


# -- confirmed sends -------------------------------------------------------------------------------------------


class FakeFuture:
    def __init__(self, metadata=None, error=None):
        self.metadata, self.error = metadata, error

    def add_callback(self, f, *args):
        if self.error is None and self.metadata is not None:
            f(*args, self.metadata)
        return self

    def add_errback(self, f, *args):
        if self.error is not None:
            f(*args, self.error)
        return self


class FakeMetadata:
    def __init__(self, partition, offset):
        self.partition, self.offset = partition, offset


class FakeProducer:
    """Acknowledges b"ok", refuses b"big" at the broker, raises at send for b"local", never answers b"lost"."""

    def __init__(self):
        self.offset = 0
        self.closed = False

    def send(self, topic, key=None, value=None):
        from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

        self.offset += 1
        if value == b"local":
            raise KafkaTimeoutError("no metadata")
        if value == b"big":
            return FakeFuture(error=MessageSizeTooLargeError("the broker refused it"))
        if value == b"lost":
            return FakeFuture()
        return FakeFuture(FakeMetadata(0, self.offset))

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        self.closed = True


@pytest.fixture
def fake_producer(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(replay, "replay_producer", lambda settings, **overrides: producer)
    return producer


def test_every_send_is_counted_as_confirmed_or_failed(fake_producer):
    results = {}
    outcome = send_records(load_settings(None), [(b"k", b"ok"), (b"k", b"big"), (b"k", b"local"), (b"k", b"lost"),
                                                 (None, b"ok")],
                           on_result=lambda i, metadata, error: results.__setitem__(i, (metadata, error)))
    assert (outcome.sent, outcome.confirmed, outcome.failed, outcome.too_large) == (5, 2, 3, 1)
    assert outcome.errors == {"MessageSizeTooLargeError": 1, "KafkaTimeoutError": 1, "NotAcknowledged": 1}
    assert not outcome.ok and fake_producer.closed
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert results[0][0].offset == 1 and results[0][1] is None
    assert results[1][0] is None and results[1][1] is not None
    assert "sent 5, confirmed 2, failed 3" in outcome.summary()


def test_produce_returns_the_count_only_when_every_send_was_confirmed(fake_producer):
    settings = load_settings(None)
    assert produce(settings, [(b"k", b"ok")] * 3) == 3
    with pytest.raises(ReplayFailed, match="sent 2, confirmed 1, failed 1") as failure:
        produce(settings, [(b"k", b"ok"), (b"k", b"big")])
    assert failure.value.outcome.too_large == 1


def test_the_replay_command_prints_the_counts_and_fails_when_a_send_failed(fake_producer, tmp_path, monkeypatch):
    source = tmp_path / "events.jsonl"
    source.write_text("ok\nok\n")
    result = CliRunner().invoke(app, ["replay", "--source", str(source)])
    assert result.exit_code == 0, result.output
    assert "sent 2, confirmed 2, failed 0" in result.output
    source.write_text("ok\nbig\nok\n")
    result = CliRunner().invoke(app, ["replay", "--source", str(source)])
    assert result.exit_code == 1, result.output
    assert "sent 3, confirmed 2, failed 1" in result.output
