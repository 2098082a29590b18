import hashlib
from dataclasses import dataclass

import numpy as np

import streams.pipeline
from model_runtime.predictions import SlotSpan, UtterancePrediction
from nlumon.pii import text_hash
from nlumon.records import DEAD_LETTER_MARGIN_BYTES, UtteranceEvent
from nlumon.settings import load_settings
from streams.features import PREDICTION_COLUMNS
from streams.pipeline import DEAD_LETTER_COLUMNS, UTTERANCE_LOG_COLUMNS, BatchPipeline, RawRecord

GOOD = UtteranceEvent.model_validate({
    "id": "u-1", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper", "session_id": "s-1",
    "text": "add two jordans to my cart, mail me at ann@example.com",
}).to_json()


def record(value: bytes | None, offset: int) -> RawRecord:
    return RawRecord(value=value, key=b"s-1", partition=3, offset=offset, topic="utterances")


def event_bytes(index: int, text: str) -> bytes:
    return UtteranceEvent(id=f"u{index}", ts="2026-11-23T10:00:00Z", assistant="shopper", session_id="s",
                          text=text, channel="voice").to_json()


class FakeRuntime:
    """Predicts without a model; misbehaves on purpose for texts naming a fault."""

    def predict(self, texts):
        out = []
        for text in texts:
            if "model-fault" in text:
                raise RuntimeError("kernel exploded")
            start = None if "scrub-fault" in text else 0  # PII scrubbing fails on a span without offsets
            embedding = None if "embedding-fault" in text else np.full(8, 0.5, np.float32)  # sketches fail
            out.append(UtterancePrediction(
                intent="add_to_cart", confidence=0.9, top_intents=("add_to_cart", "remove", "oos"),
                top_scores=(0.9, 0.06, 0.04), margin=0.84, entropy=0.4, energy=-3.0,
                slots=(SlotSpan("person", start, 3, text[:3], 0.8),), tags=("O",) * len(text.split()),
                token_count=len(text.split()), unk_rate=0.0, embedding=embedding, heads={},
            ))
        return out


@dataclass(frozen=True)
class FakeModel:
    runtime: object = FakeRuntime()
    version: str = "fake-1"
    ood_threshold: float = 3.0
    head_labels: tuple = ()

    def sketches(self, embeddings):
        return np.asarray(embeddings, dtype=np.float32)[:, :4]

    def ood_scores(self, embeddings):
        return np.asarray(embeddings, dtype=np.float64).sum(axis=1)


def outcome_offsets(result) -> list[int]:
    return sorted([row["kafka_offset"] for row in result.rows.get("utterance_log", [])]
                  + [letter.offset for letter in result.dead_letters])


def test_good_and_bad_records_are_split_and_nothing_is_dropped():
    pipeline = BatchPipeline(load_settings(None, stream={"pii_hash_key": "k"}))
    result = pipeline.process([record(GOOD, 10), record(b"{oops", 11), record(None, 12)])
    assert [e.id for e in result.events] == ["u-1"]
    assert [letter.offset for letter in result.dead_letters] == [11, 12]
    assert "not JSON" in result.dead_letters[0].reason
    assert "empty record" in result.dead_letters[1].reason
    assert len(result.rows["utterance_log"]) + len(result.rows["dead_letters"]) == 3


def test_rows_carry_every_column_and_no_raw_text():
    pipeline = BatchPipeline(load_settings(None, stream={"pii_hash_key": "k"}))
    result = pipeline.process([record(GOOD, 10), record(b"{oops", 11)])
    (row,) = result.rows["utterance_log"]
    assert set(row) == set(UTTERANCE_LOG_COLUMNS)
    assert set(result.rows["dead_letters"][0]) == set(DEAD_LETTER_COLUMNS)
    assert row["text_hash"] == text_hash("k", "add two jordans to my cart, mail me at ann@example.com")
    assert not any("ann@example.com" in str(value) for value in row.values())
    assert (row["kafka_partition"], row["kafka_offset"]) == (3, 10)


