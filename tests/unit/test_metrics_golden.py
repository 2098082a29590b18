"""The golden regression set: its file is sound, a right model passes, a wrong one fails clearly."""

from __future__ import annotations

import json
import re

import pytest

from model_runtime.data import lexicon
from model_runtime.data.retail import TRAINED_INTENTS, intent_assistant, slot_value_patterns, templates_for
from model_runtime.golden import GoldenSetError, check_golden, load_golden

CASES = load_golden()


def answers(cases, **override):
    """A fake model that answers every case right, except for the fields overridden per case id."""

    def predict(texts):
        assert texts == [case.text for case in cases]
        result = []
        for case in cases:
            intent, confidence, slots = case.intent, 0.9, list(case.slots)
            intent, confidence, slots = override.get(case.id, (intent, confidence, slots))
            result.append((intent, confidence, slots))
        return result

    return predict


def flat(groups):
    return {value for values in groups.values() for value in values}


def test_the_golden_file_has_about_thirty_unique_cases_of_both_assistants():
    assert 25 <= len(CASES) <= 40
    assert len({case.text for case in CASES}) == len(CASES)
    assert {case.assistant for case in CASES} == {"shopper", "associate"}
    # the brand/person hard case is in the set from both sides
    kinds_of_jordan = {kind for case in CASES for kind, value in case.slots if value == "jordan"}
    assert kinds_of_jordan == {"brand", "person"}


def test_golden_cases_use_trained_intents_and_the_generators_vocabulary():
    # A case the training data cannot produce would test luck, not regressions.
    values = {
        "product": flat(lexicon.PRODUCTS),
        "brand": flat(lexicon.BRANDS),
        "store": set(lexicon.STORES),
        "department": set(lexicon.DEPARTMENTS),
        "color": set(lexicon.COLORS),
        "size": set(lexicon.SIZES),
        "date_time": set(lexicon.DATE_TIMES),
        "price": set(lexicon.PRICES),
    }
    numbers = set(lexicon.NUMBER_WORDS) | set(lexicon.DIGIT_WORDS)
    for case in CASES:
        assert case.intent in TRAINED_INTENTS, case
        assert intent_assistant(case.intent) == case.assistant, case
        for kind, value in case.slots:
            if kind == "person":
                assert set(value.split()) <= set(lexicon.PEOPLE_FIRST) | set(lexicon.PEOPLE_LAST), case
            elif kind in {"quantity", "order_id", "aisle"}:
                assert all(word.isdigit() or word in numbers for word in value.split()), case
            else:
                assert value in values[kind], case
            assert re.search(rf"\b{re.escape(value)}\b", case.text), case


def test_every_golden_case_is_a_sentence_some_template_of_its_intent_produces():
    slot_patterns = slot_value_patterns()
    for case in CASES:
        parses = [t.match(case.text, slot_patterns) for t in templates_for(case.intent)]
        assert list(case.slots) in parses, (case, [p for p in parses if p])


def test_a_model_that_answers_right_passes():
    result = check_golden(answers(CASES), CASES)
    assert result.ok and result.pass_rate == 1.0 and not result.failed
    assert result.summary().startswith(f"golden set: {len(CASES)}/{len(CASES)} passed")


def test_a_changed_intent_fails_with_a_message_that_names_the_case_and_both_intents():
    target = CASES[0]
    result = check_golden(answers(CASES, **{target.id: ("remove_from_cart", 0.9, list(target.slots))}), CASES)
    assert not result.ok
    assert [outcome.case.id for outcome in result.failed] == [target.id]
    assert result.failed[0].reasons == (f"intent: expected {target.intent}, got remove_from_cart",)
    expected_line = f"FAIL {target.id} {target.text!r}: intent: expected {target.intent}, got remove_from_cart"
    assert expected_line in result.summary()
    assert result.to_dict()["failures"][0]["id"] == target.id


def test_wrong_slots_and_confidence_out_of_range_are_reported():
    case = next(c for c in CASES if ("brand", "jordan") in c.slots)
    wrong_slots = [("person", "jordan") if pair == ("brand", "jordan") else pair for pair in case.slots]
    result = check_golden(answers(CASES, **{case.id: (case.intent, 0.1, wrong_slots)}), CASES)
    (failure,) = result.failed
    assert failure.reasons[0].startswith("confidence 0.100 outside")
    assert failure.reasons[1] == "slots: missing [('brand', 'jordan')], unexpected [('person', 'jordan')]"
    # slot order does not matter
    reordered = check_golden(answers(CASES, **{case.id: (case.intent, 0.9, list(reversed(case.slots)))}), CASES)
    assert reordered.ok


def test_predict_fn_with_the_wrong_number_of_answers_is_an_error():
    with pytest.raises(GoldenSetError, match="returned 1 results"):
        check_golden(lambda texts: [("x", 1.0, [])], CASES)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "a", "assistant": "shopper", "text": "hi"},  # fields missing
        {"id": "a", "assistant": "shopper", "text": "hi", "intent": "x", "slots": [], "min_confidence": 0.9,
         "max_confidence": 0.5},  # empty range
        {"id": "a", "assistant": "shopper", "text": "hi", "intent": "x", "slots": [["brand", "nike"]],
         "min_confidence": 0.5, "max_confidence": 1.0},  # slot not in the text
    ],
)
def test_malformed_golden_files_are_rejected(tmp_path, record):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(GoldenSetError):
        load_golden(path)
