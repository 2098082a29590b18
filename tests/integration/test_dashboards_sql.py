"""Every dashboard query, expanded as Grafana's ClickHouse plugin expands it, runs on the real ClickHouse.

The data come from a short replay through the worker's own pipeline (``fill_clickhouse``) in a time
range of our own (an hour in 2021 picked from a uuid, so engineers sharing the test server never see
each other's rows); the monitor's tables, and the routes, outcomes, shadow rows, conversion windows and a
stopped experiment of issue 16, are filled from those predictions by ``dashboards.testing.write_monitor_rows``.
Every panel must return rows with a value in them; the outcome, route, experiment and guardrail panels are also
checked against the rows that were written.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from dashboards.boards import all_dashboards
from dashboards.macros import expand_macros
from dashboards.report import build_report
from dashboards.report.data import all_selected, clickhouse_executor
from dashboards.testing import write_monitor_rows
from nlumon.schema import connect
from tests.helpers import fill_clickhouse

pytestmark = pytest.mark.integration

INTERVAL_S = 60
PANELS = [(board, panel) for board in all_dashboards() for panel in board.panels]


def _reads_dead_letters(panel) -> bool:
    """Dead letters are stamped with the time they failed (the wall clock of the fill), not the event time: the
    panels that count them (and no predictions) read the fill's wall-clock range."""
    return "dead_letters" in panel.query.sql and "predictions" not in panel.query.sql


def _has_a_value(rows, numbers_only: bool) -> bool:
    """Some cell is a finite number, or (``numbers_only`` false) a non-empty string: not only NaN, NULL or ''. A time
    series (numbers_only) needs a number: its time and label columns alone draw nothing."""
    for row in rows:
        for value in row:
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return True
            if isinstance(value, str) and value and not numbers_only:
                return True
    return False


def _unique_start() -> datetime:
    """A start time in 2021 no other test run uses (hour-aligned, from a random uuid)."""
    hours = uuid.uuid4().int % (360 * 24)
    return datetime(2021, 1, 1, tzinfo=UTC) + timedelta(hours=hours)


@pytest.fixture(scope="module")
def filled(services):
    start = _unique_start()
    wall_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    result = fill_clickhouse(services, "demo", 600, seed=11, spacing_ms=1000, start=start, malformed_share=0.05)
    factory = lambda: connect(services.clickhouse)  # noqa: E731 - the sink wants a factory
    client = factory()
    client.execute("INSERT INTO model_versions (model_version, loaded_at, worker, package_sha256, backend) VALUES",
                   [(result.model_version, start.replace(tzinfo=None), "test-worker", "sha", "onnx-cpu")])
    client.disconnect()
    monitor = write_monitor_rows(factory, result.first_ts, result.last_ts + timedelta(seconds=1), INTERVAL_S)
    time_range = (result.first_ts - timedelta(minutes=1), result.last_ts + timedelta(minutes=2))
    wall_range = (wall_start, datetime.now(UTC) + timedelta(seconds=2))
    return services, result, monitor, time_range, wall_range


@pytest.fixture(scope="module")
def client(filled):
    settings = filled[0]
    connection = connect(settings.clickhouse)
    yield connection
    connection.disconnect()


def _run(client, sql, time_range, variables):
    expanded = expand_macros(sql, time_range[0], time_range[1], INTERVAL_S, variables)
    rows, types = client.execute(expanded, with_column_types=True)
    return rows, tuple(name for name, _ in types)


def test_the_fill_wrote_every_table_the_dashboards_read(filled):
    _, result, monitor, _, _ = filled
    assert result.rows.get("predictions", 0) > 400 and result.rows.get("dead_letters", 0) > 0
    assert all(rows for rows in monitor.values()), {table: len(rows) for table, rows in monitor.items()}


@pytest.mark.parametrize(("board", "panel"), PANELS, ids=[f"{b.uid}:{p.title}" for b, p in PANELS])
def test_panel_query_returns_its_columns_and_rows(client, filled, board, panel):
    time_range = filled[4] if _reads_dead_letters(panel) else filled[3]
    rows, columns = _run(client, panel.query.sql, time_range, all_selected(board))
    assert columns == panel.query.columns
    assert rows, f"{panel.title}: no rows in the filled range"
    numbers_only = panel.query.format == "time_series"
    assert _has_a_value(rows, numbers_only), f"{panel.title}: only empty values: {rows[:3]}"


