"""Turn the labeling functions' votes into one label per token, and score labels against gold.

Votes for one utterance are ``votes[function][token]`` (a :class:`~labeling.annotation.base.Vote` or
``None`` = abstain), with the function names in the same order; a corpus is a list of those. Every
aggregator answers one :class:`TokenDecision` per token: the label, its score in ``[0, 1]``, the runner-up
and the margin between the two — what routing needs to send a close call to a human.

Three aggregators, from blunt to learned:

- :class:`MajorityVote`: one function, one vote; a tie at the top is ``O``.
- :class:`WeightedVote`: log-odds weights per function *and label*, fitted on a small hand-labelled holdout,
  plus a bias toward ``O`` so that one weak vote alone does not make an entity.
- :class:`LabelModelAggregator`: Snorkel's ``LabelModel`` (a generative model of the functions' accuracies,
  fitted on unlabelled votes; gold, when given, only sets the class balance).

Common rules: a token on which every function abstains is ``O`` (score 1, nothing competes); when only one
label is in the running ``runner_up`` is ``None`` and ``margin`` equals ``score``; a tie at the top is decided
for ``O`` (an even split is no evidence for an entity, and its margin ``<= 0`` sends it to routing).

    >>> from labeling.annotation.base import Vote
    >>> votes = [[Vote("person", 0.9), None], [Vote("person", 0.8), None], [Vote("brand", 0.7), None]]
    >>> [(d.label, round(d.score, 2), d.runner_up) for d in MajorityVote().predict(votes)]
    [('person', 0.67, 'brand'), ('O', 1.0, None)]
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from labeling.annotation.base import BRAND, LABELS, OTHER, PERSON, TARGET_TYPES, Vote, label_spans

UtteranceVotes = Sequence[Sequence[Vote | None]]  # [function][token]
Labels = Sequence[str | None]  # one label per token (None: abstained / unknown)
#: The labels that make spans (everything but ``O``).
ENTITY_LABELS: tuple[str, ...] = tuple(label for label in LABELS if label != OTHER)
_TIE = 1e-9


@dataclass(frozen=True)
class TokenDecision:
    """The aggregate's answer for one token. ``support``: label -> score for every label in the running."""

    label: str
    score: float
    runner_up: str | None
    margin: float
    support: Mapping[str, float] = field(default_factory=dict)


#: The decision for a token on which every function abstained.
NO_VOTES = TokenDecision(OTHER, 1.0, None, 1.0, {})


@runtime_checkable
class Aggregator(Protocol):
    """Fit on a corpus of votes, then decide each token of one utterance.

    ``gold``, when given, has one entry per utterance: its labels, or ``None`` for an utterance nobody
    hand-labelled (so a few labelled utterances can sit in a large unlabelled corpus).
    """

    name: str

    def fit(self, corpus_votes: Sequence[UtteranceVotes], function_names: Sequence[str],
            gold: Sequence[Labels | None] | None = None) -> Self: ...

    def predict(self, votes: UtteranceVotes) -> list[TokenDecision]: ...


def decide(support: Mapping[str, float]) -> TokenDecision:
    """The decision for per-label scores (higher is better); ties at the top go to ``O``.

    >>> decide({"person": 0.5, "brand": 0.5})
    TokenDecision(label='O', score=0.0, runner_up='person', margin=-0.5, support={'person': 0.5, 'brand': 0.5})
    """
    if not support:
        return NO_VOTES
    ranked = sorted(support.items(), key=lambda item: (-item[1], LABELS.index(item[0])))
    top_score = ranked[0][1]
    tied = [label for label, score in ranked if top_score - score <= _TIE]
    label = ranked[0][0] if len(tied) == 1 else OTHER
    score = float(support.get(label, 0.0))
    others = [(name, value) for name, value in ranked if name != label]
    runner_up, runner_score = others[0] if others else (None, 0.0)
    return TokenDecision(label, score, runner_up, score - float(runner_score), dict(support))


