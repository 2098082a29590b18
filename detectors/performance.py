"""Label-free accuracy estimates of a window, each with a bootstrap interval.

- :func:`average_confidence`: the mean calibrated confidence (right only when calibration holds).
- :class:`ATCEstimator` (Garg et al. 2022, "Leveraging unlabeled data to predict out-of-distribution
  performance"): a confidence threshold fitted on labelled reference rows so that the share of rows above
  it equals the reference accuracy; the estimate for a window is its share above the threshold.
- :class:`OODAwareATCEstimator`: the same, but rows flagged OOD count as wrong (beyond the reference's own
  OOD-flag rate), both when fitting and when estimating. Confidence alone misses accuracy drops from unseen
  intents (the model is confidently wrong there: an estimate of 0.84 against a true 0.50 was measured); the
  OOD flag catches most of them.

Every estimate is the mean of one value per row, so the interval is a percentile bootstrap over rows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> confidence = rng.uniform(0.3, 1.0, 5000)
    >>> correct = rng.uniform(size=5000) < confidence  # a calibrated model
    >>> atc = ATCEstimator().fit(confidence, correct=correct)
    >>> estimate = atc.estimate(rng.uniform(0.3, 1.0, 2000))
    >>> bool(abs(estimate.value - correct.mean()) < 0.03), estimate.low < estimate.value < estimate.high
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from detectors.base import EmptyWindowError, InvalidInputError, NotFittedError, as_finite_1d, json_safe


@dataclass(frozen=True)
class AccuracyEstimate:
    """Estimated accuracy of a window with a bootstrap interval (``level`` coverage)."""

    method: str
    value: float
    low: float
    high: float
    level: float
    n_rows: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "method": self.method,
                "value": self.value,
                "low": self.low,
                "high": self.high,
                "level": self.level,
                "n_rows": self.n_rows,
                "details": self.details,
            }
        )


def bootstrap_mean(
    per_row: np.ndarray, method: str, n_boot: int = 200, level: float = 0.9, seed: int = 0, **details: Any
) -> AccuracyEstimate:
    """Mean of ``per_row`` with a percentile bootstrap interval over rows.

    >>> bootstrap_mean(np.ones(10), "x").to_dict()["value"], bootstrap_mean(np.ones(10), "x").low
    (1.0, 1.0)
    """
    if len(per_row) == 0:
        raise EmptyWindowError(f"{method}: no rows to estimate accuracy from")
    rng = np.random.default_rng(seed)
    if np.isin(per_row, (0.0, 1.0)).all():
        # Resampling n rows of a 0/1 vector gives a Binomial(n, mean) count: exact and ~100x cheaper.
        means = rng.binomial(len(per_row), per_row.mean(), size=n_boot) / len(per_row)
    else:
        means = np.array([per_row[rng.integers(0, len(per_row), len(per_row))].mean() for _ in range(n_boot)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return AccuracyEstimate(method, float(per_row.mean()), float(low), float(high), level, len(per_row), details)


def average_confidence(confidence: Any, n_boot: int = 200, level: float = 0.9, seed: int = 0) -> AccuracyEstimate:
    """Accuracy estimated as the mean confidence (DoC/CBPE-style baseline).

    >>> round(average_confidence([0.9, 0.7, 0.8]).value, 6)
    0.8
    """
    values = _confidences(confidence, "window")
    return bootstrap_mean(values, "average_confidence", n_boot, level, seed)


def _confidences(confidence: Any, what: str) -> np.ndarray:
    values = as_finite_1d(confidence, what, "confidence")
    if len(values) == 0:
        raise EmptyWindowError(f"{what}: no confidences")
    return values


def _flags(is_ood: Any, n: int, what: str) -> np.ndarray:
    flags = np.zeros(n, dtype=bool) if is_ood is None else np.asarray(is_ood, dtype=bool).reshape(-1)
    if len(flags) != n:
        raise InvalidInputError(f"{what}: {len(flags)} OOD flags for {n} confidences")
    return flags


def fit_threshold(confidence: np.ndarray, is_ood: np.ndarray, accuracy: float) -> float:
    """The threshold ``t`` such that the share of rows with ``not is_ood and confidence > t`` is ``accuracy``
    (as close as the data allow; ``-inf`` when even all unflagged rows are too few).

    >>> fit_threshold(np.array([0.2, 0.4, 0.6, 0.8]), np.zeros(4, bool), 0.5)
    0.4
    """
    if not 0.0 <= accuracy <= 1.0:
        raise InvalidInputError(f"accuracy must be in [0, 1], got {accuracy}")
    candidates = np.sort(confidence[~is_ood])[::-1]
    wanted = round(accuracy * len(confidence))
    if wanted >= len(candidates):
        return float("-inf")
    return float(candidates[wanted])


class ATCEstimator:
    """Average thresholded confidence; ``ood_aware=True`` also counts OOD-flagged rows as wrong."""

    method = "atc"

    def __init__(self, ood_aware: bool = False, n_boot: int = 200, level: float = 0.9, seed: int = 0) -> None:
        self.ood_aware = ood_aware
        self.n_boot, self.level, self.seed = n_boot, level, seed
        self.threshold: float | None = None

    def fit(
        self,
        confidence: Any,
        correct: Any = None,
        accuracy: float | None = None,
        is_ood: Any = None,
    ) -> ATCEstimator:
        """Fit on reference rows: give ``correct`` (one bool per row) or the known ``accuracy``."""
        values = _confidences(confidence, "reference")
        if (correct is None) == (accuracy is None):
            raise InvalidInputError("give exactly one of correct (per row) or accuracy (the reference accuracy)")
        if correct is not None:
            correct = np.asarray(correct, dtype=bool).reshape(-1)
            if len(correct) != len(values):
                raise InvalidInputError(f"{len(correct)} correctness labels for {len(values)} confidences")
            accuracy = float(correct.mean())
        self.reference_accuracy = float(accuracy)
        flags = self._flags(is_ood, len(values), "reference")
        # The reference's own OOD share is the flag's false-positive rate on known traffic: expected, not an error.
        self.expected_ood_share = float(flags.mean())
        self.threshold = fit_threshold(values, flags, self.reference_accuracy * self._kept_share)
        return self

    @property
    def _kept_share(self) -> float:
        """Share of known-intent rows the OOD flag leaves unflagged (1 when not OOD-aware: no row is flagged)."""
        return max(1e-9, 1.0 - self.expected_ood_share)

    def estimate(self, confidence: Any, is_ood: Any = None) -> AccuracyEstimate:
        """Estimated accuracy of a window: share of unflagged rows above the threshold, divided by the share of
        known-intent rows the flag leaves unflagged (so only OOD beyond the reference's rate lowers it)."""
        if self.threshold is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(reference confidences, ...) first")
        values = _confidences(confidence, "window")
        flags = self._flags(is_ood, len(values), "window")
        per_row = ((values > self.threshold) & ~flags).astype(float)
        raw = bootstrap_mean(
            per_row,
            self.method,
            self.n_boot,
            self.level,
            self.seed,
            threshold=self.threshold,
            reference_accuracy=self.reference_accuracy,
            flagged_ood_share=float(flags.mean()),
            expected_ood_share=self.expected_ood_share,
        )
        scale = 1.0 / self._kept_share
        return replace(raw, value=min(1.0, raw.value * scale), low=min(1.0, raw.low * scale),
                       high=min(1.0, raw.high * scale))

    def _flags(self, is_ood: Any, n: int, what: str) -> np.ndarray:
        if self.ood_aware and is_ood is None:
            raise InvalidInputError(f"{type(self).__name__}: the OOD-aware estimate needs is_ood for the {what}")
        return _flags(is_ood if self.ood_aware else None, n, what)


class OODAwareATCEstimator(ATCEstimator):
    """ATC where OOD-flagged rows count as wrong (fit and estimate both need ``is_ood``), beyond the share of
    OOD flags the reference itself has: with the flag's threshold at 5 % in-distribution false positives, a
    clean window estimates the reference accuracy, not 5 points less. The flag cannot tell an unknown intent
    from a known one made unrecognisable (heavy ASR noise): there the estimate is too low
    (``benchmarks/detection.py``, ``asr-degradation``), and plain :class:`ATCEstimator` is the upper bound."""

    method = "ood_aware_atc"

    def __init__(self, n_boot: int = 200, level: float = 0.9, seed: int = 0) -> None:
        super().__init__(ood_aware=True, n_boot=n_boot, level=level, seed=seed)
