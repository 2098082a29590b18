"""Retention: delete what is older than ``stream.retention_days`` everywhere nlumon keeps data (``nlumon retention``).

Kafka topics keep records for their ``retention.ms`` (``topics.retention_ms`` for the raw-text topics,
``topics.other_retention_ms`` for the rest), set on the topics by ``nlumon services up`` / ``services init``; the
broker deletes old segments itself. Everything else is deleted here:

- ClickHouse tables partitioned by day (:data:`DAY_PARTITIONED`): whole day partitions older than the cutoff are
  dropped, which is instant and frees the disk at once (18.16 has no TTL). The monitor's window tables
  (:data:`WINDOW_TABLES`) are among them: ``slot_value_windows`` keeps new slot values (scrubbed, but brand and
  product names users typed), so it expires with the traffic it was computed from;
- tables without day partitions that hold text or traffic data (:data:`DELETED_BY_TIME`): rows older than the
  cutoff are deleted with ``ALTER TABLE ... DELETE WHERE`` (a mutation: it rewrites the affected parts in the
  background; we wait for it);
- :data:`KEPT` tables hold no traffic data and are kept whole;
- files under ``services.run_dir``: HTML reports (the monitor's Evidently reports, the demo's report) and the
  demo's alert stores, by modification time;
- the alert store (SQLite, ``alerts.store_path``): alert events and finished outbox deliveries, whose JSON carries
  example utterances.

A unit test checks that every table of ``nlumon.schema.TABLES`` is in exactly one of the three groups.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nlumon.schema import TABLES, connect
from nlumon.settings import Settings

# Tables partitioned by toYYYYMMDD, so a partition id is a day.
DAY_PARTITIONED = tuple(name for name, ddl in TABLES.items() if "PARTITION BY toYYYYMMDD" in ddl)
# The monitor's per-window result tables: day-partitioned on window_start, so they are in DAY_PARTITIONED.
WINDOW_TABLES = ("monitor_windows", "drift_results", "ood_clusters", "slot_value_windows", "route_windows",
                 "shadow_windows", "conversion_windows")
# Tables without day partitions that hold text or traffic data -> the DateTime column that dates a row.
DELETED_BY_TIME: dict[str, str] = {
    "labeling_queue": "flagged_at",  # scrubbed text and slot values of flagged utterances
    "alert_deliveries": "updated_at",  # delivery state and errors of alerts (whose bodies quote utterances)
}
# Tables kept whole, and why.
KEPT: dict[str, str] = {
    "model_versions": "which model package each worker loaded: no traffic data, one row per load",
    "experiments": "each experiment's definition and state: names, shares and package versions, no traffic data",
    "experiment_results": "per-arm aggregates of each look (rates, intervals, p-values): no utterance, session or "
    "user in them, and an experiment's record outlives its raw rows",
}
# Files under the run dir that hold derived text: reports quote utterances and slot values; the demo's alert
# stores hold alert bodies.
EXPIRING_FILES = ("reports/**/*.html", "demo-alerts-*.db", "demo-alerts-*.db-wal", "demo-alerts-*.db-shm")
MUTATION_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Expired:
    """One thing retention deletes: a day partition, the old rows of a table, a file, or alert-store rows."""

    kind: str  # "partition" | "rows" | "file" | "alert-store"
    target: str  # table name, file path or alert-store path
    detail: str  # partition id, the condition, or the SQLite table
    rows: int  # rows (files: bytes)

    def describe(self) -> str:
        if self.kind == "partition":
            return f"{self.target} partition {self.detail} ({self.rows} rows)"
        if self.kind == "rows":
            return f"{self.target} rows where {self.detail} ({self.rows} rows)"
        if self.kind == "file":
            return f"file {self.target} ({self.rows} bytes)"
        return f"alert store {self.target}: {self.detail} ({self.rows} rows)"


def cutoff_time(days: int, now: datetime | None = None) -> datetime:
    """The moment before which data expires (UTC)."""
    return (now or datetime.now(UTC)) - timedelta(days=days)


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


def _condition(column: str, cutoff: datetime) -> str:
    # a unix time: the same instant whatever the server's time zone
    return f"{column} < toDateTime({int(cutoff.timestamp())})"


def expired_rows(settings: Settings, days: int, now: datetime | None = None) -> list[tuple[str, str, int]]:
    """(table, condition, rows) for each :data:`DELETED_BY_TIME` table that has rows older than ``days`` days."""
    cutoff = cutoff_time(days, now)
    database = settings.clickhouse.database
    client = connect(settings.clickhouse)
    found = []
    try:
        present = {name for (name,) in client.execute(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": database})}
        for table, column in DELETED_BY_TIME.items():
            if table not in present:
                continue
            condition = _condition(column, cutoff)
            count = client.execute(f"SELECT count() FROM {database}.{table} WHERE {condition}")[0][0]
            if count:
                found.append((table, condition, count))
    finally:
        client.disconnect()
    return found


def delete_rows(settings: Settings, expired: list[tuple[str, str, int]],
                timeout_s: float = MUTATION_TIMEOUT_S) -> int:
    """Delete the rows with ``ALTER TABLE ... DELETE`` and wait until the mutations are done; returns the rows.

    ClickHouse 18.16 has no ``mutations_sync``, so completion is read from ``system.mutations``.
    """
    database = settings.clickhouse.database
    client = connect(settings.clickhouse)
    try:
        for table, condition, _ in expired:
            client.execute(f"ALTER TABLE {database}.{table} DELETE WHERE {condition}")
        deadline = time.monotonic() + timeout_s
        tables = tuple(table for table, _, _ in expired)
        while tables:
            pending = client.execute(
                "SELECT table, count() FROM system.mutations WHERE database = %(db)s AND table IN %(tables)s "
                "AND NOT is_done GROUP BY table", {"db": database, "tables": tables})
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"ClickHouse mutations still running after {timeout_s:.0f} s: {dict(pending)}; "
                                   f"they finish in the background (see system.mutations)")
            time.sleep(0.2)
    finally:
        client.disconnect()
    return sum(count for _, _, count in expired)


def expired_files(settings: Settings, days: int, now: datetime | None = None) -> list[tuple[Path, int]]:
    """(path, bytes) of the report and demo alert-store files under the run dir last modified before the cutoff."""
    root = Path(settings.services.run_dir)
    cutoff = cutoff_time(days, now).timestamp()
    found: dict[Path, int] = {}
    if not root.is_dir():
        return []
    for pattern in EXPIRING_FILES:
        for path in root.glob(pattern):
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            if path.is_file() and not path.is_symlink() and stat.st_mtime < cutoff:
                found[path] = stat.st_size
    return sorted(found.items())


def delete_files(files: list[tuple[Path, int]]) -> int:
    """Delete the files; returns the bytes freed."""
    freed = 0
    for path, size in files:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
    return freed


# The alert store's tables (alerts/store.py) and the rows retention deletes: (table, condition on a unix time).
ALERT_STORE_EXPIRY = (
    ("alert_events", "created_at < ?"),
    ("outbox", "status IN ('delivered', 'dead') AND coalesce(finished_at, created_at) < ?"),
)


def expired_alert_rows(path: Path, days: int, now: datetime | None = None) -> list[tuple[str, int]]:
    """(table, rows) of the alert store's expired rows; nothing when the store does not exist."""
    if not Path(path).is_file():
        return []
    cutoff = cutoff_time(days, now).timestamp()
    conn = sqlite3.connect(path, timeout=30)
    found = []
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, condition in ALERT_STORE_EXPIRY:
            if table in tables:
                count = conn.execute(f"SELECT count(*) FROM {table} WHERE {condition}", (cutoff,)).fetchone()[0]
                if count:
                    found.append((table, count))
    finally:
        conn.close()
    return found


