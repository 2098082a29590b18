"""Krippendorff's alpha among labeling functions and against gold: 1 for identical voters, about 0 for
independent ones, and the function that votes at random is the one flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labeling.annotation.aggregate import MajorityVote, predict_labels
from labeling.annotation.agreement import (
    DEFAULT_THRESHOLD,
    agreement_report,
    alpha_against_gold,
    alpha_among_functions,
    function_agreement,
    leave_one_out_reference,
)
from labeling.annotation.base import LABELS, Vote

SHARES = (0.15, 0.1, 0.1, 0.05, 0.6)  # in LABELS order: person, time, brand, product, O
ENTITIES = ("person", "time", "brand", "product")


def truth(n_utterances: int, seed: int, length: int = 8) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[LABELS[i] for i in rng.choice(len(LABELS), size=length, p=SHARES)] for _ in range(n_utterances)]


def voter(gold, accuracy: float, abstain: float, rng) -> list[list[Vote | None]]:
    """One function's votes per utterance: the truth with ``accuracy`` (else a random label), or abstain."""
    votes = []
    for labels in gold:
        row = []
        for label in labels:
            if rng.random() < abstain:
                row.append(None)
            else:
                said = label if rng.random() < accuracy else LABELS[int(rng.integers(len(LABELS)))]
                row.append(Vote(said, 0.8))
        votes.append(row)
    return votes


def corpus_of(functions) -> list[list[list[Vote | None]]]:
    """``[utterance][function][token]`` from ``[function][utterance][token]``."""
    return [list(per_utterance) for per_utterance in zip(*functions, strict=True)]


@pytest.fixture(scope="module")
def gold():
    return truth(250, seed=21)  # 2,000 tokens


def test_identical_voters_agree_perfectly(gold):
    one = voter(gold, 0.8, 0.3, np.random.default_rng(1))
    alphas = alpha_among_functions(corpus_of([one, one, one]))
    assert alphas == {kind: pytest.approx(1.0) for kind in ENTITIES}


def test_independent_random_voters_agree_only_by_chance(gold):
    rng = np.random.default_rng(2)
    random_voters = [voter(gold, 0.0, 0.3, rng) for _ in range(5)]  # accuracy 0: labels drawn at random
    alphas = alpha_among_functions(corpus_of(random_voters))
    for kind, value in alphas.items():
        assert abs(value) < 0.05, (kind, value)


def test_alpha_against_gold_separates_a_copy_from_noise(gold):
    noise = [list(np.random.default_rng(3).choice(LABELS, size=len(labels))) for labels in gold]
    assert alpha_against_gold(gold, gold) == {"person": 1.0, "time": 1.0}
    for value in alpha_against_gold(noise, gold).values():
        assert abs(value) < 0.1


def test_the_random_function_is_flagged_and_the_good_ones_are_not(gold):
    rng = np.random.default_rng(4)
    functions = [voter(gold, 0.9, 0.3, rng) for _ in range(4)] + [voter(gold, 0.0, 0.3, rng)]
    corpus, names = corpus_of(functions), ("a", "b", "c", "d", "noise")
    aggregate = predict_labels(MajorityVote().fit(corpus, names), corpus)
    for reference in (None, aggregate):
        results = function_agreement(corpus, names, reference)
        assert [r.name for r in results if r.low] == ["noise"], [(r.name, r.alpha) for r in results]
        assert all(r.alpha > 0.6 for r in results[:4])
        assert abs(results[4].alpha) < 0.1
        assert all(r.votes == pytest.approx(0.7 * 2000, rel=0.05) for r in results)


def test_the_report_is_json_ready_and_names_its_reference(gold):
    rng = np.random.default_rng(5)
    functions = [voter(gold, 0.9, 0.3, rng) for _ in range(3)] + [voter(gold, 0.0, 0.3, rng)]
    corpus, names = corpus_of(functions), ("a", "b", "c", "noise")
    aggregate = predict_labels(MajorityVote().fit(corpus, names), corpus)
    report = json.loads(json.dumps(agreement_report(corpus, names, reference=aggregate, gold=gold).to_dict()))
    assert report["low_agreement"] == ["noise"]
    assert report["threshold"] == DEFAULT_THRESHOLD and report["reference"] == "aggregate"
    assert set(report["against_gold"]) == set(ENTITIES) and report["against_gold"]["person"] > 0.5
    assert agreement_report(corpus, names).reference == "leave-one-out majority"


def test_alpha_is_none_when_it_is_undefined():
    only_o = [[[Vote("O", 1.0), Vote("O", 1.0)], [Vote("O", 1.0), None]]]  # one value: chance is everything
    assert alpha_among_functions(only_o, ("person",)) == {"person": None}
    alone = [[[Vote("person", 1.0), None], [None, Vote("person", 1.0)]]]  # no token rated twice
    assert alpha_among_functions(alone, ("person",)) == {"person": None}


def test_bare_labels_count_like_votes():
    labels = [[["person", "O", "time", None], ["person", "O", "O", "time"], ["person", "O", "time", "time"]]]
    votes = [[[Vote(label, 1.0) if label else None for label in row] for row in labels[0]]]
    assert alpha_among_functions(labels) == alpha_among_functions(votes)


def test_leave_one_out_skips_ties_and_silence():
    rows = [["person", "time", None], ["person", "brand", None], ["brand", "time", "O"]]
    assert leave_one_out_reference(rows, 2) == ["person", None, None]


def test_misaligned_reference_is_refused():
    corpus = [[[Vote("person", 1.0)], [None], [None]]]
    with pytest.raises(ValueError, match="reference has 2 labels"):
        function_agreement(corpus, ("a", "b", "c"), [["O", "O"]])
