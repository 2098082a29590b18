"""The experiment report on small pandas frames: session-level aggregation, intervals, carried-over looks,
guardrails, the stored rows (de-identified, matching the schema), JSON, text and Markdown."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import nlumon.schema
from experiments.definition import Arm, Experiment, StopRule
from experiments.report import (
    EXPERIMENT_COLUMNS,
    RESULT_COLUMNS,
    GuardrailLimits,
    experiment_row,
    format_table,
    guardrail_checks,
    markdown,
    previous_looks,
    result_rows,
    session_frame,
    summarise,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OLD = datetime(2026, 3, 2, 10, 0)  # naive UTC, as ClickHouse returns it: two hours before NOW
RECENT = datetime(2026, 3, 2, 11, 58)  # younger than the outcome delay


def make_experiment(min_sessions=200, **stop) -> Experiment:
    return Experiment(name="ab-test", started_at=NOW - timedelta(days=1),
                      arms=[Arm(name="control", package_path="models/current", share=0.5),
                            Arm(name="challenger", package_path="models/new", share=0.5)],
                      stop=StopRule(min_sessions=min_sessions, **stop))


def outcome(session, kind, events=1, rating_sum=0.0, ratings=0):
    return {"session_id": session, "kind": kind, "events": events, "satisfaction_sum": rating_sum,
            "satisfaction_count": ratings}


def facts(control=(1000, 50.0, 30, 2), challenger=(1000, 55.0, 35, 3)) -> pd.DataFrame:
    rows = [{"arm": arm, "predictions": n, "latency_p95_ms": p95, "ood": ood, "model_versions": [f"v-{arm}"],
             "dead_letters": letters} for arm, (n, p95, ood, letters) in (("control", control),
                                                                          ("challenger", challenger))]
    return pd.DataFrame(rows)


def population(exp: Experiment, count: int, rates: dict[str, float], seed: int = 0):
    """``count`` sessions assigned as the worker does; each completes with its arm's rate and rates 1-5."""
    rng = np.random.default_rng(seed)
    sessions, outcomes = [], []
    for index in range(count):
        session = f"s{index}"
        arm = exp.arm_of(session)
        sessions.append({"session_id": session, "arm": arm, "last_ts": OLD, "predictions": 3})
        if rng.random() < rates[arm]:
            outcomes.append(outcome(session, "task_completed", events=int(rng.integers(1, 3))))
        if rng.random() < 0.3:
            outcomes.append(outcome(session, "rephrased", rating_sum=float(rng.integers(1, 6)), ratings=1))
    return pd.DataFrame(sessions), pd.DataFrame(outcomes)


def test_a_session_counts_once_per_kind_and_its_rating_is_its_mean():
    sessions = pd.DataFrame([
        {"session_id": "a", "arm": "control", "last_ts": OLD, "predictions": 4},
        {"session_id": "b", "arm": "challenger", "last_ts": OLD, "predictions": 1},
        {"session_id": "c", "arm": "challenger", "last_ts": RECENT, "predictions": 2},
        {"session_id": "d", "arm": "control", "last_ts": OLD, "predictions": 1},  # in two arms: left out
        {"session_id": "d", "arm": "challenger", "last_ts": OLD, "predictions": 1},
    ])
    outcomes = pd.DataFrame([outcome("a", "task_completed", events=3, rating_sum=9.0, ratings=2),
                             outcome("a", "escalated", rating_sum=2.0, ratings=1),
                             outcome("b", "converted"), outcome("x", "task_completed")])
    frame, crossover = session_frame(sessions, outcomes, now=NOW, delay_s=300)
    frame = frame.set_index("session_id")
    assert crossover == 1 and sorted(frame.index) == ["a", "b", "c"]
    assert frame.loc["a", ["task_completed", "escalated", "converted"]].tolist() == [1, 1, 0]
    assert frame.loc["a", "satisfaction"] == pytest.approx(11 / 3)
    assert frame.loc["b", "converted"] == 1 and math.isnan(frame.loc["b", "satisfaction"])
    assert frame["mature"].to_dict() == {"a": True, "b": True, "c": False}


