from nlumon.records import UtteranceEvent
from nlumon.settings import load_settings
from nlumon.pii import text_hash
from streams.pipeline import DEAD_LETTER_COLUMNS, UTTERANCE_LOG_COLUMNS, BatchPipeline, RawRecord

GOOD = UtteranceEvent.model_validate({
    "id": "u-1", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper", "session_id": "s-1",
    "text": "add two jordans to my cart, mail me at ann@example.com",
}).to_json()


def record(value: bytes | None, offset: int) -> RawRecord:
    return RawRecord(value=value, key=b"s-1", partition=3, offset=offset, topic="utterances")


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