def token_count(votes: UtteranceVotes, n_functions: int | None = None) -> int:
    """Tokens in one utterance's votes; a ragged matrix or the wrong number of functions is an error."""
    if n_functions is not None and len(votes) != n_functions:
        raise ValueError(f"votes from {len(votes)} functions; the aggregator was fitted on {n_functions}")
    lengths = {len(per_function) for per_function in votes}
    if len(lengths) > 1:
        raise ValueError(f"functions voted on different numbers of tokens: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def labelled(corpus_votes: Sequence[UtteranceVotes], gold: Sequence[Labels | None] | None,
             n_functions: int) -> list[tuple[UtteranceVotes, Labels]]:
    """The ``(votes, gold labels)`` of the hand-labelled utterances; misaligned gold is an error."""
    if gold is None:
        return []
    if len(gold) != len(corpus_votes):
        raise ValueError(f"gold for {len(gold)} utterances, votes for {len(corpus_votes)}")
    pairs = []
    for index, (votes, labels) in enumerate(zip(corpus_votes, gold, strict=True)):
        if labels is not None:
            if token_count(votes, n_functions) != len(labels):
                raise ValueError(f"utterance {index}: {len(labels)} gold labels for {token_count(votes)} tokens")
            pairs.append((votes, labels))
    return pairs


def labels_of(decisions: Sequence[TokenDecision]) -> list[str]:
    return [decision.label for decision in decisions]


def predict_labels(aggregator: Aggregator, corpus_votes: Sequence[UtteranceVotes]) -> list[list[str]]:
    """The aggregate label of every token of every utterance."""
    return [labels_of(aggregator.predict(votes)) for votes in corpus_votes]


def function_labels(corpus_votes: Sequence[UtteranceVotes], index: int) -> list[list[str | None]]:
    """One function's labels per utterance (``None`` where it abstained)."""
    return [[vote.label if vote else None for vote in votes[index]] for votes in corpus_votes]


class MajorityVote:
    """One function, one vote: ``support`` is each label's share of the non-abstaining votes."""

    name = "majority_vote"

    def __init__(self) -> None:
        self.function_names_: tuple[str, ...] | None = None

    def fit(self, corpus_votes: Sequence[UtteranceVotes], function_names: Sequence[str],
            gold: Sequence[Labels | None] | None = None) -> Self:
        self.function_names_ = tuple(function_names)
        return self

    def predict(self, votes: UtteranceVotes) -> list[TokenDecision]:
        n_functions = len(self.function_names_) if self.function_names_ is not None else None
        decisions = []
        for token in range(token_count(votes, n_functions)):
            cast = [per_function[token].label for per_function in votes if per_function[token] is not None]
            decisions.append(decide({label: cast.count(label) / len(cast) for label in dict.fromkeys(cast)}))
        return decisions


