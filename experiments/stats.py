"""The statistics of a session A/B experiment: a sequential test that stays valid under continuous monitoring.

**The test: mSPRT.** Challenger against control, per metric, is the mixture sequential probability ratio test
(Johari, Koomen, Pekelis, Walsh, "Peeking at A/B tests", KDD 2017, and "Always valid inference: continuous
monitoring of A/B tests", Operations Research 2022; the test behind Optimizely's stats engine). The difference
of the arms' means ``theta_hat`` (session-level rates, or mean satisfaction) is treated as normal with variance
``V = var_c / n_c + var_t / n_t``; averaging the likelihood ratio of ``theta`` against ``theta_0 = 0`` over a
normal mixing prior ``theta ~ N(0, tau^2)`` gives the closed form

    Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 * theta_hat^2 / (2 V (V + tau^2)))

``Lambda_n`` is a non-negative martingale under the null, so by Ville's inequality it exceeds ``1 / alpha`` at
*any* time with probability at most ``alpha``. Hence the **always-valid p-value** ``p_n = min(p_{n-1},
1 / Lambda_n)`` (a running minimum: it only goes down) and the **confidence sequence** ``{theta_0 :
Lambda_n(theta_0) < 1 / alpha}``, an interval around ``theta_hat`` that covers the true difference at every
look at once with probability ``1 - alpha``; intersecting it over the looks keeps that guarantee.

**Why mSPRT and not a group-sequential design.** Alpha spending (Pocock, O'Brien-Fleming, Lan-DeMets) is valid
only for looks planned in advance, at information fractions fixed up front, and only when the decision is taken
at those looks. ``nlumon experiment status`` can be run by anyone at any time, as often as they like, and the
dashboards show the numbers continuously; traffic, and so the information per day, is not known in advance.
The mSPRT needs neither a number of looks nor a horizon: every look is allowed, and stopping at the first
significant one keeps the error rate at ``alpha``. What it costs is power at a fixed sample size (it needs more
sessions than a fixed-horizon test that is looked at once); ``benchmarks/experiment.py`` measures both sides.
A fixed-horizon z-test peeked at every look, for comparison, has a false positive rate many times ``alpha``.

**The mixing scale tau.** The prior ``N(0, tau^2)`` says which differences the test expects; the test is most
efficient for effects of about ``tau`` (Johari et al., section 4) and stays valid for any ``tau``. It is set
from the experiment's expected effect (``StopRule.effect``): by default 3 points for a rate and 0.15 for the
1-5 satisfaction score (:data:`DEFAULT_EFFECT`). A too small ``tau`` makes the test slow on big effects, a too
large one slow on small effects; the benchmark shows power for several values.

The normal approximation needs a few hundred sessions per arm (``StopRule.min_sessions``, 200 by default). The
variance of a rate uses ``(x + 1) / (n + 2)``: the plug-in value for large samples, and never zero.

Also here: Wilson intervals for a rate and t intervals for a mean (what one arm shows; fixed-horizon), the
sample-ratio-mismatch check, and :func:`decide`, which applies the experiment's stop rule. Every function of
the test takes numpy arrays and broadcasts, so the simulations run thousands of sequences at once.

    >>> round(float(msprt_p_value(0.0, 1e-4, 0.03)), 3)  # no difference: the p-value stays near 1
    1.0
    >>> float(msprt_p_value(0.05, 1e-4, 0.03)) < 1e-4    # 5 points with a standard error of 1 point
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from scipy import stats as sps

from experiments.definition import StopRule

# Flag a sample-ratio mismatch below this p-value (the convention of Fabijan et al., "Diagnosing sample ratio
# mismatch in online controlled experiments", KDD 2019): at 0.001 a healthy experiment is flagged once in 1000.
SRM_ALPHA = 0.001
# The expected effect that sets tau when StopRule.effect is unset: absolute points of a rate, satisfaction points.
DEFAULT_EFFECT = {"rate": 0.03, "mean": 0.15}
# Whether a larger value of an outcome metric is better for the user (decides which arm "wins").
HIGHER_IS_BETTER = {
    "task_completed": True, "converted": True, "satisfaction": True,
    "escalated": False, "abandoned": False, "rephrased": False,
}
# The widest possible difference of two arms: a rate lies in [0, 1], satisfaction in [1, 5].
DIFFERENCE_RANGE = {"rate": 1.0, "mean": 4.0}

Outcome = Literal["continue", "challenger_wins", "control_wins", "stopped_no_difference", "invalid_srm"]


def metric_kind(metric: str) -> Literal["rate", "mean"]:
    """``mean`` for satisfaction, ``rate`` for the session-level outcome rates."""
    return "mean" if metric == "satisfaction" else "rate"


def tau_for(metric: str, effect: float | None = None) -> float:
    """The mixing prior's standard deviation for ``metric``: ``effect``, else :data:`DEFAULT_EFFECT`."""
    return float(effect) if effect is not None else DEFAULT_EFFECT[metric_kind(metric)]


