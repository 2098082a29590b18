"""Drift statistics checked against scipy, Evidently and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from detectors.base import DetectionResult, InvalidInputError, upper_quantile
from detectors.drift import CategoricalDriftDetector, EvidentlyValueDriftDetector, KSDriftDetector, ks_statistic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_statistic_matches_scipy_including_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference, current = np.round(rng.normal(size=700), 1), np.round(rng.normal(0.2, size=300), 1)
    assert ks_statistic(np.sort(reference), np.sort(current)) == pytest.approx(ks_2samp(reference, current).statistic)


def test_ks_score_is_size_scaled_statistic() -> None:
    rng = np.random.default_rng(0)
    detector = KSDriftDetector().fit(rng.normal(size=1000))
    detector.threshold = 1.0
    current = rng.normal(size=250)
    result = detector.score(current)
    effective_n = round(1000 * 250 / 1250)
    assert result.score == pytest.approx(math.sqrt(effective_n) * result.details["ks_statistic"])


def test_calibrated_ks_false_alarm_rate_holds_on_fresh_clean_windows_of_another_size() -> None:
    rng = np.random.default_rng(0)
    detector = KSDriftDetector().infer_threshold(rng.normal(size=6000), fpr=0.1, window_size=300, n_windows=200)
    alarms = [detector.score(rng.normal(size=1200)).drifted for _ in range(200)]
    assert 0.03 < np.mean(alarms) < 0.2  # the asked-for 10 %, up to noise, at 4x the calibration size


def test_chi2_statistic_by_hand() -> None:
    smoothed = CategoricalDriftDetector(method="chi2", alpha=1.0).fit(np.array(["a", "a", "b", "b"]))
    smoothed.threshold = 0.0
    # reference counts+1: a=3, b=3, unseen=1 → shares 3/7, 3/7, 1/7; window a,a,a,c → counts 3, 0, 1 (n=4)
    expected = 4 * np.array([3, 3, 1]) / 7
    by_hand = float(np.sum((np.array([3, 0, 1]) - expected) ** 2 / expected))
    result = smoothed.score(np.array(["a", "a", "a", "c"]))
    assert result.score == pytest.approx(by_hand)
    assert result.details["unseen_share"] == 0.25


def test_slot_mix_counts_every_slot_and_rows_without_slots() -> None:
    detector = CategoricalDriftDetector("slot_types", method="js").fit(pd.DataFrame({"slot_types": [["a", "b"], []]}))
    detector.threshold = 0.5
    same = detector.score(pd.DataFrame({"slot_types": [["b", "a"], []]}))
    assert same.details["n_labels"] == 3 and same.score == pytest.approx(0.0)


def test_evidently_ks_agrees_with_scipy_p_value() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=400), rng.normal(0.25, size=200)
    detector = EvidentlyValueDriftDetector(method="ks").fit(reference)
    detector.threshold = 1.3
    result = detector.score(current)
    assert result.details["p_value"] == pytest.approx(ks_2samp(reference, current).pvalue, rel=1e-6)
    assert result.score == pytest.approx(-math.log10(result.details["p_value"]))


def test_unknown_method_is_a_named_error() -> None:
    with pytest.raises(InvalidInputError):
        CategoricalDriftDetector(method="psi")


def test_result_to_dict_is_json_safe() -> None:
    result = DetectionResult(np.float32(1.5), math.inf, np.bool_(False), "ks", "x", {"gap": np.nan, "v": np.arange(2)})
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["details"] == {"gap": None, "v": [0, 1]}


def test_upper_quantile_rejects_bad_fpr() -> None:
    with pytest.raises(InvalidInputError):
        upper_quantile(np.arange(3.0), 0.0)
