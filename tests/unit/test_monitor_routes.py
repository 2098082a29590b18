"""The route mix per window (monitor.routes) and the route as a drift feature (detectors.suite, monitor.job).

No services: the job's ClickHouse reads are replaced in ``monitor.job`` (as in test_monitor_failures.py) and the
one route-count query is answered by a fake client.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

import monitor.job as job_module
from dashboards.testing import table_columns
from detectors.suite import ROUTE, MonitorSuite
from detectors.synthetic import make_rows
from monitor.alerting import metric_points
from monitor.job import MonitorJob
from monitor.reference import Reference
from monitor.routes import ROUTE_WINDOW_COLUMNS, ROUTES, route_metrics, route_mix, route_shares, route_window_rows
from monitor.storage import ObservedWindow, WindowFacts
from tests.conftest import make_test_settings

T0 = datetime(2026, 3, 1, 12, 0)
NOW = T0 + timedelta(hours=1)
CLOCK = (NOW - datetime(1970, 1, 1)).total_seconds()
REFERENCE_MIX = {"fulfil": 0.80, "clarify": 0.12, "confirm": 0.05, "escalate": 0.03}


def with_routes(rows: pd.DataFrame, mix: dict[str, float] | None, seed: int) -> pd.DataFrame:
    """``rows`` with a route per row drawn from ``mix`` (None: every route '', as before a policy)."""
    if mix is None:
        return rows.assign(route="")
    rng = np.random.default_rng(seed)
    return rows.assign(route=rng.choice(list(mix), size=len(rows), p=list(mix.values())))


def suite_on(rows: pd.DataFrame, n_windows: int = 50) -> MonitorSuite:
    return MonitorSuite.from_reference(rows, {"accuracy": 0.9}, window_size=300, fpr=0.01, n_windows=n_windows,
                                       max_sample=300, track_clusters=False)


def quick_suite(rows: pd.DataFrame) -> MonitorSuite:
    """A suite calibrated quickly (no embedding detector, few clean windows): for tests of which detectors exist."""
    return suite_on(rows.drop(columns="embedding_sketch"), n_windows=10)


@pytest.fixture(scope="module")
def routed_suite() -> MonitorSuite:
    """Calibrated on 3,000 routed rows (without the embedding detector, the slowest to calibrate)."""
    return suite_on(with_routes(make_rows(3000, seed=1).drop(columns="embedding_sketch"), REFERENCE_MIX, seed=1))


# -- the route mix --------------------------------------------------------------------------------------------
def test_route_mix_counts_decided_rows_per_assistant_and_overall() -> None:
    mix = route_mix([("shopper", "fulfil", 80), ("shopper", "clarify", 20), ("associate", "fulfil", 30),
                     ("associate", "escalate", 10), ("associate", "", 60), ("associate", "defer", 0)])
    assert list(mix) == ["all", "associate", "shopper"]
    assert mix["all"] == {"fulfil": 110, "clarify": 20, "confirm": 0, "escalate": 10}
    assert mix["associate"] == {"fulfil": 30, "clarify": 0, "confirm": 0, "escalate": 10}  # '' left out
    shares = route_shares(mix["associate"])
    assert shares == {"fulfil": 0.75, "clarify": 0.0, "confirm": 0.0, "escalate": 0.25}


def test_a_route_outside_the_known_ones_is_kept_and_undecided_groups_are_left_out() -> None:
    mix = route_mix([("shopper", "handoff", 5), ("shopper", "fulfil", 15), ("associate", "", 40)])
    assert set(mix) == {"all", "shopper"} and mix["shopper"]["handoff"] == 5
    assert route_shares(mix["all"])["handoff"] == 0.25
    assert route_mix([("shopper", "", 100)]) == {}


def outcome_with(suite: MonitorSuite, routes: dict[str, dict[str, int]]) -> Any:
    """A scored outcome (for the row builder and the metric points) with the given route mix."""
    rows = with_routes(make_rows(200, seed=5), REFERENCE_MIX, seed=5)
    rows = rows.assign(text_scrubbed=[f"text {i}" for i in range(len(rows))])
    window = ObservedWindow(T0, T0 + timedelta(minutes=5), 200, T0 + timedelta(minutes=5), "m1")
    facts = WindowFacts(rows["assistant"].value_counts().to_dict(), 0, 40.0, "e2e_ms", 0)
    outcome = job_module.build_outcome(window, rows, facts, suite, "rolling", T0 + timedelta(minutes=6))
    return replace(outcome, routes=routes)


def test_route_window_rows_match_the_table_and_shares_add_up(routed_suite: MonitorSuite) -> None:
    routes = route_mix([("shopper", "fulfil", 90), ("shopper", "clarify", 10), ("associate", "confirm", 50)])
    rows = route_window_rows(outcome_with(routed_suite, routes), row_version=7)
    assert set(ROUTE_WINDOW_COLUMNS) == set(table_columns("route_windows"))
    assert all(set(row) == set(ROUTE_WINDOW_COLUMNS) for row in rows)
    assert len(rows) == 3 * len(ROUTES)  # all, associate, shopper x every known route
    by_key = {(row["assistant"], row["route"]): row for row in rows}
    assert by_key[("all", "fulfil")]["rows"] == 90 and by_key[("all", "fulfil")]["share"] == pytest.approx(0.6)
    assert by_key[("associate", "confirm")]["share"] == 1.0 and by_key[("associate", "escalate")]["rows"] == 0
    for group in ("all", "associate", "shopper"):
        assert sum(row["share"] for row in rows if row["assistant"] == group) == pytest.approx(1.0)
    assert {row["model_version"] for row in rows} == {"m1"} and {row["row_version"] for row in rows} == {7}


def test_route_share_points_per_assistant_and_whole_traffic(routed_suite: MonitorSuite) -> None:
    outcome = outcome_with(routed_suite, route_mix([("shopper", "fulfil", 90), ("shopper", "escalate", 10),
                                      ("associate", "fulfil", 100)]))
    points = {(p.metric, p.assistant): p for p in metric_points(outcome)}
    whole = points[("route_share.escalate", None)]
    assert whole.value == pytest.approx(10 / 200)
    assert whole.evidence["route_rows"] == 10 and whole.evidence["decided_rows"] == 200
    assert whole.evidence["route"] == "escalate" and whole.evidence["model_version"] == "m1"
    assert points[("route_share.escalate", "shopper")].value == pytest.approx(0.1)
    assert points[("route_share.escalate", "associate")].value == 0.0
    assert len(route_metrics(outcome)) == 3 * len(ROUTES)
    assert not [p for p in metric_points(outcome_with(routed_suite, {})) if p.metric.startswith("route_share.")]


# -- the route as a drift feature ------------------------------------------------------------------------------
def test_a_reference_with_routes_gets_a_route_detector_per_group(routed_suite: MonitorSuite) -> None:
    assert routed_suite.has_feature(ROUTE)
    assert {group for group, detectors in routed_suite.detectors.items()
            if any(d.feature == ROUTE for d in detectors)} == {"overall", "shopper", "associate"}


def test_a_shifted_route_mix_drifts_and_the_same_mix_does_not(routed_suite: MonitorSuite) -> None:
    same = with_routes(make_rows(300, seed=7), REFERENCE_MIX, seed=7)
    shifted = with_routes(make_rows(300, seed=7), {"fulfil": 0.55, "clarify": 0.35, "confirm": 0.05,
                                                   "escalate": 0.05}, seed=7)
    route = {r.details["group"]: r for r in routed_suite.score(same).results if r.feature == ROUTE}
    assert set(route) == {"overall", "shopper", "associate"} and not any(r.drifted for r in route.values())
    drifted = {r.details["group"]: r for r in routed_suite.score(shifted).results if r.feature == ROUTE}
    assert drifted["overall"].drifted and drifted["overall"].details["largest_changes"]["clarify"] > 0.15


def test_rows_without_a_route_never_drift_on_it(routed_suite: MonitorSuite) -> None:
    undecided = with_routes(make_rows(300, seed=8), None, seed=8)
    report = routed_suite.score(undecided)
    assert not [r for r in report.results if r.feature == ROUTE]
    assert report.skipped["overall/route"] == "0 rows with a value"
    assert [r for r in report.results if r.feature == "confidence"]  # the other detectors still ran
    half = with_routes(make_rows(300, seed=9), REFERENCE_MIX, seed=9)
    half.loc[half.index[:150], "route"] = ""  # a fleet half upgraded: the decided half has the reference mix
    overall = next(r for r in routed_suite.score(half).results if r.feature == ROUTE
                   and r.details["group"] == "overall")
    assert overall.details["n_labels"] == 150 and not overall.drifted


def test_a_reference_without_decided_routes_has_no_route_detector() -> None:
    assert not quick_suite(make_rows(1200, seed=2)).has_feature(ROUTE)  # a package reference: no route column
    assert not quick_suite(with_routes(make_rows(1200, seed=2), None, seed=2)).has_feature(ROUTE)
    few = with_routes(make_rows(1200, seed=2), REFERENCE_MIX, seed=2)
    few.loc[few.index[50:], "route"] = ""  # 50 decided rows: fewer than two 30-row windows per group
    assert quick_suite(few).has_feature("intent") and not quick_suite(few).has_feature(ROUTE)


# -- the job: route_windows rows, drift.route, and the note for references without routes --------------------
class RouteCountClient:
    """Answers the route-count query with ``counts``; every other query (schema check, shadow) gets no rows."""

    def __init__(self, counts: list[tuple[str, str, int]]) -> None:
        self.counts = counts

    def execute(self, query: str, params: Any = None, **_: Any) -> list:
        return list(self.counts) if "GROUP BY assistant, route" in query else []

    def disconnect(self) -> None:
        pass


def run_job(monkeypatch, reference: Reference, window_rows: pd.DataFrame, counts) -> tuple[list, dict]:
    inserted: dict[str, list[dict]] = {}
    window = ObservedWindow(T0, T0 + timedelta(minutes=5), len(window_rows), T0 + timedelta(minutes=5), "m1")
    monkeypatch.setattr(job_module, "observed_windows", lambda client, w, since, until: [window])
    monkeypatch.setattr(job_module, "scored_windows", lambda client, w, since, until: {})
    monkeypatch.setattr(job_module, "read_predictions", lambda client, start, end, limit, *a, **k: window_rows)
    monkeypatch.setattr(job_module, "window_facts", lambda client, start, end: WindowFacts(
        window_rows["assistant"].value_counts().to_dict(), 0, 40.0, "e2e_ms", 0))
    monkeypatch.setattr(job_module, "save_evidently_report", lambda reference, current, path: None)

    def insert(client, table, columns, rows):
        rows = [dict(row) for row in rows]
        assert all(set(columns) <= set(row) for row in rows)
        inserted.setdefault(table, []).extend(rows)
        return len(rows)

    monkeypatch.setattr(job_module, "insert_rows", insert)
    job = MonitorJob(make_test_settings(), lambda: RouteCountClient(counts), references=_Fixed(reference),
                     report_dir=None, names=None, clock=lambda: CLOCK)
    return job.run_once(now=NOW, since=T0), inserted


class _Fixed:
    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def reference_for(self, client, model_version, window_start):
        return self.reference


def test_the_job_stores_the_route_mix_and_scores_route_drift(monkeypatch, routed_suite) -> None:
    reference = Reference(routed_suite, make_rows(10, seed=1), "rolling", 300)
    rows = with_routes(make_rows(300, seed=11), {"fulfil": 0.4, "clarify": 0.5, "confirm": 0.05, "escalate": 0.05},
                       seed=11).assign(text_scrubbed=[f"text {i}" for i in range(300)])
    counts = [("shopper", "fulfil", 400), ("shopper", "clarify", 600), ("associate", "", 300)]
    (outcome,), inserted = run_job(monkeypatch, reference, rows, counts)
    assert outcome.routes["all"]["clarify"] == 600 and "associate" not in outcome.routes
    stored = {(r["assistant"], r["route"]): r for r in inserted["route_windows"]}
    assert stored[("all", "clarify")]["share"] == pytest.approx(0.6) and stored[("shopper", "escalate")]["rows"] == 0
    assert stored[("all", "fulfil")]["window_start"] == T0 and stored[("all", "fulfil")]["scored_at"] == NOW
    assert "route" in outcome.groups["all"].drifted_features
    assert any(r["feature"] == "route" and r["drifted"] for r in inserted["drift_results"])
    assert "shadow_windows" not in inserted or inserted["shadow_windows"] == []


def test_a_reference_without_routes_is_told_once(monkeypatch, caplog) -> None:
    suite = quick_suite(make_rows(1200, seed=3))
    reference = Reference(suite, make_rows(10, seed=3), "package", 300)
    rows = with_routes(make_rows(300, seed=12), REFERENCE_MIX, seed=12).assign(text_scrubbed="a text")
    with caplog.at_level(logging.INFO, logger="monitor.job"):
        (outcome,), inserted = run_job(monkeypatch, reference, rows, [("shopper", "fulfil", 300)])
    told = [r.getMessage() for r in caplog.records if "not a drift feature" in r.getMessage()]
    assert len(told) == 1 and "package's reference statistics hold no route decisions" in told[0]
    assert not [r for r in outcome.report.results if r.feature == ROUTE]
    assert inserted["route_windows"]  # the mix is still reported


def test_an_unreadable_route_mix_leaves_the_window_scored(monkeypatch, routed_suite, caplog) -> None:
    class Broken(RouteCountClient):
        def execute(self, query: str, params: Any = None, **_: Any) -> list:
            if "GROUP BY assistant, route" in query:
                raise RuntimeError("no such column: route")
            return []

    reference = Reference(routed_suite, make_rows(10, seed=1), "rolling", 300)
    rows = with_routes(make_rows(300, seed=13), REFERENCE_MIX, seed=13).assign(text_scrubbed="a text")
    monkeypatch.setattr(RouteCountClient, "execute", Broken.execute)
    with caplog.at_level(logging.ERROR, logger="monitor.job"):
        outcomes, inserted = run_job(monkeypatch, reference, rows, [])
    assert len(outcomes) == 1 and outcomes[0].routes == {} and inserted.get("route_windows", []) == []
    assert any("route mix of window" in r.getMessage() for r in caplog.records)
