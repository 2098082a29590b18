"""Builders for the panel queries, so every time-series panel has the same shape.

A time-series query returns ``time`` (the bucket start), optionally one string label column (Grafana's
plugin turns a long frame with a string column into one series per label, and so does the report),
then numeric value columns.

    >>> q = time_series("predictions", {"n": "count()"}, "$__timeFilter(ts)", label=("intent", "intent"))
    >>> q.columns
    ('time', 'intent', 'n')
    >>> print(q.sql)
    SELECT toDateTime(intDiv(toUInt32(ts), $__interval_s) * $__interval_s) AS time, intent, count() AS n
    FROM predictions FINAL
    WHERE $__timeFilter(ts)
    GROUP BY time, intent
    ORDER BY time
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards.model import Query, Variable
from dashboards.sql import ALL, bucket, in_variable

# Tables whose rows may be written twice (ReplacingMergeTree): read with FINAL so nothing is counted twice.
# (``experiments`` is one too, but its panels want the latest row of each experiment: they use argMax.)
REPLACING = {"predictions", "utterance_log", "dead_letters", "model_versions", "monitor_windows", "drift_results",
             "ood_clusters", "alert_events", "alert_deliveries", "labeling_queue", "slot_value_windows", "outcomes",
             "shadow_predictions", "route_windows", "shadow_windows", "conversion_windows", "experiment_results"}

# What the monitor calls the whole traffic of a window (the schema says 'all', the detector suite 'overall').
WHOLE_TRAFFIC = ("all", "overall")


def source(table: str, array_join: str = "") -> str:
    """``table`` with FINAL where needed, and an optional ``ARRAY JOIN`` clause."""
    final = " FINAL" if table in REPLACING else ""
    return f"{table}{final}" + (f" ARRAY JOIN {array_join}" if array_join else "")


def time_series(
    table: str,
    values: Mapping[str, str],
    where: str,
    *,
    label: tuple[str, str] | None = None,
    time_column: str = "ts",
    array_join: str = "",
    time_expr: str | None = None,
) -> Query:
    """A bucketed time series: ``values`` maps column name -> aggregate; ``label`` is (name, expression).

    ``time_expr`` replaces the bucket for tables that already hold windows (``window_start``).
    """
    time = time_expr or bucket(time_column)
    select = [f"{time} AS time"]
    group = ["time"]
    if label is not None:
        # ClickHouse 18.16 rejects `x AS x` when x is an ARRAY JOIN alias ("multiple expressions for alias").
        select.append(label[0] if label[1] == label[0] else f"{label[1]} AS {label[0]}")
        group.append(label[0])
    select += [f"{expression} AS {name}" for name, expression in values.items()]
    sql = (f"SELECT {', '.join(select)}\nFROM {source(table, array_join)}\nWHERE {where}\n"
           f"GROUP BY {', '.join(group)}\nORDER BY time")
    columns = ("time", *((label[0],) if label else ()), *values)
    return Query(sql, "time_series", columns)


def table(sql: str, columns: tuple[str, ...]) -> Query:
    return Query(sql.strip(), "table", columns)


def series(sql: str, columns: tuple[str, ...]) -> Query:
    """A time series written by hand (a join, say): ``time`` first, as :func:`time_series` returns it."""
    return Query(sql.strip(), "time_series", columns)


# -- variables and filters -------------------------------------------------------------------------
# An experiment is in the range when it started before the range ends and was running, or stopped, in it; its
# definition is the latest row of ``experiments`` (highest row_version).
EXPERIMENT_IN_RANGE = ("argMax(started_at, row_version) <= $__toTime AND (argMax(status, row_version) = 'running' "
                       "OR argMax(stopped_at, row_version) >= $__fromTime)")
EXPERIMENTS_IN_RANGE = f"(SELECT name FROM experiments GROUP BY name HAVING {EXPERIMENT_IN_RANGE})"

ASSISTANT = Variable("assistant", "Assistant", values=("shopper", "associate"))
MODEL_VERSION = Variable(
    "model_version", "Model version",
    query="SELECT DISTINCT model_version FROM predictions WHERE $__timeFilter(ts) ORDER BY model_version",
)
EXPERIMENT = Variable("experiment", "Experiment", query=f"SELECT name FROM experiments GROUP BY name "
                                                         f"HAVING {EXPERIMENT_IN_RANGE} ORDER BY name")


def traffic_filter(time_column: str = "ts", *, model: bool = True) -> str:
    """Time range, assistant and (for predictions) model version, for per-utterance tables."""
    parts = [f"$__timeFilter({time_column})", in_variable("toString(assistant)", "assistant")]
    if model:
        parts.append(in_variable("model_version", "model_version"))
    return " AND ".join(parts)


def monitor_filter(time_column: str = "window_start", *, whole_when_all: bool = False) -> str:
    """Time range and assistant for the monitor's tables.

    With ``whole_when_all``, "All" selects the monitor's whole-traffic rows instead of every row, so a
    panel does not average the overall estimate with the per-assistant ones.
    """
    if whole_when_all:
        whole = ", ".join(f"'{name}'" for name in WHOLE_TRAFFIC)
        chosen = "${assistant:singlequote}"
        assistant = f"if('__all' IN ({chosen}), assistant IN ({whole}), assistant IN ({chosen}))"
    else:
        assistant = in_variable("assistant", "assistant")
    return f"$__timeFilter({time_column}) AND {assistant}"


def per_assistant(column: str = "assistant") -> str:
    """The monitor's per-assistant rows only (not its whole-traffic rows), for panels with a line per assistant."""
    whole = ", ".join(f"'{name}'" for name in WHOLE_TRAFFIC)
    return f"{column} NOT IN ({whole})"


def experiment_filter(column: str = "experiment") -> str:
    """The chosen experiments; "All" means every experiment in the range (:data:`EXPERIMENTS_IN_RANGE`), not every
    experiment ever run, so an old experiment's looks do not mix with the running one's."""
    chosen = "${experiment:singlequote}"
    return f"(('{ALL}' IN ({chosen}) AND {column} IN {EXPERIMENTS_IN_RANGE}) OR {column} IN ({chosen}))"


def session_filter(horizon_s: int) -> str:
    """For tables without an assistant (``outcomes``): the session had a prediction of the chosen assistant and
    model version up to ``horizon_s`` before the range. With both variables at "All" no lookup is made."""
    chosen = " AND ".join(f"'{ALL}' IN (${{{name}:singlequote}})" for name in ("assistant", "model_version"))
    selected = f"{in_variable('toString(assistant)', 'assistant')} AND {in_variable('model_version', 'model_version')}"
    sessions = (f"SELECT session_id FROM predictions FINAL WHERE ts >= $__fromTime - {horizon_s} AND ts <= $__toTime "
                f"AND {selected}")
    return f"(({chosen}) OR session_id IN ({sessions}))"
