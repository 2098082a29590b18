import base64
import hashlib
import json

import pytest
from pydantic import ValidationError

from nlumon.records import (
    DEAD_LETTER_MARGIN_BYTES,
    MAX_NESTING,
    DeadLetter,
    InvalidRecord,
    UtteranceEvent,
    parse_utterance,
    record_limit,
)

GOOD = {
    "id": "u-1", "ts": "2026-11-23T10:00:00+01:00", "assistant": "associate", "session_id": "s-1",
    "text": "is jordan on shift tomorrow", "channel": "voice", "asr_confidence": 0.91,
}


def encode(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def with_raw(field: str, literal: bytes) -> bytes:
    """GOOD with ``field`` set to a raw JSON literal (what json.dumps would not write)."""
    return encode(**{field: "@@"}).replace(b'"@@"', literal)


def test_a_valid_event_parses_and_time_is_normalised_to_utc():
    event = parse_utterance(encode())
    assert event.assistant == "associate"
    assert event.ts.utcoffset().total_seconds() == 0
    assert event.ts.hour == 9
    assert type(event) is UtteranceEvent


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b'"text"', "expected a JSON object, got string"),
        (b"\xff\xfe", "not JSON: not valid UTF-8"),
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


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # no coercion: each field has its JSON type
        (encode(ts=1_795_000_000), r"field 'ts': Input should be a valid datetime"),
        (encode(ts="1795000000"), r"field 'ts': ts must be an RFC 3339 date-time"),
        (encode(ts="2026-11-23"), r"field 'ts': ts must be an RFC 3339"),
        (encode(ts="2026-11-23 10:00:00Z"), r"field 'ts': ts must be an RFC 3339"),
        (encode(ts="2026-12-31T23:59:60Z"), r"field 'ts': ts is not a valid date-time"),
        (encode(asr_confidence=True), r"field 'asr_confidence': Input should be a valid number"),
        (encode(asr_confidence="0.5"), r"field 'asr_confidence': Input should be a valid number"),
        (encode(version=True), r"field 'version': Input should be a valid integer"),
        (encode(version=1.0), r"field 'version': Input should be a valid integer"),
        (encode(version="1"), r"field 'version': Input should be a valid integer"),
        (encode(id=7), r"field 'id': Input should be a valid string"),
        (encode(session_id=None), r"field 'session_id': Input should be a valid string"),
        (encode(text=["add milk"]), r"field 'text': Input should be a valid string"),
        (encode(locale={"lang": "en"}), r"field 'locale': Input should be a valid string"),
        (encode(assistant=1), r"field 'assistant'"),
        (encode(channel=...), r"missing field 'channel'"),
        (encode(channel="email"), r"field 'channel': Input should be 'voice' or 'text'"),
        (encode(channel=None), r"field 'channel'"),
        # storable strings
        (encode(locale="en\x00US"), r"field 'locale': locale contains control characters"),
        (encode(id="u\n1"), r"field 'id': id contains control characters"),
        (encode(session_id="s\t1"), r"field 'session_id': session_id contains control characters"),
        (encode(locale="x" * 65), r"field 'locale'"),
        (with_raw("locale", rb'"\ud800"'), r"not JSON: .*surrogate"),
        (with_raw("text", rb'"add \udc00 milk"'), r"not JSON: .*surrogate"),
        (with_raw("locale", b'"\xed\xa0\x80"'), r"not JSON: not valid UTF-8"),
        (b"\xef\xbb\xbf" + encode(), r"not JSON: .*byte order mark"),
        # numbers
        (with_raw("asr_confidence", b"NaN"), r"not JSON"),
        (with_raw("asr_confidence", b"Infinity"), r"not JSON"),
        (with_raw("asr_confidence", b"1e400"), r"not JSON: number is infinity"),
        (with_raw("version", b"9" * 40), r"number too long: a number literal of 40 characters, more than 32"),
        (with_raw("version", b"18446744073709551616"), r"field 'version': Input should be a valid integer"),
        # depth and size
        (with_raw("extra", b"[" * 100 + b"]" * 100), rf"too deeply nested: JSON nested more than {MAX_NESTING}"),
        (encode(text="a" * 70_000), r"record too large: \d+ bytes, more than 65536"),
    ],
)
def test_the_wire_is_read_strictly(raw: bytes, reason: str):
    with pytest.raises(InvalidRecord, match=reason):
        parse_utterance(raw)


def test_known_escapes_are_invalid_records_not_crashes():
    """Each of these once escaped parse_utterance as another exception and crashed the agent."""
    deep = with_raw("text", b"[" * 5000 + b"]" * 5000)  # RecursionError under json.loads
    with pytest.raises(InvalidRecord, match="too deeply nested"):
        parse_utterance(deep)
    huge_int = with_raw("extra", b"7" * 5000)  # ValueError: past Python's 4300-digit int limit
    with pytest.raises(InvalidRecord, match="number too long: a number literal of 5000 characters"):
        parse_utterance(huge_int)
    surrogate = with_raw("locale", rb'"\ud800"')  # UnicodeEncodeError in clickhouse-driver, later
    with pytest.raises(InvalidRecord, match="not JSON"):
        parse_utterance(surrogate)
    with pytest.raises(ValidationError, match="locale"):  # the Python-side model refuses it too
        UtteranceEvent.model_validate({**GOOD, "locale": "\ud800"})
    with pytest.raises(InvalidRecord, match="not valid UTF-8"):
        parse_utterance('{"id": "\ud800"}')  # a str that cannot be UTF-8


