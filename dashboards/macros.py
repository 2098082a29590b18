"""Expand a panel's SQL the way Grafana and the ClickHouse datasource plugin do before it runs.

Two steps happen to a panel query in Grafana:

1. Grafana's template service replaces dashboard variables (``$assistant``, ``${assistant}``,
   ``${assistant:singlequote}``...). A multi-value variable becomes a list; the format after the colon
   decides how the list is written. Built-in names that start with ``$__`` are left alone.
2. The plugin's backend (``grafana/clickhouse-datasource``, ``pkg/macros/macros.go``, run by
   ``grafana/sqlds``) replaces its macros: ``$__timeFilter(col)`` becomes
   ``col >= toDateTime(<from>) AND col <= toDateTime(<to>)`` (Unix seconds, both ends inclusive),
   ``$__fromTime``/``$__toTime`` become ``toDateTime(<unix>)``, ``$__interval_s`` becomes the panel's
   interval in whole seconds (at least 1), and ``$__timeInterval(col)`` becomes
   ``toStartOfInterval(toDateTime(col), INTERVAL <n> second)``.

``$__timeInterval`` is mirrored for completeness, but our panels never use it: ``toStartOfInterval``
does not exist on ClickHouse 18.16. They bucket with ``intDiv`` on ``$__interval_s`` instead
(:func:`dashboards.sql.bucket`).

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> t1 = datetime(2024, 1, 1, 1, tzinfo=timezone.utc)
    >>> print(expand_macros("WHERE $__timeFilter(ts) AND a IN (${assistant:singlequote})",
    ...                     t0, t1, 60, {"assistant": ["shopper", "associate"]}))
    WHERE ts >= toDateTime(1704067200) AND ts <= toDateTime(1704070800) AND a IN ('shopper','associate')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime


class MacroError(ValueError):
    """A macro got the wrong arguments, or a variable the query names has no value."""


VariableValue = str | Sequence[str]

# Grafana's variable syntax: $name, ${name}, ${name:format}, [[name]] (deprecated, not used here).
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _unix(moment: datetime) -> int:
    if moment.tzinfo is None:  # naive times are UTC everywhere in nlumon (ClickHouse DateTime is seconds)
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _plugin_macros(from_s: int, to_s: int, interval_s: int) -> dict[str, tuple[int, Callable[..., str]]]:
    """Macro name -> (number of arguments, function of the arguments), as in macros.go."""
    seconds = max(int(interval_s), 1)
    return {
        "timeFilter": (1, lambda c: f"{c} >= toDateTime({from_s}) AND {c} <= toDateTime({to_s})"),
        "timeInterval": (1, lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)"),
        "fromTime": (0, lambda: f"toDateTime({from_s})"),
        "toTime": (0, lambda: f"toDateTime({to_s})"),
        "interval_s": (0, lambda: str(seconds)),
    }


def _format_value(name: str, value: VariableValue, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise MacroError(f"variable ${name} has no value selected")
    if fmt in ("singlequote", "sqlstring"):
        return ",".join("'" + v.replace("'", "''" if fmt == "sqlstring" else "\\'") + "'" for v in values)
    if fmt in ("doublequote",):
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in (None, "csv", "raw"):
        # Grafana's default for a multi-value variable in a SQL datasource is a comma-separated list.
        return ",".join(values)
    raise MacroError(f"variable format {fmt!r} of ${name} is not supported by expand_macros")


def expand_variables(sql: str, variables: Mapping[str, VariableValue]) -> str:
    """Replace dashboard variables (step 1); ``$__`` names are the plugin's and stay.

    >>> expand_variables("v = $v AND w IN (${w:singlequote}) AND $__interval_s", {"v": "1", "w": ["a"]})
    "v = 1 AND w IN ('a') AND $__interval_s"
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name.startswith("__"):
            return match.group(0)
        if name not in variables:
            raise MacroError(f"the query uses ${name} but no value was given for it")
        return _format_value(name, variables[name], match.group(2))

    return _VARIABLE.sub(replace, sql)


def expand_plugin_macros(sql: str, from_ts: datetime, to_ts: datetime, interval_s: int) -> str:
    """Replace the plugin's ``$__`` macros (step 2), as ``grafana/sqlds`` does.

    sqlds matches ``\\$__name(?:\\((.*?)\\))?`` and splits the arguments on commas; a word boundary
    is added here so that ``$__timeFilter`` never eats the start of ``$__timeFilter_ms``.

    >>> expand_plugin_macros("n / $__interval_s", datetime(2024, 1, 1), datetime(2024, 1, 2), 0)
    'n / 1'
    """
    macros = _plugin_macros(_unix(from_ts), _unix(to_ts), interval_s)

    def replace(match: re.Match[str]) -> str:
        name, raw_args = match.group(1), match.group(2)
        arity, function = macros[name]
        args = [a.strip() for a in raw_args.split(",")] if raw_args is not None else []
        if len(args) != arity:
            raise MacroError(f"$__{name} expects {arity} argument(s), got {len(args)}: {match.group(0)!r}")
        if arity == 0 and raw_args is not None:
            raise MacroError(f"$__{name} takes no arguments")
        return function(*args)

    names = "|".join(sorted(macros, key=len, reverse=True))
    pattern = re.compile(rf"\$__({names})\b(?:\((.*?)\))?")
    expanded = pattern.sub(replace, sql)
    leftover = re.search(r"\$__\w+", expanded)
    if leftover:
        raise MacroError(f"unknown macro {leftover.group(0)} (not mirrored from the plugin)")
    return expanded


def expand_macros(
    sql: str,
    from_ts: datetime,
    to_ts: datetime,
    interval_s: int,
    variables: Mapping[str, VariableValue] | None = None,
) -> str:
    """The SQL Grafana would send to ClickHouse for this time range, interval and variable values."""
    return expand_plugin_macros(expand_variables(sql, variables or {}), from_ts, to_ts, interval_s)
