"""Emerging clusters of OOD / low-confidence utterances, tracked from window to window.

A new intent that users start asking for shows up as a tight group of rows that the model is unsure
about (or flags OOD). :class:`ClusterTracker` clusters those rows of each window on their embeddings
(agglomerative, average linkage, cosine distance, at most ``max_rows`` rows so memory stays flat), matches
each cluster to the clusters of earlier windows by centroid cosine similarity, and reports its size,
growth and a few example texts (the caller passes texts already scrubbed of PII).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tracker = ClusterTracker(min_cluster_size=5)
    >>> topic = rng.normal(size=16)
    >>> def window(n):  # n rows around one topic plus 20 scattered rows
    ...     return np.vstack([topic + 0.05 * rng.normal(size=(n, 16)), rng.normal(size=(20, 16))])
    >>> first = tracker.update(window(10), texts=[f"t{i}" for i in range(30)], window_id="w1")
    >>> second = tracker.update(window(25), window_id="w2")
    >>> [(c.cluster_id, c.size, c.growth) for c in first], [(c.cluster_id, c.size, c.growth) for c in second]
    ([('c1', 10, 10)], [('c1', 25, 15)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from detectors.base import InvalidInputError, as_finite_2d, json_safe


@dataclass(frozen=True)
class EmergingCluster:
    """One cluster of uncertain rows in the latest window."""

    cluster_id: str
    size: int
    previous_size: int
    growth: int
    windows_seen: int
    first_seen: str | None
    cohesion: float  # mean cosine similarity of members to the centroid
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "cluster_id": self.cluster_id,
                "size": self.size,
                "previous_size": self.previous_size,
                "growth": self.growth,
                "windows_seen": self.windows_seen,
                "first_seen": self.first_seen,
                "cohesion": self.cohesion,
                "examples": self.examples,
            }
        )


@dataclass
class _Track:
    centroid: np.ndarray
    size: int
    windows_seen: int
    first_seen: str | None
    missed: int = 0


class ClusterTracker:
    """Cluster uncertain rows per window and follow the clusters across windows.

    ``distance_threshold`` is the cosine distance at which agglomerative merging stops;
    clusters smaller than ``min_cluster_size`` are dropped as noise; a cluster continues an earlier one
    when their centroids have cosine similarity ``>= match_similarity``; a track not seen for
    ``forget_after`` windows is dropped.
    """

    def __init__(
        self,
        distance_threshold: float = 0.35,
        min_cluster_size: int = 5,
        match_similarity: float = 0.8,
        max_rows: int = 1000,
        n_examples: int = 5,
        forget_after: int = 12,
        seed: int = 0,
    ) -> None:
        self.distance_threshold = distance_threshold
        self.min_cluster_size = min_cluster_size
        self.match_similarity = match_similarity
        self.max_rows = max_rows
        self.n_examples = n_examples
        self.forget_after = forget_after
        self.seed = seed
        self._tracks: dict[str, _Track] = {}
        self._next_id = 1

    def update(self, embeddings: Any, texts: Any = None, window_id: str | None = None) -> list[EmergingCluster]:
        """Cluster this window's uncertain rows; returns its clusters, largest first (empty when none)."""
        matrix = as_finite_2d(embeddings, "uncertain rows", "embedding")
        texts = None if texts is None else [str(text) for text in texts]
        if texts is not None and len(texts) != len(matrix):
            raise InvalidInputError(f"{len(texts)} texts for {len(matrix)} embeddings")
        found = self._clusters(matrix, texts) if len(matrix) >= self.min_cluster_size else []
        reports = self._match(found, window_id)
        return sorted(reports, key=lambda cluster: -cluster.size)

    def _clusters(self, matrix: np.ndarray, texts: list[str] | None) -> list[tuple[np.ndarray, int, float, list[str]]]:
        """(unit centroid, size, cohesion, examples) for every cluster of at least ``min_cluster_size`` rows."""
        if len(matrix) > self.max_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(matrix), self.max_rows, replace=False))
            matrix = matrix[keep]
            texts = None if texts is None else [texts[i] for i in keep]
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=self.distance_threshold, metric="cosine", linkage="average"
        ).fit_predict(unit)
        found = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            if len(members) < self.min_cluster_size:
                continue
            centroid = unit[members].mean(axis=0)
            centroid /= max(np.linalg.norm(centroid), 1e-12)
            similarity = unit[members] @ centroid
            nearest = members[np.argsort(-similarity)[: self.n_examples]]
            examples = [] if texts is None else [texts[i] for i in nearest]
            found.append((centroid, len(members), float(similarity.mean()), examples))
        return found

    def _match(self, found: list[tuple[np.ndarray, int, float, list[str]]], window_id: str | None) -> list:
        """Greedy one-to-one matching of new clusters to tracks, most similar pair first."""
        track_ids = list(self._tracks)
        pairs = []
        for index, (centroid, *_rest) in enumerate(found):
            for track_id in track_ids:
                similarity = float(centroid @ self._tracks[track_id].centroid)
                if similarity >= self.match_similarity:
                    pairs.append((similarity, index, track_id))
        assigned: dict[int, str] = {}
        for _similarity, index, track_id in sorted(pairs, reverse=True):
            if index not in assigned and track_id not in assigned.values():
                assigned[index] = track_id
        reports = []
        for index, (centroid, size, cohesion, examples) in enumerate(found):
            track_id = assigned.get(index) or self._new_track(centroid, window_id)
            track = self._tracks[track_id]
            previous = track.size
            track.centroid, track.size, track.missed = centroid, size, 0
            track.windows_seen += 1
            reports.append(
                EmergingCluster(
                    track_id, size, previous, size - previous, track.windows_seen, track.first_seen, cohesion, examples
                )
            )
        self._age_unmatched(set(assigned.values()) | {report.cluster_id for report in reports})
        return reports

    def _new_track(self, centroid: np.ndarray, window_id: str | None) -> str:
        track_id = f"c{self._next_id}"
        self._next_id += 1
        self._tracks[track_id] = _Track(centroid=centroid, size=0, windows_seen=0, first_seen=window_id)
        return track_id

    def _age_unmatched(self, seen: set[str]) -> None:
        for track_id in list(self._tracks):
            if track_id in seen:
                continue
            track = self._tracks[track_id]
            track.missed += 1
            track.size = 0  # growth is measured against the last window, where it was absent
            if track.missed >= self.forget_after:
                del self._tracks[track_id]