def delete_alert_rows(path: Path, days: int, now: datetime | None = None) -> int:
    """Delete the alert store's expired rows in one transaction (the monitor may be writing: SQLite waits)."""
    cutoff = cutoff_time(days, now).timestamp()
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    deleted = 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, condition in ALERT_STORE_EXPIRY:
            if table in tables:
                deleted += conn.execute(f"DELETE FROM {table} WHERE {condition}", (cutoff,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return deleted


def plan_retention(settings: Settings, days: int, now: datetime | None = None) -> list[Expired]:
    """Everything that is older than ``days`` days, without deleting anything."""
    now = now or datetime.now(UTC)
    plan = [Expired("partition", table, partition, rows)
            for table, partition, rows in expired_partitions(settings, days, today=now.date())]
    plan += [Expired("rows", table, condition, rows) for table, condition, rows in expired_rows(settings, days, now)]
    plan += [Expired("file", str(path), "", size) for path, size in expired_files(settings, days, now)]
    store = settings.alerts.resolved_store_path(settings.services.run_dir)
    plan += [Expired("alert-store", str(store), table, rows) for table, rows in expired_alert_rows(store, days, now)]
    return plan


def apply_retention(settings: Settings, days: int, plan: list[Expired], now: datetime | None = None) -> dict[str, int]:
    """Delete what ``plan`` lists; returns the rows / bytes removed per kind."""
    partitions = [(e.target, e.detail, e.rows) for e in plan if e.kind == "partition"]
    rows = [(e.target, e.detail, e.rows) for e in plan if e.kind == "rows"]
    files = [(Path(e.target), e.rows) for e in plan if e.kind == "file"]
    stores = sorted({e.target for e in plan if e.kind == "alert-store"})
    return {
        "partition rows": drop_partitions(settings, partitions) if partitions else 0,
        "rows": delete_rows(settings, rows) if rows else 0,
        "file bytes": delete_files(files),
        "alert-store rows": sum(delete_alert_rows(Path(store), days, now) for store in stores),
    }
