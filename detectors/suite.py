"""All detectors over one window, per assistant and overall: what the monitor job calls every window.

:meth:`MonitorSuite.from_reference` fits every detector on reference rows (the columns the stream
worker stores) and infers every threshold from clean reference windows at ``fpr``. :meth:`MonitorSuite.score`
returns one frozen :class:`WindowReport` (drift results, OOD rate, accuracy estimates with intervals,
emerging clusters) that serialises with ``to_dict()``. Evidently is not on this path (see
:mod:`detectors.report`); the 384-d embeddings are not either (the 32-d sketch is).

Slot detectors, when the rows carry the columns (ClickHouse rows do; package rows do for packages that keep
per-row slots, see ``model_runtime.reference``): chi² on the slot-type mix (``slot_types``) and KS on
``slot_confidence``, the mean confidence of a row's slots derived from ``slot_confidences`` (rows without
slots are dropped, like text-channel rows for ``asr_confidence``). A group whose reference has fewer than two
windows' worth of rows with slots gets no slot-confidence detector.

The route decision (``route``: fulfil, clarify, confirm, escalate; ``streams.routing``) is a categorical
feature like the intent (chi² on the route mix) when the reference rows carry it. Rows without a decision
(route ``''``: stored before the routing policy, or by a worker without one) are left out on both sides, so
a window of such rows is skipped for it ("0 rows with a value"), never drifted; a group whose reference has
fewer than two windows' worth of decided rows (a package reference has none) gets no route detector.

``package_stats`` (from the model package, optional) may hold ``ood_threshold`` (on ``ood_score``) and
``accuracy`` (the reference accuracy measured with labels); without them the OOD threshold is inferred from
the reference ``ood_score`` at ``ood_fpr`` and the accuracy comes from a boolean ``correct`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import DetectionResult, EmptyWindowError, InvalidInputError, WindowDetector, json_safe
from detectors.clusters import ClusterTracker, EmergingCluster
from detectors.drift import NUMERIC_FEATURES, CategoricalDriftDetector, KSDriftDetector
from detectors.embedding import MMDDriftDetector
from detectors.ood import OODRateDetector, OODScorer
from detectors.performance import AccuracyEstimate, ATCEstimator, OODAwareATCEstimator, average_confidence

OVERALL = "overall"
ASSISTANTS = ("shopper", "associate")  # the retail corpus's assistants; groups come from the data (assistants_in)
OPTIONAL_NUMERIC = ("asr_confidence",)  # NaN for text-channel rows: dropped, not an error
SLOT_CONFIDENCE = "slot_confidence"  # derived from the slot_confidences lists: one value per row with slots
ROUTE = "route"  # the routing policy's decision; '' (no decision) is left out like a NaN
OPTIONAL_FEATURES = (SLOT_CONFIDENCE, ROUTE)  # not every reference row has a value: fitted only when enough do


@dataclass(frozen=True)
class WindowReport:
    """Everything the detectors found in one window."""

    window_id: str | None
    n_rows: int
    results: list[DetectionResult]
    ood_rate: dict[str, float]
    accuracy: dict[str, AccuracyEstimate]
    clusters: list[EmergingCluster] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def drifted(self) -> list[DetectionResult]:
        return [result for result in self.results if result.drifted]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "window_id": self.window_id,
                "n_rows": self.n_rows,
                "results": [result.to_dict() for result in self.results],
                "ood_rate": self.ood_rate,
                "accuracy": {name: estimate.to_dict() for name, estimate in self.accuracy.items()},
                "clusters": [cluster.to_dict() for cluster in self.clusters],
                "skipped": self.skipped,
            }
        )


def _detectors_for(frame: pd.DataFrame, ood_threshold: float, max_sample: int, seed: int) -> list[WindowDetector]:
    """The window detectors for the columns that ``frame`` has."""
    detectors: list[WindowDetector] = [
        KSDriftDetector(name) for name in (*NUMERIC_FEATURES, *OPTIONAL_NUMERIC) if name in frame.columns
    ]
    detectors += [CategoricalDriftDetector(name, "chi2") for name in ("intent", "slot_types", ROUTE)
                  if name in frame.columns]
    if "slot_confidences" in frame.columns:
        detectors.append(KSDriftDetector(SLOT_CONFIDENCE))
    if "embedding_sketch" in frame.columns:
        detectors.append(MMDDriftDetector("embedding_sketch", max_sample=max_sample, seed=seed))
    if "ood_score" in frame.columns:
        detectors.append(OODRateDetector(ood_threshold))
    return detectors


def _column_input(frame: pd.DataFrame, detector: WindowDetector) -> Any:
    """The rows a detector reads; optional numeric columns drop their NaNs."""
    if detector.feature in OPTIONAL_NUMERIC:
        return frame[[detector.feature]].dropna()
    if detector.feature == SLOT_CONFIDENCE:
        return slot_confidence_frame(frame)
    if detector.feature == ROUTE:
        return decided_routes(frame)
    return frame


def decided_routes(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``route`` of the rows that have a decision (route ``''``: no policy decided it).

    >>> decided_routes(pd.DataFrame({"route": ["fulfil", "", "clarify"]}))["route"].tolist()
    ['fulfil', 'clarify']
    """
    routes = frame[ROUTE].fillna("").astype(str)
    return pd.DataFrame({ROUTE: routes[routes != ""]}).reset_index(drop=True)


