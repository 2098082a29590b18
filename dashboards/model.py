"""Typed dashboards, panels and queries, and their Grafana JSON.

One :class:`Panel` describes a view once: Grafana gets it as panel JSON for the
``grafana-clickhouse-datasource`` plugin (:func:`dashboard_json`), and the local report draws the same
panel from the same SQL (:mod:`dashboards.report`). ``Query.columns`` names the columns the SQL must
return; the integration tests check them on a real ClickHouse.

    >>> q = Query("SELECT 1 AS n", "table", ("n",))
    >>> board = Dashboard("nlumon-x", "X", "a test", (Panel("One", "stat", q),))
    >>> doc = dashboard_json(board)
    >>> doc["uid"], doc["panels"][0]["targets"][0]["format"], doc["panels"][0]["gridPos"]["w"]
    ('nlumon-x', 1, 6)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dashboards.sql import ALL

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "nlumon-clickhouse"
# Grafana 11 dashboards carry schemaVersion 39+; Grafana migrates older documents on load, never newer ones.
SCHEMA_VERSION = 39
GRID_WIDTH = 24

PanelKind = Literal["timeseries", "heatmap", "table", "stat", "barchart"]
# The plugin's backend reads the numeric ``format`` (sqlds: 0 time series, 1 table); the editor reads ``queryType``.
FORMATS = {"time_series": (0, "timeseries"), "table": (1, "table")}
DEFAULT_WIDTH = {"timeseries": 12, "heatmap": 12, "table": 24, "stat": 6, "barchart": 12}
DEFAULT_HEIGHT = {"timeseries": 8, "heatmap": 8, "table": 9, "stat": 4, "barchart": 8}


@dataclass(frozen=True)
class Query:
    """Raw SQL with the plugin's macros and dashboard variables, and the columns it returns."""

    sql: str
    format: Literal["time_series", "table"]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Panel:
    title: str
    kind: PanelKind
    query: Query
    description: str = ""
    unit: str = ""
    width: int | None = None
    height: int | None = None
    # Extra series styling: e.g. {"threshold": 1.0} draws a dashed line, {"band": ("low", "high")} fills between.
    style: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    values: tuple[str, ...] = ()  # a fixed list (custom variable) ...
    query: str = ""  # ... or a SQL query for the values


@dataclass(frozen=True)
class Annotation:
    name: str
    query: Query  # columns: time, timeEnd (optional), text, tags
    color: str = "red"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("nlumon",)


def datasource_ref(uid: str = DATASOURCE_UID) -> dict[str, str]:
    return {"type": DATASOURCE_TYPE, "uid": uid}


def target_json(query: Query, ref_id: str = "A", uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """One plugin query as Grafana stores it (editorType ``sql``)."""
    number, query_type = FORMATS[query.format]
    return {"refId": ref_id, "datasource": datasource_ref(uid), "editorType": "sql", "queryType": query_type,
            "format": number, "rawSql": query.sql}


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit} if panel.unit else {}
    overrides: list[dict[str, Any]] = []
    if panel.kind == "timeseries":
        defaults["custom"] = {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
        if panel.style.get("stack"):
            defaults["custom"].update({"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60})
    if "threshold" in panel.style:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": panel.style["threshold"]}]}
        defaults.setdefault("custom", {})["thresholdsStyle"] = {"mode": "dashed"}
    if "band" in panel.style:
        low, high = panel.style["band"]
        overrides.append({"matcher": {"id": "byName", "options": high},
                          "properties": [{"id": "custom.fillBelowTo", "value": low}]})
    if "link_column" in panel.style:
        link = {"title": "open report", "url": "${__value.raw}"}
        overrides.append({"matcher": {"id": "byName", "options": panel.style["link_column"]},
                          "properties": [{"id": "links", "value": [link]}]})
    return {"defaults": defaults, "overrides": overrides}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "heatmap":
        # Rows come pre-bucketed (countIf columns named by upper bound), so Grafana must not re-bucket.
        return {"calculate": False, "rowsFrame": {"layout": "le"}, "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Viridis", "steps": 64},
                "yAxis": {"axisPlacement": "left", "unit": panel.unit}, "tooltip": {"mode": "single"}}
    if panel.kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area"}
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    if panel.kind == "barchart":
        return {"orientation": "horizontal", "showValue": "auto", "legend": {"showLegend": False}}
    return {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}


def layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Grid positions: panels flow left to right and wrap at 24 columns."""
    positions, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        width = panel.width or DEFAULT_WIDTH[panel.kind]
        height = panel.height or DEFAULT_HEIGHT[panel.kind]
        if x + width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"x": x, "y": y, "w": width, "h": height})
        x, row_height = x + width, max(row_height, height)
    return positions


def panel_json(panel: Panel, panel_id: int, grid: dict[str, int], uid: str = DATASOURCE_UID) -> dict[str, Any]:
    return {"id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
            "gridPos": grid, "datasource": datasource_ref(uid), "targets": [target_json(panel.query, uid=uid)],
            "fieldConfig": _field_config(panel), "options": _options(panel)}


def variable_json(variable: Variable, uid: str = DATASOURCE_UID) -> dict[str, Any]:
    common = {"name": variable.name, "label": variable.label, "multi": True, "includeAll": True,
              "allValue": ALL, "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0}
    if variable.values:
        options = [{"selected": True, "text": "All", "value": "$__all"}]
        options += [{"selected": False, "text": v, "value": v} for v in variable.values]
        return {**common, "type": "custom", "query": ",".join(variable.values), "options": options}
    # refresh 2: the values are queried again whenever the time range changes.
    return {**common, "type": "query", "datasource": datasource_ref(uid), "query": variable.query,
            "definition": variable.query, "refresh": 2, "sort": 1, "options": []}


def annotation_json(annotation: Annotation, uid: str = DATASOURCE_UID) -> dict[str, Any]:
    return {"name": annotation.name, "datasource": datasource_ref(uid), "enable": True, "hide": False,
            "iconColor": annotation.color, "target": target_json(annotation.query, "Anno", uid)}


def dashboard_json(board: Dashboard, uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """The dashboard document Grafana stores (``POST /api/dashboards/db`` takes it as ``dashboard``)."""
    grids = layout(board.panels)
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": list(board.tags),
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [variable_json(v, uid) for v in board.variables]},
        "annotations": {"list": [builtin, *(annotation_json(a, uid) for a in board.annotations)]},
        "links": [{"title": "nlumon", "type": "dashboards", "tags": ["nlumon"], "asDropdown": True}],
        "panels": [panel_json(p, i, g, uid) for i, (p, g) in enumerate(zip(board.panels, grids, strict=True), 1)],
    }
