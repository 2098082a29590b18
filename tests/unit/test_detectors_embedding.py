"""MMD checked against a brute-force computation; Evidently's methods called without harming inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.base import InvalidInputError
from detectors.embedding import EvidentlyEmbeddingDriftDetector, MMDDriftDetector


def brute_force_mmd2(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-gamma * np.sum((a - b) ** 2)))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_brute_force_and_median_heuristic() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, size=(9, 3))
    detector = MMDDriftDetector(feature=None, max_sample=100).fit(x)
    detector.threshold = 0.0
    distances = [np.sum((x[i] - x[j]) ** 2) for i in range(12) for j in range(12) if i != j]
    result = detector.score(y)
    assert result.details["gamma"] == pytest.approx(1.0 / np.median(distances))
    assert result.details["mmd2"] == pytest.approx(brute_force_mmd2(x, y, result.details["gamma"]), rel=1e-4)
    assert result.score == pytest.approx(12 * 9 / 21 * result.details["mmd2"])


def test_mmd_memory_is_bounded_by_max_sample() -> None:
    rng = np.random.default_rng(1)
    detector = MMDDriftDetector(feature=None, max_sample=50).fit(rng.normal(size=(5000, 4)))
    detector.threshold = 0.0
    result = detector.score(rng.normal(size=(4000, 4)))
    assert result.details["n_sampled"] == 50 and result.details["n_reference_sampled"] == 50


def test_reads_embedding_sketch_lists_and_checks_dimensions() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"embedding_sketch": list(rng.normal(size=(100, 32)))})
    detector = MMDDriftDetector(max_sample=60).fit(frame)
    detector.threshold = 1.0
    assert detector.score(frame).feature == "embedding_sketch"
    with pytest.raises(InvalidInputError, match="dims"):
        detector.score(rng.normal(size=(10, 16)))


def test_evidently_model_method_does_not_mutate_the_reference() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(200, 4))
    detector = EvidentlyEmbeddingDriftDetector(None, "model", max_sample=200).fit(reference)
    detector.threshold = 0.9
    before = detector._reference.copy()
    detector.score(rng.normal(size=(100, 4)))
    detector.score(rng.normal(size=(100, 4)))  # a mutated reference would carry a 'target' column here
    pd.testing.assert_frame_equal(detector._reference, before)


def test_unknown_evidently_method_is_a_named_error() -> None:
    with pytest.raises(InvalidInputError):
        EvidentlyEmbeddingDriftDetector(evidently_method="tsne")