@pytest.mark.parametrize(("board", "panel"), PANELS, ids=[f"{b.uid}:{p.title}" for b, p in PANELS])
def test_panel_query_runs_with_one_assistant_and_version_selected(client, filled, board, panel):
    chosen = {"assistant": ["shopper"], "model_version": [filled[1].model_version]}
    variables = {name: chosen.get(name, value) for name, value in all_selected(board).items()}
    rows, columns = _run(client, panel.query.sql, filled[3], variables)
    assert columns == panel.query.columns
    assert rows or _reads_dead_letters(panel), f"{panel.title}: no rows for the shopper assistant"


def test_stat_counts_match_what_the_replay_wrote(client, filled):
    live = all_dashboards()[0]
    stats = {p.title: p for p in live.panels}
    variables = all_selected(live)
    (utterances,), _ = _run(client, stats["Utterances"].query.sql, filled[3], variables)
    (dead,), _ = _run(client, stats["Dead letters"].query.sql, filled[4], variables)
    assert utterances[0] == filled[1].rows["utterance_log"]
    # At least ours: other sessions may write dead letters in the same seconds (the table is keyed by offset).
    assert dead[0] >= 1


def test_heatmap_buckets_hold_every_prediction_once(client, filled):
    confidence = all_dashboards()[1]
    heatmap = next(p for p in confidence.panels if p.title == "Confidence distribution")
    rows, _ = _run(client, heatmap.query.sql, filled[3], all_selected(confidence))
    assert sum(sum(row[1:]) for row in rows) == filled[1].rows["predictions"]


def test_assistant_filter_splits_the_traffic(client, filled):
    live = all_dashboards()[0]
    stat = next(p for p in live.panels if p.title == "Utterances")
    counts = [_run(client, stat.query.sql, filled[3], {"assistant": [name], "model_version": "__all"})[0][0][0]
              for name in ("shopper", "associate")]
    assert all(count > 0 for count in counts) and sum(counts) == filled[1].rows["utterance_log"]


def test_model_version_variable_and_annotations_run(client, filled):
    live, alerts = all_dashboards()[0], all_dashboards()[3]
    versions, _ = _run(client, live.variables[1].query, filled[3], {})
    assert (filled[1].model_version,) in versions
    events, columns = _run(client, alerts.annotations[0].query.sql, filled[3], {})
    assert columns == ("time", "timeEnd", "text", "tags") and events


def test_report_over_the_filled_range_has_every_panel_with_data(filled, tmp_path):
    settings = filled[0]
    connection = connect(settings.clickhouse)
    try:
        summary = build_report(clickhouse_executor(connection), tmp_path / "report.html",
                               start=filled[3][0], end=filled[3][1])
    finally:
        connection.disconnect()
    page = (tmp_path / "report.html").read_text()
    dead_letter_panels = sum(1 for _, panel in PANELS if _reads_dead_letters(panel))
    assert summary.failed == [] and summary.panels == len(PANELS)
    # Every panel has data except the dead-letter ones (stamped with the fill's wall clock, outside 2021).
    assert summary.with_data >= len(PANELS) - dead_letter_panels
    assert "query failed" not in page and 'data-render' not in page.split("<script>")[0]
    assert all(panel.title in page for _, panel in PANELS)


# -- issue 16: routes, outcomes, shadow, conversion, experiment ------------------------------------------------------
def _panel(uid: str, title: str):
    board = next(b for b in all_dashboards() if b.uid == uid)
    return board, next(p for p in board.panels if p.title == title)


def _rows_of(client, filled, uid, title, **chosen):
    board, panel = _panel(uid, title)
    rows, columns = _run(client, panel.query.sql, filled[3], {**all_selected(board), **chosen})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_route_mix_shares_add_up_to_one_per_window(client, filled):
    for chosen in ({}, {"assistant": ["associate"]}):
        windows = _rows_of(client, filled, "nlumon-routes-outcomes", "Route mix", **chosen)
        assert windows and all(abs(sum(w[r] for r in ("fulfil", "clarify", "confirm", "escalate")) - 1) < 1e-6
                               for w in windows)
    written = Counter(row["route"] for row in filled[2]["predictions"])
    heads = {row["head"] for row in _rows_of(client, filled, "nlumon-routes-outcomes", "Route heads that fired")}
    assert heads == {head for row in filled[2]["predictions"] for head in row["route_heads"]}
    assert sum(written.values()) == filled[1].rows["predictions"]


