"""One contract over every detector (river's estimator checks): deterministic with a seed, quiet on identical
data, loud on a clear shift, and named errors for empty input, NaN input and missing fit/threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.base import EmptyWindowError, InvalidInputError, NotFittedError, ThresholdNotInferredError
from detectors.drift import CategoricalDriftDetector, EvidentlyValueDriftDetector, KSDriftDetector
from detectors.embedding import EvidentlyEmbeddingDriftDetector, MMDDriftDetector
from detectors.ood import EnergyOOD, MahalanobisOOD, MaxSoftmaxOOD, OODRateDetector

LABELS = np.array([f"intent_{k}" for k in range(12)])


def numeric(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    return rng.normal(shift, 1.0, n)


def labels(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    shares = np.linspace(1.0, 2.0, len(LABELS)) if shift == 0 else np.linspace(2.0, 0.2, len(LABELS)) ** 3
    return rng.choice(LABELS, size=n, p=shares / shares.sum())


def slot_lists(rng: np.random.Generator, n: int, shift: float) -> list[list[str]]:
    pool = ["product", "brand", "store"] if shift == 0 else ["order_id", "date", "store"]
    return [list(rng.choice(pool, size=rng.integers(0, 3))) for _ in range(n)]


def embeddings(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    return rng.normal(size=(n, 8)) + 1.5 * shift


@dataclass
class Case:
    name: str
    factory: Callable[[], Any]
    data: Callable[[np.random.Generator, int, float], Any]
    with_nan: Any
    window: int = 200
    n_windows: int = 40


NAN_VECTOR = np.array([0.1, np.nan, 0.3] * 20)
NAN_LABELS = np.array(["a", None, "b"] * 20, dtype=object)
NAN_MATRIX = np.where(np.eye(60, 8) > 0, np.nan, 1.0)

WINDOW_CASES = [
    Case("ks", lambda: KSDriftDetector(), numeric, NAN_VECTOR),
    Case("chi2", lambda: CategoricalDriftDetector(method="chi2"), labels, NAN_LABELS),
    Case("js", lambda: CategoricalDriftDetector(method="js"), labels, np.array(["a", np.nan] * 30, dtype=object)),
    Case("slot_mix", lambda: CategoricalDriftDetector(method="chi2"), slot_lists, [["a"], np.nan] * 30),
    Case("mmd", lambda: MMDDriftDetector(feature=None, max_sample=150), embeddings, NAN_MATRIX),
    Case("ood_rate", lambda: OODRateDetector(ood_threshold=1.5, feature=None), numeric, NAN_VECTOR),
    Case("evidently_ks", lambda: EvidentlyValueDriftDetector(method="ks"), numeric, NAN_VECTOR, n_windows=8),
    Case(
        "evidently_wasserstein",
        lambda: EvidentlyValueDriftDetector(method="wasserstein"),
        numeric,
        NAN_VECTOR,
        n_windows=8,
    ),
    *[
        Case(
            f"evidently_emb_{method}",
            lambda m=method, o=options: EvidentlyEmbeddingDriftDetector(None, m, max_sample=150, method_options=o),
            embeddings,
            NAN_MATRIX,
            n_windows=10,
        )
        for method, options in (("distance", {}), ("ratio", {"component_stattest_threshold": 0.3}), ("model", {}))
    ],
]


_CALIBRATED: dict[str, tuple[Any, Any]] = {}


def calibrated(case: Case, seed: int = 0, fresh: bool = False) -> tuple[Any, Any]:
    """A fitted, calibrated detector and its reference (cached: Evidently calibration takes seconds)."""
    if fresh or case.name not in _CALIBRATED:
        _CALIBRATED[case.name] = _calibrate(case, seed)
    return _CALIBRATED[case.name]


def _calibrate(case: Case, seed: int) -> tuple[Any, Any]:
    reference = case.data(np.random.default_rng(100), 2000, 0.0)
    detector = case.factory().fit(reference)
    detector.infer_threshold(reference, fpr=0.05, window_size=case.window, n_windows=case.n_windows, seed=seed)
    return detector, reference


@pytest.mark.parametrize("case", WINDOW_CASES, ids=lambda case: case.name)
class TestWindowDetectorContract:
    def test_same_seed_gives_same_threshold_and_score(self, case: Case) -> None:
        first, _ = calibrated(case, fresh=True)
        second, _ = calibrated(case, fresh=True)
        window = case.data(np.random.default_rng(7), case.window, 0.0)
        assert first.threshold == second.threshold
        assert first.score(window).to_dict() == second.score(window).to_dict()

    def test_identical_data_does_not_drift(self, case: Case) -> None:
        detector, reference = calibrated(case)
        assert not detector.score(reference).drifted

    def test_clear_shift_drifts(self, case: Case) -> None:
        detector, _ = calibrated(case)
        result = detector.score(case.data(np.random.default_rng(8), case.window, 1.0))
        assert result.drifted and result.score > result.threshold

    def test_empty_window_raises_named_error(self, case: Case) -> None:
        detector, _ = calibrated(case)
        with pytest.raises(EmptyWindowError):
            detector.score(case.data(np.random.default_rng(9), 0, 0.0))

    def test_nan_raises_named_error(self, case: Case) -> None:
        detector, _ = calibrated(case)
        with pytest.raises(InvalidInputError):
            detector.score(case.with_nan)
        with pytest.raises(InvalidInputError):
            case.factory().fit(case.with_nan)

    def test_score_before_fit_or_threshold_says_what_to_do(self, case: Case) -> None:
        window = case.data(np.random.default_rng(10), case.window, 0.0)
        with pytest.raises(NotFittedError, match="fit"):
            case.factory().score(window)
        with pytest.raises(ThresholdNotInferredError, match="infer_threshold"):
            case.factory().fit(window).score(window)


def logits(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """In-distribution: one class clearly ahead; shifted (OOD): flat logits."""
    matrix = rng.normal(0.0, 0.3, size=(n, 5))
    if shift == 0:
        matrix[np.arange(n), rng.integers(0, 5, n)] += 4.0
    return matrix


def fitted_scorer(name: str) -> tuple[Any, Callable[[np.random.Generator, int, float], np.ndarray]]:
    if name == "mahalanobis":
        rng = np.random.default_rng(1)
        classes = rng.integers(0, 3, 1500)
        centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])

        def data(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
            return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 3)) + np.array([-6.0, -6.0, 9.0]) * shift

        return MahalanobisOOD().fit(centres[classes] + rng.normal(size=(1500, 3)), classes), data
    scorer = MaxSoftmaxOOD() if name == "msp" else EnergyOOD()
    return scorer.fit(), logits


@pytest.mark.parametrize("name", ["msp", "energy", "mahalanobis"])
class TestOODScorerContract:
    def test_deterministic_and_quiet_on_in_distribution(self, name: str) -> None:
        scorer, data = fitted_scorer(name)
        in_distribution = data(np.random.default_rng(2), 2000, 0.0)
        scorer.infer_threshold(scorer.score(in_distribution), fpr=0.05)
        np.testing.assert_array_equal(scorer.score(in_distribution), scorer.score(in_distribution))
        fresh = data(np.random.default_rng(3), 2000, 0.0)
        assert 0.02 < scorer.predict(fresh).mean() < 0.09  # the asked-for 5 %, up to sampling noise

    def test_flags_clear_ood(self, name: str) -> None:
        scorer, data = fitted_scorer(name)
        scorer.infer_threshold(scorer.score(data(np.random.default_rng(2), 2000, 0.0)), fpr=0.05)
        assert scorer.predict(data(np.random.default_rng(4), 500, 1.0)).mean() > 0.9

    def test_named_errors(self, name: str) -> None:
        scorer, data = fitted_scorer(name)
        with pytest.raises(EmptyWindowError):
            scorer.score(np.empty((0, 3)))
        with pytest.raises(InvalidInputError):
            scorer.score(np.full((4, 3), np.nan))
        with pytest.raises(ThresholdNotInferredError):
            scorer.predict(data(np.random.default_rng(5), 10, 0.0))
        unfitted = type(scorer)()
        with pytest.raises(NotFittedError):
            unfitted.score(data(np.random.default_rng(5), 10, 0.0))


def test_window_detectors_read_their_column_from_a_dataframe() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"confidence": rng.uniform(size=300)})
    detector = KSDriftDetector("confidence").infer_threshold(frame, fpr=0.1, window_size=50, n_windows=20)
    assert detector.score(frame.iloc[:60]).feature == "confidence"
    with pytest.raises(InvalidInputError, match="no column 'margin'"):
        KSDriftDetector("margin").fit(frame)
