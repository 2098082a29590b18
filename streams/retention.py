"""Retention: drop day partitions older than ``stream.retention_days`` (``nlumon retention``).

18.16 has no TTL, so every table that grows with traffic is partitioned by day
(``toYYYYMMDD(...)``) and old days are dropped whole, which is instant and frees disk at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from nlumon.schema import TABLES, connect
from nlumon.settings import Settings

# Tables partitioned by toYYYYMMDD, so a partition id is a day.
DAY_PARTITIONED = tuple(name for name, ddl in TABLES.items() if "PARTITION BY toYYYYMMDD" in ddl)


def expired_partitions(settings: Settings, days: int, today: date | None = None) -> list[tuple[str, str, int]]:
    """(table, partition id, rows) of every active day partition older than ``days`` days."""
    cutoff = int(((today or datetime.now(UTC).date()) - timedelta(days=days)).strftime("%Y%m%d"))
    client = connect(settings.clickhouse)
    try:
        rows = client.execute(
            "SELECT table, partition, sum(rows) FROM system.parts "
            "WHERE database = %(db)s AND active AND table IN %(tables)s GROUP BY table, partition "
            "ORDER BY table, partition",
            {"db": settings.clickhouse.database, "tables": DAY_PARTITIONED},
        )
    finally:
        client.disconnect()
    return [(table, partition, count) for table, partition, count in rows
            if partition.strip("'").isdigit() and int(partition.strip("'")) < cutoff]


def drop_partitions(settings: Settings, partitions: list[tuple[str, str, int]]) -> int:
    """Drop the given partitions; returns the rows removed."""
    client = connect(settings.clickhouse)
    try:
        for table, partition, _ in partitions:
            day = partition.strip("'")
            client.execute(f"ALTER TABLE {settings.clickhouse.database}.{table} DROP PARTITION {day}")
    finally:
        client.disconnect()
    return sum(count for _, _, count in partitions)
