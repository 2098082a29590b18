"""Label-free accuracy estimates against the truth of synthetic windows."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.base import InvalidInputError, NotFittedError
from detectors.performance import ATCEstimator, OODAwareATCEstimator, average_confidence, fit_threshold
from detectors.synthetic import make_rows


def test_fit_threshold_by_hand() -> None:
    confidence = np.array([0.2, 0.4, 0.6, 0.8])
    assert fit_threshold(confidence, np.zeros(4, bool), 0.75) == 0.2  # three rows above 0.2
    # rows flagged OOD never count: with 0.8 flagged, 2 of 4 rows above the threshold need 0.6, 0.4 → t=0.2
    assert fit_threshold(confidence, np.array([False, False, False, True]), 0.5) == 0.2
    assert fit_threshold(confidence, np.ones(4, bool), 0.5) == -np.inf


def test_atc_tracks_accuracy_of_a_calibrated_model_on_clean_data() -> None:
    reference, window = make_rows(5000, seed=1), make_rows(3000, seed=2)
    estimate = ATCEstimator().fit(reference["confidence"], correct=reference["correct"]).estimate(window["confidence"])
    assert estimate.value == pytest.approx(window["correct"].mean(), abs=0.02)
    assert estimate.low <= estimate.value <= estimate.high


def test_ood_aware_estimate_is_closer_to_truth_when_unseen_intents_arrive() -> None:
    reference, window = make_rows(5000, seed=1), make_rows(3000, seed=3, new_intent_share=0.3)
    threshold = float(np.quantile(reference["ood_score"], 0.95))
    flags_ref, flags_win = reference["ood_score"] > threshold, window["ood_score"] > threshold
    truth = window["correct"].mean()
    confidence_only = average_confidence(window["confidence"]).value
    atc = ATCEstimator().fit(reference["confidence"], correct=reference["correct"]).estimate(window["confidence"])
    aware = OODAwareATCEstimator().fit(reference["confidence"], correct=reference["correct"], is_ood=flags_ref)
    aware_estimate = aware.estimate(window["confidence"], is_ood=flags_win)
    assert abs(aware_estimate.value - truth) < abs(atc.value - truth) < abs(confidence_only - truth)
    assert aware_estimate.details["flagged_ood_share"] > 0.2


def test_ood_aware_estimate_is_unbiased_on_clean_windows_despite_the_flags_false_positives() -> None:
    # A model that is right 99.8 % of the time, an OOD flag that fires on 5 % of its known traffic: a clean
    # window must estimate ~99.8 %, not 95 % (the flag's false positives are not errors).
    rng = np.random.default_rng(4)
    n = 20000
    confidence = rng.uniform(0.9, 1.0, n)
    correct = rng.uniform(size=n) < 0.998
    flags = rng.uniform(size=n) < 0.05
    aware = OODAwareATCEstimator().fit(confidence[:10000], correct=correct[:10000], is_ood=flags[:10000])
    clean = aware.estimate(confidence[10000:], is_ood=flags[10000:])
    assert clean.value == pytest.approx(correct[10000:].mean(), abs=0.01)
    assert clean.details["expected_ood_share"] == pytest.approx(0.05, abs=0.01)
    # a window where a third of the traffic is unknown (always flagged, always wrong)
    unknown = 5000
    shifted = aware.estimate(np.r_[confidence[10000:], rng.uniform(0.6, 1.0, unknown)],
                             is_ood=np.r_[flags[10000:], np.ones(unknown, bool)])
    truth = correct[10000:].sum() / (10000 + unknown)
    assert shifted.value == pytest.approx(truth, abs=0.02)
    assert shifted.low <= shifted.value <= shifted.high <= 1.0


def test_interval_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(0)
    small, large = average_confidence(rng.uniform(size=100)), average_confidence(rng.uniform(size=10000))
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_errors_say_what_is_missing() -> None:
    with pytest.raises(NotFittedError):
        ATCEstimator().estimate([0.5])
    with pytest.raises(InvalidInputError, match="exactly one"):
        ATCEstimator().fit([0.5, 0.6])
    with pytest.raises(InvalidInputError, match="is_ood"):
        OODAwareATCEstimator().fit([0.5, 0.6], accuracy=0.5)
    with pytest.raises(InvalidInputError):
        average_confidence([0.5, np.nan])