def test_outcome_rates_join_each_utterance_to_its_outcome(client, filled):
    outcomes = filled[2]["outcomes"]
    kinds = {(o["utterance_id"], o["kind"]) for o in outcomes}
    utterances = {o["utterance_id"] for o in outcomes if o["kind"] != "converted"}
    expected = {"completion_rate": "task_completed", "conversion_rate": "converted", "escalation_rate": "escalated"}
    stats = {"completion_rate": "Task completion", "conversion_rate": "Conversion", "escalation_rate": "Escalation"}
    for name, kind in expected.items():
        (row,) = _rows_of(client, filled, "nlumon-routes-outcomes", stats[name])
        share = sum((u, kind) in kinds for u in utterances) / len(utterances)
        assert row[name] == pytest.approx(share), name
    by_route = {r["route"]: r for r in _rows_of(client, filled, "nlumon-routes-outcomes", "Outcomes by route")}
    assert sum(r["utterances"] for r in by_route.values()) == filled[1].rows["predictions"]
    assert all(r["with_outcome"] == pytest.approx(1.0) for r in by_route.values())
    ratings = [o["satisfaction"] for o in outcomes if o["satisfaction"] is not None]
    (mean,) = _rows_of(client, filled, "nlumon-routes-outcomes", "Mean satisfaction")
    assert mean["mean_satisfaction"] == pytest.approx(sum(ratings) / len(ratings))


def test_below_baseline_lists_only_subjects_under_their_baseline(client, filled):
    below = _rows_of(client, filled, "nlumon-routes-outcomes", "Below baseline")
    assert below and all(row["conversion_rate"] < row["baseline"] and row["missed_conversions"] >= 0 for row in below)
    top = _rows_of(client, filled, "nlumon-routes-outcomes", "Conversion of the top intents")
    whole = [w for w in filled[2]["conversion_windows"] if w["assistant"] == "all" and w["subject_kind"] == "intent"]
    assert sum(row["utterances"] for row in top) <= sum(w["traffic"] for w in whole) == filled[1].rows["predictions"]


def test_experiment_panels_show_the_latest_definition_and_look(client, filled):
    written = filled[2]
    name = written["experiments"][-1]["name"]
    arms = _rows_of(client, filled, "nlumon-shadow-experiments", "Experiments and arms")
    assert sorted((a["experiment"], a["status"], a["arm"], a["share"]) for a in arms) == [
        (name, "stopped", "challenger", 0.5), (name, "stopped", "control", 0.5)]  # the later row wins
    assert {a["primary_metric"] for a in arms} == {"task_completed"}
    last_look = max(r["ts"] for r in written["experiment_results"])
    expected = {(r["arm"], r["metric"]): r for r in written["experiment_results"] if r["ts"] == last_look}
    shown = _rows_of(client, filled, "nlumon-shadow-experiments", "Per-arm results at the latest look")
    assert {(r["arm"], r["metric"]) for r in shown} == set(expected)
    for row in shown:
        look = expected[(row["arm"], row["metric"])]
        assert row["estimate"] == pytest.approx(look["value"]) and row["arm_sessions"] == look["sessions"]
        assert row["lower"] <= row["estimate"] <= row["upper"]
    p_values = _rows_of(client, filled, "nlumon-shadow-experiments", "Always-valid p-value")
    assert p_values and not any("control" in r["comparison"] for r in p_values)


def test_guardrails_count_each_arms_sessions_and_dead_letters(client, filled):
    written = filled[2]
    sessions = {arm: len({p["session_id"] for p in written["predictions"] if p["arm"] == arm})
                for arm in ("control", "challenger")}
    letters = Counter(letter["arm"] for letter in written["dead_letters"])
    shown = {r["arm"]: r for r in _rows_of(client, filled, "nlumon-shadow-experiments", "Guardrails per arm")}
    assert {arm: row["sessions"] for arm, row in shown.items()} == sessions
    assert {arm: row["dead_letters"] for arm, row in shown.items() if row["dead_letters"]} == dict(letters)


def test_shadow_disagreement_is_the_share_of_changed_answers(client, filled):
    shadows = filled[2]["shadow_predictions"]
    (stat,) = _rows_of(client, filled, "nlumon-shadow-experiments", "Intent disagreement")
    assert stat["intent_rate"] == pytest.approx(1 - sum(s["intent_agrees"] for s in shadows) / len(shadows))
    latest = _rows_of(client, filled, "nlumon-shadow-experiments", "Latest disagreements")
    assert latest and all(row["text_scrubbed"] for row in latest)  # joined to the champion's prediction
