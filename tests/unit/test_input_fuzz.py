"""Property tests: whatever bytes arrive on ``utterances``, nothing escapes and nothing is lost.

Arbitrary bytes and mutations of valid events (deep nesting, huge numbers, surrogates escaped and
encoded, every field with every JSON type, oversize records, control characters, NaN/Infinity,
duplicate keys, a byte order mark, truncation, flipped bytes) go through ``parse_utterance`` and
``BatchPipeline.process`` (without a model, and with a fake model that fails on some texts). The
parser raises only ``InvalidRecord``; the pipeline raises nothing, accounts for every record exactly
once, writes only storable strings, and every dead letter fits in ``topics.max_message_bytes``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_runtime.predictions import SlotSpan, UtterancePrediction
from nlumon.records import (
    CHANNELS,
    DEAD_LETTER_MARGIN_BYTES,
    TS_MAX,
    TS_MIN,
    InvalidRecord,
    UtteranceEvent,
    parse_utterance,
)
from nlumon.settings import load_settings
from streams.pipeline import BatchPipeline, RawRecord

FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_MESSAGE_BYTES = 65_536  # the smallest allowed: oversize records are truncated without megabytes per example
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FIELDS = ("id", "ts", "assistant", "session_id", "text", "locale", "channel", "asr_confidence", "version")
VALID = {
    "id": "u-1", "ts": "2026-11-23T10:00:00+01:00", "assistant": "shopper", "session_id": "s-1",
    "text": "add two jordans to my cart", "locale": "en-US", "channel": "voice", "asr_confidence": 0.91,
    "version": 1,
}
PLACEHOLDER = "@@raw@@"

# -- strategies ------------------------------------------------------------------------------------
any_char = st.characters(exclude_categories=())  # lone surrogates and control characters included
nasty_strings = st.sampled_from([
    "", " ", "\ud800", "\udfff", "a\ud83d", "\x00", "\t", "\n", "\x85", "\u2028", "\ufeff", "\U0001f600",
    "2026-11-23T10:00:00Z", "2026-11-23T10:00:00", "2026-13-45T99:99:99Z", "1970-01-01T00:00:00Z",
    "shopper", "associate", "voice", "text", "0.5", "1", "true", "null", "x" * 200,
])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(any_char, max_size=20), nasty_strings,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
raw_literals = st.one_of(
    st.sampled_from([
        b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"0.0000000000000000000001",
        b"18446744073709551616", b"-9223372036854775809", b"99999999999999999999999999999999",
        rb'"\ud800"', rb'"\udc00"', rb'"\ud800\ud800"', rb'"a\u0000b"', b'"\xed\xa0\x80"', b'"\xed\xbf\xbf"',
        b'"\xc0\xaf"', b'"\xff"', b'"a\x01b"', b'"unterminated', b"tru", b"[", b"{", b'""', b"[]", b"{}",
    ]),
    st.integers(min_value=19, max_value=5000).map(lambda n: b"9" * n),
    st.sampled_from([10, 31, 32, 33, 500, 1000, 1023, 1024, 1025, 5000]).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([32, 1000, 5000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def _dumps(record: dict, ascii_only: bool) -> bytes:
    text = json.dumps(record, ensure_ascii=ascii_only)  # NaN and Infinity are written as such
    return text.encode("utf-8", "surrogatepass")  # unescaped surrogates become encoded ones (ED A0 80)


@st.composite
def mutated_events(draw) -> bytes:
    record = dict(VALID)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        field = draw(st.sampled_from((*FIELDS, "extra", "")))
        action = draw(st.sampled_from(["delete", "value", "value", "raw"]))
        if action == "delete":
            record.pop(field, None)
        elif action == "value":
            record[field] = draw(json_values)
        else:
            record[field] = PLACEHOLDER
    raw = _dumps(record, draw(st.booleans()))
    while PLACEHOLDER.encode() in raw:
        raw = raw.replace(b'"' + PLACEHOLDER.encode() + b'"', draw(raw_literals), 1)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        kind = draw(st.sampled_from(["bom", "duplicate", "truncate", "flip", "insert", "oversize", "wrap"]))
        if kind == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif kind == "duplicate" and raw.endswith(b"}"):
            field = draw(st.sampled_from(FIELDS))
            raw = raw[:-1] + b', "%s": %s}' % (field.encode(), json.dumps(draw(json_values)).encode())
        elif kind == "truncate":
            raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
        elif kind == "flip" and raw:
            at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
            raw = raw[:at] + bytes([draw(st.integers(min_value=0, max_value=255))]) + raw[at + 1:]
        elif kind == "insert":
            at = draw(st.integers(min_value=0, max_value=len(raw)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
        elif kind == "oversize":
            size = draw(st.sampled_from([MAX_MESSAGE_BYTES - 100, MAX_MESSAGE_BYTES + 1, 200_000]))
            raw = raw.replace(b"add two jordans", b"a" * size, 1) if b"add two jordans" in raw else raw + b" " * size
        else:
            raw = b"[" + raw + b"]"
    return raw


inputs = st.one_of(st.binary(max_size=300), mutated_events(), mutated_events())


# -- a model that fails on some texts ---------------------------------------------------------------
class FlakyRuntime:
    """Predicts without a model; raises for some texts, and returns predictions that break the features
    (PII scrubbing, the sketch) for others."""

    def predict(self, texts):
        out = []
        for text in texts:
            if len(text) % 5 == 0:
                raise RuntimeError(f"model blew up on {text!r}")
            broken_span = len(text) % 7 == 0
            embedding = None if len(text) % 11 == 0 else np.linspace(0, 1, 8, dtype=np.float32)
            out.append(UtterancePrediction(
                intent="add_to_cart", confidence=0.9, top_intents=("add_to_cart", "remove", "oos"),
                top_scores=(0.9, 0.06, 0.04), margin=0.84, entropy=float("nan"), energy=-3.0,
                slots=(SlotSpan("person", None if broken_span else 0, 2, text[:2], 0.8),),
                tags=(), token_count=len(text), unk_rate=0.0, embedding=embedding, heads={},
            ))
        return out


@dataclass(frozen=True)
class FlakyModel:
    runtime: object = FlakyRuntime()
    version: str = "flaky-1"
    ood_threshold: float = 3.0
    head_labels: tuple = ()

    def sketches(self, embeddings):
        return np.asarray(embeddings, dtype=np.float32)[:, :4]

    def ood_scores(self, embeddings):
        return np.asarray(embeddings, dtype=np.float64).sum(axis=1)


PIPELINE = BatchPipeline(load_settings(None, topics={"max_message_bytes": MAX_MESSAGE_BYTES},
                                       stream={"pii_hash_key": "k"}))


# -- checks ------------------------------------------------------------------------------------------
def check_event(event: UtteranceEvent) -> None:
    assert type(event) is UtteranceEvent
    for name in ("id", "session_id", "text", "locale"):
        value = getattr(event, name)
        assert isinstance(value, str)
        value.encode("utf-8")  # storable: no lone surrogate
        if name != "text":
            assert not CONTROL.search(value), name
    assert 1 <= len(event.id) <= 128 and 1 <= len(event.session_id) <= 128
    assert event.text.strip() and len(event.text) <= 512
    assert event.assistant in ("shopper", "associate") and event.channel in CHANNELS
    assert event.ts.tzinfo == UTC and TS_MIN <= event.ts <= TS_MAX
    assert event.asr_confidence is None or (type(event.asr_confidence) is float
                                            and math.isfinite(event.asr_confidence)
                                            and 0.0 <= event.asr_confidence <= 1.0)
    assert type(event.version) is int


def check_parse(raw: bytes) -> None:
    try:
        event = parse_utterance(raw)
    except InvalidRecord as error:
        reason = str(error)
        assert reason and "\n" not in reason
        return
    check_event(event)


def storable(value) -> None:
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, (list, tuple)):
        for item in value:
            storable(item)


def check_batch(values: list[bytes | None], model) -> None:
    records = [RawRecord(value, b"k\xff", 0, offset, "utterances", 1_700_000_000.0)
               for offset, value in enumerate(values)]
    result = PIPELINE.process(records, model)
    logged = result.rows.get("utterance_log", [])
    assert len(logged) + len(result.dead_letters) == len(records)
    outcomes = sorted([row["kafka_offset"] for row in logged] + [letter.offset for letter in result.dead_letters])
    assert outcomes == list(range(len(records)))  # each record's offset exactly once
    assert len(result.rows.get("dead_letters", [])) == len(result.dead_letters)
    assert [event.id for event in result.events] == [row["id"] for row in logged]
    if model is not None:
        predicted = [row["kafka_offset"] for row in result.rows.get("predictions", [])]
        assert predicted == [row["kafka_offset"] for row in logged]
    for letter in result.dead_letters:
        assert letter.message_size() <= MAX_MESSAGE_BYTES - DEAD_LETTER_MARGIN_BYTES
        letter.to_json().decode("utf-8")
        assert letter.reason and "\n" not in letter.reason
        original = records[letter.offset].value or b""
        assert original.startswith(letter.original())
        assert letter.truncated == (letter.original() != original)
    for rows in result.rows.values():
        for row in rows:
            for value in row.values():
                storable(value)


# -- the properties ---------------------------------------------------------------------------------
@FUZZ
@given(inputs)
def test_parse_utterance_raises_only_invalid_record(raw: bytes):
    check_parse(raw)


@FUZZ
@given(json_values)
def test_any_json_value_as_the_whole_record(value):
    check_parse(json.dumps(value).encode())


@settings(FUZZ, max_examples=200)
@given(st.lists(st.one_of(st.none(), inputs, inputs), min_size=1, max_size=6))
def test_the_pipeline_accounts_for_every_record_without_a_model(values):
    check_batch(values, None)


@settings(FUZZ, max_examples=200)
@given(st.lists(st.one_of(inputs, st.just(json.dumps(VALID).encode())), min_size=1, max_size=6),
       st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("C",)), min_size=1, max_size=20),
                max_size=4))
def test_the_pipeline_accounts_for_every_record_with_a_failing_model(values, texts):
    values = values + [json.dumps({**VALID, "id": f"t{i}", "text": text}).encode() for i, text in enumerate(texts)]
    check_batch(values, FlakyModel())


def test_valid_events_survive_the_strict_parser():
    """The round trip the fuzzing could miss: every valid shape is accepted."""
    for changes in ({}, {"asr_confidence": None}, {"asr_confidence": 0}, {"channel": "text"}, {"locale": "fr-CA"},
                    {"ts": "2026-11-23T10:00:00.5-05:30"}, {"text": "add \U0001f95b to the cart"}):
        check_event(parse_utterance(json.dumps({**VALID, **changes}).encode()))


@pytest.mark.parametrize("raw", [
    b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # RecursionError under json.loads
    b'{"version": ' + b"9" * 5000 + b"}",  # ValueError: Python's 4300-digit limit
    json.dumps({**VALID, "locale": "\ud800"}).encode(),  # escaped lone surrogate
    json.dumps({**VALID, "locale": "\ud800"}, ensure_ascii=False).encode("utf-8", "surrogatepass"),  # encoded
    json.dumps({**VALID, "text": "a" * 3_000_000}).encode(),  # too large to dead-letter whole
])
def test_each_known_escape_is_one_dead_letter(raw: bytes):
    check_parse(raw)
    check_batch([raw, json.dumps(VALID).encode()], None)
    check_batch([raw, json.dumps(VALID).encode()], FlakyModel())