class WeightedVote:
    """Weighted vote with a weight per function *and* label, learned on a hand-labelled holdout.

    On the holdout, function ``f`` voted label ``l`` ``n`` times, ``k`` of them right, and ``l`` is the true
    label of a share ``base[l]`` of the tokens (add-one smoothed). The vote's precision is smoothed toward a
    prior (``prior_precision``, worth ``prior_strength`` votes), so a function with few or no holdout votes
    gets the prior; its weight is how far the vote moves the log-odds of ``l`` from the base rate, clipped::

        p[f, l] = (k + prior_strength * prior_precision) / (n + prior_strength)
        w[f, l] = clip(logit(p[f, l]) - logit(base[l]), floor, cap)

    (The plain ``logit(p)`` counts the base rate once per vote: ``O`` votes are precise because most tokens
    are ``O``, and on simulated votes they outvoted good entity votes — span F1 below majority vote.)
    A token's score for label ``l`` sums the weights of the votes for ``l``, each times its confidence when
    ``use_confidence``; abstentions add nothing. ``O`` starts at ``o_bias``::

        S[l] = sum over functions f voting l of w[f, l] * confidence    (+ o_bias when l == "O")

    The label is the argmax of ``S`` over ``O`` and the voted labels; ``support`` is the softmax of ``S`` over
    them (a naive-Bayes posterior when the functions are independent). ``o_bias`` is declared, or fitted on
    the holdout: the value on a grid that gives the best exact-span micro F1 over the entity labels (the
    median of the best values, for a stable choice). Without gold there is no base rate: every weight is
    ``logit(prior_precision)`` (0.85) and ``o_bias`` defaults to 1.0, just above one full-confidence vote:
    one vote alone does not make an entity, two agreeing ones do.
    """

    name = "weighted_vote"

    def __init__(self, *, prior_precision: float = 0.7, prior_strength: float = 4.0, floor: float = 0.0,
                 cap: float = 4.6, use_confidence: bool = True, o_bias: float | None = None,
                 bias_grid: Sequence[float] = tuple(np.round(np.arange(0.0, 6.01, 0.1), 2))) -> None:
        if not 0.0 < prior_precision < 1.0:
            raise ValueError(f"prior_precision must be in (0, 1), got {prior_precision}")
        self.prior_precision, self.prior_strength = prior_precision, prior_strength
        self.floor, self.cap, self.use_confidence = floor, cap, use_confidence
        self.declared_bias, self.bias_grid = o_bias, tuple(float(b) for b in bias_grid)
        self.function_names_: tuple[str, ...] = ()
        self.weights_: dict[str, dict[str, float]] = {}
        self.holdout_counts_: dict[str, dict[str, list[int]]] = {}  # function -> label -> [votes, correct]
        self.base_rates_: dict[str, float] | None = None  # label -> share of holdout tokens (None: no gold)
        self.o_bias_: float = 1.0 if o_bias is None else o_bias

    def weight_for(self, votes: int, correct: int, base_rate: float | None) -> float:
        """``w`` for ``correct`` right votes out of ``votes`` for a label with this base rate (see above)."""
        precision = (correct + self.prior_strength * self.prior_precision) / (votes + self.prior_strength)
        lift = _logit(precision) - (_logit(base_rate) if base_rate is not None else 0.0)
        return float(min(max(lift, self.floor), self.cap))

    def fit(self, corpus_votes: Sequence[UtteranceVotes], function_names: Sequence[str],
            gold: Sequence[Labels | None] | None = None) -> Self:
        """Weights from the hand-labelled utterances of ``gold`` (see the class docstring)."""
        self.function_names_ = tuple(function_names)
        holdout = labelled(corpus_votes, gold, len(self.function_names_))
        counts = {name: {label: [0, 0] for label in LABELS} for name in self.function_names_}
        for votes, labels in holdout:
            for name, per_function in zip(self.function_names_, votes, strict=True):
                for vote, truth in zip(per_function, labels, strict=True):
                    if vote is not None:
                        counts[name][vote.label][0] += 1
                        counts[name][vote.label][1] += int(vote.label == truth)
        self.holdout_counts_, self.base_rates_ = counts, None
        if holdout:
            truth = Counter(label for _, labels in holdout for label in labels)
            total = sum(truth[label] for label in LABELS) + len(LABELS)
            self.base_rates_ = {label: (truth[label] + 1) / total for label in LABELS}
        rates = self.base_rates_ or {}
        self.weights_ = {name: {label: self.weight_for(*counts[name][label], rates.get(label)) for label in LABELS}
                         for name in self.function_names_}
        if self.declared_bias is not None:
            self.o_bias_ = self.declared_bias
        elif holdout:
            self.o_bias_ = self._fit_bias(holdout)
        return self

    def scores(self, votes: UtteranceVotes) -> list[dict[str, float]]:
        """Per token, ``S[l]`` for ``O`` and every voted label (before the softmax)."""
        rows = []
        for token in range(token_count(votes, len(self.function_names_))):
            score = {OTHER: self.o_bias_}
            for name, per_function in zip(self.function_names_, votes, strict=True):
                vote = per_function[token]
                if vote is not None:
                    strength = vote.confidence if self.use_confidence else 1.0
                    score[vote.label] = score.get(vote.label, 0.0) + self.weights_[name][vote.label] * strength
            rows.append(score)
        return rows

    def predict(self, votes: UtteranceVotes) -> list[TokenDecision]:
        decisions = []
        for per_function_token, score in zip(zip(*votes, strict=True), self.scores(votes), strict=True):
            if all(vote is None for vote in per_function_token):
                decisions.append(NO_VOTES)
                continue
            top = max(score.values())
            exp = {label: math.exp(value - top) for label, value in score.items()}
            total = sum(exp.values())
            decisions.append(decide({label: value / total for label, value in exp.items()}))
        return decisions

    def _fit_bias(self, holdout: Sequence[tuple[UtteranceVotes, Labels]]) -> float:
        saved = self.o_bias_
        self.o_bias_ = 0.0
        raw = [self.scores(votes) for votes, _ in holdout]
        gold = [labels for _, labels in holdout]
        results = []
        for bias in self.bias_grid:
            predicted = [[decide({**s, OTHER: s[OTHER] + bias}).label for s in utterance] for utterance in raw]
            results.append((micro_f1(span_scores(predicted, gold, ENTITY_LABELS)), bias))
        self.o_bias_ = saved
        best = max(f1 for f1, _ in results)
        winners = [bias for f1, bias in results if f1 >= best - _TIE]
        return float(winners[(len(winners) - 1) // 2])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the weights, the bias, the holdout counts they came from, and the settings."""
        return {
            "aggregator": self.name, "function_names": list(self.function_names_), "weights": self.weights_,
            "o_bias": self.o_bias_, "holdout_counts": self.holdout_counts_, "base_rates": self.base_rates_,
            "settings": {"prior_precision": self.prior_precision, "prior_strength": self.prior_strength,
                         "floor": self.floor, "cap": self.cap, "use_confidence": self.use_confidence,
                         "declared_bias": self.declared_bias},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightedVote:
        if data.get("aggregator") != cls.name:
            raise ValueError(f"not saved weighted-vote weights: aggregator={data.get('aggregator')!r}")
        settings = data["settings"]
        model = cls(prior_precision=settings["prior_precision"], prior_strength=settings["prior_strength"],
                    floor=settings["floor"], cap=settings["cap"], use_confidence=settings["use_confidence"],
                    o_bias=settings["declared_bias"])
        model.function_names_ = tuple(data["function_names"])
        model.weights_ = {name: {label: float(w) for label, w in per_label.items()}
                          for name, per_label in data["weights"].items()}
        missing = set(model.function_names_) - set(model.weights_)
        if missing:
            raise ValueError(f"saved weights lack functions {sorted(missing)}")
        model.holdout_counts_ = {name: {label: list(c) for label, c in per_label.items()}
                                 for name, per_label in data.get("holdout_counts", {}).items()}
        model.base_rates_ = data.get("base_rates")
        model.o_bias_ = float(data["o_bias"])
        return model


class LabelModelAggregator:
    """Snorkel's ``LabelModel`` on per-token rows (labels as ints in ``LABELS`` order, abstain = -1).

    It learns each function's confusion between labels from the votes' agreements alone, assuming the
    functions are independent given the true label. Snorkel ignores confidences: a vote below
    ``min_confidence`` is treated as an abstention. Tokens with no vote are left out of the fit and decided
    ``O``. The class balance (Snorkel's prior over labels, which matters: most tokens are ``O``) comes from the
    hand-labelled utterances' tokens that have a vote (add-one smoothed), else from the corpus's majority vote;
    the rest of gold is not used. Seeded: Snorkel reseeds Python's, NumPy's and torch's global generators,
    which are put back as they were after the fit; it runs on one torch thread. Snorkel needs at least three
    functions.
    """

    name = "label_model"

    def __init__(self, *, seed: int = 0, n_epochs: int = 500, lr: float = 0.01, l2: float = 0.0,
                 min_confidence: float = 0.0) -> None:
        self.seed, self.n_epochs, self.lr, self.l2, self.min_confidence = seed, n_epochs, lr, l2, min_confidence
        self.function_names_: tuple[str, ...] = ()
        self.class_balance_: dict[str, float] = {}
        self._model: Any = None

    def _matrix(self, votes: UtteranceVotes) -> np.ndarray:
        """``[token][function]`` label ids, -1 for an abstention."""
        n_tokens = token_count(votes, len(self.function_names_) or None)
        matrix = np.full((n_tokens, len(votes)), -1, dtype=np.int64)
        for column, per_function in enumerate(votes):
            for row, vote in enumerate(per_function):
                if vote is not None and vote.confidence >= self.min_confidence:
                    matrix[row, column] = LABELS.index(vote.label)
        return matrix

    def fit(self, corpus_votes: Sequence[UtteranceVotes], function_names: Sequence[str],
            gold: Sequence[Labels | None] | None = None) -> Self:
        from snorkel.labeling.model import LabelModel  # heavy (torch); only when a label model is wanted

        if len(function_names) < 3:
            raise ValueError(f"the label model needs at least 3 labeling functions, got {len(function_names)}")
        self.function_names_ = tuple(function_names)
        matrices = [self._matrix(votes) for votes in corpus_votes]
        rows = np.concatenate(matrices) if matrices else np.empty((0, len(function_names)), dtype=np.int64)
        covered = (rows >= 0).any(axis=1)
        if not covered.any():
            raise ValueError("no token has a vote: nothing to fit the label model on")
        holdout = labelled(corpus_votes, gold, len(function_names))
        if not holdout:  # no gold: the majority vote's labels stand in for the class balance
            majority = MajorityVote().fit(corpus_votes, function_names)
            holdout = list(zip(corpus_votes, predict_labels(majority, corpus_votes), strict=True))
        reference = [label for votes, labels in holdout
                     for label, has_vote in zip(labels, (self._matrix(votes) >= 0).any(axis=1), strict=True)
                     if has_vote]
        counts = np.array([sum(1 for label in reference if label == name) + 1.0 for name in LABELS])
        balance = counts / counts.sum()
        self.class_balance_ = {label: float(share) for label, share in zip(LABELS, balance, strict=True)}
        with _quiet_torch():
            model = LabelModel(cardinality=len(LABELS), verbose=False)
            model.fit(rows[covered], class_balance=balance.tolist(), progress_bar=False, seed=self.seed,
                      n_epochs=self.n_epochs, lr=self.lr, l2=self.l2)
        self._model = model
        return self

    def predict(self, votes: UtteranceVotes) -> list[TokenDecision]:
        if self._model is None:
            raise RuntimeError("LabelModelAggregator.predict before fit: call fit(corpus_votes, names) first")
        matrix = self._matrix(votes)
        decisions = [NO_VOTES] * len(matrix)
        covered = np.flatnonzero((matrix >= 0).any(axis=1))
        if len(covered):
            for row, probs in zip(covered, self._model.predict_proba(matrix[covered]), strict=True):
                decisions[row] = decide({label: float(p) for label, p in zip(LABELS, probs, strict=True)})
        return decisions


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """One torch thread (the label model's matrices are 25 x 25: threads only fight over a busy machine's
    cores — one fit took 45 s with the default threads and 1.7 s with one), and the global random
    generators that Snorkel reseeds put back as they were."""
    import torch

    threads = torch.get_num_threads()
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def span_scores(pred_labels_per_utt: Sequence[Labels], gold_labels_per_utt: Sequence[Labels],
                types: Sequence[str] = TARGET_TYPES) -> dict[str, dict[str, float]]:
    """Exact-match span precision, recall and F1 per type (spans: :func:`~labeling.annotation.base.label_spans`).

    >>> span_scores([["person", "person", "O"]], [["person", "O", "O"]])["person"]
    {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'tp': 0, 'fp': 1, 'fn': 1}
    """
    if len(pred_labels_per_utt) != len(gold_labels_per_utt):
        raise ValueError(f"{len(pred_labels_per_utt)} predicted utterances for {len(gold_labels_per_utt)} gold")
    counts = {kind: [0, 0, 0] for kind in types}  # tp, fp, fn
    for predicted, truth in zip(pred_labels_per_utt, gold_labels_per_utt, strict=True):
        if len(predicted) != len(truth):
            raise ValueError(f"{len(predicted)} predicted labels for {len(truth)} gold labels")
        pred_spans, gold_spans = set(label_spans(predicted, types)), set(label_spans(truth, types))
        for kind in types:
            p = {s for s in pred_spans if s[0] == kind}
            g = {s for s in gold_spans if s[0] == kind}
            counts[kind][0] += len(p & g)
            counts[kind][1] += len(p - g)
            counts[kind][2] += len(g - p)
    return {kind: _prf(*counts[kind]) for kind in types}


def micro_f1(scores: Mapping[str, Mapping[str, float]]) -> float:
    """F1 over all types' summed span counts."""
    tp, fp, fn = (sum(int(s[key]) for s in scores.values()) for key in ("tp", "fp", "fn"))
    return _prf(tp, fp, fn)["f1"]


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def confusion_rates(pred: Sequence[Labels], gold: Sequence[Labels]) -> dict[str, float | int | None]:
    """Brand-as-person: the share of gold brand mentions with any token predicted ``person``; person-as-brand
    the other way round. ``None`` when gold has no such mention.

    >>> confusion_rates([["person", "O", "brand"]], [["brand", "O", "person"]])
    {'brand_as_person': 1.0, 'person_as_brand': 1.0, 'brand_mentions': 1, 'person_mentions': 1}
    """
    hits = {BRAND: 0, PERSON: 0}
    mentions = {BRAND: 0, PERSON: 0}
    for predicted, truth in zip(pred, gold, strict=True):
        for kind, start, end in label_spans(truth, (BRAND, PERSON)):
            other = PERSON if kind == BRAND else BRAND
            mentions[kind] += 1
            hits[kind] += int(any(label == other for label in predicted[start:end]))
    return {
        "brand_as_person": hits[BRAND] / mentions[BRAND] if mentions[BRAND] else None,
        "person_as_brand": hits[PERSON] / mentions[PERSON] if mentions[PERSON] else None,
        "brand_mentions": mentions[BRAND], "person_mentions": mentions[PERSON],
    }