def msprt_log_lr(estimate, variance, tau: float, null: float = 0.0) -> np.ndarray:
    """``log Lambda`` of the normal-mixture SPRT of ``theta = null`` (0 where the variance is not positive)."""
    estimate, variance = np.asarray(estimate, float), np.asarray(variance, float)
    tau2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        total = variance + tau2
        value = 0.5 * np.log(variance / total) + tau2 * (estimate - null) ** 2 / (2 * variance * total)
    return np.where(variance > 0, value, 0.0)


def msprt_p_value(estimate, variance, tau: float) -> np.ndarray:
    """``min(1, 1 / Lambda)`` at one look; :func:`always_valid_p` takes the running minimum over looks."""
    return np.minimum(1.0, np.exp(-msprt_log_lr(estimate, variance, tau)))


def always_valid_p(p_values, axis: int = -1) -> np.ndarray:
    """The running minimum of the per-look p-values along ``axis`` (the looks): the always-valid p-value."""
    return np.minimum.accumulate(np.asarray(p_values, float), axis=axis)


def confidence_sequence(estimate, variance, tau: float, alpha: float, bound: float = np.inf):
    """``(low, high)``: the ``theta_0`` with ``Lambda(theta_0) < 1 / alpha``, clipped to ``[-bound, bound]``.

    Half-width ``sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))``; where the variance is
    not positive nothing is known and the interval is the whole range.
    """
    estimate, variance = np.asarray(estimate, float), np.asarray(variance, float)
    tau2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        total = variance + tau2
        half = np.sqrt(variance * total / tau2 * (2 * np.log(1 / alpha) + np.log(total / variance)))
    half = np.where(variance > 0, half, np.inf)
    return np.clip(estimate - half, -bound, bound), np.clip(estimate + half, -bound, bound)


def first_decision(p_values, n_control, n_challenger, *, min_sessions: int, alpha: float) -> np.ndarray:
    """The look (index on the last axis) at which a two-arm experiment decides, -1 if it never does.

    The vectorised twin of :func:`decide` for simulations: the running minimum of the per-look p-values from
    the first look with ``min_sessions`` in both arms on, compared with ``alpha``. Looks before that are left
    out of the minimum, as the report leaves them out: the normal approximation is not trusted there.
    """
    eligible = (np.asarray(n_control) >= min_sessions) & (np.asarray(n_challenger) >= min_sessions)
    crossed = always_valid_p(np.where(eligible, p_values, 1.0)) <= alpha
    return np.where(crossed.any(axis=-1), crossed.argmax(axis=-1), -1)


