"""Cluster tracking across windows on planted topics."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.base import InvalidInputError
from detectors.clusters import ClusterTracker


def topic_rows(rng: np.random.Generator, centre: np.ndarray, n: int) -> np.ndarray:
    return centre + 0.05 * rng.normal(size=(n, len(centre)))


def test_same_topic_keeps_its_id_and_reports_growth() -> None:
    rng = np.random.default_rng(0)
    topic_a, topic_b = rng.normal(size=16), rng.normal(size=16)
    tracker = ClusterTracker(min_cluster_size=5)
    first = tracker.update(topic_rows(rng, topic_a, 8), window_id="w1")
    second = tracker.update(np.vstack([topic_rows(rng, topic_a, 20), topic_rows(rng, topic_b, 6)]), window_id="w2")
    assert [(c.cluster_id, c.size, c.growth) for c in first] == [("c1", 8, 8)]
    assert [(c.cluster_id, c.size, c.growth, c.first_seen) for c in second] == [
        ("c1", 20, 12, "w1"),
        ("c2", 6, 6, "w2"),
    ]
    assert second[0].windows_seen == 2 and second[0].cohesion > 0.9


def test_examples_are_the_members_nearest_the_centroid() -> None:
    rng = np.random.default_rng(1)
    centre = rng.normal(size=8)
    rows = topic_rows(rng, centre, 10)
    rows[3] = centre  # exactly on the centre: must be the first example
    texts = [f"utterance {i}" for i in range(10)]
    [cluster] = ClusterTracker(min_cluster_size=5, n_examples=3).update(rows, texts=texts)
    assert cluster.examples[0] == "utterance 3" and len(cluster.examples) == 3


def test_small_groups_and_empty_windows_give_no_clusters() -> None:
    rng = np.random.default_rng(2)
    tracker = ClusterTracker(min_cluster_size=5)
    assert tracker.update(np.empty((0, 8))) == []
    assert tracker.update(topic_rows(rng, rng.normal(size=8), 4)) == []


def test_bad_input_is_a_named_error() -> None:
    tracker = ClusterTracker()
    with pytest.raises(InvalidInputError):
        tracker.update(np.full((6, 4), np.nan))
    with pytest.raises(InvalidInputError):
        tracker.update(np.ones((6, 4)), texts=["only one"])
