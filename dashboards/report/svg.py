"""Small inline-SVG charts for the local report: lines (stacked, banded, with a threshold), heatmaps, bars.

No plotting library and nothing fetched: each function returns one ``<svg>`` string sized by its
``viewBox`` so it scales with the page. Colours come from CSS variables of the page theme.

    >>> svg = line_chart([0, 60, 120], {"a": [1.0, 2.0, None]}, unit="")
    >>> svg.startswith("<svg") and svg.count('class="series"') == 1
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

# Okabe-Ito colours, brightened to read on a dark background (colour-blind safe).
PALETTE = ("#56b4e9", "#e69f00", "#2ec4a0", "#f0e442", "#cc79a7", "#ff7f50", "#8fa8ff", "#c8c8c8", "#a0d468",
           "#ff9ecf")
# Viridis at 9 stops: perceptually uniform and readable by colour-blind people.
VIRIDIS = ((68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129),
           (92, 200, 99), (170, 220, 50), (253, 231, 37))
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 12, 30


def format_value(value: float | None, unit: str = "") -> str:
    """A short human label for a number in ``unit`` (Grafana unit ids: percentunit, ms, s, reqps).

    >>> format_value(0.1234, "percentunit"), format_value(1520, "ms"), format_value(0.5, "reqps")
    ('12.3%', '1.52 s', '0.5/s')
    >>> format_value(7200, "s")
    '2 h'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "ms" and abs(value) >= 1000:
        return format_value(value / 1000, "s")
    if unit == "s" and abs(value) >= 60:
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{format_value(value / size)} {name}"
    suffix = {"ms": " ms", "s": " s", "reqps": "/s"}.get(unit, "")
    magnitude = abs(value)
    if magnitude >= 1e6:
        text = f"{value / 1e6:.3g}M"
    elif magnitude >= 1e4:
        text = f"{value / 1e3:.3g}k"
    elif magnitude == int(magnitude):
        text = f"{int(value)}"
    else:
        text = f"{value:.3g}"
    return text + suffix


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values that cover [low, high].

    >>> nice_ticks(0, 0.93)
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _time_label(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%H:%M")


def _frame(x0: float, x1: float, ticks: Sequence[float], unit: str, y_of) -> list[str]:
    """Grid lines, y labels and x (time) labels."""
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line class="gridline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(format_value(tick, unit))}</text>')
    span = max(x1 - x0, 1)
    for i in range(5):
        epoch = x0 + span * i / 4
        x = LEFT + (WIDTH - LEFT - RIGHT) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="{anchor}">'
                     f'{_time_label(epoch)}</text>')
    return parts


def _svg(body: Sequence[str], label: str, height: int = HEIGHT) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')


def _stack(series: Mapping[str, Sequence[float | None]]) -> dict[str, list[float]]:
    running: list[float] | None = None
    stacked = {}
    for name, values in series.items():
        filled = [v or 0.0 for v in values]
        running = filled if running is None else [a + b for a, b in zip(running, filled, strict=True)]
        stacked[name] = list(running)
    return stacked


def line_chart(
    times: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
    stacked: bool = False,
    threshold: float | None = None,
    band: tuple[str, str] | None = None,
    label: str = "chart",
) -> str:
    """Lines over epoch-second ``times``; ``series`` maps a name to one value (or None) per time."""
    drawn = _stack(series) if stacked else {k: list(v) for k, v in series.items()}
    values = [v for vs in drawn.values() for v in vs if v is not None]
    if threshold is not None:
        values.append(threshold)
    low = min(0.0, min(values, default=0.0))
    ticks = nice_ticks(low, max(values, default=1.0))
    x0, x1 = (min(times), max(times)) if times else (0.0, 1.0)

    def x_of(t: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * ((t - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def y_of(v: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v - ticks[0]) / (ticks[-1] - ticks[0]))

    body = _frame(x0, x1, ticks, unit, y_of)
    if band is not None and band[0] in drawn and band[1] in drawn:
        pairs = [(t, lo, hi) for t, lo, hi in zip(times, drawn[band[0]], drawn[band[1]], strict=True)
                 if lo is not None and hi is not None]
        outline = [f"{x_of(t):.1f},{y_of(hi):.1f}" for t, _, hi in pairs]
        outline += [f"{x_of(t):.1f},{y_of(lo):.1f}" for t, lo, _ in reversed(pairs)]
        body.append(f'<polygon class="band" points="{" ".join(outline)}"/>')
    previous: list[float] | None = None
    for index, (name, ys) in enumerate(drawn.items()):
        color = PALETTE[index % len(PALETTE)]
        points = [(x_of(t), y_of(v)) for t, v in zip(times, ys, strict=True) if v is not None]
        if stacked and points:
            base = previous or [0.0] * len(ys)
            lower = [f"{x_of(t):.1f},{y_of(b):.1f}" for t, b in zip(reversed(times), reversed(base), strict=True)]
            area = " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + " " + " ".join(lower)
            body.append(f'<polygon class="area" fill="{color}" points="{area}"/>')
            previous = [v or 0.0 for v in ys]
        # A bucket without a row is a gap, not a straight line to the next value (stacked series are filled).
        path, pen_down = [], False
        for t, v in zip(times, ys, strict=True):
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x_of(t):.1f},{y_of(v):.1f}")
            pen_down = True
        tip = escape(f"{name}: last {format_value(next((v for v in reversed(ys) if v is not None), None), unit)}")
        body.append(f'<path class="series" stroke="{color}" d="{" ".join(path)}"><title>{tip}</title></path>')
        if len(points) < max(2, len(times) // 3):  # sparse series: mark each value, lines alone would hide them
            body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points]
    if threshold is not None:
        y = y_of(threshold)
        body.append(f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}">'
                    f'<title>threshold {format_value(threshold, unit)}</title></line>')
    return _svg(body, label)