def test_no_outcomes_at_all_gives_zero_rates():
    sessions = pd.DataFrame([{"session_id": "a", "arm": "control", "last_ts": OLD, "predictions": 1}])
    empty = pd.DataFrame(columns=["session_id", "kind", "events", "satisfaction_sum", "satisfaction_count"])
    frame, _ = session_frame(sessions, empty, now=NOW, delay_s=300)
    assert frame.loc[0, "task_completed"] == 0 and math.isnan(frame.loc[0, "satisfaction"])


def test_the_summary_finds_a_big_lift_with_intervals_per_arm():
    exp = make_experiment()
    sessions, outcomes = population(exp, 3000, {"control": 0.5, "challenger": 0.65})
    report = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300)
    control, challenger = report.arms
    assert control.sessions + challenger.sessions == 3000 and report.misassigned_sessions == 0
    for arm, rate in ((control, 0.5), (challenger, 0.65)):
        figure = arm.metrics["task_completed"]
        assert figure.low < figure.value < figure.high and abs(figure.value - rate) < 0.04
        assert 1 <= arm.metrics["satisfaction"].value <= 5 and arm.metrics["satisfaction"].sessions > 300
    test = report.comparisons["challenger"]["task_completed"]
    assert test.low > 0 and test.p_value < 1e-6
    assert report.comparisons["challenger"]["rephrased"].p_value > 0.05  # no real difference there
    assert report.decision.outcome == "challenger_wins" and report.decision.arm == "challenger"
    assert report.srm_p_value > 0.001 and not report.guardrails_failed


def test_young_sessions_wait_unless_all_are_counted():
    exp = make_experiment(min_sessions=10)
    sessions, outcomes = population(exp, 400, {"control": 0.5, "challenger": 0.5})
    sessions.loc[:99, "last_ts"] = RECENT
    mature = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300)
    everything = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300, include_all=True)
    assert sum(arm.sessions for arm in mature.arms) == 300
    assert sum(arm.pending_sessions for arm in mature.arms) == 100
    assert sum(arm.sessions for arm in everything.arms) == 400 and everything.counted == "all"


def test_earlier_looks_carry_the_smallest_p_value_and_the_narrowest_interval():
    exp = make_experiment(min_sessions=50)
    sessions, outcomes = population(exp, 600, {"control": 0.5, "challenger": 0.5}, seed=3)
    fresh = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300)
    now = fresh.comparisons["challenger"]["task_completed"]
    earlier = pd.DataFrame([
        {"arm": "challenger", "metric": "task_completed:diff", "sessions": 250, "p_value": 0.001,
         "low": now.low + 0.01, "high": now.high + 0.5},
        {"arm": "challenger", "metric": "task_completed:diff", "sessions": 20, "p_value": 1e-9, "low": 0.9,
         "high": 1.0},  # below min_sessions: not carried
        {"arm": "challenger", "metric": "satisfaction:diff", "sessions": 250, "p_value": 0.2, "low": -4.0,
         "high": 4.0},
    ])
    carried = summarise(exp, sessions, outcomes, facts(), previous_looks(earlier, 50), now=NOW, outcome_delay_s=300)
    test = carried.comparisons["challenger"]["task_completed"]
    assert test.p_value == 0.001 and test.low == pytest.approx(now.low + 0.01) and test.high == now.high
    assert carried.decision.outcome == "challenger_wins"


def test_a_skewed_split_is_invalid():
    exp = make_experiment(min_sessions=10)
    sessions, outcomes = population(exp, 2000, {"control": 0.5, "challenger": 0.5})
    sessions = sessions[(sessions["arm"] == "control") | (sessions.index % 3 != 0)]  # a third of the challenger lost
    report = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300)
    assert report.decision.outcome == "invalid_srm" and report.srm_p_value < 0.001


def test_stored_arms_that_disagree_with_the_assignment_are_counted():
    exp = make_experiment(min_sessions=10)
    sessions, outcomes = population(exp, 100, {"control": 0.5, "challenger": 0.5})
    sessions.loc[:9, "arm"] = sessions.loc[:9, "arm"].map({"control": "challenger", "challenger": "control"})
    assert summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300).misassigned_sessions == 10


