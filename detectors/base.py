"""The one interface every window detector follows, its result type and its errors.

A window detector is fitted on reference rows, then scores one window of current rows and says whether
it drifted. Thresholds are never typed in: :meth:`WindowDetector.infer_threshold` draws clean windows of
the production size out of the reference, scores each against the *rest* of the reference (so a window is
never compared with itself) and takes the ``1 - fpr`` quantile of those clean scores. Scores are oriented
so that higher always means "more drift" (p-value tests report ``-log10(p)``).

    >>> import numpy as np
    >>> from detectors.drift import KSDriftDetector
    >>> rng = np.random.default_rng(0)
    >>> detector = KSDriftDetector().fit(rng.normal(size=5000))
    >>> detector.infer_threshold(rng.normal(size=5000), fpr=0.05, window_size=500, n_windows=100, seed=1)
    KSDriftDetector(feature=None)
    >>> detector.score(rng.normal(size=500)).drifted, detector.score(rng.normal(1.0, size=500)).drifted
    (False, True)
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


class DetectorError(ValueError):
    """Base of every error a detector raises on purpose."""


class NotFittedError(DetectorError):
    """``score`` was called before ``fit``."""


class ThresholdNotInferredError(DetectorError):
    """``score`` needs a threshold: call ``infer_threshold`` on clean reference data first."""


class EmptyWindowError(DetectorError):
    """A reference or window has no rows (or too few to compute the statistic)."""


class InvalidInputError(DetectorError):
    """Input with NaN/inf, a missing column or the wrong shape."""


@dataclass(frozen=True)
class DetectionResult:
    """What one detector found in one window; ``score > threshold`` means drift."""

    score: float
    threshold: float
    drifted: bool
    method: str
    feature: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (numpy scalars become Python numbers, NaN/inf become None).

        >>> DetectionResult(np.float64(0.5), 0.2, np.bool_(True), "ks", "confidence", {"n": np.int64(3)}).to_dict()
        {'score': 0.5, 'threshold': 0.2, 'drifted': True, 'method': 'ks', 'feature': 'confidence', 'details': {'n': 3}}
        """
        return {
            "score": json_safe(self.score),
            "threshold": json_safe(self.threshold),
            "drifted": bool(self.drifted),
            "method": self.method,
            "feature": self.feature,
            "details": json_safe(self.details),
        }


def json_safe(value: Any) -> Any:
    """Turn numpy types, tuples and non-finite floats into plain JSON values.

    >>> json_safe({"a": np.array([1.0, np.nan]), "b": (np.int32(2),)})
    {'a': [1.0, None], 'b': [2]}
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [json_safe(item) for item in list(value)]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def n_rows(data: Any) -> int:
    """Number of rows of a DataFrame, Series, array or list."""
    return len(data)


def take_rows(data: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of a DataFrame/Series (by position) or an array."""
    if isinstance(data, pd.DataFrame | pd.Series):
        return data.iloc[index]
    return np.asarray(data, dtype=object if _is_ragged(data) else None)[index]


def _is_ragged(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], list | tuple)


def upper_quantile(clean_scores: np.ndarray, fpr: float) -> float:
    """The threshold that ``fpr`` of clean scores exceed (``higher`` interpolation: never below a clean score
    more often than asked).

    >>> upper_quantile(np.arange(100.0), 0.05)
    95.0
    """
    if not 0.0 < fpr < 1.0:
        raise InvalidInputError(f"fpr must be in (0, 1), got {fpr}")
    return float(np.quantile(np.asarray(clean_scores, dtype=float), 1.0 - fpr, method="higher"))


