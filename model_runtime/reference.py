"""Reference statistics the monitors compare live traffic with; built at packaging time, stored in the package.

Per split (``train``, ``dev``): quantiles, a histogram and a random sample of every scalar feature;
the predicted intent mix and slot-type mix per assistant; for the same sampled rows, their assistant,
predicted intent, slot types and slot confidences (``<split>/assistant``, ``<split>/intent``,
``<split>/slot_types`` + ``<split>/slot_confidences`` flattened, row ``i`` at
``slot_offsets[i]:slot_offsets[i + 1]``), so that the monitor can score intent mix, slot mix and slot
confidence per assistant against the package. From the training embeddings: the mean per gold intent and
the inverse of the shared (within-intent, shrunk) covariance for Mahalanobis OOD scores, a sample of
embeddings, and a fixed random projection to a 32-number sketch.

``summary["slot_values"]`` (:func:`slot_value_summary`): per slot type, the normalised values (NFKC,
case-folded, whitespace collapsed) the model's predictions held on the training sample, most frequent first
and at most ``MAX_VALUES_PER_TYPE``; and the dev split's unseen rate against them, per assistant — the
baseline of the monitor's unseen-value detector (``detectors/slot_values.py``). Values the worker would store
scrubbed are never kept, and count as ``scrubbed`` as ``<PERSON>`` does in live rows: ``keep_value`` decides;
the default (:func:`default_keep_value`, model_runtime may not import ``nlumon.pii``) drops every ``person``
value and anything that reads as an e-mail address or a phone/card number. A caller that may use
``nlumon.pii`` can pass a stricter rule (a given name tagged as a brand, an address).

    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(200, 8)).astype(np.float32)
    >>> arrays, summary = embedding_reference(emb, ["a", "b"] * 100, seed=1, sketch_dim=4)
    >>> arrays["projection"].shape, arrays["embedding_means"].shape, summary["intents"]
    ((8, 4), (2, 8), ['a', 'b'])
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("confidence", "margin", "entropy", "energy", "token_count", "unk_rate")
SKETCH_DIM = 32
QUANTILES = np.round(np.linspace(0.0, 1.0, 101), 2)
HISTOGRAM_BINS = 20
# Per slot type, the most frequent values kept in the manifest: ~2,000 values of ~12 characters is ~30 kB of JSON
# per type. Open-ended types (order ids, quantities) hit it and are marked ``truncated``: their unseen rate is
# high on the dev split too, so the monitor's excess over that baseline stays small.
MAX_VALUES_PER_TYPE = 2000
ROW_COLUMNS = ("assistant", "intent", "slot_offsets", "slot_types", "slot_confidences")


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


def row_arrays(name: str, predictions: Sequence[Any], assistants: Sequence[str], pick: np.ndarray,
               ) -> dict[str, np.ndarray]:
    """The sampled rows' assistant, predicted intent, slot types and slot confidences (ragged lists flattened
    with offsets: npz holds no object arrays). No slot values: they may be personal data.

    >>> from types import SimpleNamespace as S
    >>> rows = [S(intent="a", slots=(S(type="brand", confidence=0.9),)), S(intent="b", slots=())]
    >>> arrays = row_arrays("dev", rows, ["shopper", "associate"], np.array([1, 0]))
    >>> arrays["dev/assistant"].tolist(), arrays["dev/slot_offsets"].tolist(), arrays["dev/slot_types"].tolist()
    (['associate', 'shopper'], [0, 0, 1], ['brand'])
    """
    picked = [predictions[i] for i in pick]
    offsets = np.cumsum([0] + [len(p.slots) for p in picked]).astype(np.int64)
    return {
        f"{name}/assistant": np.array([str(assistants[i]) for i in pick], dtype=str),
        f"{name}/intent": np.array([str(p.intent) for p in picked], dtype=str),
        f"{name}/slot_offsets": offsets,
        f"{name}/slot_types": np.array([str(s.type) for p in picked for s in p.slots], dtype=str),
        f"{name}/slot_confidences": np.array([float(s.confidence) for p in picked for s in p.slots], dtype=np.float32),
    }


def normalise_value(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed (``nlumon.pii.normalise``, which model_runtime may not import; a
    test checks that they agree).

    >>> normalise_value("  Paper\tTOWELS "), normalise_value("Ｊｏｒｄａｎ")
    ('paper towels', 'jordan')
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# an e-mail (typed or spoken) or 7+ digits in a row with at most two separators between them (phone, card)
_CONTACT = re.compile(r"@|\b(?:dot|at)\b.*\b(?:com|net|org|edu)\b|(?:\d[\s().+-]{0,2}){7,}")


def default_keep_value(slot_type: str, value: str) -> bool:
    """Whether a (normalised) predicted value may enter the vocabulary: never a ``person`` value, never what reads
    as an e-mail address or a phone or card number.

    >>> default_keep_value("brand", "jordan"), default_keep_value("person", "olivia")
    (True, False)
    >>> default_keep_value("order_id", "call 415 555 0134"), default_keep_value("order_id", "48213")
    (False, True)
    """
    return slot_type != "person" and not _CONTACT.search(value)


def reference_value(slot_type: str, text: str, keep_value: Callable[[str, str], bool] = default_keep_value,
                    cache: dict[tuple[str, str], str | None] | None = None) -> str | None:
    """A predicted slot value as the vocabulary keeps it (normalised), or None when ``keep_value`` refuses it (the
    worker would store it scrubbed).

    >>> reference_value("brand", " Jordan "), reference_value("person", "olivia")
    ('jordan', None)
    >>> reference_value("product", "Paper  Towels"), reference_value("product", "ann.lee@example.com")
    ('paper towels', None)
    """
    key = (slot_type, text)
    if cache is not None and key in cache:
        return cache[key]
    value: str | None = normalise_value(text)
    if value and not keep_value(slot_type, value):
        value = None
    if cache is not None:
        cache[key] = value or None
    return value or None


def slot_value_summary(
    splits: Mapping[str, tuple[Sequence[Any], Sequence[str], Sequence[str]]],
    vocabulary_split: str = "train",
    baseline_split: str = "dev",
    max_values: int = MAX_VALUES_PER_TYPE,
    keep_value: Callable[[str, str], bool] = default_keep_value,
) -> dict[str, Any]:
    """Per slot type, the values of ``vocabulary_split``'s predictions (most frequent first, at most
    ``max_values``), and per assistant (and ``all``) the share of ``baseline_split``'s values they lack.

    >>> from types import SimpleNamespace as S
    >>> def p(*values): return S(slots=tuple(S(type="brand", text=v) for v in values))
    >>> summary = slot_value_summary({"train": ([p("acme"), p("acme", "zorb")], ["s", "s"], []),
    ...                               "dev": ([p("acme"), p("nova")], ["s", "a"], [])}, max_values=1)
    >>> summary["types"]["brand"]
    {'values': ['acme'], 'distinct': 2, 'truncated': True, 'occurrences': 3, 'scrubbed': 0}
    >>> summary["reference_rates"]["all"]["brand"]["unseen_rate"], summary["reference_rates"]["a"]["brand"]["unseen"]
    (0.5, 1)
    """
    cache: dict[tuple[str, str], str | None] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    scrubbed: Counter = Counter()
    for prediction in splits[vocabulary_split][0]:
        for slot in prediction.slots:
            value = reference_value(str(slot.type), str(slot.text), keep_value, cache)
            if value is None:
                scrubbed[str(slot.type)] += 1
            else:
                counts[str(slot.type)][value] += 1
    types = {}
    for slot_type in sorted(set(counts) | set(scrubbed)):
        ranked = sorted(counts[slot_type].items(), key=lambda item: (-item[1], item[0]))
        types[slot_type] = {"values": [value for value, _ in ranked[:max_values]], "distinct": len(ranked),
                            "truncated": len(ranked) > max_values, "occurrences": sum(counts[slot_type].values()),
                            "scrubbed": scrubbed[slot_type]}
    known = {slot_type: set(entry["values"]) for slot_type, entry in types.items()}
    rates: dict[str, dict[str, dict[str, Any]]] = {}
    if baseline_split in splits:
        predictions, assistants, _ = splits[baseline_split]
        tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # values, unseen, scrubbed
        for prediction, assistant in zip(predictions, assistants, strict=True):
            for slot in prediction.slots:
                value = reference_value(str(slot.type), str(slot.text), keep_value, cache)
                for group in ("all", str(assistant)):
                    counts_of = tally[(group, str(slot.type))]
                    counts_of[0] += 1
                    counts_of[1] += value is not None and value not in known.get(str(slot.type), ())
                    counts_of[2] += value is None
        for (group, slot_type), (n, unseen, n_scrubbed) in sorted(tally.items()):
            judged = n - n_scrubbed
            rates.setdefault(group, {})[slot_type] = {
                "values": n, "unseen": unseen, "scrubbed": n_scrubbed,
                "unseen_rate": round(unseen / judged, 4) if judged else None}
    return {"split": vocabulary_split, "baseline_split": baseline_split, "normalisation": "nfkc-casefold-whitespace",
            "max_values_per_type": max_values, "types": types, "reference_rates": rates}


def build_reference(
    splits: Mapping[str, tuple[Sequence[Any], Sequence[str]]],
    embedding_split: str = "train",
    seed: int = 0,
    sample_size: int = 3000,
    embedding_sample: int = 2000,
    max_values_per_type: int = MAX_VALUES_PER_TYPE,
    keep_value: Callable[[str, str], bool] = default_keep_value,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """From {split: (predictions, gold intents... per row: assistants)} build (npz arrays, JSON summary).

    ``splits[name] = (predictions, assistants, gold_intents)`` — UtterancePrediction objects, the
    assistant of each row and its gold intent (used for the per-intent embedding means). ``keep_value`` decides
    which predicted slot values may enter the slot-value vocabulary (:func:`default_keep_value`).
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
        arrays.update(row_arrays(name, predictions, assistants, pick))
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
    vocabulary_split = "train" if "train" in splits else next(iter(splits), None)
    if vocabulary_split is not None:
        summary["slot_values"] = slot_value_summary(splits, vocabulary_split, max_values=max_values_per_type,
                                                    keep_value=keep_value)
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

    def has_rows(self, split: str = "dev") -> bool:
        """Whether the package keeps per-row assistant, intent and slots for ``split`` (packages built before
        them do not)."""
        return all(f"{split}/{name}" in self.arrays for name in ROW_COLUMNS)

    def row_columns(self, split: str = "dev") -> dict[str, list[Any]]:
        """Per sampled row of ``split`` (aligned with :meth:`values`): ``assistant``, ``intent``, ``slot_types``
        (list per row) and ``slot_confidences`` (list per row)."""
        if not self.has_rows(split):
            raise ReferenceMissingError(f"no per-row assistant/slot columns for split {split!r}: the package was "
                                        f"built before they were kept")
        offsets = np.asarray(self.arrays[f"{split}/slot_offsets"])
        types = self.arrays[f"{split}/slot_types"].tolist()
        confidences = self.arrays[f"{split}/slot_confidences"].astype(float).tolist()
        rows = len(self.arrays[f"{split}/assistant"])
        if (len(offsets) != rows + 1 or len(self.arrays[f"{split}/intent"]) != rows or offsets[0] != 0
                or np.any(np.diff(offsets) < 0) or offsets[-1] != len(types) or len(types) != len(confidences)):
            raise ReferenceMissingError(f"the per-row columns of split {split!r} do not line up (edited or truncated "
                                        f"reference arrays)")
        spans = list(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True))
        return {
            "assistant": self.arrays[f"{split}/assistant"].tolist(),
            "intent": self.arrays[f"{split}/intent"].tolist(),
            "slot_types": [types[a:b] for a, b in spans],
            "slot_confidences": [confidences[a:b] for a, b in spans],
        }

    @property
    def slot_values(self) -> Mapping[str, Any] | None:
        """The ``slot_values`` section of the summary (vocabulary and dev unseen rates), None in older packages."""
        section = self.summary.get("slot_values")
        return section if isinstance(section, Mapping) else None

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
