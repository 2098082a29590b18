"""The route mix of each scored window: how often the routing policy fulfilled, clarified, confirmed or escalated.

The worker stores each prediction's route decision (``predictions.route``, ``streams.routing``; ``''`` when no
policy decided it). For every scored window the monitor counts the rows per (assistant, route) in SQL over the
whole window (``FINAL``: a re-delivered prediction counts once), not over the detectors' sample, and stores one
``route_windows`` row per (assistant, route) — assistant ``all`` is the whole traffic — with the route's share of
the rows that *have* a route. Rows without a decision stay out of the shares: while workers with and without a
policy run side by side (a rolling upgrade), ``fulfil`` must not look like it dropped. Every known route
(:data:`ROUTES`) gets a row, 0 when unused, so a route that vanishes shows as 0 instead of a gap; a group without
any decided row gets none.

Alert metrics (``monitor.alerting.metric_points``): ``route_share.<route>`` per assistant, the whole traffic as
assistant ``None``.

    >>> mix = route_mix([("shopper", "fulfil", 90), ("shopper", "clarify", 10), ("associate", "", 50)])
    >>> sorted(mix), mix["all"]["fulfil"], mix["all"]["escalate"]
    (['all', 'shopper'], 90, 0)
    >>> route_shares(mix["shopper"])["clarify"]
    0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.storage import naive_utc
from nlumon.pii import deidentify_row
from nlumon.records import ROUTES  # the routing policy's decisions: fulfil, clarify, confirm, escalate

if TYPE_CHECKING:
    from monitor.job import WindowOutcome

ALL = "all"
NO_ROUTE = ""  # no decision: a row stored before the routing policy, or by a worker without one
ROUTE_SHARE_METRIC = "route_share"  # + ".<route>"
ROUTE_WINDOW_COLUMNS = (
    "window_start", "window_end", "assistant", "model_version", "route", "rows", "share", "scored_at", "row_version",
)
ROUTE_WINDOW_KEEP = ("assistant", "model_version", "route")  # identifiers and enums; nothing else is a string

RouteMix = Mapping[str, Mapping[str, int]]  # group (assistant or "all") -> route -> rows


def read_route_counts(client: Any, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
    """``(assistant, route, rows)`` of the predictions with ``start <= ts < end``, route ``''`` included."""
    rows = client.execute(
        "SELECT toString(assistant), route, count() FROM predictions FINAL"
        " WHERE ts >= %(start)s AND ts < %(end)s GROUP BY assistant, route",
        {"start": naive_utc(start), "end": naive_utc(end)})
    return [(str(assistant), str(route), int(n)) for assistant, route, n in rows]


def route_mix(counts: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """Rows per route of each assistant and of ``all`` (their sum), decided rows only; every route of
    :data:`ROUTES` present (0 when unused), plus any other route the rows name; a group without a decided row
    is left out."""
    by_group: dict[str, dict[str, int]] = {}
    for assistant, route, rows in counts:
        if route == NO_ROUTE or rows <= 0:
            continue
        for group in (assistant, ALL):
            routes = by_group.setdefault(group, dict.fromkeys(ROUTES, 0))
            routes[route] = routes.get(route, 0) + int(rows)
    return {group: by_group[group] for group in sorted(by_group, key=lambda g: (g != ALL, g))}


def route_shares(routes: Mapping[str, int]) -> dict[str, float]:
    """Each route's share of the decided rows (all 0.0 when there are none)."""
    total = sum(routes.values())
    return {route: (rows / total if total else 0.0) for route, rows in routes.items()}


def route_window_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """The ``route_windows`` rows of one scored window: one per (group, route) of its route mix."""
    rows = []
    for group, routes in outcome.routes.items():
        for route, share in route_shares(routes).items():
            rows.append(deidentify_row({
                "window_start": outcome.window_start, "window_end": outcome.window_end, "assistant": group,
                "model_version": outcome.model_version, "route": route, "rows": int(routes[route]),
                "share": float(share), "scored_at": outcome.scored_at, "row_version": row_version,
            }, keep=ROUTE_WINDOW_KEEP))
    return rows


def route_metrics(outcome: WindowOutcome) -> list[tuple[str, float, str | None, dict[str, Any]]]:
    """``route_share.<route>`` per group as ``(metric, value, assistant, evidence)`` (assistant None: the whole
    traffic), for ``monitor.alerting.metric_points``."""
    metrics: list[tuple[str, float, str | None, dict[str, Any]]] = []
    for group, routes in outcome.routes.items():
        decided = sum(routes.values())
        for route, share in route_shares(routes).items():
            metrics.append((f"{ROUTE_SHARE_METRIC}.{route}", share, None if group == ALL else group,
                            {"route": route, "route_rows": int(routes[route]), "decided_rows": decided}))
    return metrics
