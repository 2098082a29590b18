"""Aggregating labeling-function votes: on simulated functions of known accuracy, learned weights beat the
plain majority and every single function, and rank the functions by accuracy."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from labeling.annotation.aggregate import (
    ENTITY_LABELS,
    NO_VOTES,
    Aggregator,
    LabelModelAggregator,
    MajorityVote,
    WeightedVote,
    confusion_rates,
    function_labels,
    micro_f1,
    predict_labels,
    span_scores,
)
from labeling.annotation.base import LABELS, Vote

SHARE = {"O": 0.6, "person": 0.15, "time": 0.1, "brand": 0.1, "product": 0.05}
ACCURACY = (0.95, 0.85, 0.75, 0.65, 0.55)  # P(vote = truth | the function votes), the same for every label
ABSTAIN = (0.7, 0.5, 0.4, 0.3, 0.2)  # the best function speaks least, as precise rules do
NAMES = tuple(f"lf{i}" for i in range(len(ACCURACY)))


def simulate(n_tokens: int, seed: int, length: int = 8):
    """Utterances of ``length`` tokens with entity spans of 1-2 tokens, and every function's votes: right with
    its accuracy, else a uniformly wrong label; right votes tend to be more confident than wrong ones."""
    rng = np.random.default_rng(seed)
    kinds, shares = list(SHARE), list(SHARE.values())
    corpus, gold = [], []
    while sum(map(len, gold)) < n_tokens:
        labels: list[str] = []
        while len(labels) < length:
            kind = kinds[rng.choice(len(kinds), p=shares)]
            labels += [kind] * (1 if kind == "O" else int(rng.integers(1, 3)))
        labels = labels[:length]
        votes = []
        for accuracy, abstain in zip(ACCURACY, ABSTAIN, strict=True):
            row: list[Vote | None] = []
            for truth in labels:
                if rng.random() < abstain:
                    row.append(None)
                elif rng.random() < accuracy:
                    row.append(Vote(truth, float(rng.uniform(0.5, 1.0))))
                else:
                    wrong = [label for label in LABELS if label != truth]
                    row.append(Vote(wrong[int(rng.integers(len(wrong)))], float(rng.uniform(0.3, 0.8))))
            votes.append(row)
        corpus.append(votes)
        gold.append(labels)
    return corpus, gold


@pytest.fixture(scope="module")
def holdout():
    return simulate(600, seed=11)


@pytest.fixture(scope="module")
def unseen():
    return simulate(2000, seed=12)


def f1_of(labels, gold) -> float:
    return micro_f1(span_scores(labels, gold, ENTITY_LABELS))


@pytest.fixture(scope="module")
def baselines(unseen):
    votes, gold = unseen
    majority = f1_of(predict_labels(MajorityVote().fit(votes, NAMES), votes), gold)
    best_single = max(f1_of(function_labels(votes, index), gold) for index in range(len(NAMES)))
    return majority, best_single


def test_every_aggregator_follows_the_protocol():
    for aggregator in (MajorityVote(), WeightedVote(), LabelModelAggregator()):
        assert isinstance(aggregator, Aggregator)


def test_weighted_vote_beats_the_majority_and_every_single_function(holdout, unseen, baselines):
    votes, gold = unseen
    weighted = f1_of(predict_labels(WeightedVote().fit(holdout[0], NAMES, holdout[1]), votes), gold)
    majority, best_single = baselines
    assert weighted > majority + 0.05, (weighted, majority)
    assert weighted > best_single + 0.2, (weighted, best_single)


def test_label_model_beats_the_majority_and_every_single_function(holdout, unseen, baselines):
    votes, gold = unseen
    # Fitted on every vote; only the 600 hand-labelled tokens' gold is given (for the class balance).
    model = LabelModelAggregator(seed=0).fit(holdout[0] + votes, NAMES, holdout[1] + [None] * len(votes))
    label_model = f1_of(predict_labels(model, votes), gold)
    majority, best_single = baselines
    assert label_model > majority + 0.01, (label_model, majority)  # +0.01 to +0.06 over five other seeds
    assert label_model > best_single + 0.2, (label_model, best_single)


def test_fitted_weights_rank_the_functions_by_accuracy(holdout):
    model = WeightedVote().fit(holdout[0], NAMES, holdout[1])
    mean_weight = [np.mean([model.weights_[name][label] for label in ENTITY_LABELS]) for name in NAMES]
    assert mean_weight == sorted(mean_weight, reverse=True), mean_weight
    assert len(set(mean_weight)) == len(NAMES)


def test_without_gold_every_function_weighs_the_prior_and_one_vote_is_not_an_entity():
    model = WeightedVote().fit([], NAMES)
    weights = [w for per_label in model.weights_.values() for w in per_label.values()]
    assert weights == [pytest.approx(np.log(0.7 / 0.3))] * len(NAMES) * len(LABELS)
    one = [[Vote("person", 1.0)], [None], [None], [None], [None]]
    two = [[Vote("person", 1.0)], [Vote("person", 1.0)], [None], [None], [None]]
    assert model.predict(one)[0].label == "O"
    assert model.predict(two)[0].label == "person"


def test_the_fitted_o_bias_holds_on_unseen_votes(holdout, unseen):
    """The bias is chosen on the holdout; on new data it must do at least as well as no bias at all."""
    fitted = WeightedVote().fit(holdout[0], NAMES, holdout[1])
    unbiased = WeightedVote(o_bias=0.0).fit(holdout[0], NAMES, holdout[1])
    votes, gold = unseen
    assert fitted.o_bias_ > 0
    assert f1_of(predict_labels(fitted, votes), gold) >= f1_of(predict_labels(unbiased, votes), gold)


def test_weights_survive_a_json_round_trip(holdout, unseen):
    model = WeightedVote().fit(holdout[0], NAMES, holdout[1])
    loaded = WeightedVote.from_dict(json.loads(json.dumps(model.to_dict())))
    assert loaded.weights_ == model.weights_ and loaded.o_bias_ == model.o_bias_
    votes = unseen[0][:50]
    assert [loaded.predict(v) for v in votes] == [model.predict(v) for v in votes]


def test_saved_weights_of_another_kind_are_refused():
    with pytest.raises(ValueError, match="weighted-vote"):
        WeightedVote.from_dict({"aggregator": "label_model"})


def test_label_model_is_deterministic_and_leaves_global_random_state_alone(holdout):
    random.seed(5)
    np.random.seed(5)
    before = random.random(), np.random.random()
    random.seed(5)
    np.random.seed(5)
    first = LabelModelAggregator(seed=3, n_epochs=100).fit(holdout[0], NAMES)
    assert (random.random(), np.random.random()) == before
    second = LabelModelAggregator(seed=3, n_epochs=100).fit(holdout[0], NAMES)
    assert [first.predict(v) for v in holdout[0]] == [second.predict(v) for v in holdout[0]]


def test_label_model_needs_three_functions():
    with pytest.raises(ValueError, match="at least 3"):
        LabelModelAggregator().fit([[[Vote("person", 1.0)], [None]]], ("a", "b"))


def test_majority_vote_shares_ties_and_abstentions():
    votes = [
        [Vote("person", 0.9), Vote("person", 0.9), None],
        [Vote("person", 0.9), Vote("brand", 0.9), None],
        [Vote("O", 0.9), None, None],
    ]
    clear, tie, nothing = MajorityVote().fit([], ("a", "b", "c")).predict(votes)
    assert (clear.label, clear.runner_up, clear.margin) == ("person", "O", pytest.approx(1 / 3))
    assert clear.score == pytest.approx(2 / 3)
    assert tie.label == "O" and tie.margin < 0  # an even split makes no entity, and routing sees the margin
    assert nothing == NO_VOTES


def test_votes_from_the_wrong_number_of_functions_are_refused():
    model = MajorityVote().fit([], ("a", "b"))
    with pytest.raises(ValueError, match="fitted on 2"):
        model.predict([[None], [None], [None]])
    with pytest.raises(ValueError, match="different numbers of tokens"):
        model.predict([[None], [None, None]])


def test_span_scores_need_exact_spans():
    pred = [["person", "person", "O", "time"], ["O", "brand", "O", "O"]]
    gold = [["person", "O", "O", "time"], ["O", "person", "O", "O"]]
    scores = span_scores(pred, gold)
    assert scores["time"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "fp": 0, "fn": 0}
    assert (scores["person"]["tp"], scores["person"]["fp"], scores["person"]["fn"]) == (0, 1, 2)


def test_confusion_rates_count_mentions_not_tokens():
    gold = [["brand", "brand", "O", "person"], ["brand", "O", "O", "O"], ["person", "O", "O", "O"]]
    pred = [["person", "brand", "O", "person"], ["brand", "O", "O", "O"], ["brand", "O", "O", "O"]]
    rates = confusion_rates(pred, gold)
    assert rates == {"brand_as_person": 0.5, "person_as_brand": 0.5, "brand_mentions": 2, "person_mentions": 2}
    assert confusion_rates([["O"]], [["O"]])["brand_as_person"] is None
