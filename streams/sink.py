"""A batching ClickHouse sink with an explicit commit point.

``add`` buffers rows; ``flush`` writes them and only returns once ClickHouse has them, retrying
with capped exponential backoff while the server is down (it never drops a row). The stream agent
flushes before it lets Faust acknowledge the batch, so a Kafka offset moves past a record only when
its row is durable. Rows are idempotent by key (ReplacingMergeTree), so a batch written twice after
a crash is harmless.

Rows are sent column by column (``columnar=True``): clickhouse-driver then serialises each column in one
pass instead of transposing row tuples itself.

``add`` applies back-pressure: when more than ``max_pending_rows`` wait, it flushes inline instead
of growing memory without bound.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Errors worth retrying: the server is down, restarting, or the connection broke.
try:  # pragma: no cover - import guard only
    from clickhouse_driver.errors import Error as ClickHouseError
    from clickhouse_driver.errors import NetworkError, ServerException, SocketTimeoutError

    RETRYABLE: tuple[type[BaseException], ...] = (
        NetworkError, SocketTimeoutError, ServerException, ClickHouseError, OSError, EOFError,
    )
except ImportError:  # pragma: no cover
    RETRYABLE = (OSError, EOFError)


@dataclass
class SinkStats:
    rows_written: int = 0
    inserts: int = 0
    retries: int = 0
    last_insert_s: float = 0.0
    rows_by_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class ClickHouseSink:
    """Buffers rows per table and inserts them in batches.

    ``client_factory`` returns a fresh ``clickhouse_driver.Client``; a new one is made after a
    failure, so a restarted server is picked up.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        columns: Mapping[str, Sequence[str]],
        batch_rows: int = 2000,
        flush_interval_s: float = 1.0,
        max_pending_rows: int = 20000,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: Any | None = None
        self._columns = {table: tuple(cols) for table, cols in columns.items()}
        self._pending: dict[str, list[tuple]] = {table: [] for table in self._columns}
        self._oldest_pending: float | None = None
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.max_pending_rows = max_pending_rows
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self.stats = SinkStats()

    @property
    def pending_rows(self) -> int:
        return sum(len(rows) for rows in self._pending.values())

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row (a mapping with every column of ``table``)."""
        columns = self._columns[table]
        try:
            values = tuple(row[name] for name in columns)
        except KeyError as missing:
            raise ValueError(f"row for {table} lacks column {missing}") from None
        with self._lock:
            self._pending[table].append(values)
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()
        if self.pending_rows >= self.max_pending_rows:
            self.flush()  # back-pressure: the caller waits instead of memory growing

    def should_flush(self) -> bool:
        """True when the size or the age threshold is reached."""
        if self.pending_rows >= self.batch_rows:
            return True
        return self._oldest_pending is not None and time.monotonic() - self._oldest_pending >= self.flush_interval_s

    def flush(self) -> int:
        """Write every buffered row; block (retrying) until ClickHouse has them. Returns rows written."""
        with self._lock:
            written = 0
            for table, rows in self._pending.items():
                if rows:
                    self._insert_with_retry(table, rows)
                    written += len(rows)
                    self.stats.rows_by_table[table] += len(rows)
                    self._pending[table] = []
            self._oldest_pending = None
            self.stats.rows_written += written
            return written

    def _insert_with_retry(self, table: str, rows: list[tuple]) -> None:
        statement = f"INSERT INTO {table} ({', '.join(self._columns[table])}) VALUES"
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                if self._client is None:
                    self._client = self._client_factory()
                self._client.execute(statement, list(zip(*rows, strict=True)), columnar=True)
                self.stats.inserts += 1
                self.stats.last_insert_s = time.perf_counter() - started
                return
            except RETRYABLE as error:
                attempt += 1
                self.stats.retries += 1
                self._drop_client()
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt - 1, 16))
                delay *= 0.5 + random.random() / 2  # jitter, so restarted workers do not stampede
                log.warning(
                    "insert of %d rows into %s failed (attempt %d, retry in %.1f s): %s",
                    len(rows), table, attempt, delay, error,
                )
                if self._on_retry is not None:
                    self._on_retry(error, attempt)
                time.sleep(delay)

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:
                pass
            self._client = None

    def close(self) -> None:
        self.flush()
        self._drop_client()
