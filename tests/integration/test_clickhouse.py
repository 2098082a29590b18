"""The real ClickHouse server: schema, inserts through the sink, idempotent rows."""

from datetime import UTC, datetime

import pytest

from nlumon.schema import TABLES, connect, ensure_schema
from streams.pipeline import UTTERANCE_LOG_COLUMNS
from streams.sink import ClickHouseSink

pytestmark = pytest.mark.integration


def columns_of(client, database: str) -> dict[str, list[tuple[str, str]]]:
    rows = client.execute(
        "SELECT table, name, type FROM system.columns WHERE database = %(db)s ORDER BY table, name",
        {"db": database},
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in rows:
        out.setdefault(table, []).append((name, kind))
    return out


def test_schema_creation_is_idempotent(services):
    client = connect(services.clickhouse)
    try:
        before = columns_of(client, services.clickhouse.database)
        assert ensure_schema(services.clickhouse) == list(TABLES)
        assert ensure_schema(services.clickhouse) == list(TABLES)
        after = columns_of(client, services.clickhouse.database)
    finally:
        client.disconnect()
    assert set(TABLES) <= set(after)
    assert before == after


def log_row(utterance_id: str, version: int, text_chars: int) -> dict:
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    return {
        "id": utterance_id, "ts": now, "ingested_at": now, "assistant": "shopper", "session_id": "s",
        "channel": "voice", "asr_confidence": None, "text_chars": text_chars, "text_hash": "h",
        "kafka_partition": 0, "kafka_offset": version, "row_version": version,
    }


def test_rows_written_through_the_sink_read_back_and_a_redelivery_does_not_double_count(services, unique):
    sink = ClickHouseSink(lambda: connect(services.clickhouse), columns={"utterance_log": UTTERANCE_LOG_COLUMNS})
    ids = [f"{unique}-{i}" for i in range(500)]
    for i, utterance_id in enumerate(ids):
        sink.add("utterance_log", log_row(utterance_id, 1, i % 300))
    assert sink.flush() == 500
    for utterance_id in ids[:100]:  # the same records again, as after a crash before the commit
        sink.add("utterance_log", log_row(utterance_id, 2, 7))
    sink.close()
    client = connect(services.clickhouse)
    try:
        final = client.execute(
            "SELECT count(), uniqExact(id), countIf(text_chars = 7) FROM utterance_log FINAL WHERE id LIKE %(p)s",
            {"p": f"{unique}-%"},
        )[0]
        raw = client.execute("SELECT count() FROM utterance_log WHERE id LIKE %(p)s", {"p": f"{unique}-%"})[0][0]
        by_argmax = client.execute(
            "SELECT count() FROM (SELECT id, argMax(text_chars, row_version) AS chars FROM utterance_log "
            "WHERE id LIKE %(p)s GROUP BY id) WHERE chars = 7",
            {"p": f"{unique}-%"},
        )[0][0]
    finally:
        client.disconnect()
    assert final == (500, 500, 100 + sum(1 for i in range(100, 500) if i % 300 == 7))
    assert raw in (500, 600)  # before a background merge both versions may still be stored
    assert by_argmax == final[2]
