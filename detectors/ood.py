"""Out-of-distribution scores per utterance, their thresholds, and the OOD rate of a window.

Every scorer returns *higher = more out-of-distribution*: :class:`MaxSoftmaxOOD` (``-max softmax``),
:class:`EnergyOOD` (``-T·logsumexp(logits/T)``) and :class:`MahalanobisOOD` (smallest class-conditional
Mahalanobis distance with a shared covariance). A threshold is inferred from in-distribution scores at
a target false-positive rate (share of in-distribution utterances flagged), never typed in.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> means = np.array([[4.0, 0.0], [0.0, 4.0]])
    >>> labels = rng.integers(0, 2, 2000)
    >>> in_distribution = means[labels] + rng.normal(size=(2000, 2))
    >>> detector = MahalanobisOOD().fit(in_distribution, labels)
    >>> detector.infer_threshold(detector.score(in_distribution), fpr=0.05).predict(np.array([[9.0, 9.0]]))
    array([ True])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax
from scipy.stats import rankdata

from detectors.base import (
    EmptyWindowError,
    InvalidInputError,
    NotFittedError,
    ThresholdNotInferredError,
    WindowDetector,
    as_finite_1d,
    as_finite_2d,
    upper_quantile,
)


class OODScorer:
    """Shared part of the per-utterance scorers: threshold inference, ``predict`` and ``ood_rate``."""

    method = "abstract"

    def __init__(self) -> None:
        self.threshold: float | None = None
        self._fitted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

    def infer_threshold(self, in_distribution_scores: Any, fpr: float = 0.05) -> OODScorer:
        """Flag the top ``fpr`` share of in-distribution scores; returns ``self``."""
        scores = as_finite_1d(in_distribution_scores, "in-distribution scores", self.method)
        if len(scores) == 0:
            raise EmptyWindowError("no in-distribution scores to infer a threshold from")
        self.threshold = upper_quantile(scores, fpr)
        return self

    def score(self, data: Any) -> np.ndarray:
        """OOD score per row (higher = more out-of-distribution)."""
        if not self._fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(...) first")
        matrix = as_finite_2d(data, "input", self.method)
        if len(matrix) == 0:
            raise EmptyWindowError(f"{self.method}: no rows to score")
        return self._score(matrix)

    def predict(self, data: Any) -> np.ndarray:
        """``True`` for rows scored above the threshold."""
        if self.threshold is None:
            raise ThresholdNotInferredError(f"{self!r}: call infer_threshold(in_distribution_scores, fpr) first")
        return self.score(data) > self.threshold

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MaxSoftmaxOOD(OODScorer):
    """Baseline of Hendrycks & Gimpel (2017): score = ``-max softmax(logits / temperature)``."""

    method = "msp"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def fit(self, in_distribution_logits: Any = None) -> MaxSoftmaxOOD:
        """Nothing to learn from the data; kept so that every scorer is used the same way."""
        self._fitted = True
        return self

    def _score(self, logits: np.ndarray) -> np.ndarray:
        return -softmax(logits / self.temperature, axis=1).max(axis=1)


class EnergyOOD(OODScorer):
    """Energy score of Liu et al. (2020): ``-T·logsumexp(logits / T)``; low energy = in-distribution."""

    method = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def fit(self, in_distribution_logits: Any = None) -> EnergyOOD:
        """Nothing to learn from the data; kept so that every scorer is used the same way."""
        self._fitted = True
        return self

    def _score(self, logits: np.ndarray) -> np.ndarray:
        return -self.temperature * logsumexp(logits / self.temperature, axis=1)


class MahalanobisOOD(OODScorer):
    """Lee et al. (2018): class means and one shared covariance of in-distribution embeddings; score =
    squared Mahalanobis distance to the nearest class mean. ``shrinkage`` adds a ridge (share of the mean
    variance) so that the covariance of few rows in many dimensions can be inverted."""

    method = "mahalanobis"

    def __init__(self, shrinkage: float = 1e-3) -> None:
        super().__init__()
        self.shrinkage = shrinkage

    def fit(self, embeddings: Any, labels: Any) -> MahalanobisOOD:
        """Class-conditional means and the shared (pooled, within-class) covariance."""
        matrix = as_finite_2d(embeddings, "embeddings", self.method)
        labels = np.asarray(labels)
        if len(matrix) == 0 or len(matrix) != len(labels):
            raise InvalidInputError(f"need as many labels as embeddings (>0), got {len(labels)} and {len(matrix)}")
        classes, codes = np.unique(labels, return_inverse=True)
        means = np.stack([matrix[codes == k].mean(axis=0) for k in range(len(classes))])
        centred = matrix - means[codes]
        covariance = centred.T @ centred / max(len(matrix) - len(classes), 1)
        return self.from_stats(means, covariance, classes=classes)

    def from_stats(self, means: Any, covariance: Any, classes: Any = None) -> MahalanobisOOD:
        """Use given class means (k × d) and shared covariance (d × d), e.g. from a model package."""
        means = as_finite_2d(means, "means", self.method)
        covariance = as_finite_2d(covariance, "covariance", self.method)
        if covariance.shape != (means.shape[1], means.shape[1]):
            raise InvalidInputError(f"covariance must be {means.shape[1]}x{means.shape[1]}, got {covariance.shape}")
        ridge = self.shrinkage * float(np.trace(covariance)) / len(covariance)
        self._precision = np.linalg.pinv(covariance + ridge * np.eye(len(covariance)), hermitian=True)
        self.means = means
        self.classes = np.arange(len(means)) if classes is None else np.asarray(classes)
        self._fitted = True
        return self

    def _score(self, embeddings: np.ndarray) -> np.ndarray:
        if embeddings.shape[1] != self.means.shape[1]:
            raise InvalidInputError(f"embeddings have {embeddings.shape[1]} dims, the means {self.means.shape[1]}")
        # (x-μ)ᵀP(x-μ) = xᵀPx - 2xᵀPμ + μᵀPμ for all classes at once, without an n × k × d tensor.
        projected = embeddings @ self._precision
        distances = (
            (projected * embeddings).sum(1)[:, None]
            - 2.0 * projected @ self.means.T
            + ((self.means @ self._precision) * self.means).sum(1)[None, :]
        )
        return np.maximum(distances.min(axis=1), 0.0)


def ood_rate(flags_or_scores: Any, threshold: float | None = None) -> float:
    """Share of a window flagged OOD: booleans as they are, or scores compared with ``threshold``.

    >>> ood_rate([True, False, False, True]), ood_rate([0.1, 0.9, 0.5], threshold=0.5)
    (0.5, 0.3333333333333333)
    """
    values = np.asarray(flags_or_scores)
    if values.size == 0:
        raise EmptyWindowError("ood_rate of an empty window")
    if threshold is None:
        if values.dtype != bool:
            raise InvalidInputError("ood_rate needs booleans, or scores with a threshold")
        return float(values.mean())
    return float((as_finite_1d(values, "window", "ood_score") > threshold).mean())


def auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve with OOD as the positive class (ties count one half).

    >>> auroc([0.1, 0.2, 0.3], [0.25, 0.4]), auroc([1.0, 1.0], [1.0])
    (0.8333333333333334, 0.5)
    """
    inside = as_finite_1d(in_scores, "in-distribution scores", "auroc")
    outside = as_finite_1d(out_scores, "OOD scores", "auroc")
    if len(inside) == 0 or len(outside) == 0:
        raise EmptyWindowError("auroc needs at least one in-distribution and one OOD score")
    ranks = rankdata(np.concatenate([outside, inside]))
    rank_sum = ranks[: len(outside)].sum() - len(outside) * (len(outside) + 1) / 2.0
    return float(rank_sum / (len(outside) * len(inside)))


