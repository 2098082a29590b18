"""Evaluation metrics of the joint intent + slot model (pure Python and numpy, no torch).

Slot scores are entity-level in the CoNLL convention (conlleval): a predicted slot counts only
when its type and both boundaries match a gold slot; a stray ``I-`` starts a slot; a score with
an empty denominator is 0.

>>> from model_runtime.data.example import Example
>>> gold = [Example(("add", "two", "jordan"), ("O", "B-quantity", "B-brand"), "add_to_cart", "shopper")]
>>> report = evaluate(gold, ["add_to_cart"], [["O", "B-quantity", "B-person"]], [0.9])
>>> report.intent_accuracy, report.slots.f1, report.brand_person_confusion["brand_as_person"]
(1.0, 0.5, 1)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from model_runtime.data.bio import bio_spans
from model_runtime.data.example import Example

TagSequences = Sequence[Sequence[str]]


class MetricsInputError(ValueError):
    """Gold and predicted inputs do not line up (lengths differ, empty input, bad confidences)."""


@dataclass(frozen=True)
class SlotScore:
    """Entity-level precision/recall/F1 with the counts behind them."""

    precision: float
    recall: float
    f1: float
    n_gold: int
    n_predicted: int
    n_correct: int

    @classmethod
    def from_counts(cls, n_gold: int, n_predicted: int, n_correct: int) -> SlotScore:
        """Scores from counts; 0 where a denominator is 0 (conlleval does the same).

        >>> SlotScore.from_counts(n_gold=4, n_predicted=2, n_correct=2).f1  # P 1, R 0.5: 2*0.5/1.5
        0.6666666666666666
        """
        precision = n_correct / n_predicted if n_predicted else 0.0
        recall = n_correct / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1, n_gold, n_predicted, n_correct)


@dataclass(frozen=True)
class AssistantScore:
    """The headline figures of one assistant's slice."""

    n: int
    intent_accuracy: float
    slot_f1: float
    sentence_accuracy: float


def _check_same_length(name: str, expected: int, values: Sequence) -> None:
    if len(values) != expected:
        raise MetricsInputError(f"{name} has {len(values)} entries, expected {expected}")


def _check_tags(gold_tags: TagSequences, predicted_tags: TagSequences) -> None:
    _check_same_length("predicted_tags", len(gold_tags), predicted_tags)
    for index, (gold, predicted) in enumerate(zip(gold_tags, predicted_tags, strict=True)):
        if len(gold) != len(predicted):
            raise MetricsInputError(f"example {index}: {len(gold)} gold tags but {len(predicted)} predicted")


def intent_accuracy(gold_intents: Sequence[str], predicted_intents: Sequence[str]) -> float:
    """Share of utterances whose top intent is right.

    >>> intent_accuracy(["a", "b", "c", "d"], ["a", "b", "x", "d"])
    0.75
    """
    if not gold_intents:
        raise MetricsInputError("no examples")
    _check_same_length("predicted_intents", len(gold_intents), predicted_intents)
    return sum(g == p for g, p in zip(gold_intents, predicted_intents, strict=True)) / len(gold_intents)


def _span_counts(gold_tags: TagSequences, predicted_tags: TagSequences) -> dict[str, Counter]:
    """Per slot type: gold, predicted and correct span counts."""
    _check_tags(gold_tags, predicted_tags)
    counts: dict[str, Counter] = defaultdict(Counter)
    for gold, predicted in zip(gold_tags, predicted_tags, strict=True):
        gold_spans, predicted_spans = set(bio_spans(gold)), set(bio_spans(predicted))
        for kind, _, _ in gold_spans:
            counts[kind]["gold"] += 1
        for kind, _, _ in predicted_spans:
            counts[kind]["predicted"] += 1
        for kind, _, _ in gold_spans & predicted_spans:
            counts[kind]["correct"] += 1
    return counts


def slot_scores_by_type(gold_tags: TagSequences, predicted_tags: TagSequences) -> dict[str, SlotScore]:
    """Entity-level P/R/F1 for each slot type seen in gold or prediction (sorted by type)."""
    counts = _span_counts(gold_tags, predicted_tags)
    return {
        kind: SlotScore.from_counts(c["gold"], c["predicted"], c["correct"]) for kind, c in sorted(counts.items())
    }


