"""Run every dashboard panel's SQL for one time range: the data of the local report.

The report does not have SQL of its own: it expands each panel's query the way Grafana would
(:func:`dashboards.macros.expand_macros`, "All" selected for every variable) and runs it, so the
report and the dashboards always show the same numbers.

    >>> choose_interval(3600)
    60
    >>> choose_interval(24 * 3600)
    1800
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dashboards.boards import all_dashboards
from dashboards.macros import expand_macros
from dashboards.model import Dashboard, Panel
from dashboards.sql import ALL

log = logging.getLogger(__name__)

# Bucket sizes a reader can reason about; the report picks the smallest that gives <= MAX_BUCKETS.
INTERVALS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MAX_BUCKETS = 80

# (rows, column names) for one SQL statement.
Executor = Callable[[str], tuple[list[tuple], list[str]]]


@dataclass
class PanelData:
    panel: Panel
    columns: list[str]
    rows: list[tuple]
    error: str | None = None
    sql: str = ""

    @property
    def empty(self) -> bool:
        return not self.rows


@dataclass
class Section:
    dashboard: Dashboard
    panels: list[PanelData] = field(default_factory=list)


def choose_interval(span_s: float) -> int:
    """The smallest bucket in :data:`INTERVALS_S` that splits ``span_s`` into at most MAX_BUCKETS."""
    return next((step for step in INTERVALS_S if span_s / step <= MAX_BUCKETS), INTERVALS_S[-1])


def all_selected(board: Dashboard) -> dict[str, str]:
    """Every variable of ``board`` at "All" (Grafana sends the custom all value)."""
    return {variable.name: ALL for variable in board.variables}


def clickhouse_executor(client: Any) -> Executor:
    """An :data:`Executor` over a ``clickhouse_driver.Client``."""

    def execute(sql: str) -> tuple[list[tuple], list[str]]:
        rows, types = client.execute(sql, with_column_types=True)
        return rows, [name for name, _ in types]

    return execute


def collect(
    execute: Executor,
    start: datetime,
    end: datetime,
    *,
    interval_s: int | None = None,
    boards: Sequence[Dashboard] | None = None,
    on_panel: Callable[[Dashboard, Panel, PanelData], None] | None = None,
) -> list[Section]:
    """Each dashboard's panels with their rows; a failing query is kept with its error, not raised."""
    interval = interval_s or choose_interval((end - start).total_seconds())
    sections = []
    for board in boards if boards is not None else all_dashboards():
        section = Section(board)
        variables = all_selected(board)
        for panel in board.panels:
            sql = expand_macros(panel.query.sql, start, end, interval, variables)
            try:
                rows, columns = execute(sql)
                data = PanelData(panel, columns, rows, sql=sql)
            except Exception as error:
                log.warning("panel %r of %s failed: %s", panel.title, board.uid, error)
                data = PanelData(panel, list(panel.query.columns), [], error=str(error).splitlines()[0], sql=sql)
            section.panels.append(data)
            if on_panel is not None:
                on_panel(board, panel, data)
        sections.append(section)
    return sections