def _viridis(fraction: float) -> str:
    position = min(max(fraction, 0.0), 1.0) * (len(VIRIDIS) - 1)
    low = int(position)
    high = min(low + 1, len(VIRIDIS) - 1)
    mix = position - low
    r, g, b = (round(a + (c - a) * mix) for a, c in zip(VIRIDIS[low], VIRIDIS[high], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(times: Sequence[float], buckets: Sequence[str], counts: Sequence[Sequence[float]], *,
            label: str = "heatmap") -> str:
    """Cells per (time, bucket); ``counts[i][j]`` is the count at ``times[i]`` in ``buckets[j]`` (low to high)."""
    peak = max((c for row in counts for c in row), default=0) or 1
    x0, x1 = (min(times), max(times)) if times else (0.0, 1.0)
    columns, rows = max(len(times), 1), max(len(buckets), 1)
    cell_w = (WIDTH - LEFT - RIGHT) / columns
    cell_h = (HEIGHT - TOP - BOTTOM) / rows
    body = []
    for j, name in enumerate(buckets):
        y = HEIGHT - BOTTOM - (j + 1) * cell_h
        # Buckets are named by upper bound; the open last one (+Inf) reads better as ">= the previous bound".
        shown = f"≥{buckets[j - 1]}" if name == "+Inf" and j else f"<{name}"
        if j % max(1, rows // 6) == 0 or j == rows - 1:
            body.append(f'<text class="tick" x="{LEFT - 6}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">'
                        f'{escape(shown)}</text>')
        for i, row in enumerate(counts):
            count = row[j]
            fill = _viridis(count / peak) if count else "var(--empty-cell)"
            body.append(f'<rect class="cell" x="{LEFT + i * cell_w:.1f}" y="{y:.1f}" width="{max(cell_w - 1, 1):.1f}" '
                        f'height="{max(cell_h - 1, 1):.1f}" fill="{fill}"><title>{_time_label(times[i])} '
                        f'{escape(shown)}: {format_value(count)}</title></rect>')
    body += _frame(x0, x1, [], "", lambda v: 0)
    return _svg(body, label)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, unit: str = "", label: str = "bars") -> str:
    """Horizontal bars, largest first as given."""
    row = 26
    height = TOP + row * max(len(labels), 1) + 8
    peak = max(values, default=0) or 1
    text_w = 190
    body = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * row
        width = (WIDTH - text_w - 80) * value / peak
        color = PALETTE[i % len(PALETTE)]
        body.append(f'<text class="tick" x="{text_w - 8}" y="{y + 16}" text-anchor="end">{escape(name[:28])}</text>')
        body.append(f'<rect class="bar" x="{text_w}" y="{y + 3}" width="{max(width, 1):.1f}" height="{row - 8}" '
                    f'fill="{color}"><title>{escape(name)}: {format_value(value, unit)}</title></rect>')
        body.append(f'<text class="value" x="{text_w + width + 6:.1f}" y="{y + 16}">'
                    f'{escape(format_value(value, unit))}</text>')
    return _svg(body, label, height)


def legend(names: Sequence[str]) -> str:
    """An HTML legend with the series colours in chart order."""
    items = "".join(f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(str(n))}</span>'
                    for i, n in enumerate(names))
    return f'<div class="legend">{items}</div>'
