"""The sequential test of experiments.stats on seeded simulations: valid under the null while looked at
continuously, powerful under an alternative, confidence sequences that cover the truth; Wilson and t intervals;
the sample-ratio-mismatch check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import (
    DEFAULT_EFFECT,
    SRM_ALPHA,
    always_valid_p,
    compare_means,
    compare_proportions,
    confidence_sequence,
    first_decision,
    mean_interval,
    msprt_p_value,
    running_intersection,
    srm_p_value,
    tau_for,
    wilson_interval,
)

ALPHA = 0.05


def rate_paths(seed: int, runs: int, looks: int, every: int, p_control: float, p_challenger: float, share=0.5):
    """Cumulative (n_c, x_c, n_t, x_t) per look, shape (runs, looks): sessions arriving in batches of ``every``."""
    rng = np.random.default_rng(seed)
    n_t = rng.binomial(every, share, (runs, looks))
    n_c = every - n_t
    x_c, x_t = rng.binomial(n_c, p_control), rng.binomial(n_t, p_challenger)
    return tuple(np.cumsum(a, axis=1) for a in (n_c, x_c, n_t, x_t))


def decided(paths, tau=0.03, min_sessions=200):
    n_c, x_c, n_t, x_t = paths
    test = compare_proportions(x_c, n_c, x_t, n_t, tau=tau, alpha=ALPHA)
    return test, first_decision(test.p_value, n_c, n_t, min_sessions=min_sessions, alpha=ALPHA)


def test_null_false_positive_rate_stays_under_alpha_with_a_look_every_50_sessions():
    paths = rate_paths(seed=1, runs=500, looks=400, every=50, p_control=0.3, p_challenger=0.3)
    _test, stop = decided(paths)
    assert np.mean(stop >= 0) <= ALPHA


def test_the_same_sequences_fool_a_fixed_horizon_test_that_is_peeked_at():
    """The reason for the sequential test: the z-test looked at 400 times rejects a true null far too often."""
    n_c, x_c, n_t, x_t = rate_paths(seed=1, runs=500, looks=400, every=50, p_control=0.3, p_challenger=0.3)
    pooled = (x_c + x_t) / (n_c + n_t)
    z = (x_t / n_t - x_c / n_c) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    eligible = (n_c >= 200) & (n_t >= 200)
    assert np.mean(((np.abs(z) >= sps.norm.ppf(1 - ALPHA / 2)) & eligible).any(axis=1)) > 3 * ALPHA


def test_null_false_positive_rate_of_the_mean_metric():
    rng = np.random.default_rng(2)
    runs, looks, every = 500, 200, 50
    ratings, shares = np.arange(1, 6), np.array([0.1, 0.1, 0.2, 0.3, 0.3])
    moments = []
    for _arm in range(2):
        counts = rng.multinomial(np.full(runs * looks, every // 2), shares).reshape(runs, looks, 5)
        n = np.cumsum(counts.sum(axis=2), axis=1)
        total, squares = np.cumsum(counts @ ratings, axis=1), np.cumsum(counts @ ratings ** 2, axis=1)
        mean = total / n
        moments.append((mean, (squares - n * mean ** 2) / (n - 1), n))
    (mc, vc, nc), (mt, vt, nt) = moments
    test = compare_means(mc, vc, nc, mt, vt, nt, tau=DEFAULT_EFFECT["mean"], alpha=ALPHA)
    assert np.mean(first_decision(test.p_value, nc, nt, min_sessions=200, alpha=ALPHA) >= 0) <= ALPHA


def test_a_large_lift_is_found_early_and_in_the_right_direction():
    paths = rate_paths(seed=3, runs=200, looks=200, every=50, p_control=0.5, p_challenger=0.6)
    test, stop = decided(paths)
    assert np.mean(stop >= 0) >= 0.95
    at = np.maximum(stop, 0)[:, None]
    assert np.all(np.take_along_axis(test.estimate, at, axis=1)[stop >= 0] > 0)
    assert np.median((stop[stop >= 0] + 1) * 50) < 4000  # a fixed test needs ~770 per arm for 80 % power


def test_a_two_point_lift_needs_more_sessions_than_a_five_point_lift():
    small = decided(rate_paths(seed=4, runs=200, looks=600, every=100, p_control=0.65, p_challenger=0.67))[1]
    large = decided(rate_paths(seed=5, runs=200, looks=600, every=100, p_control=0.65, p_challenger=0.70))[1]
    assert np.mean(small >= 0) >= 0.8 and np.mean(large >= 0) == 1.0
    assert np.median(large[large >= 0]) * 3 < np.median(small[small >= 0])


def test_the_confidence_sequence_covers_the_true_difference_at_every_look():
    lift = 0.03
    n_c, x_c, n_t, x_t = rate_paths(seed=6, runs=500, looks=200, every=100, p_control=0.4, p_challenger=0.4 + lift)
    test = compare_proportions(x_c, n_c, x_t, n_t, tau=0.03, alpha=ALPHA)
    eligible = (n_c >= 200) & (n_t >= 200)
    low, high = running_intersection(np.where(eligible, test.low, -1.0), np.where(eligible, test.high, 1.0))
    covered = ((low <= lift) & (lift <= high)).all(axis=1)
    assert covered.mean() >= 1 - ALPHA
    assert np.all(high[:, -1] - low[:, -1] < 0.06)  # and it narrows (+-0.7 points standard error at the end)


def test_the_confidence_sequence_is_the_set_where_the_test_does_not_reject():
    low, high = confidence_sequence(0.02, 1e-4, 0.03, ALPHA)
    assert float(msprt_p_value(0.02 - low, 1e-4, 0.03)) == pytest.approx(ALPHA, rel=1e-6)
    assert float(msprt_p_value(high - 0.02, 1e-4, 0.03)) == pytest.approx(ALPHA, rel=1e-6)


def test_the_always_valid_p_value_only_goes_down():
    p = always_valid_p([[0.9, 0.3, 0.5, 0.1, 0.4]])
    assert p.tolist() == [[0.9, 0.3, 0.3, 0.1, 0.1]]


def test_no_information_gives_no_evidence():
    nothing = compare_proportions(0, 0, 0, 0, tau=0.03, alpha=ALPHA)
    assert nothing.p_value == 1.0 and (nothing.low, nothing.high) == (-1.0, 1.0)
    one = compare_means(4.0, 0.0, 1, 2.0, 0.0, 1, tau=0.15, alpha=ALPHA)
    assert one.p_value == 1.0 and (one.low, one.high) == (-4.0, 4.0)


def test_array_and_scalar_calls_agree():
    many = compare_proportions(np.array([300, 310]), 1000, np.array([330, 400]), 1000, tau=0.03, alpha=ALPHA)
    for index, x_t in enumerate((330, 400)):
        one = compare_proportions(300 + 10 * index, 1000, x_t, 1000, tau=0.03, alpha=ALPHA)
        assert many.p_value[index] == pytest.approx(one.p_value) and many.low[index] == pytest.approx(one.low)


def test_tau_comes_from_the_expected_effect():
    assert tau_for("task_completed") == DEFAULT_EFFECT["rate"] and tau_for("satisfaction") == DEFAULT_EFFECT["mean"]
    assert tau_for("escalated", 0.01) == 0.01


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17, table I: 81/263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(float(low), 4), round(float(high), 4)) == (0.2553, 0.3662)
    assert np.isnan(wilson_interval(0, 0)[0])


def test_wilson_interval_covers_a_small_rate_where_wald_does_not():
    rng = np.random.default_rng(7)
    x = rng.binomial(40, 0.03, 20000)
    low, high = wilson_interval(x, 40)
    assert np.mean((low <= 0.03) & (0.03 <= high)) >= 0.9


def test_mean_interval_is_a_t_interval():
    low, high = mean_interval(3.0, 4.0, 10)
    half = sps.t.ppf(0.975, 9) * np.sqrt(0.4)
    assert (float(low), float(high)) == pytest.approx((3.0 - half, 3.0 + half))
    assert np.isnan(mean_interval(3.0, 0.0, 1)[0])


def test_srm_flags_a_52_48_split_at_100k_sessions():
    assert srm_p_value([52_000, 48_000], [0.5, 0.5]) < SRM_ALPHA


def test_srm_passes_a_fair_split():
    rng = np.random.default_rng(8)
    challenger = int(rng.binomial(100_000, 0.5))
    assert srm_p_value([100_000 - challenger, challenger], [0.5, 0.5]) > SRM_ALPHA
    uneven = int(rng.binomial(100_000, 0.1))
    assert srm_p_value([100_000 - uneven, uneven], [0.9, 0.1]) > SRM_ALPHA
    assert srm_p_value([90_000, 10_000], [0.5, 0.5]) < SRM_ALPHA  # the same counts against the wrong shares


def test_srm_waits_for_enough_sessions():
    assert np.isnan(srm_p_value([3, 1], [0.5, 0.5]))
