"""The one durable file of the alerts package: alert state, stored events and the webhook outbox.

Why SQLite (WAL mode) under the run dir rather than ClickHouse: the outbox needs transactional
read-modify-write (claim a row with a lease, then ack it), and alert state must change in the same
transaction as the outbox rows it produces — otherwise a crash between the two loses or duplicates
an alert. ClickHouse has no transactions or row updates (18.16 even less), while SQLite gives
atomic commits, ``synchronous=FULL`` durability before a call returns, and survives restarts.
One leader (the monitor) writes; several processes may read or send thanks to WAL and busy waits.

    >>> import tempfile, os
    >>> store = AlertStore(os.path.join(tempfile.mkdtemp(), "alerts.db"))
    >>> with store.transaction() as conn:
    ...     conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    0
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    group_key TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    state_json TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_events (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    window_end TEXT NOT NULL,
    event_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    webhook_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    event_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    last_status_code INTEGER,
    finished_at REAL,
    PRIMARY KEY (webhook_id, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""


class AlertStore:
    """A SQLite file in WAL mode; one connection shared by this object's threads under a lock."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so that a claim's read and
        # write happen under one write lock (no two senders claim the same row).
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before enqueue() returns, even across power loss.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block exits, rolled back on an exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
