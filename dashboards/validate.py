"""A structural check of Grafana dashboard JSON: what Grafana needs to load and render a dashboard.

Grafana publishes no JSON Schema for dashboards v1, so this checks what its loader and panels rely on:
the top-level keys, unique panel ids, grid positions inside the 24-column grid and not overlapping,
a datasource reference on every panel and target, and plugin targets with ``rawSql`` and ``format``.

    >>> validate_dashboard({"uid": "u", "title": "t", "schemaVersion": 39, "panels": [], "templating": {"list": []},
    ...                     "annotations": {"list": []}, "time": {"from": "now-1h", "to": "now"}})
    []
    >>> validate_dashboard({"title": "t"})[:1]
    ["missing key 'uid'"]
"""

from __future__ import annotations

from typing import Any

from dashboards.model import DATASOURCE_TYPE, GRID_WIDTH

REQUIRED = ("uid", "title", "schemaVersion", "panels", "templating", "annotations", "time")
PANEL_TYPES = {"timeseries", "heatmap", "table", "stat", "barchart", "text", "row"}


class InvalidDashboardError(ValueError):
    """A generated dashboard would not load in Grafana."""


def _target_problems(where: str, target: Any, datasource_uid: str | None) -> list[str]:
    if not isinstance(target, dict):
        return [f"{where}: target is not an object"]
    problems = []
    if not str(target.get("rawSql", "")).strip():
        problems.append(f"{where}: target {target.get('refId')} has no rawSql")
    if target.get("format") not in (0, 1):
        problems.append(f"{where}: target format must be 0 (time series) or 1 (table)")
    if not target.get("refId"):
        problems.append(f"{where}: target without refId")
    problems += _datasource_problems(where, target.get("datasource"), datasource_uid)
    return problems


def _datasource_problems(where: str, ref: Any, datasource_uid: str | None) -> list[str]:
    if not isinstance(ref, dict) or ref.get("type") != DATASOURCE_TYPE or not ref.get("uid"):
        return [f"{where}: datasource must be {{type: {DATASOURCE_TYPE}, uid: ...}}"]
    if datasource_uid is not None and ref["uid"] != datasource_uid:
        return [f"{where}: datasource uid {ref['uid']!r} is not {datasource_uid!r}"]
    return []


def _grid_problems(where: str, grid: Any) -> list[str]:
    if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
        return [f"{where}: gridPos needs integer x, y, w, h"]
    if grid["x"] < 0 or grid["y"] < 0 or grid["w"] < 1 or grid["h"] < 1 or grid["x"] + grid["w"] > GRID_WIDTH:
        return [f"{where}: gridPos {grid} is outside the {GRID_WIDTH}-column grid"]
    return []


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    apart_x = a["x"] >= b["x"] + b["w"] or b["x"] >= a["x"] + a["w"]
    return not apart_x and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def validate_dashboard(doc: dict[str, Any], datasource_uid: str | None = None) -> list[str]:
    """Every problem found (empty when the dashboard is valid)."""
    problems = [f"missing key {key!r}" for key in REQUIRED if key not in doc]
    if problems:
        return problems
    if not isinstance(doc["schemaVersion"], int) or doc["schemaVersion"] < 36:
        problems.append("schemaVersion must be an integer >= 36 (Grafana 9+)")
    seen_ids: set[int] = set()
    grids: list[tuple[str, dict[str, int]]] = []
    for index, panel in enumerate(doc["panels"]):
        where = f"panel {index} ({panel.get('title', '?')})"
        if not isinstance(panel.get("id"), int) or panel["id"] in seen_ids:
            problems.append(f"{where}: id must be a unique integer")
        seen_ids.add(panel.get("id"))
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{where}: unknown panel type {panel.get('type')!r}")
        if not panel.get("title"):
            problems.append(f"{where}: no title")
        grid_problems = _grid_problems(where, panel.get("gridPos"))
        problems += grid_problems
        if not grid_problems:
            grids += [(where, panel["gridPos"])]
        problems += _datasource_problems(where, panel.get("datasource"), datasource_uid)
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{where}: no targets")
            continue
        for target in targets:
            problems += _target_problems(where, target, datasource_uid)
    for i, (where_a, a) in enumerate(grids):
        problems += [f"{where_a} overlaps {where_b}" for where_b, b in grids[i + 1:] if _overlaps(a, b)]
    for variable in doc["templating"].get("list", []):
        if not variable.get("name") or variable.get("type") not in {"custom", "query", "datasource", "interval"}:
            problems.append(f"variable {variable.get('name')!r}: needs a name and a known type")
    for annotation in doc["annotations"].get("list", []):
        if annotation.get("builtIn"):
            continue
        problems += _target_problems(f"annotation {annotation.get('name')!r}", annotation.get("target"), datasource_uid)
    return problems


def check_dashboard(doc: dict[str, Any], datasource_uid: str | None = None) -> None:
    """Raise :class:`InvalidDashboardError` listing every problem of ``doc``."""
    problems = validate_dashboard(doc, datasource_uid)
    if problems:
        raise InvalidDashboardError(f"dashboard {doc.get('uid')!r}: " + "; ".join(problems))
