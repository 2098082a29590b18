import json

import pytest

from nlumon.records import DeadLetter, InvalidRecord, UtteranceEvent, parse_utterance

GOOD = {
    "id": "u-1", "ts": "2026-11-23T10:00:00+01:00", "assistant": "associate", "session_id": "s-1",
    "text": "is jordan on shift tomorrow", "channel": "voice", "asr_confidence": 0.91,
}


def encode(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def test_a_valid_event_parses_and_time_is_normalised_to_utc():
    event = parse_utterance(encode())
    assert event.assistant == "associate"
    assert event.ts.utcoffset().total_seconds() == 0
    assert event.ts.hour == 9


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (encode(ts=...), "missing field 'ts'"),
        (encode(text="   "), "text is empty"),
        (encode(text="add\x00milk"), "control characters"),
        (encode(assistant="cashier"), "field 'assistant'"),
        (encode(asr_confidence=1.5), "field 'asr_confidence'"),
        (encode(ts="2026-11-23T10:00:00"), "time zone"),
        (encode(ts="1969-07-20T20:17:00Z"), "outside 1971..2105"),
        (encode(ts="2200-01-01T00:00:00Z"), "outside 1971..2105"),
        (encode(text="a" * 600), "more than 512"),
        (encode(id=""), "field 'id'"),
    ],
)
def test_each_contract_violation_has_a_readable_reason(raw: bytes, reason: str):
    with pytest.raises(InvalidRecord, match=reason):
        parse_utterance(raw)


def test_text_limit_comes_from_the_caller():
    with pytest.raises(InvalidRecord, match="more than 10"):
        parse_utterance(encode(text="add two jordans"), max_text_chars=10)


def test_event_round_trips_through_its_json():
    event = parse_utterance(encode())
    assert UtteranceEvent.model_validate_json(event.to_json()) == event


def test_dead_letter_keeps_the_original_bytes_exactly():
    original = b"\x00\xffnot json at all"
    letter = DeadLetter.for_bytes(original, "not JSON", source_topic="utterances", partition=2, offset=7, key=b"s-1")
    restored = DeadLetter.model_validate_json(letter.to_json())
    assert restored.original() == original
    assert (restored.partition, restored.offset, restored.key) == (2, 7, "s-1")
