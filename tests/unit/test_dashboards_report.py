"""The report's rendering: charts from panel rows, a self-contained page, the data derived for the monitor tables."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from dashboards.boards import all_dashboards
from dashboards.model import Panel, Query
from dashboards.report.data import PanelData, Section, choose_interval
from dashboards.report.html import render_page, render_panel, wide
from dashboards.report.svg import heatmap, line_chart
from dashboards.testing import monitor_rows, outcome_rows, table_columns

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _series_panel(style=None) -> Panel:
    return Panel("Latency", "timeseries", Query("", "time_series", ("time", "assistant", "p95")), unit="ms",
                 style=style or {})


def test_long_rows_become_one_series_per_label_with_gaps():
    rows = [(T0, "shopper", 10.0), (T0, "associate", 20.0), (T0 + timedelta(minutes=1), "shopper", 12.0)]
    times, series = wide(PanelData(_series_panel(), ["time", "assistant", "p95"], rows))
    assert times == [T0.timestamp(), T0.timestamp() + 60]
    assert series == {"shopper": [10.0, 12.0], "associate": [20.0, None]}


def test_line_chart_breaks_at_missing_buckets_and_draws_threshold_and_band():
    svg = line_chart([0, 60, 120, 180], {"a": [1.0, None, 2.0, 3.0], "lo": [0.5] * 4, "hi": [1.5] * 4},
                     threshold=2.5, band=("lo", "hi"))
    path = re.search(r'<path class="series" stroke="[^"]+" d="([^"]+)"', svg).group(1)
    assert path.count("M") == 2 and path.count("L") == 1  # gap at 60 s: two segments
    assert 'class="threshold"' in svg and 'class="band"' in svg


def test_heatmap_colours_cells_by_count_and_leaves_empty_cells_dark():
    svg = heatmap([0, 60], ["0.5", "+Inf"], [[3, 0], [0, 6]])
    fills = re.findall(r'<rect class="cell"[^>]* fill="([^"]+)"', svg)
    assert fills.count("var(--empty-cell)") == 2
    assert fills[3] == "#fde725"  # the largest count gets the top of the Viridis scale
    assert "≥0.5" in svg


def test_page_is_self_contained_and_shows_errors_and_empty_panels():
    table = Panel("Alerts", "table", Query("", "table", ("rule", "value")))
    panels = [PanelData(_series_panel({"threshold": 15.0}), ["time", "assistant", "p95"],
                        [(T0, "shopper", 10.0), (T0 + timedelta(minutes=1), "shopper", 20.0)]),
              PanelData(table, ["rule", "value"], [("<drift>", 0.5)]),
              PanelData(table, ["rule", "value"], [], error="Code: 60. Table nlumon.x doesn't exist"),
              PanelData(table, ["rule", "value"], [])]
    page = render_page([Section(all_dashboards()[0], panels)], T0, T0 + timedelta(hours=1), interval_s=60)
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing may be fetched"
    assert "<script>" in page and "prefers-color-scheme" in page
    assert "&lt;drift&gt;" in page and "<drift>" not in page  # table text is escaped
    assert "query failed: Code: 60." in page and "no data in this range" in page


def test_stat_shows_units_and_strings():
    stat = Panel("p95", "stat", Query("", "table", ("v",)), unit="ms")
    assert ">1.5 s<" in render_panel(PanelData(stat, ["v"], [(1500.0,)]))
    assert ">retail-1<" in render_panel(PanelData(stat, ["v"], [("retail-1",)]))


def test_interval_keeps_the_number_of_buckets_readable():
    for span in (600, 3600, 6 * 3600, 7 * 86400):
        assert span / choose_interval(span) <= 80


def _prediction(i: int, ts: datetime, ood: bool) -> dict:
    return {"id": f"u{i}", "ts": ts, "session_id": f"s{i // 5}", "assistant": "shopper" if i % 3 else "associate",
            "model_version": "m1", "text_scrubbed": f"text {i}", "text_hash": f"h{i}",
            "intent": "oos" if ood else "find_product", "confidence": 0.3 if ood else 0.9,
            "margin": 0.05 if ood else 0.6, "entropy": 2.0 if ood else 0.4, "energy": -1.0, "token_count": 5,
            "unk_rate": 0.0, "is_ood": int(ood), "slot_types": ["brand"],
            "slot_values": [f"new brand {i % 4}" if ood else "nike"],
            "embedding_sketch": [1.0, 0.0] if ood else [0.0, 1.0]}


def test_monitor_rows_follow_the_schema_and_see_a_shift():
    rows = [_prediction(i, T0 + timedelta(seconds=i), ood=i >= 120) for i in range(240)]
    tables = monitor_rows(rows, 60)
    for table, produced in tables.items():
        assert produced and set(produced[0]) == set(table_columns(table)), table
    windows = [w for w in tables["monitor_windows"] if w["assistant"] == "all"]
    assert [w["drifted"] for w in windows] == [0, 0, 1, 1]  # the last two windows are all OOD
    assert windows[-1]["ood_rate"] == 1.0 and windows[0]["accuracy_estimate"] > windows[-1]["accuracy_estimate"]
    assert {"ood", "low_confidence", "small_margin"} <= {r for q in tables["labeling_queue"] for r in q["reasons"]}
    values = [w for w in tables["slot_value_windows"] if w["assistant"] == "all"]
    assert [w["unseen_rate"] for w in values] == [0.0, 0.0, 1.0, 1.0]  # brands the first window never had
    assert values[-1]["new_values"] == ["new brand 0", "new brand 1", "new brand 2", "new brand 3"]


def test_outcome_rows_follow_the_schema_and_hang_together():
    rows = [_prediction(i, T0 + timedelta(seconds=i), ood=i >= 120 and i % 3 == 0) for i in range(240)]
    rows = [{**row, "confidence": row["confidence"] - (i % 7) / 100} for i, row in enumerate(rows)]  # a spread
    tables = outcome_rows(rows, 60)
    for table, produced in tables.items():
        assert produced, table
        if table != "predictions":  # the input stamped: these test rows lack most prediction columns
            assert set(produced[0]) == set(table_columns(table)), table
    stamped = tables["predictions"]
    assert {row["route"] for row in stamped} <= {"fulfil", "clarify", "confirm", "escalate"}
    assert all(row["route"] == "clarify" for row in stamped if row["is_ood"])
    arms = {}
    for row in stamped:  # sticky: one arm per session, and both arms used
        assert arms.setdefault(row["session_id"], row["arm"]) == row["arm"]
    assert set(arms.values()) == {"control", "challenger"}

    outcomes = tables["outcomes"]
    finals = [o for o in outcomes if o["kind"] != "converted"]
    assert sorted(o["utterance_id"] for o in finals) == sorted(row["id"] for row in rows)  # one each
    completed = {o["utterance_id"] for o in finals if o["kind"] == "task_completed"}
    shoppers = {row["id"] for row in rows if row["assistant"] == "shopper"}
    assert {o["utterance_id"] for o in outcomes if o["kind"] == "converted"} <= completed & shoppers
    assert len({o["id"] for o in outcomes}) == len(outcomes)
    assert all(1 <= o["satisfaction"] <= 5 for o in outcomes if o["satisfaction"] is not None)

    for table in ("route_windows",):
        shares = defaultdict(float)
        for row in tables[table]:
            shares[(row["window_start"], row["assistant"])] += row["share"]
        assert all(abs(total - 1) < 1e-9 for total in shares.values())
    whole = [w for w in tables["shadow_windows"] if w["assistant"] == "all" and w["intent"] == ""]
    agrees = [s["intent_agrees"] for s in tables["shadow_predictions"]]
    assert sum(w["rows"] for w in whole) == len(rows)
    assert sum(w["intent_disagreement"] * w["rows"] for w in whole) == pytest.approx(agrees.count(0))
    assert 0 < agrees.count(0) < len(rows) / 2  # some of the least confident answers change

    # A right answer never converts less than a wrong one: over the fill, no subject beats its baseline.
    totals = defaultdict(lambda: [0, 0, 0.0])
    for window in tables["conversion_windows"]:
        total = totals[(window["assistant"], window["subject_kind"], window["subject"])]
        total[0] += window["converted"]
        total[1] += window["traffic"]
        total[2] = window["baseline_rate"]
    assert all(converted / traffic <= baseline + 1e-9 for converted, traffic, baseline in totals.values())

    latest = max(tables["experiments"], key=lambda row: row["row_version"])
    assert latest["status"] == "stopped" and latest["arms"] == ["control", "challenger"]
    looks = sorted({row["ts"] for row in tables["experiment_results"]})
    assert len(looks) == 4
    for arm_metric in {(r["arm"], r["metric"]) for r in tables["experiment_results"]}:
        p_values = [r["p_value"] for r in sorted(tables["experiment_results"], key=lambda r: r["ts"])
                    if (r["arm"], r["metric"]) == arm_metric]
        assert p_values == sorted(p_values, reverse=True)  # always valid: a later look never undoes evidence
    last = [r for r in tables["experiment_results"] if r["ts"] == looks[-1]]
    assert {r["sessions"] for r in last if r["arm"] == "control"} == {list(arms.values()).count("control")}
    assert all(r["low"] <= r["value"] <= r["high"] and 0 <= r["srm_p_value"] <= 1 for r in last)
    assert {letter["arm"] for letter in tables["dead_letters"]} <= {"control", "challenger"}