def slot_confidence_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One ``slot_confidence`` per row that has slots: the mean of its slot confidences (non-finite ones left out).

    >>> slot_confidence_frame(pd.DataFrame({"slot_confidences": [[0.5, 0.9], [], [1.0]]}))["slot_confidence"].tolist()
    [0.7, 1.0]
    """
    means = []
    for row in frame["slot_confidences"]:
        values = np.asarray(row if row is not None else [], dtype=float).reshape(-1)
        values = values[np.isfinite(values)]
        means.append(float(values.mean()) if len(values) else np.nan)
    return pd.DataFrame({SLOT_CONFIDENCE: means}).dropna().reset_index(drop=True)


class MonitorSuite:
    """Fitted detectors per group (``overall`` and each assistant) plus the accuracy estimators and the
    cluster tracker. Build with :meth:`from_reference`."""

    def __init__(
        self,
        detectors: dict[str, list[WindowDetector]],
        ood_threshold: float,
        estimators: dict[str, ATCEstimator],
        tracker: ClusterTracker | None,
        low_confidence: float,
        min_window_rows: int,
    ) -> None:
        self.detectors = detectors
        self.ood_threshold = ood_threshold
        self.estimators = estimators
        self.tracker = tracker
        self.low_confidence = low_confidence
        self.min_window_rows = min_window_rows

    def has_feature(self, feature: str) -> bool:
        """Whether any group has a detector of ``feature`` (e.g. ``route``: only when the reference has routes)."""
        return any(detector.feature == feature for group in self.detectors.values() for detector in group)

    @classmethod
    def from_reference(
        cls,
        reference: pd.DataFrame,
        package_stats: dict[str, Any] | None = None,
        *,
        window_size: int = 500,
        fpr: float = 0.01,
        n_windows: int = 100,
        ood_fpr: float = 0.05,
        max_sample: int = 1000,
        low_confidence: float | None = None,
        min_window_rows: int = 30,
        track_clusters: bool = True,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
    ) -> MonitorSuite:
        """Fit and calibrate every detector. ``window_size`` is the expected overall window; each assistant's
        detectors are calibrated at its share of it. ``low_confidence`` (rows below it go to clustering)
        defaults to the reference's 5 % confidence quantile."""
        if len(reference) == 0:
            raise EmptyWindowError("the reference has no rows")
        stats = package_stats or {}
        ood_threshold = float(stats["ood_threshold"]) if "ood_threshold" in stats else None
        if ood_threshold is None:
            ood_threshold = OODScorer().infer_threshold(reference["ood_score"], ood_fpr).threshold
        detectors = {}
        for group, rows in _groups(reference, min_rows=2 * min_window_rows):
            size = max(min_window_rows, round(window_size * len(rows) / len(reference)))
            size = min(size, len(rows) // 2)
            detectors[group] = []
            for detector in _detectors_for(rows, ood_threshold, max_sample, seed):
                data = _column_input(rows, detector)
                if detector.feature in OPTIONAL_FEATURES and len(data) < 2 * min_window_rows:
                    continue  # a group that rarely has slots (or route decisions): too few values to calibrate on
                if progress:
                    progress(f"{group}/{detector.feature_name}")
                detector.infer_threshold(data, fpr, min(size, len(data) // 2), n_windows, seed)
                detectors[group].append(detector)
        estimators = _fit_estimators(reference, stats, ood_threshold)
        if low_confidence is None:
            low_confidence = float(np.quantile(reference["confidence"], 0.05))
        tracker = ClusterTracker(seed=seed) if track_clusters else None
        return cls(detectors, ood_threshold, estimators, tracker, low_confidence, min_window_rows)

    def score(self, window: pd.DataFrame, texts: Any = None, window_id: str | None = None) -> WindowReport:
        """Score one window (``texts``: scrubbed texts aligned with ``window`` rows, for cluster examples)."""
        if len(window) == 0:
            raise EmptyWindowError(f"window {window_id!r} has no rows")
        results, ood_rates, skipped = [], {}, {}
        groups = dict(_groups(window, min_rows=1))
        for group, detectors in self.detectors.items():
            rows = groups.get(group)
            if rows is None or len(rows) < self.min_window_rows:
                skipped[group] = f"{0 if rows is None else len(rows)} rows < {self.min_window_rows}"
                continue
            for detector in detectors:
                data = _column_input(rows, detector)
                if len(data) < self.min_window_rows:
                    skipped[f"{group}/{detector.feature_name}"] = f"{len(data)} rows with a value"
                    continue
                result = detector.score(data)
                results.append(_with_group(result, group))
                if isinstance(detector, OODRateDetector):
                    ood_rates[group] = result.details["ood_rate"]
        is_ood = window["ood_score"].to_numpy(float) > self.ood_threshold
        confidence = window["confidence"]
        accuracy = {name: estimator.estimate(confidence, is_ood) for name, estimator in self.estimators.items()}
        accuracy["average_confidence"] = average_confidence(window["confidence"])
        clusters = self._clusters(window, is_ood, texts, window_id)
        return WindowReport(window_id, len(window), results, ood_rates, accuracy, clusters, skipped)

    def _clusters(self, window: pd.DataFrame, is_ood: np.ndarray, texts: Any, window_id: str | None) -> list:
        if self.tracker is None or "embedding_sketch" not in window.columns:
            return []
        uncertain = is_ood | (window["confidence"].to_numpy(float) < self.low_confidence)
        chosen = np.flatnonzero(uncertain)
        chosen_texts = None if texts is None else [list(texts)[i] for i in chosen]
        embeddings = window["embedding_sketch"].iloc[chosen]
        return self.tracker.update(list(embeddings), chosen_texts, window_id) if len(chosen) else []


def _groups(frame: pd.DataFrame, min_rows: int) -> list[tuple[str, pd.DataFrame]]:
    """``overall`` plus one frame per assistant with at least ``min_rows`` rows: every assistant the frame
    holds, in name order (retail's ``ASSISTANTS`` or any other names)."""
    groups = [(OVERALL, frame)]
    names = assistants_in(frame)
    labels = frame["assistant"].astype(str) if names else None
    for name in names:
        rows = frame[labels == name]
        if len(rows) >= min_rows:
            groups.append((name, rows))
    return groups


def assistants_in(frame: pd.DataFrame) -> list[str]:
    """The assistant names of ``frame``'s rows, sorted (none without an ``assistant`` column); a name that
    would clash with the whole-traffic group (``overall``, ``all``) is left out."""
    if "assistant" not in frame.columns:
        return []
    names = {str(name) for name in frame["assistant"].dropna().unique()}
    return sorted(names - {OVERALL, "all"})


def _with_group(result: DetectionResult, group: str) -> DetectionResult:
    details = {"group": group, **result.details}
    return DetectionResult(result.score, result.threshold, result.drifted, result.method, result.feature, details)


def _fit_estimators(reference: pd.DataFrame, stats: dict[str, Any], ood_threshold: float) -> dict[str, ATCEstimator]:
    """ATC and OOD-aware ATC, fitted on the reference; none when no accuracy is known."""
    if "correct" in reference.columns:
        labels: dict[str, Any] = {"correct": reference["correct"].to_numpy(bool)}
    elif "accuracy" in stats:
        labels = {"accuracy": float(stats["accuracy"])}
    else:
        return {}
    if reference["confidence"].isna().any():
        raise InvalidInputError("reference confidence has NaN values")
    is_ood = reference["ood_score"].to_numpy(float) > ood_threshold
    return {
        "atc": ATCEstimator().fit(reference["confidence"], **labels),
        "ood_aware_atc": OODAwareATCEstimator().fit(reference["confidence"], is_ood=is_ood, **labels),
    }
