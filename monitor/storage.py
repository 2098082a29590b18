"""ClickHouse reads and writes of the monitor job. SQL only; what to do with the rows is in ``monitor.job``.

Every query runs on ClickHouse 18.16: windows are bucketed with ``toDateTime(intDiv(toUInt32(ts), N) * N)``
(no ``toStartOfInterval``), tuples go to ``IN``, and a re-delivered prediction is read once (``FINAL``).
Times cross this boundary as naive UTC datetimes, the way the worker writes them.

    >>> window_start_of(datetime(2026, 1, 1, 10, 7, 42), 300)
    datetime.datetime(2026, 1, 1, 10, 5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

# The prediction columns the detectors, the report and the labeling flags read.
WINDOW_COLUMNS = (
    "id", "ts", "assistant", "model_version", "text_scrubbed", "intent", "confidence", "margin", "entropy",
    "energy", "ood_score", "is_ood", "token_count", "unk_rate", "slot_types", "slot_confidences", "asr_confidence",
    "embedding_sketch", "route",
)
# What the unseen-slot-value detector reads, over the whole window (bounded by SLOT_VALUE_ROWS): small columns.
SLOT_VALUE_COLUMNS = ("assistant", "session_id", "slot_types", "slot_values")
SLOT_VALUE_ROWS = 50_000
SLOT_VALUE_WINDOW_COLUMNS = (
    "window_start", "window_end", "model_version", "assistant", "slot_type", "values", "unseen", "unseen_rate",
    "reference_rate", "scrubbed", "new_values", "status", "reason", "scored_at", "row_version",
)
CANDIDATE_COLUMNS = (
    "id", "ts", "assistant", "model_version", "text_scrubbed", "intent", "confidence", "margin", "ood_score",
    "is_ood", "slot_types", "slot_values",
)
MONITOR_WINDOW_COLUMNS = (
    "window_start", "window_end", "assistant", "model_version", "rows", "mean_confidence", "ood_rate",
    "accuracy_estimate", "accuracy_low", "accuracy_high", "dead_letters", "drifted", "drifted_features",
    "report_path", "scored_at", "row_version", "status", "reason", "attempts",
)
# ``monitor_windows.status``: what the monitor's last attempt at a window gave (docs/monitoring.md).
SCORED, NOT_SCORED, FAILED = "scored", "not_scored", "failed"
DRIFT_RESULT_COLUMNS = (
    "window_start", "window_end", "assistant", "feature", "method", "score", "threshold", "drifted", "details",
    "scored_at", "row_version",
)
OOD_CLUSTER_COLUMNS = (
    "window_start", "cluster_id", "assistant", "size", "growth", "first_seen", "examples", "row_version",
)
EPOCH = datetime(1970, 1, 1)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as a naive UTC datetime (how ClickHouse DateTime values travel), whole seconds.

    >>> from datetime import timezone, timedelta
    >>> naive_utc(datetime(2026, 1, 1, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))))
    datetime.datetime(2026, 1, 1, 10, 0)
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def window_start_of(ts: datetime, window_s: int) -> datetime:
    """The start of the window of ``window_s`` seconds that holds ``ts`` (the Python twin of the SQL bucket)."""
    seconds = int((naive_utc(ts) - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=seconds // window_s * window_s)


@dataclass(frozen=True)
class ObservedWindow:
    """A window that holds predictions: its row count, newest ingestion time and main model version."""

    start: datetime
    end: datetime
    rows: int
    last_ingested: datetime
    model_version: str


@dataclass(frozen=True)
class ScoredWindow:
    """What the monitor stored for a window last time (its ``all`` row): the row count it saw, when it tried,
    what came of it (``scored`` | ``not_scored`` | ``failed``) and how many unsuccessful attempts in a row."""

    rows: int
    scored_at: datetime
    status: str = SCORED
    attempts: int = 0


@dataclass(frozen=True)
class WindowFacts:
    """Whole-window figures computed in SQL over every row (the detectors see a bounded sample)."""

    rows_by_assistant: Mapping[str, int]
    dead_letters: int
    latency_p95_ms: float | None
    latency_source: str
    rows_week_before: int


def observed_windows(client: Any, window_s: int, since: datetime, until: datetime) -> list[ObservedWindow]:
    """Windows of ``window_s`` seconds starting in [since, until) that hold predictions, oldest first."""
    rows = client.execute(
        "SELECT toDateTime(intDiv(toUInt32(ts), %(w)s) * %(w)s) AS window_start, uniqExact(id),"
        " max(ingested_at), topK(1)(model_version)"
        " FROM predictions WHERE ts >= %(since)s AND ts < %(until)s"
        " GROUP BY window_start ORDER BY window_start",
        {"w": int(window_s), "since": naive_utc(since), "until": naive_utc(until)},
    )
    return [
        ObservedWindow(start, start + timedelta(seconds=window_s), int(n), last, (versions or [""])[0])
        for start, n, last, versions in rows
    ]


def scored_windows(client: Any, window_s: int, since: datetime, until: datetime) -> dict[datetime, ScoredWindow]:
    """The latest stored ``all`` row of each window of this length starting in [since, until)."""
    rows = client.execute(
        "SELECT window_start, argMax(rows, row_version), argMax(scored_at, row_version),"
        " argMax(status, row_version), argMax(attempts, row_version) FROM monitor_windows"
        " WHERE assistant = 'all' AND window_start >= %(since)s AND window_start < %(until)s"
        " AND toUInt32(window_end) - toUInt32(window_start) = %(w)s GROUP BY window_start",
        {"w": int(window_s), "since": naive_utc(since), "until": naive_utc(until)},
    )
    return {start: ScoredWindow(int(n), scored_at, str(status or SCORED), int(attempts))
            for start, n, scored_at, status, attempts in rows}


def read_predictions(
    client: Any, start: datetime, end: datetime, limit: int, columns: Sequence[str] = WINDOW_COLUMNS,
    where: str = "", params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """At most ``limit`` prediction rows with ``start <= ts < end`` as a DataFrame.

    The sample is deterministic (ordered by a hash of the id), so scoring a window twice reads the same rows.
    """
    query = (
        f"SELECT {', '.join(columns)} FROM predictions FINAL WHERE ts >= %(start)s AND ts < %(end)s {where}"
        " ORDER BY cityHash64(id) LIMIT %(limit)s"
    )
    values = {"start": naive_utc(start), "end": naive_utc(end), "limit": int(limit), **(params or {})}
    data = client.execute(query, values, columnar=True)
    frame = pd.DataFrame({name: list(column) for name, column in zip(columns, _columns(data, len(columns)),
                                                                      strict=True)}, columns=columns)
    if "asr_confidence" in frame.columns:  # Nullable: text-channel rows have none
        frame["asr_confidence"] = pd.to_numeric(frame["asr_confidence"], errors="coerce").astype(float)
    if "embedding_sketch" in frame.columns:
        frame["embedding_sketch"] = [np.asarray(v, dtype=np.float32) for v in frame["embedding_sketch"]]
    return frame


def _columns(data: Sequence[Sequence[Any]] | None, n_columns: int) -> Sequence[Sequence[Any]]:
    """The columns of a ``columnar=True`` result: clickhouse-driver returns ``[]`` (not empty columns) for zero rows.

    >>> _columns([], 2), _columns([(1, 2), ("a", "b")], 2)
    ([[], []], [(1, 2), ('a', 'b')])
    """
    if not data:
        return [[] for _ in range(n_columns)]
    if len(data) != n_columns:
        raise ValueError(f"the query returned {len(data)} columns, {n_columns} were asked for")
    return data


def window_facts(client: Any, start: datetime, end: datetime) -> WindowFacts:
    """Rows per assistant, dead letters, p95 latency and the row count of the same window a week earlier."""
    params = {"start": naive_utc(start), "end": naive_utc(end)}
    by_assistant = dict(client.execute(
        "SELECT toString(assistant), uniqExact(id) FROM predictions WHERE ts >= %(start)s AND ts < %(end)s"
        " GROUP BY assistant", params))
    e2e, inference, with_e2e = _first_row(client.execute(
        "SELECT quantile(0.95)(e2e_ms), quantile(0.95)(inference_ms), countIf(e2e_ms > 0) FROM predictions"
        " WHERE ts >= %(start)s AND ts < %(end)s", params), (None, None, 0))
    (dead,) = _first_row(client.execute(
        "SELECT count() FROM dead_letters FINAL WHERE ts >= %(start)s AND ts < %(end)s", params), (0,))
    week = timedelta(days=7)
    (before,) = _first_row(client.execute(
        "SELECT uniqExact(id) FROM predictions WHERE ts >= %(start)s AND ts < %(end)s",
        {"start": naive_utc(start - week), "end": naive_utc(end - week)}), (0,))
    # e2e latency needs the Kafka append time; rows without it (backfills) only have inference time.
    latency, source = (e2e, "e2e_ms") if with_e2e else (inference, "inference_ms")
    latency = float(latency) if latency is not None and math.isfinite(latency) else None
    return WindowFacts({str(k): int(v) for k, v in by_assistant.items()}, int(dead or 0), latency, source,
                       int(before or 0))


def _first_row(rows: Sequence[Sequence[Any]], empty: tuple[Any, ...]) -> Sequence[Any]:
    """The one row of an aggregate query (``empty`` if the server sent none)."""
    return rows[0] if rows else empty


def insert_rows(client: Any, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert mappings (one value per column) into ``table``; returns the number of rows."""
    values = [tuple(row[name] for name in columns) for row in rows]
    if values:
        client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", values)
    return len(values)