def test_accepted_forms():
    assert parse_utterance(encode(asr_confidence=None)).asr_confidence is None
    assert parse_utterance(encode(asr_confidence=1)).asr_confidence == 1.0  # a JSON integer is a number
    assert parse_utterance(encode(asr_confidence=...)).asr_confidence is None
    assert parse_utterance(encode(version=2)).version == 2
    assert parse_utterance(encode(ts="2026-11-23t10:00:00.123456789z")).ts.microsecond == 123456
    assert parse_utterance(encode(text="add\tmilk")).text == "add\tmilk"  # text may hold a tab
    assert parse_utterance(encode(unknown={"nested": [1, 2]})).id == "u-1"  # unknown fields are ignored
    assert parse_utterance(bytearray(encode())).id == "u-1"
    assert parse_utterance(encode().decode()).id == "u-1"
    duplicate = encode()[:-1] + b', "assistant": "shopper"}'
    assert parse_utterance(duplicate).assistant == "shopper"  # duplicate keys: the last one wins


def test_the_python_side_model_keeps_its_defaults():
    event = UtteranceEvent(id="u", ts="2026-11-23T10:00:00Z", assistant="shopper", session_id="s", text="hi")
    assert event.channel == "text" and event.locale == "en-US"
    assert parse_utterance(event.to_json()) == event  # what the model writes, the wire reads


def test_text_limit_comes_from_the_caller():
    with pytest.raises(InvalidRecord, match="more than 10"):
        parse_utterance(encode(text="add two jordans"), max_text_chars=10)
    assert record_limit(10_000) > record_limit(512) == 65536
    parse_utterance(encode(text="ü" * 10_000), max_text_chars=10_000)
    with pytest.raises(InvalidRecord, match=r"record too large: .* more than 1000"):
        parse_utterance(encode(text="a" * 1000), max_record_bytes=1000)


def test_event_round_trips_through_its_json():
    event = parse_utterance(encode())
    assert UtteranceEvent.model_validate_json(event.to_json()) == event


def test_dead_letter_keeps_the_original_bytes_exactly():
    original = b"\x00\xffnot json at all"
    letter = DeadLetter.for_bytes(original, "not JSON", source_topic="utterances", partition=2, offset=7, key=b"s-1")
    restored = DeadLetter.model_validate_json(letter.to_json())
    assert restored.original() == original
    assert (restored.partition, restored.offset, restored.key) == (2, 7, "s-1")
    assert not restored.truncated
    assert restored.original_size == len(original)
    assert restored.original_sha256 == hashlib.sha256(original).hexdigest()


def test_a_dead_letter_too_large_for_the_topic_keeps_a_prefix_its_size_and_hash():
    original = b"{" + b"x" * 3_000_000  # 3 MB: 4 MB in base64, over the 1,000,000-byte producer limit
    letter = DeadLetter.for_bytes(original, "record too large: 3000001 bytes, more than 65536",
                                  source_topic="utterances", partition=0, offset=9, key=b"s-1")
    assert letter.truncated
    assert letter.message_size() <= 1_000_000 - DEAD_LETTER_MARGIN_BYTES
    assert len(letter.to_json()) + len(b"s-1") == letter.message_size()
    kept = letter.original()
    assert original.startswith(kept) and 700_000 < len(kept) < 750_000
    assert letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert letter.reason.startswith("record too large")
    assert f"keeps the first {len(kept)} of {len(original)} bytes" in letter.reason
    restored = DeadLetter.model_validate_json(letter.to_json())
    assert restored == letter


@pytest.mark.parametrize("max_bytes", [65_536, 200_000, 1_000_000, 5_000_000])
def test_a_dead_letter_fits_any_limit_even_with_a_large_key_and_reason(max_bytes: int):
    original = bytes(range(256)) * 20_000  # 5 MB of every byte value
    letter = DeadLetter.for_bytes(original, "why\n" * 1000, source_topic="utterances", key=b"\xff" * 100_000,
                                  max_bytes=max_bytes)
    assert letter.message_size() <= max_bytes - DEAD_LETTER_MARGIN_BYTES
    assert original.startswith(letter.original())
    assert "\n" not in letter.reason and len(letter.reason) < 700
    assert len(letter.key) <= 256
    assert letter.truncated == (len(original) * 4 // 3 > max_bytes)
    base64.b64decode(json.loads(letter.to_json())["original_b64"], validate=True)


def test_dead_letter_strings_are_storable():
    letter = DeadLetter.for_bytes("{\ud800", "bad \ud800 thing", source_topic="utterances", key="k\udc00")
    letter.to_json().decode("utf-8")
    assert letter.reason == "bad \\ud800 thing"
    assert letter.original() == "{\ud800".encode("utf-8", "surrogatepass")
