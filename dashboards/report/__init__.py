"""``nlumon report``: the dashboards' views as one self-contained HTML page, for a laptop without Grafana.

:func:`build_report` runs every panel query (:mod:`dashboards.report.data`) and renders the page
(:mod:`dashboards.report.html`, charts from :mod:`dashboards.report.svg`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboards.model import Dashboard, Panel
from dashboards.report.data import Executor, PanelData, choose_interval, collect
from dashboards.report.html import render_page


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    panels: int
    with_data: int
    failed: list[str]
    interval_s: int
    start: datetime
    end: datetime


def build_report(
    execute: Executor,
    out: Path,
    *,
    since: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    environment: str = "local",
    on_panel: Callable[[Dashboard, Panel, PanelData], None] | None = None,
) -> ReportSummary:
    """Write the report for [start, end] (default: the last ``since`` up to now) to ``out``."""
    end = end or datetime.now(UTC)
    if start is None:
        if since is None:
            raise ValueError("give since or start")
        start = end - since
    interval = choose_interval((end - start).total_seconds())
    sections = collect(execute, start, end, interval_s=interval, on_panel=on_panel)
    page = render_page(sections, start, end, interval_s=interval, environment=environment)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    panels = [p for s in sections for p in s.panels]
    return ReportSummary(out, len(panels), sum(1 for p in panels if p.rows and not p.error),
                         [f"{p.panel.title}: {p.error}" for p in panels if p.error], interval, start, end)


__all__ = ["ReportSummary", "build_report"]