def fpr_at_tpr(in_scores: Any, out_scores: Any, tpr: float = 0.95) -> float:
    """Share of in-distribution scores flagged at the highest threshold that flags ``tpr`` of OOD scores
    (a row is flagged when its score is ``>=`` the threshold).

    >>> fpr_at_tpr([0.1, 0.2, 0.3, 0.6], [0.5, 0.7, 0.8, 0.9], tpr=0.75)  # threshold 0.7 flags no in-score
    0.0
    >>> fpr_at_tpr([0.1, 0.2, 0.3, 0.6], [0.5, 0.7, 0.8, 0.9], tpr=1.0)  # threshold 0.5 also flags 0.6
    0.25
    """
    inside = as_finite_1d(in_scores, "in-distribution scores", "fpr_at_tpr")
    outside = np.sort(as_finite_1d(out_scores, "OOD scores", "fpr_at_tpr"))[::-1]
    if len(inside) == 0 or len(outside) == 0:
        raise EmptyWindowError("fpr_at_tpr needs at least one in-distribution and one OOD score")
    if not 0.0 < tpr <= 1.0:
        raise InvalidInputError(f"tpr must be in (0, 1], got {tpr}")
    needed = int(np.ceil(tpr * len(outside) - 1e-12))
    threshold = outside[needed - 1]
    return float((inside >= threshold).mean())


class OODRateDetector(WindowDetector):
    """Window detector on the share of rows whose ``ood_score`` exceeds ``ood_threshold``: score = the
    binomial z-score of the window's OOD rate against the reference rate (the rate is in details); the
    threshold is calibrated so that sampling noise alone rarely crosses it."""

    method = "ood_rate"
    min_rows = 1

    @property
    def feature_name(self) -> str:
        return "ood_rate"  # distinct from the KS drift result on the same ood_score column

    def __init__(self, ood_threshold: float, feature: str | None = "ood_score") -> None:
        super().__init__(feature)
        self.ood_threshold = ood_threshold

    def _prepare(self, data: Any, what: str) -> np.ndarray:
        return as_finite_1d(data, what, self.feature_name)

    def _fit(self, values: np.ndarray) -> None:
        self.reference_rate = float((values > self.ood_threshold).mean())

    def _statistic(self, values: np.ndarray) -> tuple[float, dict[str, Any]]:
        rate = float((values > self.ood_threshold).mean())
        # A binomial z-score: the same threshold fits windows of any size. The floor keeps a reference
        # with (almost) no flagged rows from turning one flagged row into a huge score.
        variance = max(self.reference_rate * (1.0 - self.reference_rate), 1.0 / len(values)) / len(values)
        z_score = (rate - self.reference_rate) / math.sqrt(variance)
        return z_score, {"ood_rate": rate, "reference_rate": self.reference_rate, "ood_threshold": self.ood_threshold}