class WindowDetector(ABC):
    """Fit on reference rows, infer a threshold from clean reference windows, score a window.

    Subclasses implement :meth:`_fit` (store what the statistic needs), :meth:`_statistic` (return the
    drift score, higher = more drift, plus details) and set :attr:`method`. ``feature`` names the
    DataFrame column the detector reads; without it the input is the array itself.
    """

    method: str = "abstract"
    min_rows: int = 2

    def __init__(self, feature: str | None = None) -> None:
        self.feature = feature
        self.threshold: float | None = None
        self._fitted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature={self.feature!r})"

    @property
    def feature_name(self) -> str:
        return self.feature or "value"

    def fit(self, reference: Any) -> WindowDetector:
        """Remember the reference distribution; returns ``self``."""
        values = self._extract(reference, "reference")
        self._fit(values)
        self._fitted = True
        return self

    def score(self, current: Any) -> DetectionResult:
        """Score one window against the reference."""
        if not self._fitted:
            raise NotFittedError(f"{self!r} is not fitted: call fit(reference) first")
        if self.threshold is None:
            raise ThresholdNotInferredError(
                f"{self!r} has no threshold: call infer_threshold(reference, fpr, window_size, n_windows, seed)"
            )
        values = self._extract(current, "current window")
        score, details = self._statistic(values)
        return DetectionResult(
            score=float(score),
            threshold=float(self.threshold),
            drifted=bool(score > self.threshold),
            method=self.method,
            feature=self.feature_name,
            details={"n_current": n_rows(values), **details},
        )

    def infer_threshold(
        self,
        reference: Any,
        fpr: float = 0.01,
        window_size: int = 500,
        n_windows: int = 200,
        seed: int = 0,
    ) -> WindowDetector:
        """Set the threshold to the ``1 - fpr`` quantile of scores of clean windows drawn from ``reference``.

        Each clean window (``window_size`` rows, drawn without replacement) is scored by a copy of this
        detector fitted on the remaining reference rows. The detector itself is then fitted on all of
        ``reference`` when it is not fitted yet. Returns ``self``.
        """
        clean = self.clean_scores(reference, window_size=window_size, n_windows=n_windows, seed=seed)
        self.threshold = upper_quantile(clean, fpr)
        if not self._fitted:
            self.fit(reference)
        return self

    def clean_scores(self, reference: Any, window_size: int, n_windows: int, seed: int = 0) -> np.ndarray:
        """Scores of ``n_windows`` clean windows of ``window_size`` rows, each against the rest of ``reference``."""
        total = n_rows(reference)
        if window_size < self.min_rows or total - window_size < self.min_rows:
            raise EmptyWindowError(
                f"reference has {total} rows: too few for clean windows of {window_size} rows "
                f"(need at least {window_size + self.min_rows})"
            )
        self._extract(reference, "reference")  # validate once, early, with a clear message
        rng = np.random.default_rng(seed)
        scores = np.empty(n_windows)
        for i in range(n_windows):
            order = rng.permutation(total)
            probe = copy.copy(self)
            probe.threshold = math.inf
            probe.fit(take_rows(reference, order[window_size:]))
            scores[i] = probe.score(take_rows(reference, order[:window_size])).score
        return scores

    def _extract(self, data: Any, what: str) -> Any:
        """Pull the detector's input out of ``data`` and validate it (no rows, NaN)."""
        if data is None:
            raise EmptyWindowError(f"{what} is None")
        if isinstance(data, pd.DataFrame):
            if self.feature is None:
                raise InvalidInputError(f"{self!r} needs feature=<column> to read a DataFrame")
            if self.feature not in data.columns:
                raise InvalidInputError(f"{what} has no column {self.feature!r}")
            data = data[self.feature]
        values = self._prepare(data, what)
        if n_rows(values) < self.min_rows:
            raise EmptyWindowError(f"{what} for {self.feature_name!r} has {n_rows(values)} rows, need {self.min_rows}")
        return values

    @abstractmethod
    def _prepare(self, data: Any, what: str) -> Any:
        """Convert and validate raw column values (raise :class:`InvalidInputError` on NaN)."""

    @abstractmethod
    def _fit(self, values: Any) -> None:
        """Store what :meth:`_statistic` needs from the reference."""

    @abstractmethod
    def _statistic(self, values: Any) -> tuple[float, dict[str, Any]]:
        """Drift score of ``values`` against the reference (higher = more drift) and details."""


def as_finite_1d(data: Any, what: str, name: str) -> np.ndarray:
    """A float vector; raises :class:`InvalidInputError` on NaN/inf or a non-numeric column.

    >>> as_finite_1d([1, 2], "window", "x")
    array([1., 2.])
    """
    try:
        values = np.asarray(data, dtype=float).reshape(-1) if len(data) else np.empty(0)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{what} for {name!r} is not numeric: {error}") from error
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise InvalidInputError(f"{what} for {name!r} has {bad} NaN/inf values; drop or impute them first")
    return values


def as_finite_2d(data: Any, what: str, name: str) -> np.ndarray:
    """A float matrix (rows = samples); a column of lists (``embedding_sketch``) is stacked."""
    if isinstance(data, pd.Series):
        data = list(data)
    if len(data) == 0:
        return np.empty((0, 0))
    try:
        matrix = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        try:  # a column of arrays of equal length (what pandas gives for ``embedding_sketch``)
            matrix = np.stack([np.asarray(row, dtype=float) for row in data])
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"{what} for {name!r} is not a numeric matrix: {error}") from error
    if matrix.ndim != 2:
        raise InvalidInputError(f"{what} for {name!r} must be 2-d (rows x dims), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise InvalidInputError(f"{what} for {name!r} has NaN/inf values")
    return matrix