def slot_scores(gold_tags: TagSequences, predicted_tags: TagSequences) -> SlotScore:
    """Micro-averaged entity-level P/R/F1 over all slot types (conlleval's overall line).

    >>> slot_scores([["B-brand", "I-brand", "O"]], [["B-brand", "O", "O"]]).f1  # boundary wrong: 0 of 1
    0.0
    """
    counts = _span_counts(gold_tags, predicted_tags)
    total = sum(counts.values(), Counter())
    return SlotScore.from_counts(total["gold"], total["predicted"], total["correct"])


def sentence_accuracy(
    gold_intents: Sequence[str], predicted_intents: Sequence[str], gold_tags: TagSequences, predicted_tags: TagSequences
) -> float:
    """Share of utterances with the right intent AND every tag right (exact frame).

    >>> sentence_accuracy(["a", "b"], ["a", "b"], [["O"], ["B-x"]], [["O"], ["O"]])
    0.5
    """
    if not gold_intents:
        raise MetricsInputError("no examples")
    _check_same_length("predicted_intents", len(gold_intents), predicted_intents)
    _check_same_length("gold_tags", len(gold_intents), gold_tags)
    _check_tags(gold_tags, predicted_tags)
    right = sum(
        gi == pi and tuple(gt) == tuple(pt)
        for gi, pi, gt, pt in zip(gold_intents, predicted_intents, gold_tags, predicted_tags, strict=True)
    )
    return right / len(gold_intents)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over equal-width bins.

    Bins are ``(k/n_bins, (k+1)/n_bins]``; a confidence of exactly 0 goes to the first bin.

    Two at 0.9 with one right (gap 0.4) and two at 0.6 both right (gap 0.4): ECE = 0.5*0.4 + 0.5*0.4.

    >>> round(expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True], n_bins=10), 6)
    0.4
    """
    conf = np.asarray(confidences, dtype=float)
    hits = np.asarray(correct, dtype=float)
    if conf.size == 0 or conf.shape != hits.shape or conf.ndim != 1:
        raise MetricsInputError(f"need equal, non-empty 1-d confidences and correct, got {conf.shape}, {hits.shape}")
    if np.isnan(conf).any() or conf.min() < 0 or conf.max() > 1:
        raise MetricsInputError("confidences must lie within [0, 1] and not be NaN")
    if n_bins < 1:
        raise MetricsInputError(f"n_bins must be >= 1, got {n_bins}")
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.sum() / conf.size * abs(hits[members].mean() - conf[members].mean())
    return float(ece)


def brand_person_confusion(gold_tags: TagSequences, predicted_tags: TagSequences) -> dict[str, int]:
    """Gold brand spans predicted as a person with the same boundaries, and the reverse.

    >>> brand_person_confusion([["B-brand", "O", "B-person"]], [["B-person", "O", "B-person"]])
    {'brand_as_person': 1, 'person_as_brand': 0}
    """
    _check_tags(gold_tags, predicted_tags)
    confusion = {"brand_as_person": 0, "person_as_brand": 0}
    for gold, predicted in zip(gold_tags, predicted_tags, strict=True):
        predicted_by_bounds = {(start, end): kind for kind, start, end in bio_spans(predicted)}
        for kind, start, end in bio_spans(gold):
            guess = predicted_by_bounds.get((start, end))
            if kind == "brand" and guess == "person":
                confusion["brand_as_person"] += 1
            elif kind == "person" and guess == "brand":
                confusion["person_as_brand"] += 1
    return confusion


@dataclass(frozen=True)
class EvalReport:
    """Everything :func:`evaluate` measures; ``ece`` is None when no confidences were given."""

    n: int
    intent_accuracy: float
    slots: SlotScore
    sentence_accuracy: float
    ece: float | None
    per_slot_type: Mapping[str, SlotScore]
    per_assistant: Mapping[str, AssistantScore]
    per_intent_accuracy: Mapping[str, float]
    brand_person_confusion: Mapping[str, int]

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (nested dataclasses become dicts)."""
        return asdict(self)

    def to_table(self) -> str:
        """A readable text summary: headline, per assistant, per slot type."""
        ece = "n/a" if self.ece is None else f"{self.ece:.4f}"
        lines = [
            f"examples {self.n}   intent acc {self.intent_accuracy:.4f}   slot P/R/F1 {self.slots.precision:.4f}/"
            f"{self.slots.recall:.4f}/{self.slots.f1:.4f}   sentence acc {self.sentence_accuracy:.4f}   ECE {ece}",
            f"brand->person {self.brand_person_confusion['brand_as_person']}   "
            f"person->brand {self.brand_person_confusion['person_as_brand']}",
            "",
            f"{'assistant':<14}{'n':>7}{'intent':>9}{'slot F1':>9}{'sentence':>10}",
        ]
        for name, score in self.per_assistant.items():
            lines.append(
                f"{name:<14}{score.n:>7}{score.intent_accuracy:>9.4f}{score.slot_f1:>9.4f}{score.sentence_accuracy:>10.4f}"
            )
        lines += ["", f"{'slot type':<14}{'gold':>7}{'pred':>7}{'P':>9}{'R':>9}{'F1':>9}"]
        for kind, score in self.per_slot_type.items():
            lines.append(
                f"{kind:<14}{score.n_gold:>7}{score.n_predicted:>7}{score.precision:>9.4f}{score.recall:>9.4f}"
                f"{score.f1:>9.4f}"
            )
        return "\n".join(lines)


