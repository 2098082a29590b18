"""SQL pieces every panel shares, written for ClickHouse 18.16 and current ClickHouse alike.

18.16 has no ``toStartOfInterval``, ``WITH FILL``, window functions, DateTime64 or Map, so a time
bucket is integer arithmetic on the Unix time and the panel interval:

    >>> bucket("ts")
    'toDateTime(intDiv(toUInt32(ts), $__interval_s) * $__interval_s)'

A multi-value variable with the custom "All" value :data:`ALL` matches everything without listing
the values (an empty option list would otherwise expand to ``IN ()``, a syntax error):

    >>> in_variable("model_version", "model_version")
    "('__all' IN (${model_version:singlequote}) OR model_version IN (${model_version:singlequote}))"
"""

from __future__ import annotations

from collections.abc import Sequence

# The value a variable takes when "All" is selected (Grafana's customAllValue).
ALL = "__all"


def bucket(column: str) -> str:
    """The start of the ``$__interval_s`` bucket that ``column`` (a DateTime) falls in."""
    return f"toDateTime(intDiv(toUInt32({column}), $__interval_s) * $__interval_s)"


def in_variable(column: str, variable: str) -> str:
    """``column`` is one of the selected values of dashboard variable ``variable`` (or All is selected)."""
    values = f"${{{variable}:singlequote}}"
    return f"('{ALL}' IN ({values}) OR {column} IN ({values}))"


def bucket_columns(column: str, edges: Sequence[float]) -> str:
    """``countIf`` columns named by each bucket's upper bound, the layout Grafana's heatmap reads.

    Values below ``edges[0]`` fall in the first bucket; the last bucket, ``+Inf``, holds the rest.

    >>> print(bucket_columns("c", [0.5, 1.0]))
    countIf(c < 0.5) AS `0.5`, countIf(c >= 0.5 AND c < 1.0) AS `1.0`, countIf(c >= 1.0) AS `+Inf`
    """
    parts = []
    lower: float | None = None
    for edge in edges:
        condition = f"{column} < {edge}" if lower is None else f"{column} >= {lower} AND {column} < {edge}"
        parts.append(f"countIf({condition}) AS `{edge}`")
        lower = edge
    parts.append(f"countIf({column} >= {lower}) AS `+Inf`")
    return ", ".join(parts)


def bucket_names(edges: Sequence[float]) -> tuple[str, ...]:
    """The column names :func:`bucket_columns` produces, in order.

    >>> bucket_names([0.5, 1.0])
    ('0.5', '1.0', '+Inf')
    """
    return (*(str(edge) for edge in edges), "+Inf")
