"""A batching ClickHouse sink with an explicit commit point, that tells a server that is down from a row it refuses.

Two halves, so the event loop never waits on ClickHouse:

- ``add`` and ``take`` run on the event loop: they only touch the in-memory buffer, under a lock that is never
  held across I/O or a sleep.
- ``write`` runs in the sink's own thread: it inserts what ``take`` returned and returns only once ClickHouse has
  every row, or has refused some rows for good.

Errors are of two kinds (:func:`is_transient`):

- **transient** — the connection broke, a timeout, too many parts, too many queries, memory, a read-only replica,
  a missing table or database (a deployment under way): retried with capped, jittered exponential backoff, never
  dropped. Only :meth:`stop` ends the waiting (``SinkStoppedError``), and then nothing was acknowledged, so Kafka
  delivers the records again.
- **permanent** — the server (or the driver, while encoding) refuses the rows themselves (:data:`ROW_CODES`): a
  type mismatch, bad encoding, a value out of range, an unknown column. The batch is split in halves until the
  refused rows are found; they come back as :class:`Refused` with the server's message (the worker dead-letters
  their records) and the rest is stored. Any other error (authentication, access, an unknown code) is not about
  the rows: it is retried, logged at ERROR, so a misconfigured server never dead-letters the whole stream.

Tables are written in the order given to ``columns``. Rows that share ``link_columns`` values (the Kafka partition
and offset of the record they came from) belong to one record: when a table refuses a record's row, the record's
rows in the tables after it are not written, so in ClickHouse a record ends as its ``predictions`` row or as one
dead letter, not both (its message on the ``predictions`` topic was already sent, and stays).

Rows are idempotent by key (ReplacingMergeTree), so a batch written twice after a crash is harmless. Rows are
sent column by column (``columnar=True``): clickhouse-driver then serialises each column in one pass.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nlumon.records import one_line

log = logging.getLogger(__name__)

try:  # pragma: no cover - import guard only
    from clickhouse_driver.errors import (
        NetworkError,
        PartiallyConsumedQueryError,
        ServerException,
        SocketTimeoutError,
        UnexpectedPacketFromServerError,
    )

    _TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
        NetworkError, SocketTimeoutError, UnexpectedPacketFromServerError, PartiallyConsumedQueryError,
        OSError, EOFError, TimeoutError,
    )
except ImportError:  # pragma: no cover
    ServerException = None  # type: ignore[assignment,misc]
    _TRANSIENT_TYPES = (OSError, EOFError, TimeoutError)

# ClickHouse error codes that say "not now" rather than "not this row" (src/Common/ErrorCodes.cpp).
TRANSIENT_CODES = frozenset({
    3,    # UNEXPECTED_END_OF_FILE
    23,   # CANNOT_READ_FROM_ISTREAM
    24,   # CANNOT_WRITE_TO_OSTREAM
    32,   # ATTEMPT_TO_READ_AFTER_EOF
    60,   # UNKNOWN_TABLE (schema being created: an operator's problem, not a row's)
    81,   # UNKNOWN_DATABASE
    159,  # TIMEOUT_EXCEEDED
    160,  # TOO_SLOW
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    279,  # ALL_CONNECTION_TRIES_FAILED
    285,  # TOO_FEW_LIVE_REPLICAS
    286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION (a socket error inside the server)
})
# ClickHouse error codes that say "not these rows": a value the column cannot take, a column the table lacks.
# Every other server error (authentication, access, quotas, an unknown code) is not about a row: it is
# retried like a transient one and logged at ERROR, so a misconfigured server never dead-letters the stream.
ROW_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    8,    # THERE_IS_NO_COLUMN
    10,   # NOT_FOUND_COLUMN_IN_BLOCK
    16,   # NO_SUCH_COLUMN_IN_TABLE (the "unknown column": the rows do not fit the table)
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,   # CANNOT_READ_ALL_DATA
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
})
# What the driver raises while encoding a value it cannot send: about the row, never worth a retry.
_ROW_ERRORS = (TypeError, ValueError, OverflowError, struct.error, AttributeError, KeyError, IndexError)


def is_transient(error: BaseException) -> bool:
    """True when retrying the same rows later can succeed (see the module docstring)."""
    return not is_row_error(error)


def is_row_error(error: BaseException) -> bool:
    """True when the server (or the driver, encoding) refuses the rows themselves: split and dead-letter."""
    if getattr(error, "code", None) in ROW_CODES:  # the server's, or the driver's own (TypeMismatchError: 53)
        return True
    if ServerException is not None and isinstance(error, ServerException):
        return False
    if isinstance(error, _TRANSIENT_TYPES) and not isinstance(error, _ROW_ERRORS):
        return False
    return isinstance(error, _ROW_ERRORS)


class SinkStoppedError(RuntimeError):
    """``stop()`` was called while a write was waiting to retry; the rows were not all written."""


class RowsRefusedError(RuntimeError):
    """``flush()`` (the synchronous API) stored what it could; ``refused`` lists the rows the server refused."""

    def __init__(self, refused: list[Refused]) -> None:
        super().__init__(f"{len(refused)} row(s) refused: {refused[0].message}" if refused else "no rows refused")
        self.refused = refused


@dataclass(frozen=True)
class Refused:
    """A row that ClickHouse refused for good, with the server's (or the driver's) message."""

    table: str
    row: dict[str, Any]
    message: str


@dataclass
class SinkStats:
    rows_written: int = 0
    inserts: int = 0
    retries: int = 0
    rows_refused: int = 0
    last_insert_s: float = 0.0
    rows_by_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


Batch = dict[str, list[tuple]]


class ClickHouseSink:
    """Buffers rows per table and inserts them in batches.

    ``client_factory`` returns a fresh ``clickhouse_driver.Client``; a new one is made after any failure, so a
    restarted server is picked up and a connection left half-way through an insert is never reused.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        columns: Mapping[str, Sequence[str]],
        link_columns: Sequence[str] = ("kafka_partition", "kafka_offset"),
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
        self._links = {
            table: tuple(cols.index(name) for name in link_columns)
            for table, cols in self._columns.items() if all(name in cols for name in link_columns)
        }
        self._pending: Batch = {table: [] for table in self._columns}
        self._oldest_pending: float | None = None
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.max_pending_rows = max_pending_rows
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._on_retry = on_retry
        self._buffer_lock = threading.Lock()  # held only to touch the buffer: never across I/O or sleep
        self._write_lock = threading.Lock()  # one write at a time (the sink thread, or flush() callers)
        self._stopping = threading.Event()
        self.stats = SinkStats()

    # --- the buffer (event loop) -------------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return sum(len(rows) for rows in self._pending.values())

    @property
    def over_limit(self) -> bool:
        """More rows wait than ``max_pending_rows``: the caller should wait for a write (back-pressure)."""
        return self.pending_rows >= self.max_pending_rows

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row (a mapping with every column of ``table``). Never does I/O."""
        values = self._values(table, row)
        with self._buffer_lock:
            self._pending[table].append(values)
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()

    def batch_of(self, table: str, rows: Sequence[Mapping[str, Any]]) -> Batch:
        """``rows`` of ``table`` as a batch for :meth:`write`, outside the buffer (rows written on their own)."""
        return {table: [self._values(table, row) for row in rows]}

    def _values(self, table: str, row: Mapping[str, Any]) -> tuple:
        try:
            return tuple(row[name] for name in self._columns[table])
        except KeyError as missing:
            raise ValueError(f"row for {table} lacks column {missing}") from None

    def should_flush(self) -> bool:
        """True when the size or the age threshold is reached."""
        if self.pending_rows >= self.batch_rows:
            return True
        return self._oldest_pending is not None and time.monotonic() - self._oldest_pending >= self.flush_interval_s

    def take(self) -> Batch:
        """Everything buffered so far, leaving the buffer empty (pass it to :meth:`write`)."""
        with self._buffer_lock:
            batch = {table: rows for table, rows in self._pending.items() if rows}
            self._pending = {table: [] for table in self._columns}
            self._oldest_pending = None
        return batch

    # --- the writes (sink thread) --------------------------------------------------------------------

    def write(self, batch: Batch) -> list[Refused]:
        """Insert ``batch``; block (retrying transient errors) until every row is stored or refused for good.

        Returns the refused rows. Raises :class:`SinkStoppedError` if :meth:`stop` interrupts a retry wait.
        """
        refused: list[Refused] = []
        refused_links: set[tuple] = set()
        with self._write_lock:
            for table in self._columns:
                rows = batch.get(table)
                if not rows:
                    continue
                link = self._links.get(table)
                if refused_links and link is not None:
                    rows = [row for row in rows if tuple(row[i] for i in link) not in refused_links]
                table_refused = self._insert_splitting(table, rows)
                for row, message in table_refused:
                    refused.append(Refused(table, dict(zip(self._columns[table], row, strict=True)), message))
                    if link is not None:
                        refused_links.add(tuple(row[i] for i in link))
                stored = len(rows) - len(table_refused)
                self.stats.rows_by_table[table] += stored
                self.stats.rows_written += stored
                self.stats.rows_refused += len(table_refused)
        return refused

    def flush(self) -> int:
        """Write every buffered row now (synchronous API for scripts and tests). Returns rows written.

        Raises :class:`RowsRefusedError` after storing the rest, when the server refused some rows."""
        before = self.stats.rows_written
        refused = self.write(self.take())
        if refused:
            raise RowsRefusedError(refused)
        return self.stats.rows_written - before

    def stop(self) -> None:
        """Interrupt any retry wait: the write in progress raises :class:`SinkStoppedError` (nothing is acked)."""
        self._stopping.set()

    def close(self) -> None:
        self.flush()
        self._drop_client()

    def _insert_splitting(self, table: str, rows: list[tuple]) -> list[tuple[tuple, str]]:
        """Insert ``rows``; on a permanent error split in halves to find the refused rows. Returns those."""
        if not rows:
            return []
        error = self._insert_with_retry(table, rows)
        if error is None:
            return []
        message = _message(error)
        if len(rows) == 1:
            log.error("ClickHouse refused a row of %s for good: %s", table, message)
            return [(rows[0], message)]
        log.warning("ClickHouse refused a batch of %d rows of %s (%s); splitting it to find the refused rows",
                    len(rows), table, message)
        middle = len(rows) // 2
        return self._insert_splitting(table, rows[:middle]) + self._insert_splitting(table, rows[middle:])

    def _insert_with_retry(self, table: str, rows: list[tuple]) -> BaseException | None:
        """Insert, retrying transient errors until it works; returns a permanent error instead of raising it."""
        statement = f"INSERT INTO {table} ({', '.join(self._columns[table])}) VALUES"
        attempt = 0
        while True:
            if self._stopping.is_set():
                raise SinkStoppedError(f"sink stopped with {len(rows)} rows of {table} not written")
            started = time.perf_counter()
            try:
                if self._client is None:
                    self._client = self._client_factory()
                self._client.execute(statement, list(zip(*rows, strict=True)), columnar=True)
                self.stats.inserts += 1
                self.stats.last_insert_s = time.perf_counter() - started
                return None
            except Exception as error:  # sorted into "the rows" and "not now" right here
                self._drop_client()  # a connection that failed mid-insert is never reused
                if is_row_error(error):
                    return error
                if not isinstance(error, _TRANSIENT_TYPES) and not (
                        ServerException is not None and isinstance(error, ServerException)
                        and getattr(error, "code", None) in TRANSIENT_CODES):
                    log.error("insert into %s failed with an error that is neither about the rows nor known to "
                              "pass (%s); retrying until someone mends the server or its settings",
                              table, _message(error))
                attempt += 1
                self.stats.retries += 1
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt - 1, 16))
                delay *= 0.5 + random.random() / 2  # jitter, so restarted workers do not stampede
                log.warning("insert of %d rows into %s failed (attempt %d, retry in %.1f s): %s",
                            len(rows), table, attempt, delay, _message(error))
                if self._on_retry is not None:
                    self._on_retry(error, attempt)
                if self._stopping.wait(delay):
                    raise SinkStoppedError(f"sink stopped with {len(rows)} rows of {table} not written") from error

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # the connection is being thrown away anyway
                pass
            self._client = None


def _message(error: BaseException) -> str:
    """The server's message on one line (``nlumon.records.one_line``), without the stack trace ClickHouse appends."""
    return one_line(f"{type(error).__name__}: {str(error).split('Stack trace', 1)[0].strip()}", 500)