def test_the_known_escapes_are_dead_lettered_and_the_batch_goes_on():
    base = event_bytes(0, "add milk")
    records = [
        record(base.replace(b'"add milk"', b"[" * 5000 + b"]" * 5000), 0),  # once RecursionError
        record(base[:-1] + b', "n": ' + b"9" * 5000 + b"}", 1),  # once ValueError (4300-digit limit)
        record(base.replace(b'"en-US"', rb'"\ud800"'), 2),  # once UnicodeEncodeError in clickhouse-driver
        record(base.replace(b'"add milk"', b'"' + b"a" * 3_000_000 + b'"'), 3),  # once too large to dead-letter
        record(base, 4),
    ]
    result = BatchPipeline(load_settings(None)).process(records, FakeModel())
    reasons = [letter.reason for letter in result.dead_letters]
    assert [letter.offset for letter in result.dead_letters] == [0, 1, 2, 3]
    assert reasons[0] == "too deeply nested: JSON nested more than 32 levels"
    assert reasons[1] == "number too long: a number literal of 5000 characters, more than 32"
    assert reasons[2].startswith("not JSON: no low surrogate in string")
    size, kept = len(records[3].value), len(result.dead_letters[3].original())
    assert reasons[3] == (f"record too large: {size} bytes, more than 65536 "
                          f"[dead letter truncated: keeps the first {kept} of {size} bytes]")
    assert [row["kafka_offset"] for row in result.rows["predictions"]] == [4]
    assert outcome_offsets(result) == [0, 1, 2, 3, 4]


def test_a_dead_letter_too_large_for_the_topic_keeps_a_prefix_and_the_row_describes_the_original():
    settings = load_settings(None, topics={"max_message_bytes": 100_000})
    original = b'{"text": "' + b"a" * 3_000_000 + b'"}'
    result = BatchPipeline(settings).process([record(original, 5)])
    (letter,) = result.dead_letters
    assert letter.truncated and letter.message_size() <= 100_000 - DEAD_LETTER_MARGIN_BYTES
    assert original.startswith(letter.original()) and len(letter.original()) > 50_000
    (row,) = result.rows["dead_letters"]
    assert row["original_bytes"] == len(original)
    assert row["original_hash"] == hashlib.sha256(original).hexdigest()


def test_an_unexpected_exception_while_parsing_is_that_record_s_dead_letter(monkeypatch):
    real = streams.pipeline.parse_utterance

    def flaky(raw, **kwargs):
        if b"u1" in raw:
            raise RecursionError("maximum recursion depth exceeded\n" + "x" * 5000)
        return real(raw, **kwargs)

    monkeypatch.setattr(streams.pipeline, "parse_utterance", flaky)
    result = BatchPipeline(load_settings(None)).process([record(event_bytes(i, "add milk"), i) for i in range(3)])
    (letter,) = result.dead_letters
    assert letter.offset == 1
    assert letter.reason.startswith("internal error while parsing: RecursionError: maximum recursion depth exceeded x")
    assert "\n" not in letter.reason and len(letter.reason) <= 500
    assert [e.id for e in result.events] == ["u0", "u2"]


def test_a_feature_or_pii_failure_dead_letters_only_its_record():
    texts = ["add milk", "scrub-fault here", "add eggs", "embedding-fault there", "add bread"]
    records = [record(event_bytes(i, text), i) for i, text in enumerate(texts)]
    result = BatchPipeline(load_settings(None)).process(records, FakeModel())
    letters = {letter.offset: letter.reason for letter in result.dead_letters}
    assert sorted(letters) == [1, 3]
    assert letters[1].startswith("feature error: TypeError: ")
    assert letters[3].startswith("feature error: ")
    rows = result.rows["predictions"]
    assert [row["id"] for row in rows] == ["u0", "u2", "u4"]
    assert [row["id"] for row in result.rows["utterance_log"]] == ["u0", "u2", "u4"]
    assert all(set(row) == set(PREDICTION_COLUMNS) and row["batch_size"] == 5 for row in rows)
    assert all(row["text_scrubbed"].startswith("<PERSON>") for row in rows)


def test_a_model_failure_dead_letters_only_its_record_and_a_short_answer_counts_as_failure():
    class ShortRuntime(FakeRuntime):
        def predict(self, texts):
            return super().predict(texts)[:1] if len(texts) > 1 else super().predict(texts)

    texts = ["add milk", "model-fault", "add eggs"]
    records = [record(event_bytes(i, text), i) for i, text in enumerate(texts)]
    result = BatchPipeline(load_settings(None)).process(records, FakeModel(runtime=ShortRuntime()))
    assert [(letter.offset, letter.reason) for letter in result.dead_letters] == [(1, "model error: kernel exploded")]
    assert [row["id"] for row in result.rows["predictions"]] == ["u0", "u2"]
    assert outcome_offsets(result) == [0, 1, 2]
