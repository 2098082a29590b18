"""OOD scores and metrics checked by hand and against sklearn/scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.metrics import roc_auc_score

from detectors.base import EmptyWindowError, InvalidInputError
from detectors.ood import EnergyOOD, MahalanobisOOD, MaxSoftmaxOOD, auroc, fpr_at_tpr, ood_rate


def test_auroc_by_hand() -> None:
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0  # perfectly separated
    assert auroc([0.3, 0.4], [0.1, 0.2]) == 0.0  # perfectly reversed
    # pairs (out > in): 0.25 beats 0.1 and 0.2; 0.4 beats all three → 5 of 6
    assert auroc([0.1, 0.2, 0.3], [0.25, 0.4]) == pytest.approx(5 / 6)


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    inside, outside = np.round(rng.normal(size=300), 1), np.round(rng.normal(1.0, size=100), 1)
    truth = np.r_[np.zeros(300), np.ones(100)]
    assert auroc(inside, outside) == pytest.approx(roc_auc_score(truth, np.r_[inside, outside]))


def test_fpr_at_tpr_by_hand() -> None:
    inside = [0.1, 0.2, 0.3, 0.6, 0.65]
    outside = [0.5, 0.7, 0.8, 0.9]
    assert fpr_at_tpr(inside, outside, tpr=0.5) == 0.0  # threshold 0.8
    assert fpr_at_tpr(inside, outside, tpr=0.75) == 0.0  # threshold 0.7
    assert fpr_at_tpr(inside, outside, tpr=0.95) == pytest.approx(2 / 5)  # needs all 4 → threshold 0.5


def test_msp_and_energy_by_hand() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    msp = MaxSoftmaxOOD().fit().score(logits)
    assert msp == pytest.approx([-np.exp(2) / (np.exp(2) + 1), -0.5])
    energy = EnergyOOD(temperature=2.0).fit().score(logits)
    assert energy == pytest.approx([-2 * np.log(np.exp(1) + 1), -2 * np.log(2)])


def test_mahalanobis_matches_scipy_distance_to_nearest_mean() -> None:
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0]])
    covariance = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    detector = MahalanobisOOD(shrinkage=0.0).from_stats(means, covariance)
    points = rng.normal(size=(5, 3))
    precision = np.linalg.inv(covariance)
    expected = [min(mahalanobis(p, mu, precision) ** 2 for mu in means) for p in points]
    assert detector.score(points) == pytest.approx(expected)


def test_mahalanobis_fit_uses_class_means() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(["a", "b"], 500)
    embeddings = np.where(labels[:, None] == "a", -4.0, 4.0) + rng.normal(size=(1000, 2))
    detector = MahalanobisOOD().fit(embeddings, labels)
    assert detector.means == pytest.approx(np.array([[-4.0, -4.0], [4.0, 4.0]]), abs=0.2)
    with pytest.raises(InvalidInputError):
        detector.fit(embeddings, labels[:10])


def test_infer_threshold_flags_the_asked_share_of_in_distribution() -> None:
    scores = np.arange(1000.0)
    scorer = MaxSoftmaxOOD().fit().infer_threshold(scores, fpr=0.05)
    assert np.mean(scores > scorer.threshold) == pytest.approx(0.05, abs=0.002)


def test_ood_rate() -> None:
    assert ood_rate(np.array([True, False, False, False])) == 0.25
    assert ood_rate([0.2, 0.8, 0.9], threshold=0.5) == pytest.approx(2 / 3)
    with pytest.raises(EmptyWindowError):
        ood_rate([])
    with pytest.raises(InvalidInputError):
        ood_rate([0.2, 0.8])
