"""Metrics against small cases computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json

import pytest

from model_runtime.data.example import Example
from model_runtime.metrics import (
    MetricsInputError,
    SlotScore,
    brand_person_confusion,
    evaluate,
    expected_calibration_error,
    intent_accuracy,
    sentence_accuracy,
    slot_scores,
    slot_scores_by_type,
)

GOLD = [
    Example(
        ("add", "two", "jordan", "sneakers", "to", "my", "cart"),
        ("O", "B-quantity", "B-brand", "B-product", "O", "O", "O"),
        "add_to_cart",
        "shopper",
    ),
    Example(
        ("is", "jordan", "on", "shift", "tomorrow"),
        ("O", "B-person", "O", "O", "B-date_time"),
        "check_shift",
        "associate",
    ),
    Example(("where", "is", "my", "package"), ("O", "O", "O", "O"), "track_delivery", "shopper"),
]
PREDICTED_INTENTS = ["add_to_cart", "check_shift", "check_order_status"]
PREDICTED_TAGS = [
    ["O", "B-quantity", "B-person", "B-product", "O", "O", "O"],  # jordan read as a person
    ["O", "B-person", "O", "O", "B-date_time"],  # all right
    ["O", "O", "O", "B-product"],  # a product invented
]
CONFIDENCES = [0.95, 0.85, 0.75]


def test_intent_accuracy_counts_exact_matches():
    assert intent_accuracy([ex.intent for ex in GOLD], PREDICTED_INTENTS) == pytest.approx(2 / 3)


def test_micro_slot_scores_by_hand():
    # gold spans: quantity, brand, product (s1) + person, date_time (s2) = 5
    # predicted:  quantity, person, product (s1) + person, date_time (s2) + product (s3) = 6
    # correct:    quantity, product (s1) + person, date_time (s2) = 4
    # P = 4/6, R = 4/5, F1 = 2PR/(P+R) = (16/15)/(22/15) = 8/11
    score = slot_scores([ex.tags for ex in GOLD], PREDICTED_TAGS)
    assert (score.n_gold, score.n_predicted, score.n_correct) == (5, 6, 4)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(0.8)
    assert score.f1 == pytest.approx(8 / 11)


def test_per_slot_type_scores_by_hand():
    scores = slot_scores_by_type([ex.tags for ex in GOLD], PREDICTED_TAGS)
    assert set(scores) == {"brand", "date_time", "person", "product", "quantity"}
    # brand: gold 1, predicted 0 -> P has an empty denominator: 0 by the conlleval convention.
    assert scores["brand"] == SlotScore(0.0, 0.0, 0.0, 1, 0, 0)
    # person: gold 1 (s2), predicted 2 (s1 wrong, s2 right) -> P 1/2, R 1, F1 = 1/1.5 = 2/3
    assert scores["person"].f1 == pytest.approx(2 / 3) and scores["person"].recall == 1.0
    # product: gold 1, predicted 2 (s1 right, s3 invented) -> the same 2/3
    assert scores["product"].precision == 0.5
    assert scores["quantity"].f1 == scores["date_time"].f1 == 1.0


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        # conlleval reads a stray I-PER as the start of a PER chunk, so it matches gold B-PER I-PER:
        # gold {PER 0-2, LOC 3-4}, predicted {PER 0-2, ORG 3-4}: 1 correct -> P 1/2, R 1/2, F1 1/2.
        (["B-PER", "I-PER", "O", "B-LOC", "O"], ["I-PER", "I-PER", "O", "B-ORG", "O"], (0.5, 0.5, 0.5)),
        # a B- inside a span splits it: predicted {brand 0-1, brand 1-2, product 2-3}, gold
        # {brand 0-2, product 2-3}: 1 correct -> P 1/3, R 1/2, F1 = (1/3)/(5/6) = 0.4.
        (["B-brand", "I-brand", "B-product", "O"], ["B-brand", "B-brand", "B-product", "O"], (1 / 3, 0.5, 0.4)),
        # an I- of another type closes the open chunk: predicted {a 0-1, b 1-2}, gold {a 0-2}: 0 correct.
        (["B-a", "I-a"], ["B-a", "I-b"], (0.0, 0.0, 0.0)),
        # nothing gold, nothing predicted: conlleval prints 0 for all three, not 1.
        (["O", "O"], ["O", "O"], (0.0, 0.0, 0.0)),
    ],
)
def test_slot_scores_follow_the_conlleval_convention(gold, predicted, expected):
    score = slot_scores([gold], [predicted])
    assert (score.precision, score.recall, score.f1) == pytest.approx(expected)


def test_sentence_accuracy_needs_intent_and_every_tag():
    # s1: tags wrong; s2: all right; s3: intent wrong -> 1/3
    gold_tags = [ex.tags for ex in GOLD]
    assert sentence_accuracy([ex.intent for ex in GOLD], PREDICTED_INTENTS, gold_tags, PREDICTED_TAGS) == pytest.approx(
        1 / 3
    )


def test_expected_calibration_error_by_hand():
    # 15 bins: 0.95 -> bin 14, 0.85 -> bin 12, 0.75 -> bin 11, one example each.
    # gaps |1 - 0.95| = 0.05, |1 - 0.85| = 0.15, |0 - 0.75| = 0.75; ECE = (0.05 + 0.15 + 0.75) / 3
    assert expected_calibration_error(CONFIDENCES, [True, True, False]) == pytest.approx(0.95 / 3)
    # ten answers at 0.7 with seven right: accuracy equals confidence, ECE 0.
    assert expected_calibration_error([0.7] * 10, [True] * 7 + [False] * 3) == pytest.approx(0.0)
    # one bin holding everything: |mean accuracy - mean confidence| = |0.5 - 0.6| = 0.1
    assert expected_calibration_error([0.5, 0.7], [True, False], n_bins=1) == pytest.approx(0.1)
    # confidence 0 falls into the first bin instead of being lost
    assert expected_calibration_error([0.0], [True]) == pytest.approx(1.0)


def test_brand_person_confusion_counts_same_boundaries_only():
    assert brand_person_confusion([ex.tags for ex in GOLD], PREDICTED_TAGS) == {
        "brand_as_person": 1,
        "person_as_brand": 0,
    }
    # "maria wilson" as a person (0-2) but predicted brand over "wilson" only (1-2): boundaries differ.
    assert brand_person_confusion([["B-person", "I-person"]], [["O", "B-brand"]])["person_as_brand"] == 0
    assert brand_person_confusion([["B-person", "I-person"]], [["B-brand", "I-brand"]])["person_as_brand"] == 1


def test_evaluate_collects_everything_and_breaks_it_down_by_assistant():
    report = evaluate(GOLD, PREDICTED_INTENTS, PREDICTED_TAGS, CONFIDENCES)
    assert report.n == 3
    assert report.intent_accuracy == pytest.approx(2 / 3)
    assert report.slots.f1 == pytest.approx(8 / 11)
    assert report.sentence_accuracy == pytest.approx(1 / 3)
    assert report.ece == pytest.approx(0.95 / 3)
    assert report.per_intent_accuracy == {"add_to_cart": 1.0, "check_shift": 1.0, "track_delivery": 0.0}
    shopper, associate = report.per_assistant["shopper"], report.per_assistant["associate"]
    # shopper = s1 + s3: intent 1/2; spans gold 3, predicted 4, correct 2 -> P 1/2, R 2/3, F1 = (2/3)/(7/6) = 4/7
    assert (shopper.n, shopper.intent_accuracy, shopper.sentence_accuracy) == (2, 0.5, 0.0)
    assert shopper.slot_f1 == pytest.approx(4 / 7)
    assert (associate.n, associate.intent_accuracy, associate.slot_f1, associate.sentence_accuracy) == (1, 1, 1, 1)
    assert report.brand_person_confusion["brand_as_person"] == 1


def test_report_serialises_and_prints():
    report = evaluate(GOLD, PREDICTED_INTENTS, PREDICTED_TAGS)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ece"] is None
    assert data["slots"]["n_correct"] == 4
    assert data["per_assistant"]["associate"]["n"] == 1
    table = report.to_table()
    assert "0.7273" in table  # slot F1 8/11
    assert "ECE n/a" in table
    assert "shopper" in table and "date_time" in table


@pytest.mark.parametrize(
    "call",
    [
        lambda: intent_accuracy([], []),
        lambda: intent_accuracy(["a"], ["a", "b"]),
        lambda: slot_scores([["O", "O"]], [["O"]]),
        lambda: evaluate(GOLD, PREDICTED_INTENTS[:2], PREDICTED_TAGS),
        lambda: evaluate(GOLD, PREDICTED_INTENTS, PREDICTED_TAGS, [0.5]),
        lambda: expected_calibration_error([1.2], [True]),
        lambda: expected_calibration_error([float("nan")], [True]),
        lambda: expected_calibration_error([], []),
        lambda: evaluate([], [], []),
    ],
)
def test_misaligned_or_invalid_input_raises_a_named_error(call):
    with pytest.raises(MetricsInputError):
        call()
