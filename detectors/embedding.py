"""Drift of embeddings (the 32-d ``embedding_sketch``, or full 384-d embeddings offline).

:class:`MMDDriftDetector` is a kernel two-sample test: unbiased MMD² with an RBF kernel whose width is set
once, at fit, by the median heuristic on the reference; both samples are capped at ``max_sample`` rows so
that memory stays flat (two ``max_sample``² kernel blocks). :class:`EvidentlyEmbeddingDriftDetector` calls
Evidently 0.7's embedding drift methods (``mmd``, ``model``, ``ratio``, ``distance``) directly — never the
report, which computes a t-SNE — and replaces their default thresholds (measured to never fire on
normalised MiniLM embeddings) with calibrated ones.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.normal(size=(3000, 8))
    >>> mmd = MMDDriftDetector(max_sample=300).infer_threshold(reference, fpr=0.05, window_size=300, n_windows=40)
    >>> mmd.score(rng.normal(size=(300, 8))).drifted, mmd.score(rng.normal(0.5, size=(300, 8))).drifted
    (False, True)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import InvalidInputError, WindowDetector, as_finite_2d

EVIDENTLY_EMBEDDING_METHODS = ("mmd", "model", "ratio", "distance")


def _cap_rows(matrix: np.ndarray, max_sample: int, seed: int) -> np.ndarray:
    """At most ``max_sample`` rows, drawn without replacement with a fixed seed (deterministic)."""
    if len(matrix) <= max_sample:
        return matrix
    index = np.random.default_rng(seed).choice(len(matrix), size=max_sample, replace=False)
    return matrix[np.sort(index)]


class _EmbeddingDetector(WindowDetector):
    """Shared input handling: a 2-d float matrix with the reference's dimension, capped at ``max_sample``."""

    def __init__(self, feature: str | None = "embedding_sketch", max_sample: int = 1000, seed: int = 0) -> None:
        super().__init__(feature)
        if max_sample < 4:
            raise InvalidInputError(f"max_sample must be >= 4, got {max_sample}")
        self.max_sample = max_sample
        self.seed = seed

    def _prepare(self, data: Any, what: str) -> np.ndarray:
        matrix = as_finite_2d(data, what, self.feature_name)
        dims = getattr(self, "_dims", None)
        if dims is not None and len(matrix) and matrix.shape[1] != dims and what != "reference":
            raise InvalidInputError(f"{what} has {matrix.shape[1]} dims, the reference has {dims}")
        return matrix


class MMDDriftDetector(_EmbeddingDetector):
    """Unbiased MMD² (RBF kernel, median-heuristic width fixed at fit) between reference and window;
    score = ``n_eff·MMD²`` (``n_eff = m·n/(m+n)`` of the sampled sizes), raw MMD² in details."""

    method = "mmd"

    def _fit(self, values: np.ndarray) -> None:
        self._dims = values.shape[1]
        self._reference = _cap_rows(values, self.max_sample, self.seed)
        squared = _squared_distances(self._reference, self._reference)
        off_diagonal = squared[~np.eye(len(squared), dtype=bool)]
        median = float(np.median(off_diagonal))
        self._gamma = 1.0 / median if median > 0 else 1.0
        self._reference_term = _mean_kernel(self._reference, self._reference, self._gamma, exclude_diagonal=True)

    def _statistic(self, values: np.ndarray) -> tuple[float, dict[str, Any]]:
        current = _cap_rows(values, self.max_sample, self.seed + 1)
        n = len(current)
        current_term = _mean_kernel(current, current, self._gamma, exclude_diagonal=True)
        mmd2 = self._reference_term + current_term - 2.0 * _mean_kernel(self._reference, current, self._gamma)
        # Under no drift MMD² shrinks like 1/n_eff: the scaled score keeps calibrated thresholds size-free.
        m = len(self._reference)
        effective_n = m * n / (m + n)
        details = {"mmd2": float(mmd2), "gamma": self._gamma, "n_sampled": n, "n_reference_sampled": m}
        return float(effective_n * mmd2), details


def _squared_distances(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, clipped at 0 (rounding can make them slightly negative)."""
    squared = (left**2).sum(1)[:, None] + (right**2).sum(1)[None, :] - 2.0 * left @ right.T
    return np.maximum(squared, 0.0)


def _mean_kernel(left: np.ndarray, right: np.ndarray, gamma: float, exclude_diagonal: bool = False) -> float:
    """Mean RBF kernel value over all pairs (float32: half the memory and time, ample precision for a mean)."""
    kernel = np.exp(-np.float32(gamma) * _squared_distances(left.astype(np.float32), right.astype(np.float32)))
    total = float(kernel.sum(dtype=np.float64))
    if exclude_diagonal:
        return (total - float(np.trace(kernel))) / (len(left) * (len(left) - 1))
    return total / (len(left) * len(right))


class EvidentlyEmbeddingDriftDetector(_EmbeddingDetector):
    """One of Evidently 0.7's embedding drift methods, called directly, with a calibrated threshold.

    ``evidently_method`` is ``mmd`` (RBF MMD², width from both samples), ``model`` (ROC AUC of a
    classifier telling reference from current), ``ratio`` (share of components whose Wasserstein
    distance exceeds 0.1) or ``distance`` (Euclidean distance of the means). All scores: higher = drift.
    Inputs are capped at ``max_sample`` rows (Evidently's ``mmd`` builds an (m+n)² kernel) and passed as
    copies (``model`` adds a column to its inputs). ``method_options`` go to Evidently's factory; ``ratio``
    needs ``component_stattest_threshold`` well above its 0.1 default on small windows: with 150 rows every
    component of a clean window already exceeds 0.1, the ratio is 1.0 everywhere and can never fire.
    """

    def __init__(
        self,
        feature: str | None = "embedding_sketch",
        evidently_method: str = "mmd",
        max_sample: int = 500,
        seed: int = 0,
        method_options: dict[str, Any] | None = None,
    ) -> None:
        if evidently_method not in EVIDENTLY_EMBEDDING_METHODS:
            raise InvalidInputError(f"evidently_method must be one of {EVIDENTLY_EMBEDDING_METHODS}")
        super().__init__(feature, max_sample=max_sample, seed=seed)
        self.evidently_method = evidently_method
        self.method_options = dict(method_options or {})
        self.method = f"evidently_{evidently_method}"

    def _fit(self, values: np.ndarray) -> None:
        self._dims = values.shape[1]
        self._reference = pd.DataFrame(_cap_rows(values, self.max_sample, self.seed))

    def _statistic(self, values: np.ndarray) -> tuple[float, dict[str, Any]]:
        os.environ.setdefault("DO_NOT_TRACK", "1")
        from evidently.legacy.metrics.data_drift import embedding_drift_methods

        drift_method = getattr(embedding_drift_methods, self.evidently_method)(**self.method_options)
        current = pd.DataFrame(_cap_rows(values, self.max_sample, self.seed + 1))
        # Evidently's signature is (current, reference); copies because ``model`` adds a target column.
        score, default_drifted, _ = drift_method(current.copy(), self._reference.copy())
        return float(score), {"evidently_default_drifted": bool(default_drifted), "n_sampled": len(current)}
