"""Reference statistics the monitors compare live traffic with; built at packaging time, stored in the package.

Per split (``train``, ``dev``): quantiles, a histogram and a random sample of every scalar feature;
the predicted intent mix and slot-type mix per assistant. From the training embeddings: the mean
per gold intent and the inverse of the shared (within-intent, shrunk) covariance for Mahalanobis
OOD scores, a sample of embeddings, and a fixed random projection to a 32-number sketch.

    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(200, 8)).astype(np.float32)
    >>> arrays, summary = embedding_reference(emb, ["a", "b"] * 100, seed=1, sketch_dim=4)
    >>> arrays["projection"].shape, arrays["embedding_means"].shape, summary["intents"]
    ((8, 4), (2, 8), ['a', 'b'])
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("confidence", "margin", "entropy", "energy", "token_count", "unk_rate")
SKETCH_DIM = 32
QUANTILES = np.round(np.linspace(0.0, 1.0, 101), 2)
HISTOGRAM_BINS = 20


class ReferenceMissingError(KeyError):
    """The package's reference statistics do not hold what was asked for."""


def feature_summary(values: np.ndarray) -> dict[str, Any]:
    """Quantiles (0, 0.01, ..., 1), a 20-bin histogram, mean, std and n of one feature."""
    values = np.asarray(values, dtype=np.float64)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {
        "n": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": [float(q) for q in np.quantile(values, QUANTILES)],
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def label_mix(assistants: Sequence[str], labels: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Share of each label per assistant (labels per row: one intent, or the slot types of a row).

    >>> label_mix(["s", "s", "a"], [["x"], ["y", "y"], ["x"]])
    {'a': {'x': 1.0}, 's': {'x': 0.3333, 'y': 0.6667}}
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    for assistant, row in zip(assistants, labels, strict=True):
        counts[assistant].update(row)
    mix = {}
    for assistant in sorted(counts):
        total = sum(counts[assistant].values()) or 1
        mix[assistant] = {k: round(v / total, 4) for k, v in sorted(counts[assistant].items())}
    return mix


def embedding_reference(
    embeddings: np.ndarray, intents: Sequence[str], seed: int, sketch_dim: int = SKETCH_DIM, shrinkage: float = 0.05
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-intent means, shared precision matrix (shrunk toward the mean variance), projection matrix."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    names = sorted(set(intents))
    index = np.array([names.index(i) for i in intents])
    means = np.stack([embeddings[index == k].mean(axis=0) for k in range(len(names))])
    centred = embeddings - means[index]
    covariance = centred.T @ centred / max(1, len(embeddings) - len(names))
    # shrinkage keeps the inverse stable when dimensions outnumber informative directions
    target = np.trace(covariance) / len(covariance)
    covariance = (1 - shrinkage) * covariance + shrinkage * target * np.eye(len(covariance))
    projection = np.random.default_rng(seed).normal(size=(embeddings.shape[1], sketch_dim)) / np.sqrt(sketch_dim)
    arrays = {
        "embedding_means": means.astype(np.float32),
        "precision": np.linalg.inv(covariance).astype(np.float32),
        "projection": projection.astype(np.float32),
    }
    return arrays, {"intents": names, "projection_seed": seed, "sketch_dim": sketch_dim, "shrinkage": shrinkage}


def build_reference(
    splits: Mapping[str, tuple[Sequence[Any], Sequence[str]]],
    embedding_split: str = "train",
    seed: int = 0,
    sample_size: int = 3000,
    embedding_sample: int = 2000,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """From {split: (predictions, gold intents... per row: assistants)} build (npz arrays, JSON summary).

    ``splits[name] = (predictions, assistants, gold_intents)`` — UtterancePrediction objects, the
    assistant of each row and its gold intent (used for the per-intent embedding means).
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {"splits": {}}
    picks: dict[str, np.ndarray] = {}
    for name, (predictions, assistants, gold_intents) in splits.items():
        pick = rng.permutation(len(predictions))[:sample_size]
        picks[name] = pick
        split_summary: dict[str, Any] = {"n": len(predictions), "features": {}}
        for feature in FEATURES:
            values = np.array([getattr(p, feature) for p in predictions], dtype=np.float32)
            split_summary["features"][feature] = feature_summary(values)
            arrays[f"{name}/{feature}"] = values[pick]
        split_summary["intent_mix"] = label_mix(assistants, [[p.intent] for p in predictions])
        split_summary["slot_mix"] = label_mix(assistants, [[s.type for s in p.slots] for p in predictions])
        summary["splits"][name] = split_summary
        if name == embedding_split:
            embeddings = np.stack([p.embedding for p in predictions])
            emb_arrays, emb_summary = embedding_reference(embeddings, gold_intents, seed)
            arrays.update(emb_arrays)
            arrays["embedding_sample"] = embeddings[pick[:embedding_sample]].astype(np.float32)
            summary["embeddings"] = {**emb_summary, "split": name}
    if "embedding_means" in arrays:
        # Held-out Mahalanobis scores: the stream worker sets its OOD threshold at a quantile of the
        # dev split's scores (scores on the split the means were fitted on would be too low).
        # Per split, aligned with that split's feature samples (same rows): the held-out rows are the
        # monitors' reference for live traffic (training rows are over-confident and too close to the means).
        stats = ReferenceStats(arrays, summary)
        for name, (predictions, _, _) in splits.items():
            embeddings = np.stack([p.embedding for p in predictions]).astype(np.float32)
            scores = stats.mahalanobis(embeddings).astype(np.float32)
            arrays[f"{name}/mahalanobis"] = scores[picks[name]]
            arrays[f"{name}/embedding_sample"] = embeddings[picks[name][:embedding_sample]]
            summary["splits"][name]["features"]["mahalanobis"] = feature_summary(scores)
    return arrays, summary


@dataclass(frozen=True)
class ReferenceStats:
    """Read side of the reference: what the detectors call."""

    arrays: Mapping[str, np.ndarray]
    summary: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path, summary: Mapping[str, Any]) -> ReferenceStats:
        if not Path(path).is_file():
            raise ReferenceMissingError(f"{path} not found: this package carries no reference statistics")
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files}, summary)

    def values(self, feature: str, split: str = "dev") -> np.ndarray:
        """A random sample (≤ 3000) of one feature's values on a split."""
        key = f"{split}/{feature}"
        if key not in self.arrays:
            raise ReferenceMissingError(f"no reference values for {key}; have {sorted(self.arrays)}")
        return self.arrays[key]

    def feature_summary(self, feature: str, split: str = "dev") -> Mapping[str, Any]:
        return self.summary["splits"][split]["features"][feature]

    def intent_mix(self, assistant: str, split: str = "dev") -> Mapping[str, float]:
        return self.summary["splits"][split]["intent_mix"].get(assistant, {})

    def slot_mix(self, assistant: str, split: str = "dev") -> Mapping[str, float]:
        return self.summary["splits"][split]["slot_mix"].get(assistant, {})

    @property
    def projection(self) -> np.ndarray:
        return self.arrays["projection"]

    def sketch(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, H] embeddings → [N, 32] fixed random projection (stored in ClickHouse for drift)."""
        return np.asarray(embeddings, dtype=np.float32) @ self.projection

    def mahalanobis(self, embeddings: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest intent mean (Lee et al. 2018); higher = more OOD."""
        # (x - m)' P (x - m) = x'Px - 2 x'Pm + m'Pm: three matrix products instead of an [N, I, H]
        # difference tensor (the einsum form cost more than the model itself in the stream worker).
        x = np.asarray(embeddings, dtype=np.float64)
        means = self.arrays["embedding_means"].astype(np.float64)
        precision = self.arrays["precision"].astype(np.float64)
        projected_means = means @ precision  # [I, H]
        x_p = x @ precision  # [N, H]
        distances = (
            np.einsum("nh,nh->n", x_p, x)[:, None]
            - 2.0 * x @ projected_means.T
            + np.einsum("ih,ih->i", projected_means, means)[None, :]
        )
        return np.maximum(distances.min(axis=1), 0.0)


# Share of in-distribution dev utterances allowed above the OOD threshold when the package does not
# carry its own threshold (ARCHITECTURE.md: thresholds from held-out in-distribution data).
DEFAULT_OOD_FPR = 0.05


def ood_threshold_of(package: Any, reference: Any, fpr: float = DEFAULT_OOD_FPR) -> float:
    """The package's OOD threshold, else the (1 - fpr) quantile of its dev Mahalanobis scores."""
    threshold = package.manifest.get("ood", {}).get("mahalanobis_threshold")
    if threshold is not None:
        return float(threshold)
    try:
        scores = reference.values("mahalanobis", "dev")
    except KeyError:  # older packages: score the reference embedding sample instead
        scores = reference.mahalanobis(reference.arrays["embedding_sample"])
    return float(np.quantile(scores, 1.0 - fpr))
