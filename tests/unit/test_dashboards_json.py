"""Dashboard JSON: valid for Grafana, stable, committed, and free of SQL that ClickHouse 18.16 lacks."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from dashboards.boards import all_dashboards
from dashboards.macros import MacroError, expand_macros
from dashboards.model import dashboard_json
from dashboards.provisioning import DEFAULT_OUT, dashboard_documents, datasource_config, render
from dashboards.validate import InvalidDashboardError, check_dashboard, validate_dashboard
from nlumon.settings import PROJECT_ROOT

BOARDS = all_dashboards()
DOCS = dashboard_documents()
NOT_ON_18_16 = ("toStartOfInterval", "WITH FILL", " OVER ", "OVER(", "DateTime64", "Map(", "$__timeInterval")


def test_every_dashboard_is_valid_with_unique_stable_uids():
    assert len({board.uid for board in BOARDS}) == len(BOARDS) == 6
    for doc in DOCS.values():
        assert validate_dashboard(doc, "nlumon-clickhouse") == []


def test_the_validator_finds_broken_dashboards():
    doc = copy.deepcopy(next(iter(DOCS.values())))
    doc["panels"][1]["id"] = doc["panels"][0]["id"]
    doc["panels"][2]["gridPos"] = {"x": 20, "y": 0, "w": 8, "h": 4}
    doc["panels"][3]["targets"][0]["rawSql"] = " "
    doc["panels"][4]["datasource"] = {"type": "prometheus", "uid": "x"}
    doc["panels"][5]["gridPos"] = dict(doc["panels"][6]["gridPos"])
    problems = " | ".join(validate_dashboard(doc))
    for expected in ("unique integer", "outside the 24-column grid", "no rawSql", "datasource must be", "overlaps"):
        assert expected in problems
    with pytest.raises(InvalidDashboardError):
        check_dashboard(doc)


def test_committed_provisioning_files_are_the_generated_ones():
    folder = PROJECT_ROOT / DEFAULT_OUT
    committed = sorted(path.name for path in folder.glob("*.json"))
    assert committed == sorted(DOCS), "run `nlumon dashboards generate`"
    for name, doc in DOCS.items():
        assert (folder / name).read_text(encoding="utf-8") == render(doc), f"{name} is stale: regenerate it"


def test_provisioning_yaml_points_at_the_generated_files_and_datasource():
    provider = yaml.safe_load((PROJECT_ROOT / "deploy/grafana/provisioning/dashboards/nlumon.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/provisioning/dashboards/json"
    datasources = yaml.safe_load((PROJECT_ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text())
    provisioned = datasources["datasources"][0]
    expected = datasource_config("clickhouse", 9000)
    for key in ("name", "uid", "type", "jsonData"):
        assert provisioned[key] == expected[key]


def test_queries_avoid_what_clickhouse_18_16_lacks_and_bucket_on_the_interval():
    for board in BOARDS:
        for panel in board.panels:
            sql = panel.query.sql
            assert not any(word in sql for word in NOT_ON_18_16), (board.uid, panel.title)
            if panel.query.format == "time_series" and "window_start AS time" not in sql:
                assert "intDiv(toUInt32(" in sql and "$__interval_s" in sql, panel.title


def test_queries_on_replacing_tables_never_double_count():
    replacing = ("predictions", "utterance_log", "dead_letters", "drift_results", "monitor_windows", "ood_clusters",
                 "alert_events", "alert_deliveries", "labeling_queue", "slot_value_windows", "outcomes",
                 "shadow_predictions", "route_windows", "shadow_windows", "conversion_windows", "experiments",
                 "experiment_results")
    for board in BOARDS:
        for panel in board.panels:
            for table in re.findall(r"FROM (\w+)(?! FINAL)\b", panel.query.sql):
                # Without FINAL only distinct-id counts or argMax are safe.
                if table in replacing:
                    assert "uniqExact(id)" in panel.query.sql or "argMax" in panel.query.sql, panel.title


def test_every_query_expands_completely_with_all_selected():
    start, end = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 1, tzinfo=UTC)
    for board in BOARDS:
        variables = {v.name: "__all" for v in board.variables}
        for panel in board.panels:
            expanded = expand_macros(panel.query.sql, start, end, 60, variables)
            assert "$" not in expanded, (panel.title, expanded)
            if "$__timeFilter(" in panel.query.sql:  # the plugin's form: both ends inclusive, Unix seconds
                assert ">= toDateTime(1714521600) AND" in expanded and "<= toDateTime(1714525200)" in expanded


def test_variable_queries_expand_completely():
    start, end = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 1, tzinfo=UTC)
    queries = {v.query for board in BOARDS for v in board.variables if v.query}
    assert len(queries) == 2  # model_version and experiment
    assert all("$" not in expand_macros(query, start, end, 60) for query in queries)


def test_no_aggregate_alias_hides_a_column_read_elsewhere():
    """ClickHouse puts an alias into every expression naming it: ``avg(satisfaction) AS satisfaction`` turns a
    later ``WHERE isNotNull(satisfaction)`` into an aggregate in WHERE (an error on 18.16), and another aggregate of
    that column into an aggregate of an aggregate. An aggregate may take its column's name only when nothing else
    in the query names that column."""
    functions = r"(?:sum|avg|min|max|count|argMax|quantile\([\d.]+\)|uniqExact)(?:If)?"
    aggregate = re.compile(rf"\b{functions}\(([^()]*)\) AS (\w+)")
    for board in BOARDS:
        for panel in board.panels:
            sql = re.sub(r"'[^']*'", "''", panel.query.sql)  # words in string literals name nothing
            for arguments, alias in aggregate.findall(sql):
                if alias in re.findall(r"\w+", arguments):
                    uses = len(re.findall(rf"\b{alias}\b", sql))
                    assert uses == 2, (panel.title, alias)  # the argument and the alias, nowhere else


def test_a_missing_variable_is_an_error_not_an_empty_filter():
    with pytest.raises(MacroError):
        expand_macros("SELECT 1 WHERE a IN (${assistant:singlequote})", datetime(2024, 1, 1), datetime(2024, 1, 2), 60)


def test_panel_targets_carry_the_plugin_fields():
    doc = dashboard_json(BOARDS[0])
    target = doc["panels"][4]["targets"][0]
    assert target["editorType"] == "sql" and target["format"] == 0 and target["queryType"] == "timeseries"
    assert target["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "nlumon-clickhouse"}
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["assistant"]["type"] == "custom" and variables["model_version"]["type"] == "query"
    assert variables["model_version"]["allValue"] == "__all" and variables["model_version"]["includeAll"]


def test_generate_command_writes_valid_files(tmp_path: Path):
    from typer.testing import CliRunner

    from dashboards.cli import app

    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(tmp_path.glob("*.json"))
    assert [p.name for p in written] == sorted(DOCS)
    assert all(validate_dashboard(json.loads(p.read_text())) == [] for p in written)
