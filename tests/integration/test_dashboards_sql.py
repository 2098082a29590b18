"""Every dashboard query, expanded as Grafana's ClickHouse plugin expands it, runs on the real ClickHouse.

The data come from a short replay through the worker's own pipeline (``fill_clickhouse``) in a time
range of our own (an hour in 2021 picked from a uuid, so engineers sharing the test server never see
each other's rows); the monitor's tables are filled from those predictions by
``dashboards.testing.write_monitor_rows`` (no monitor job existed when this was written).
"""

from __future__ import annotations

import uuid
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
    """Dead letters are stamped with the time they failed (the wall clock of the fill), not the event time."""
    return "dead_letters" in panel.query.sql


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
    assert all(count > 0 for count in monitor.values()), monitor


@pytest.mark.parametrize(("board", "panel"), PANELS, ids=[f"{b.uid}:{p.title}" for b, p in PANELS])
def test_panel_query_returns_its_columns_and_rows(client, filled, board, panel):
    time_range = filled[4] if _reads_dead_letters(panel) else filled[3]
    rows, columns = _run(client, panel.query.sql, time_range, all_selected(board))
    assert columns == panel.query.columns
    assert rows, f"{panel.title}: no rows in the filled range"
    if panel.kind == "stat":  # an aggregate without GROUP BY always has one row: check it is a value
        assert rows[0][0] is not None and rows[0][0] != "", f"{panel.title}: {rows[0][0]!r}"


@pytest.mark.parametrize(("board", "panel"), PANELS, ids=[f"{b.uid}:{p.title}" for b, p in PANELS])
def test_panel_query_runs_with_one_assistant_and_version_selected(client, filled, board, panel):
    variables = {"assistant": ["shopper"], "model_version": [filled[1].model_version]}
    variables = {name: value for name, value in variables.items() if name in all_selected(board)}
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