def running_intersection(low, high, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The confidence sequence intersected over the looks along ``axis`` (it only narrows)."""
    return (np.maximum.accumulate(np.asarray(low, float), axis=axis),
            np.minimum.accumulate(np.asarray(high, float), axis=axis))


@dataclass(frozen=True)
class Comparison:
    """Challenger minus control for one metric at one look (arrays when computed for many sequences)."""

    estimate: float
    low: float
    high: float
    p_value: float
    variance: float
    n_control: int
    n_challenger: int

    def combined_with(self, p_value: float, low: float, high: float) -> Comparison:
        """This look combined with the earlier looks' smallest p-value and intersected interval.

        An empty intersection (possible only when the truth was missed, an event of probability below alpha)
        falls back to this look's interval.
        """
        new_low, new_high = max(self.low, low), min(self.high, high)
        if new_low > new_high:
            new_low, new_high = self.low, self.high
        return Comparison(self.estimate, new_low, new_high, min(self.p_value, p_value), self.variance,
                          self.n_control, self.n_challenger)


def compare_proportions(x_control, n_control, x_challenger, n_challenger, *, tau: float, alpha: float) -> Comparison:
    """mSPRT of the difference of two rates (successes ``x`` of ``n`` sessions per arm).

    >>> c = compare_proportions(600, 1000, 700, 1000, tau=0.03, alpha=0.05)
    >>> round(c.estimate, 3), c.p_value < 0.01, c.low > 0
    (0.1, True, True)
    """
    xc, nc, xt, nt = (np.asarray(v, float) for v in (x_control, n_control, x_challenger, n_challenger))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_c, rate_t = np.where(nc > 0, xc / nc, 0.0), np.where(nt > 0, xt / nt, 0.0)
        smooth_c, smooth_t = (xc + 1) / (nc + 2), (xt + 1) / (nt + 2)
        variance = np.where((nc > 0) & (nt > 0),
                            smooth_c * (1 - smooth_c) / nc + smooth_t * (1 - smooth_t) / nt, 0.0)
    return _comparison(rate_t - rate_c, variance, tau, alpha, DIFFERENCE_RANGE["rate"], nc, nt)


def compare_means(mean_control, var_control, n_control, mean_challenger, var_challenger, n_challenger, *,
                  tau: float, alpha: float) -> Comparison:
    """mSPRT of the difference of two means (sample variances with ``ddof=1``); fewer than 2 values: no test.

    >>> c = compare_means(3.5, 1.0, 2000, 3.7, 1.0, 2000, tau=0.15, alpha=0.05)
    >>> round(c.estimate, 2), c.p_value < 0.01
    (0.2, True)
    """
    mc, vc, nc, mt, vt, nt = (np.asarray(v, float) for v in
                              (mean_control, var_control, n_control, mean_challenger, var_challenger, n_challenger))
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where((nc > 1) & (nt > 1), vc / nc + vt / nt, 0.0)
    estimate = np.where((nc > 0) & (nt > 0), mt - mc, 0.0)
    return _comparison(estimate, np.nan_to_num(variance), tau, alpha, DIFFERENCE_RANGE["mean"], nc, nt)


def _comparison(estimate, variance, tau, alpha, bound, n_control, n_challenger) -> Comparison:
    low, high = confidence_sequence(estimate, variance, tau, alpha, bound)
    p_value = msprt_p_value(estimate, variance, tau)
    values = [estimate, low, high, p_value, variance, n_control, n_challenger]
    if all(np.ndim(v) == 0 for v in values):
        return Comparison(*(float(v) for v in values[:5]), int(n_control), int(n_challenger))
    return Comparison(*values)


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a rate (NaN where ``n`` is 0): right near 0 and 1, unlike the Wald interval.

    >>> [round(float(v), 3) for v in wilson_interval(0, 20)]
    [0.0, 0.161]
    """
    x, n = np.asarray(successes, float), np.asarray(n, float)
    z = sps.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = x / n
        centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


def mean_interval(mean, variance, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of a mean (sample variance ``ddof=1``; NaN below 2 values).

    >>> [round(float(v), 3) for v in mean_interval(4.0, 1.0, 100)]
    [3.802, 4.198]
    """
    mean, variance, n = (np.asarray(v, float) for v in (mean, variance, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = sps.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * np.sqrt(variance / n)
    return np.where(n > 1, mean - half, np.nan), np.where(n > 1, mean + half, np.nan)


def srm_p_value(counts: Sequence[int], shares: Sequence[float]) -> float:
    """Chi-square goodness of fit of the sessions per arm against the configured shares.

    NaN while an arm expects fewer than 5 sessions (the chi-square approximation does not hold yet).

    >>> srm_p_value([5200, 4800], [0.5, 0.5]) < SRM_ALPHA, srm_p_value([5020, 4980], [0.5, 0.5]) > 0.5
    (True, True)
    """
    observed = np.asarray(counts, float)
    expected = np.asarray(shares, float) / np.sum(shares) * observed.sum()
    if observed.sum() == 0 or expected.min() < 5:
        return float("nan")
    return float(sps.chisquare(observed, expected).pvalue)


@dataclass(frozen=True)
class Decision:
    """What the stop rule says at a look: the outcome, a sentence why, and the winning challenger arm if any."""

    outcome: Outcome
    reason: str
    arm: str = ""


def decide(
    comparisons: Mapping[str, Comparison], sessions: Mapping[str, int], srm_p: float, rule: StopRule, *,
    started_at: datetime, now: datetime, metric: str = "task_completed", final: bool = False,
) -> Decision:
    """Apply ``rule`` to the primary metric's comparisons (challenger arm -> :class:`Comparison`).

    ``sessions`` holds every arm's session count, the control first. In order: a sample-ratio mismatch
    (``srm_p < SRM_ALPHA``) invalidates the experiment; no decision before ``min_sessions`` in every arm; then
    a challenger whose always-valid p-value is at most ``alpha / (number of challengers)`` (Bonferroni) wins
    or loses by the sign of its confidence sequence (for escalation, abandonment and rephrasing lower is
    better); else ``max_sessions``, ``max_days`` or ``final`` (``conclude``) stop it without a difference.
    """
    higher = HIGHER_IS_BETTER.get(metric, True)
    control, *_ = sessions
    total, fewest = sum(sessions.values()), min(sessions.values())
    days = (now - started_at).total_seconds() / 86400
    limit = _limit_reached(rule, total, days, final)
    if srm_p == srm_p and srm_p < SRM_ALPHA:
        split = ", ".join(f"{arm} {count}" for arm, count in sessions.items())
        return Decision("invalid_srm", f"sample ratio mismatch (chi-square p = {srm_p:.2g} < {SRM_ALPHA}): "
                        f"sessions {split} do not match the configured shares; the assignment or the logging is "
                        "broken, so no outcome difference can be trusted")
    if fewest < rule.min_sessions:
        waiting = f"{fewest} sessions in the smallest arm, fewer than min_sessions {rule.min_sessions}"
        if limit:
            return Decision("stopped_no_difference", f"{limit} with {waiting}: too few sessions to decide")
        return Decision("continue", f"waiting: {waiting}")
    level = rule.alpha / max(len(comparisons), 1)
    wins, losses = {}, {}
    for arm, comparison in comparisons.items():
        if comparison.p_value > level:
            continue
        better = comparison.low > 0 if higher else comparison.high < 0
        worse = comparison.high < 0 if higher else comparison.low > 0
        if not (better or worse):  # the running minimum reached alpha but the interval holds 0: use the sign
            better = (comparison.estimate > 0) == higher
        (wins if better else losses)[arm] = comparison
    if wins:
        arm = max(wins, key=lambda name: wins[name].estimate if higher else -wins[name].estimate)
        return Decision("challenger_wins", f"{arm} beats {control} on {metric}: "
                        f"{_describe(wins[arm], level)}", arm)
    if losses and len(losses) == len(comparisons):
        arm = next(iter(losses))
        return Decision("control_wins", f"{control} beats {arm} on {metric}: {_describe(losses[arm], level)}")
    if limit:
        return Decision("stopped_no_difference", f"{limit}: no arm differs on {metric} at alpha {rule.alpha:g}")
    return Decision("continue", f"no difference on {metric} yet at alpha {rule.alpha:g} ({total} sessions)")


def _limit_reached(rule: StopRule, total: int, days: float, final: bool) -> str:
    if rule.max_sessions is not None and total >= rule.max_sessions:
        return f"max_sessions {rule.max_sessions} reached ({total} sessions)"
    if rule.max_days is not None and days >= rule.max_days:
        return f"max_days {rule.max_days:g} reached ({days:.1f} days)"
    return "concluded" if final else ""


def _describe(comparison: Comparison, level: float) -> str:
    return (f"difference {comparison.estimate:+.4f} (confidence sequence {comparison.low:+.4f} to "
            f"{comparison.high:+.4f}), always-valid p = {comparison.p_value:.2g} <= {level:.3g} after "
            f"{comparison.n_control} / {comparison.n_challenger} sessions")
