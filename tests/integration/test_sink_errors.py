"""The sink against the real ClickHouse: a server that is down is waited for, rows it refuses are isolated.

Permanent refusals come from the real driver and server: a lone surrogate that cannot be encoded, a number out
of a column's range, a column the table does not have. Transient errors come from stopping a real server.
"""

from __future__ import annotations

import threading
import time

import pytest

from nlumon.schema import connect
from nlumon.services.clickhouse import ClickHouseServer
from streams.sink import ClickHouseSink, RowsRefusedError
from tests.integration.workers import isolated

pytestmark = pytest.mark.integration

COLUMNS = ("id", "n", "note", "kafka_partition", "kafka_offset")


def create_table(settings, name: str) -> None:
    client = connect(settings.clickhouse)
    try:
        client.execute(f"CREATE TABLE {name} (id String, n UInt16, note String, kafka_partition Int32, "
                       "kafka_offset Int64) ENGINE = MergeTree ORDER BY id")
    finally:
        client.disconnect()


def stored(settings, name: str) -> list[str]:
    client = connect(settings.clickhouse)
    try:
        return sorted(row[0] for row in client.execute(f"SELECT id FROM {name}"))
    finally:
        client.disconnect()


def row(offset: int, n: int = 1, note: str = "fine") -> dict:
    return {"id": f"r{offset:03d}", "n": n, "note": note, "kafka_partition": 0, "kafka_offset": offset}


def test_rows_the_server_refuses_are_isolated_and_the_rest_stored(services, unique):
    table = f"sink_refusals_{unique}"
    create_table(services, table)
    sink = ClickHouseSink(lambda: connect(services.clickhouse), columns={table: COLUMNS})
    for offset in range(50):
        if offset == 7:
            sink.add(table, row(offset, note="lone \ud800 surrogate"))
        elif offset == 30:
            sink.add(table, row(offset, n=70_000))  # out of UInt16
        else:
            sink.add(table, row(offset))
    refused = sink.write(sink.take())
    assert sorted(item.row["kafka_offset"] for item in refused) == [7, 30]
    assert all(item.message for item in refused)
    assert stored(services, table) == [f"r{o:03d}" for o in range(50) if o not in (7, 30)]
    assert sink.stats.retries == 0


def test_an_unknown_column_refuses_every_row_with_the_servers_message(services, unique):
    table = f"sink_unknown_{unique}"
    create_table(services, table)
    sink = ClickHouseSink(lambda: connect(services.clickhouse), columns={table: (*COLUMNS, "missing")})
    for offset in range(3):
        sink.add(table, {**row(offset), "missing": "x"})
    with pytest.raises(RowsRefusedError) as refused:
        sink.flush()
    assert len(refused.value.refused) == 3
    assert "missing" in refused.value.refused[0].message
    assert stored(services, table) == []


def test_a_server_that_is_down_is_waited_for_and_nothing_is_dropped(services, unique, tmp_path):
    settings = isolated(services, unique, clickhouse={"port": 29200, "http_port": 28323, "database": "nlumon_down"},
                        services={"run_dir": tmp_path / "run"})
    server = ClickHouseServer(settings)
    server.start()
    table = f"sink_down_{unique}"
    try:
        create_table(settings, table)
        sink = ClickHouseSink(lambda: connect(settings.clickhouse), columns={table: COLUMNS},
                              backoff_initial_s=0.1, backoff_max_s=0.5)
        server.stop()
        for offset in range(20):
            sink.add(table, row(offset))
        outcome: dict = {}
        writer = threading.Thread(target=lambda: outcome.update(refused=sink.write(sink.take())))
        writer.start()
        deadline = time.monotonic() + 30
        while sink.stats.retries < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.stats.retries >= 3 and writer.is_alive()  # still waiting, nothing dropped
        server.start()
        writer.join(timeout=60)
        assert not writer.is_alive()
        assert outcome["refused"] == []
        assert stored(settings, table) == [f"r{o:03d}" for o in range(20)]
    finally:
        server.stop()
