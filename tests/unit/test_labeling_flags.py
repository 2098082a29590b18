"""Which predictions get flagged for labeling, and why."""

from __future__ import annotations

import pytest

from labeling.flags import FlagContext, RowError, flag, prediction_tags, priority
from labeling.items import Reason


def row(text="where can i find milk", intent="find_product", **overrides):
    base = {
        "id": "p1", "assistant": "shopper", "model_version": "m1", "text_scrubbed": text, "intent": intent,
        "confidence": 0.95, "margin": 0.8, "ood_score": 0.05, "is_ood": 0,
        "slot_types": [], "slot_values": [],
    }
    base.update(overrides)
    return base


CTX = FlagContext()


def test_a_confident_in_distribution_prediction_is_left_alone():
    assert flag(row(slot_types=["product"], slot_values=["milk"]), CTX) == []


@pytest.mark.parametrize(
    ("overrides", "context", "expected"),
    [
        ({"is_ood": 1}, CTX, [Reason.OOD]),
        ({"ood_score": 0.9}, FlagContext(ood_threshold=0.7), [Reason.OOD]),
        ({"is_ood": 1, "ood_score": 0.2}, FlagContext(ood_threshold=0.7), []),  # the threshold decides when given
        ({"confidence": 0.3}, CTX, [Reason.LOW_CONFIDENCE]),
        ({"margin": 0.02}, CTX, [Reason.SMALL_MARGIN]),
        ({}, FlagContext(growing_cluster_members=frozenset({"p1"})), [Reason.GROWING_OOD_CLUSTER]),
        ({}, FlagContext(challenger_intents={"p1": "check_stock"}), [Reason.CHAMPION_CHALLENGER]),
        ({}, FlagContext(challenger_intents={"p1": "find_product"}), []),  # challenger agrees
        ({"is_ood": 1, "confidence": 0.2, "margin": 0.01}, CTX,
         [Reason.OOD, Reason.LOW_CONFIDENCE, Reason.SMALL_MARGIN]),  # most valuable first
    ],
)
def test_each_reason_is_raised_by_its_own_signal(overrides, context, expected):
    assert flag(row(**overrides), context) == expected


@pytest.mark.parametrize(
    ("text", "slot_types", "slot_values", "ambiguous"),
    [
        ("is jordan on shift tomorrow", ["brand", "date"], ["jordan", "tomorrow"], True),  # brand in a schedule
        ("who is covering for hunter boots tonight", ["brand"], ["hunter boots"], True),
        ("add two jordan sneakers to my cart", ["person"], ["jordan"], True),  # person in a cart
        ("add two jordan sneakers on sale", ["brand", "product"], ["jordan", "sneakers"], False),
        ("is jordan on shift tomorrow", ["person", "date"], ["jordan", "tomorrow"], False),
        ("ask carter about the schedule for the long weekend next month", ["person"], ["carter"], False),
    ],
)
def test_brand_versus_person_ambiguity_needs_the_wrong_cue_nearby(text, slot_types, slot_values, ambiguous):
    flagged = flag(row(text, slot_types=slot_types, slot_values=slot_values), CTX)
    assert (Reason.BRAND_PERSON in flagged) is ambiguous


def test_predicted_tags_come_from_slot_values_or_given_bio_tags():
    multi = row("add two hunter rain boots please", slot_types=["quantity", "brand", "product", "color"],
                slot_values=["two", "hunter", "rain boots", "purple"])
    # "purple" is not in the text (scrubbed or hallucinated): left out, not guessed
    assert prediction_tags(multi) == ("O", "B-quantity", "B-brand", "B-product", "I-product", "O")
    given = row("is jordan in", slot_tags=["O", "B-person", "O"])
    assert prediction_tags(given) == ("O", "B-person", "O")
    with pytest.raises(RowError, match="2 slot_tags for 3 tokens"):
        prediction_tags(row("is jordan in", slot_tags=["O", "B-person"]))


def test_priority_adds_reason_weights_and_doubt_and_missing_columns_are_named():
    growing = priority([Reason.GROWING_OOD_CLUSTER], {"confidence": 0.9})
    margin_only = priority([Reason.SMALL_MARGIN], {"confidence": 0.9})
    assert growing > margin_only
    assert priority([Reason.SMALL_MARGIN], {"confidence": 0.2}) > margin_only  # less sure, more useful
    with pytest.raises(RowError, match="no column 'confidence'"):
        flag({k: v for k, v in row().items() if k != "confidence"}, CTX)