def test_guardrails_fail_beyond_their_tolerance_and_wait_for_data():
    checks = {(c.arm, c.name): c for c in guardrail_checks(facts(challenger=(1000, 61.0, 55, 9)), "control",
                                                             ["challenger"])}
    assert checks[("challenger", "latency_p95_ms")].status == "fail"  # 61 > 50 x 1.2
    assert checks[("challenger", "latency_p95_ms")].limit == pytest.approx(60.0)
    assert checks[("challenger", "ood_rate")].status == "fail"  # 5.5 % > 3 % + 2 points
    near = {c.name: c.status for c in guardrail_checks(facts(challenger=(1000, 59.0, 49, 6)), "control",
                                                        ["challenger"]) if c.arm == "challenger"}
    assert near == {"latency_p95_ms": "pass", "dead_letter_rate": "pass", "ood_rate": "pass"}  # just inside
    letters = checks[("challenger", "dead_letter_rate")]
    assert letters.value == pytest.approx(9 / 1009) and letters.status == "fail"  # 0.89 % > 0.2 % + 0.5
    passing = {c.name: c.status for c in guardrail_checks(facts(), "control", ["challenger"]) if c.arm != "control"}
    assert passing == {"latency_p95_ms": "pass", "dead_letter_rate": "pass", "ood_rate": "pass"}
    few = guardrail_checks(facts(challenger=(50, 500.0, 40, 10)), "control", ["challenger"], GuardrailLimits())
    assert {c.status for c in few if c.arm == "challenger"} == {"pending"}


def test_the_rows_match_the_schema_and_hold_every_figure():
    exp = make_experiment()
    sessions, outcomes = population(exp, 1000, {"control": 0.5, "challenger": 0.6})
    report = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300)
    rows = result_rows(report)
    ddl_columns = re.findall(r"^ {4}(\w+) ", nlumon.schema.EXPERIMENT_RESULTS, re.MULTILINE)
    assert all(set(row) == set(RESULT_COLUMNS) for row in rows) and set(RESULT_COLUMNS) == set(ddl_columns)
    by_key = {(row["arm"], row["metric"]): row for row in rows}
    assert len(rows) == 2 * 6 + 6 + 2 * 3
    diff = by_key[("challenger", "task_completed:diff")]
    test = report.comparisons["challenger"]["task_completed"]
    assert (diff["value"], diff["low"], diff["high"], diff["p_value"]) == (test.estimate, test.low, test.high,
                                                                           test.p_value)
    assert math.isnan(by_key[("control", "task_completed")]["p_value"])
    ood = by_key[("challenger", "guardrail:ood_rate")]
    assert ood["value"] <= ood["high"] == pytest.approx(0.05)  # control's 3 % + 2 points
    assert math.isnan(by_key[("control", "guardrail:ood_rate")]["high"])
    assert {row["decision"] for row in rows} == {report.decision.outcome}
    assert all(row["ts"] == datetime(2026, 3, 2, 12, 0) for row in rows)


def test_the_experiment_row_matches_the_schema_and_scrubs_the_definition():
    exp = make_experiment().model_copy(update={"stop_reason": "call kwame lindqvist at (415) 555-0134"})
    row = experiment_row(exp, ["v1", "v2"], now=NOW)
    ddl_columns = re.findall(r"^ {4}(\w+) ", nlumon.schema.EXPERIMENTS, re.MULTILINE)
    assert set(row) == set(EXPERIMENT_COLUMNS) == set(ddl_columns)
    assert "555-0134" not in row["definition"] and "lindqvist" not in row["definition"].lower()
    assert Experiment.model_validate_json(row["definition"]).arms == exp.arms
    assert row["stopped_at"] == datetime(1970, 1, 1) and row["model_versions"] == ["v1", "v2"]


def test_json_text_and_markdown_carry_the_decision():
    exp = make_experiment()
    sessions, outcomes = population(exp, 1000, {"control": 0.5, "challenger": 0.62})
    report = summarise(exp, sessions, outcomes, facts(), now=NOW, outcome_delay_s=300, final=True)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["decision"]["outcome"] == report.decision.outcome
    assert data["arms"][1]["metrics"]["task_completed"]["sessions"] == report.arms[1].sessions
    assert data["comparisons"]["challenger"]["task_completed"]["p_value"] == pytest.approx(
        report.comparisons["challenger"]["task_completed"].p_value)
    text, md = format_table(report), markdown(report)
    for output in (text, md):
        assert report.decision.outcome in output and "task_completed" in output and "latency_p95_ms" in output
    assert md.startswith("# Experiment ab-test") and "| satisfaction |" in md
