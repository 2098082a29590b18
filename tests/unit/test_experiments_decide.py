"""decide(): every path of the stop rule, and its agreement with the vectorised first_decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from experiments.definition import StopRule
from experiments.stats import Comparison, compare_proportions, decide, first_decision

START = datetime(2026, 3, 1, tzinfo=UTC)
RULE = StopRule(alpha=0.05, min_sessions=200, max_sessions=100_000, max_days=14)


def comparison(estimate: float, p_value: float, half: float = 0.02, n: int = 1000) -> Comparison:
    return Comparison(estimate, estimate - half, estimate + half, p_value, 1e-4, n, n)


def run(comparisons, sessions=None, srm=0.5, rule=RULE, days=1.0, **kwargs):
    sessions = sessions or {"control": 1000, **{arm: 1000 for arm in comparisons}}
    return decide(comparisons, sessions, srm, rule, started_at=START, now=START + timedelta(days=days), **kwargs)


def test_a_sample_ratio_mismatch_invalidates_before_anything_else():
    decision = run({"challenger": comparison(0.1, 1e-6)}, srm=1e-5)
    assert decision.outcome == "invalid_srm" and "sample ratio mismatch" in decision.reason


def test_nothing_is_decided_before_min_sessions_in_every_arm():
    decision = run({"challenger": comparison(0.1, 1e-6)}, sessions={"control": 5000, "challenger": 150})
    assert decision.outcome == "continue" and "min_sessions 200" in decision.reason


def test_a_limit_reached_before_min_sessions_stops_without_a_difference():
    decision = run({"challenger": comparison(0.1, 1e-6)}, sessions={"control": 150, "challenger": 150}, days=15)
    assert decision.outcome == "stopped_no_difference" and "max_days 14" in decision.reason


def test_a_significant_better_challenger_wins():
    decision = run({"challenger": comparison(0.05, 0.01)})
    assert (decision.outcome, decision.arm) == ("challenger_wins", "challenger")
    assert "task_completed" in decision.reason and "p = 0.01" in decision.reason


def test_a_significant_worse_challenger_loses():
    decision = run({"challenger": comparison(-0.05, 0.01)})
    assert decision.outcome == "control_wins" and decision.arm == ""


@pytest.mark.parametrize("metric", ["escalated", "abandoned", "rephrased"])
def test_lower_is_better_for_escalation_abandonment_and_rephrasing(metric):
    assert run({"challenger": comparison(-0.05, 0.01)}, metric=metric).outcome == "challenger_wins"
    assert run({"challenger": comparison(0.05, 0.01)}, metric=metric).outcome == "control_wins"


def test_no_difference_continues_until_a_limit():
    assert run({"challenger": comparison(0.01, 0.4)}).outcome == "continue"
    by_sessions = run({"challenger": comparison(0.01, 0.4)}, sessions={"control": 60_000, "challenger": 40_000})
    assert by_sessions.outcome == "stopped_no_difference" and "max_sessions" in by_sessions.reason
    assert run({"challenger": comparison(0.01, 0.4)}, days=14.5).outcome == "stopped_no_difference"
    final = run({"challenger": comparison(0.01, 0.4)}, final=True)
    assert final.outcome == "stopped_no_difference" and "concluded" in final.reason


def test_several_challengers_share_alpha():
    """Bonferroni: with two challengers each is tested at alpha / 2."""
    two = {"b": comparison(0.05, 0.03), "c": comparison(0.0, 0.9)}
    assert run(two).outcome == "continue"
    assert run({"b": comparison(0.05, 0.03)}).outcome == "challenger_wins"
    best = run({"b": comparison(0.05, 0.001), "c": comparison(0.08, 0.001)})
    assert (best.outcome, best.arm) == ("challenger_wins", "c")


def test_a_nan_srm_p_value_does_not_invalidate():
    assert run({"challenger": comparison(0.05, 0.01)}, srm=float("nan")).outcome == "challenger_wins"


def test_decide_agrees_with_first_decision_on_simulated_sequences():
    """The simulations (first_decision) and the CLI (decide) must stop at the same look."""
    rng = np.random.default_rng(11)
    runs, looks, every = 40, 120, 50
    n_t = rng.binomial(every, 0.5, (runs, looks))
    n_c = every - n_t
    lifts = np.repeat([0.0, 0.06], runs // 2)[:, None]
    x_c, x_t = rng.binomial(n_c, 0.5), rng.binomial(n_t, 0.5 + lifts)
    n_c, n_t, x_c, x_t = (np.cumsum(a, axis=1) for a in (n_c, n_t, x_c, x_t))
    test = compare_proportions(x_c, n_c, x_t, n_t, tau=0.03, alpha=0.05)
    expected = first_decision(test.p_value, n_c, n_t, min_sessions=200, alpha=0.05)
    rule = StopRule(alpha=0.05, min_sessions=200)
    for index in range(runs):
        carried, stopped = 1.0, -1
        for look in range(looks):
            current = compare_proportions(x_c[index, look], n_c[index, look], x_t[index, look], n_t[index, look],
                                          tau=0.03, alpha=0.05)
            if min(n_c[index, look], n_t[index, look]) >= 200:
                carried = min(carried, current.p_value)
            current = Comparison(current.estimate, current.low, current.high, carried, current.variance,
                                 current.n_control, current.n_challenger)
            decision = decide({"challenger": current}, {"control": int(n_c[index, look]),
                                                        "challenger": int(n_t[index, look])},
                              0.5, rule, started_at=START, now=START)
            if decision.outcome != "continue":
                stopped = look
                break
        assert stopped == expected[index]
    assert (expected[: runs // 2] >= 0).sum() <= 2 and (expected[runs // 2:] >= 0).sum() >= runs // 2 - 2
