"""The webhook outbox: alerts are durable before anyone tries to send them, and are never lost.

Storage is the SQLite file of :mod:`alerts.store` (why SQLite and not ClickHouse: see there). A row is
one (webhook-id, receiver) pair holding the alert JSON — never a secret or a URL; the body is rendered
and signed at each attempt (fresh timestamp, same ``webhook-id``). Senders *claim* due rows with a
lease; a sender that dies mid-delivery leaves a lease that expires, and the next sender retries the
row (at-least-once; receivers deduplicate on ``webhook-id``).

    >>> import os, tempfile
    >>> from alerts.store import AlertStore
    >>> outbox = Outbox(AlertStore(os.path.join(tempfile.mkdtemp(), "a.db")), clock=lambda: 100.0)
    >>> with outbox.store.transaction() as conn:
    ...     insert_messages_for(conn, "msg_1", {"status": "firing"}, ["oncall"], 100.0)
    1
    >>> [m.webhook_id for m in outbox.claim("sender-a", limit=10, lease_s=30)]
    ['msg_1']
    >>> outbox.claim("sender-b", limit=10, lease_s=30)   # leased to sender-a
    []
    >>> outbox.ack(OutboxMessage("msg_1", "oncall", {}, 1, 100.0), status_code=204)
    True
    >>> outbox.counts()
    {'oncall': {'delivered': 1}}
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.events import AlertEvent
from alerts.store import AlertStore

STATUSES = ("pending", "delivered", "dead")


@dataclass(frozen=True)
class OutboxMessage:
    """One claimed delivery: the alert (as a dict) for one receiver."""

    webhook_id: str
    receiver: str
    event: Mapping[str, Any]
    attempts: int
    created_at: float


def webhook_id_for(event: AlertEvent) -> str:
    """The ``webhook-id`` of an alert event: stable across retries and re-evaluations."""
    return f"msg_{event.id}"


def insert_messages(conn: sqlite3.Connection, event: AlertEvent, now: float) -> int:
    """Queue ``event`` for each of its receivers inside the caller's transaction; returns new rows."""
    return insert_messages_for(conn, webhook_id_for(event), event.to_dict(), event.receivers, now)


def insert_messages_for(
    conn: sqlite3.Connection, webhook_id: str, event: Mapping[str, Any], receivers: Iterable[str], now: float
) -> int:
    """Low-level enqueue; a (webhook_id, receiver) pair already queued is left as it is (idempotent)."""
    body = json.dumps(dict(event), sort_keys=True, default=str)
    added = 0
    for receiver in receivers:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO outbox (webhook_id, receiver, event_json, created_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (webhook_id, receiver, body, now, now),
        )
        added += cursor.rowcount
    return added


class Outbox:
    """Queue operations on the outbox table; every method is one committed transaction."""

    def __init__(self, store: AlertStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def enqueue(self, event: AlertEvent) -> int:
        """Queue ``event`` for its receivers; durable (fsynced) when this returns."""
        with self.store.transaction() as conn:
            return insert_messages(conn, event, self.clock())

    def claim(self, owner: str, *, limit: int, lease_s: float, webhook_id: str | None = None) -> list[OutboxMessage]:
        """Lease up to ``limit`` due pending rows (only ``webhook_id``'s, if given) to ``owner`` for ``lease_s``."""
        now = self.clock()
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT webhook_id, receiver, event_json, attempts, created_at FROM outbox"
                " WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
                " AND (? IS NULL OR webhook_id = ?) ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, now, webhook_id, webhook_id, limit),
            ).fetchall()
            for webhook_id, receiver, *_ in rows:
                conn.execute(
                    "UPDATE outbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1"
                    " WHERE webhook_id = ? AND receiver = ?",
                    (owner, now + lease_s, webhook_id, receiver),
                )
        return [OutboxMessage(w, r, json.loads(e), a + 1, c) for w, r, e, a, c in rows]

    def ack(self, message: OutboxMessage, *, status_code: int | None = None) -> bool:
        """Mark delivered (whoever holds the lease: the receiver has it either way)."""
        return self._finish(message, "delivered", None, status_code)

    def mark_dead(self, message: OutboxMessage, reason: str, *, status_code: int | None = None) -> bool:
        """Give up on a row (client error or horizon passed); it stays for inspection."""
        return self._finish(message, "dead", reason, status_code)

    def reschedule(
        self, message: OutboxMessage, owner: str, next_attempt_at: float, error: str, *, status_code: int | None = None
    ) -> bool:
        """Release the lease and set the next attempt time; False if ``owner`` lost the lease meanwhile."""
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, last_error = ?,"
                " last_status_code = ? WHERE webhook_id = ? AND receiver = ? AND status = 'pending'"
                " AND lease_owner = ?",
                (next_attempt_at, error, status_code, message.webhook_id, message.receiver, owner),
            )
            return cursor.rowcount == 1

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per receiver and status, e.g. ``{"oncall": {"pending": 2, "dead": 1}}``."""
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT receiver, status, count(*) FROM outbox GROUP BY receiver, status").fetchall()
        result: dict[str, dict[str, int]] = {}
        for receiver, status, n in rows:
            result.setdefault(receiver, {})[status] = n
        return result

    def row(self, webhook_id: str, receiver: str) -> dict[str, Any] | None:
        """One outbox row as a dict (for reports and tests), or None."""
        with self.store.transaction() as conn:
            cursor = conn.execute("SELECT * FROM outbox WHERE webhook_id = ? AND receiver = ?", (webhook_id, receiver))
            values = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return dict(zip(names, values, strict=True)) if values else None

    def dead(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent dead rows (without the alert body)."""
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "SELECT webhook_id, receiver, attempts, last_error, last_status_code, created_at, finished_at"
                " FROM outbox WHERE status = 'dead' ORDER BY finished_at DESC LIMIT ?",
                (limit,),
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def _finish(self, message: OutboxMessage, status: str, error: str | None, status_code: int | None) -> bool:
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, finished_at = ?, last_error = COALESCE(?, last_error),"
                " last_status_code = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE webhook_id = ? AND receiver = ? AND status = 'pending'",
                (status, self.clock(), error, status_code, message.webhook_id, message.receiver),
            )
            return cursor.rowcount == 1
