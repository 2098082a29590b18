"""The report page: one self-contained HTML file (inline CSS, SVG and a few lines of JS; nothing fetched).

Dark by default for a dark room, light when the reader's system asks for it (``prefers-color-scheme``);
text contrast is above WCAG AA in both. The inline script makes tables sortable and, once it has checked
that every chart drew something, writes ``data-render="ok"`` on ``<html>`` (the Chromium test reads it).

    >>> from dashboards.report.data import PanelData
    >>> from dashboards.model import Panel, Query
    >>> p = PanelData(Panel("N", "stat", Query("", "table", ("n",))), ["n"], [(42,)])
    >>> "42" in render_panel(p)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

from dashboards.report import svg
from dashboards.report.data import PanelData, Section

TABLE_ROWS = 25
CELL_CHARS = 140


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def wide(data: PanelData) -> tuple[list[float], dict[str, list[float | None]]]:
    """Long rows (time, [label], values...) to one list of values per series, aligned on the times.

    >>> from dashboards.model import Panel, Query
    >>> rows = [(0, "a", 1.0), (0, "b", 2.0), (60, "a", 3.0)]
    >>> wide(PanelData(Panel("t", "timeseries", Query("", "time_series", ())), ["time", "k", "v"], rows))
    ([0.0, 60.0], {'a': [1.0, 3.0], 'b': [2.0, None]})
    """
    has_label = len(data.columns) > 2 and any(isinstance(row[1], str) for row in data.rows)
    value_columns = data.columns[2:] if has_label else data.columns[1:]
    times = sorted({_epoch(row[0]) for row in data.rows})
    position = {t: i for i, t in enumerate(times)}
    series: dict[str, list[float | None]] = {}
    for row in data.rows:
        values = row[2:] if has_label else row[1:]
        for column, value in zip(value_columns, values, strict=True):
            if has_label:
                name = str(row[1]) if len(value_columns) == 1 else f"{column} {row[1]}"
            else:
                name = column
            line = series.setdefault(name, [None] * len(times))
            number = None if value is None else float(value)
            line[position[_epoch(row[0])]] = None if number is not None and math.isnan(number) else number
    return times, series


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = svg.format_value(value)
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, list | tuple):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    short = text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 1] + "…"
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td{" class=num" if numeric else ""} title="{escape(text)}">{escape(short)}</td>'


def _table(data: PanelData) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in data.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in data.rows[:TABLE_ROWS])
    more = f'<p class="note">first {TABLE_ROWS} of {len(data.rows)} rows</p>' if len(data.rows) > TABLE_ROWS else ""
    table = f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>{more}'


def _body(data: PanelData) -> str:
    panel = data.panel
    if panel.kind == "stat":
        value = data.rows[0][0]
        if isinstance(value, int | float):
            return f'<div class="stat">{escape(svg.format_value(float(value), panel.unit))}</div>'
        return f'<div class="stat text">{escape(str(value))}</div>'
    if panel.kind == "table":
        return _table(data)
    if panel.kind == "barchart":
        labels = [str(row[0]) for row in data.rows]
        return svg.bar_chart(labels, [float(row[1]) for row in data.rows], unit=panel.unit, label=panel.title)
    if panel.kind == "heatmap":
        times = [_epoch(row[0]) for row in data.rows]
        counts = [[float(v) for v in row[1:]] for row in data.rows]
        return svg.heatmap(times, data.columns[1:], counts, label=panel.title)
    times, series = wide(data)
    chart = svg.line_chart(times, series, unit=panel.unit, stacked=bool(panel.style.get("stack")),
                           threshold=panel.style.get("threshold"), band=panel.style.get("band"), label=panel.title)
    return chart + svg.legend(list(series))


def render_panel(data: PanelData) -> str:
    """One card: title, description, and the chart, table or number (or why there is none)."""
    panel = data.panel
    if data.error:
        inner = f'<p class="error">query failed: {escape(data.error)}</p>'
    elif data.empty or (panel.kind == "stat" and data.rows[0][0] in (None, "")):
        inner = '<p class="nodata">no data in this range</p>'
    else:
        inner = _body(data)
    wide_card = " wide" if panel.kind == "table" else ""
    kind = f" {panel.kind}"
    about = f'<p class="about">{escape(panel.description)}</p>' if panel.description else ""
    return f'<section class="card{kind}{wide_card}"><h3>{escape(panel.title)}</h3>{about}{inner}</section>'


def render_page(sections: Sequence[Section], start: datetime, end: datetime, *, interval_s: int,
                environment: str = "local", generated_at: datetime | None = None) -> str:
    """The whole report as one HTML document."""
    generated = (generated_at or end).strftime("%Y-%m-%d %H:%M:%S UTC")
    nav = "".join(f'<a href="#{s.dashboard.uid}">{escape(s.dashboard.title.split("·")[-1].strip())}</a>'
                  for s in sections)
    body = []
    for section in sections:
        stats = "".join(render_panel(p) for p in section.panels if p.panel.kind == "stat")
        others = "".join(render_panel(p) for p in section.panels if p.panel.kind != "stat")
        body.append(f'<h2 id="{section.dashboard.uid}">{escape(section.dashboard.title)}</h2>'
                    f'<p class="about">{escape(section.dashboard.description)}</p>'
                    + (f'<div class="stats">{stats}</div>' if stats else "") + f'<div class="grid">{others}</div>')
    span = f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    return PAGE.format(
        title=escape(f"nlumon report {span}"), span=escape(span), environment=escape(environment),
        generated=escape(generated), interval=interval_s, nav=nav, body="".join(body), css=CSS, script=SCRIPT,
    )


CSS = """
:root{--bg:#0f1217;--card:#181c24;--text:#e6e9ef;--muted:#a9b1c1;--line:#2b3240;--grid:#262c38;
--accent:#56b4e9;--error:#ff8a80;--empty-cell:#1d222c;color-scheme:dark}
@media (prefers-color-scheme: light){:root{--bg:#f4f6fa;--card:#fff;--text:#161a22;--muted:#4a5263;
--line:#d5dae3;--grid:#e6e9ef;--accent:#0b62a4;--error:#b3261e;--empty-cell:#eef1f5;color-scheme:light}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif}
header{position:sticky;top:0;z-index:2;background:var(--bg);border-bottom:1px solid var(--line);
padding:12px 24px;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:baseline}
header h1{font-size:20px;margin:0}header .meta{color:var(--muted);font-size:13px}
nav a{color:var(--accent);margin-right:14px;text-decoration:none;font-weight:600}nav a:hover{text-decoration:underline}
main{padding:8px 24px 40px;max-width:1600px;margin:0 auto}
h2{font-size:18px;margin:28px 0 2px;padding-top:8px;border-top:1px solid var(--line)}
.about{color:var(--muted);margin:2px 0 10px;font-size:13px}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px;margin-bottom:12px;
align-items:start}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
.card.wide{grid-column:1/-1}.card h3{margin:0;font-size:15px}
.stat{font-size:30px;font-weight:700;color:var(--accent);margin-top:4px;overflow-wrap:anywhere}
.stat.text{font-size:16px}
.chart{width:100%;height:auto;display:block}
.chart .gridline{stroke:var(--grid);stroke-width:1}.chart .tick{fill:var(--muted);font-size:11px}
.chart .value{fill:var(--text);font-size:11px}
.chart .series{fill:none;stroke-width:2;stroke-linejoin:round}.chart .area{opacity:.35}
.chart .band{fill:var(--accent);opacity:.18}
.chart .threshold{stroke:var(--error);stroke-width:1.5;stroke-dasharray:6 4}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:var(--muted);margin-top:4px}
.legend i{display:inline-block;width:12px;height:4px;border-radius:2px;margin-right:5px;vertical-align:middle}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:5px 8px;
cursor:pointer;white-space:nowrap}
td{border-bottom:1px solid var(--grid);padding:5px 8px;vertical-align:top;max-width:520px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:var(--grid)}
.note,.nodata{color:var(--muted);font-size:13px}.error{color:var(--error);font-size:13px}
footer{color:var(--muted);font-size:12px;padding:0 24px 24px}
"""

SCRIPT = """
(function () {
  function sortTable(th) {
    var table = th.closest('table'), body = table.tBodies[0], index = th.cellIndex;
    var down = th.dataset.dir !== 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].title, y = b.cells[index].title, nx = parseFloat(x), ny = parseFloat(y);
      var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return down ? -cmp : cmp;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    th.dataset.dir = down ? 'desc' : 'asc';
  }
  document.querySelectorAll('table.sortable th').forEach(function (th) {
    th.addEventListener('click', function () { sortTable(th); });
  });
  var charts = document.querySelectorAll('svg.chart'), drawn = 0;
  charts.forEach(function (chart) {
    var marks = chart.querySelectorAll('path.series[d^="M"], rect.cell, rect.bar, circle');
    if (marks.length > 0) { drawn += 1; }
  });
  var root = document.documentElement;
  root.dataset.charts = String(charts.length);
  root.dataset.drawn = String(drawn);
  root.dataset.render = (charts.length > 0 && drawn === charts.length) ? 'ok' : 'incomplete';
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>{title}</title><style>{css}</style></head>
<body>
<header><h1>nlumon report</h1><span class="meta">{span} · buckets of {interval} s · environment {environment}</span>
<nav>{nav}</nav></header>
<main>{body}</main>
<footer>Generated {generated} by <code>nlumon report</code> from the same queries as the Grafana dashboards.</footer>
<script>{script}</script>
</body></html>
"""