def evaluate(
    gold: Sequence[Example],
    predicted_intents: Sequence[str],
    predicted_tags: TagSequences,
    confidences: Sequence[float] | None = None,
) -> EvalReport:
    """All metrics of one prediction run; ``confidences`` are the top-intent probabilities."""
    if not gold:
        raise MetricsInputError("no examples")
    gold_intents = [example.intent for example in gold]
    gold_tags = [example.tags for example in gold]
    _check_same_length("predicted_intents", len(gold), predicted_intents)
    _check_tags(gold_tags, predicted_tags)
    ece = None
    if confidences is not None:
        _check_same_length("confidences", len(gold), confidences)
        correct = [g == p for g, p in zip(gold_intents, predicted_intents, strict=True)]
        ece = expected_calibration_error(confidences, correct)
    return EvalReport(
        n=len(gold),
        intent_accuracy=intent_accuracy(gold_intents, predicted_intents),
        slots=slot_scores(gold_tags, predicted_tags),
        sentence_accuracy=sentence_accuracy(gold_intents, predicted_intents, gold_tags, predicted_tags),
        ece=ece,
        per_slot_type=slot_scores_by_type(gold_tags, predicted_tags),
        per_assistant=_per_group(gold, predicted_intents, predicted_tags, lambda example: example.assistant),
        per_intent_accuracy=_per_intent_accuracy(gold_intents, predicted_intents),
        brand_person_confusion=brand_person_confusion(gold_tags, predicted_tags),
    )


def _per_group(gold, predicted_intents, predicted_tags, key) -> dict[str, AssistantScore]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(gold):
        groups[key(example)].append(index)
    scores = {}
    for name, indices in sorted(groups.items()):
        gi = [gold[i].intent for i in indices]
        pi = [predicted_intents[i] for i in indices]
        gt = [gold[i].tags for i in indices]
        pt = [predicted_tags[i] for i in indices]
        scores[name] = AssistantScore(
            n=len(indices),
            intent_accuracy=intent_accuracy(gi, pi),
            slot_f1=slot_scores(gt, pt).f1,
            sentence_accuracy=sentence_accuracy(gi, pi, gt, pt),
        )
    return scores


def _per_intent_accuracy(gold_intents: Sequence[str], predicted_intents: Sequence[str]) -> dict[str, float]:
    """Recall of each gold intent (share of its utterances predicted as it)."""
    totals: Counter = Counter(gold_intents)
    hits: Counter = Counter(g for g, p in zip(gold_intents, predicted_intents, strict=True) if g == p)
    return {intent: hits[intent] / totals[intent] for intent in sorted(totals)}
