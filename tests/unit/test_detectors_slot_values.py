"""The unseen-slot-value detector (``detectors/slot_values.py``) and the package vocabulary it reads
(``model_runtime.reference.slot_value_summary``), no services.

The end-to-end figures use the retail generator's gold slots as a perfect model's predictions: the vocabulary is
built from a training sample, the baseline from a dev sample, and live windows are stored the way the worker
stores them (``nlumon.pii.deidentify_utterance`` in context, sessions of 5 utterances as in
``streams/scenarios.py``). Stable windows must stay near the baseline; the ``new-names`` mix (half of the traffic
names unseen brands, products and people) must jump on brand and product, and show unseen people as ``scrubbed``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.base import InvalidInputError
from detectors.slot_values import (
    DEFAULT_MIN_VALUES,
    SlotValueVocabulary,
    excess_points,
    is_scrubbed,
    normalise,
    unseen_slot_values,
)
from model_runtime.data.retail import GeneratorConfig, iter_examples
from model_runtime.predictions import SlotSpan
from model_runtime.reference import normalise_value, slot_value_summary
from nlumon.pii import PLACEHOLDER as PII_PLACEHOLDER
from nlumon.pii import PLACEHOLDERS, brand_names, deidentify_utterance, scrub
from nlumon.pii import normalise as pii_normalise
from streams.retention import DAY_PARTITIONED, WINDOW_TABLES

VOCABULARY = SlotValueVocabulary(
    {"brand": frozenset({"acme", "nova"}), "product": frozenset({"milk"})},
    {"all": {"brand": 0.1, "product": 0.0}, "associate": {"brand": 0.3}},
)


def window(rows: list[tuple[str, str, list[str], list[str]]]) -> pd.DataFrame:
    """(assistant, session, slot types, slot values) per row."""
    return pd.DataFrame(rows, columns=["assistant", "session_id", "slot_types", "slot_values"])


def test_counts_split_into_known_unseen_and_scrubbed_per_group() -> None:
    frame = window([
        ("shopper", "s1", ["brand", "product"], ["Acme", "milk"]),
        ("shopper", "s2", ["brand"], ["zorb"]),
        ("associate", "s3", ["brand", "person"], ["<PERSON>", "<PERSON>"]),
        ("associate", "s4", ["brand"], ["quix"]),
    ])
    report = unseen_slot_values(frame, VOCABULARY)
    overall = report.get("overall", "brand")
    assert (overall.values, overall.unseen, overall.scrubbed, overall.judged) == (4, 2, 1, 3)
    assert overall.unseen_rate == pytest.approx(2 / 3)
    shopper, associate = report.get("shopper", "brand"), report.get("associate", "brand")
    assert (shopper.values, shopper.unseen, shopper.scrubbed) == (2, 1, 0)
    assert (associate.values, associate.unseen, associate.scrubbed) == (2, 1, 1)
    assert associate.unseen_rate == 1.0
    assert report.groups() == ["overall", "associate", "shopper"]


def test_a_scrubbed_value_is_neither_seen_nor_unseen_and_all_scrubbed_gives_nan() -> None:
    frame = window([("associate", f"s{i}", ["person"], ["<PERSON>"]) for i in range(5)]
                   + [("associate", "s9", ["order_id"], ["<CARD> <PHONE>"])])
    report = unseen_slot_values(frame, VOCABULARY)
    person = report.get("overall", "person")
    assert (person.values, person.scrubbed, person.unseen, person.new_values) == (5, 5, 0, ())
    assert math.isnan(person.unseen_rate) and person.excess is None
    assert report.get("overall", "order_id").scrubbed == 1
    assert is_scrubbed("<PERSON>") and not is_scrubbed("person")


def test_new_values_need_distinct_sessions() -> None:
    repeated = [("shopper", "same", ["brand"], ["zorb"])] * 10  # one session saying it ten times
    spread = [("shopper", f"s{i}", ["brand"], ["Blip"]) for i in range(3)]
    two = [("shopper", f"t{i}", ["brand"], ["quux"]) for i in range(2)]
    report = unseen_slot_values(window(repeated + spread + two), VOCABULARY)
    brand = report.get("overall", "brand")
    assert brand.new_values == ("blip",) and brand.sessions == {"blip": 3}
    assert brand.unseen == 15
    assert unseen_slot_values(window(repeated + spread + two), VOCABULARY, min_sessions=2).get(
        "overall", "brand").new_values == ("blip", "quux")
    assert unseen_slot_values(window(repeated), VOCABULARY, min_sessions=1).get("overall", "brand").new_values == (
        "zorb",)


def test_new_values_are_ordered_by_sessions_and_bounded() -> None:
    rows = [("shopper", f"s{i}-{k}", ["brand"], [f"brand{chr(97 + k)}"]) for k in range(6) for i in range(3 + k)]
    brand = unseen_slot_values(window(rows), VOCABULARY, max_new_values=4).get("overall", "brand")
    assert brand.new_values == ("brandf", "brande", "brandd", "brandc")


def test_values_are_normalised_like_the_vocabulary() -> None:
    frame = window([("shopper", "s1", ["brand", "brand", "brand"], ["ＡＣＭＥ", "  Nova ", "ACME\t"])])
    assert unseen_slot_values(frame, VOCABULARY).get("overall", "brand").unseen == 0


def test_rows_with_mismatched_lists_are_skipped_and_counted() -> None:
    frame = window([("shopper", "s1", ["brand", "product"], ["acme"]), ("shopper", "s2", ["brand"], ["zorb"])])
    report = unseen_slot_values(frame, VOCABULARY)
    assert report.skipped_rows == 1 and report.get("overall", "brand").values == 1
    assert report.get("overall", "product") is None


def test_missing_columns_are_a_named_error_and_optional_ones_are_optional() -> None:
    with pytest.raises(InvalidInputError, match="slot_values"):
        unseen_slot_values(pd.DataFrame({"slot_types": [["brand"]]}), VOCABULARY)
    bare = pd.DataFrame({"slot_types": [["brand"]] * 3, "slot_values": [["zorb"]] * 3})  # no session, no assistant
    report = unseen_slot_values(bare, VOCABULARY)
    assert report.groups() == ["overall"] and report.get("overall", "brand").new_values == ("zorb",)
    assert unseen_slot_values(window([]), VOCABULARY).stats == ()


def test_reference_rates_fall_back_to_the_whole_package_and_excess_needs_enough_values() -> None:
    assert VOCABULARY.reference_rate("associate", "brand") == 0.3
    assert VOCABULARY.reference_rate("shopper", "brand") == 0.1  # no shopper rate: the package's
    assert VOCABULARY.reference_rate("overall", "color") is None
    few = window([("shopper", f"s{i}", ["brand"], ["zorb"]) for i in range(DEFAULT_MIN_VALUES - 1)])
    assert excess_points(unseen_slot_values(few, VOCABULARY)) == []
    enough = window([("shopper", f"s{i}", ["brand"], ["zorb"]) for i in range(DEFAULT_MIN_VALUES)])
    points = excess_points(unseen_slot_values(enough, VOCABULARY))
    assert {(p.group, p.slot_type) for p in points} == {("overall", "brand"), ("shopper", "brand")}
    assert all(p.excess == pytest.approx(0.9) for p in points)


def test_a_summary_without_slot_values_has_no_vocabulary() -> None:
    assert SlotValueVocabulary.from_summary({"splits": {}}) is None
    assert SlotValueVocabulary.from_summary(None) is None
    parsed = SlotValueVocabulary.from_summary({"slot_values": {
        "types": {"brand": {"values": ["acme"], "truncated": True}},
        "reference_rates": {"all": {"brand": {"unseen_rate": 0.25, "values": 40, "scrubbed": 5},
                                    "product": {"unseen_rate": 0.5, "values": 30, "scrubbed": 12},
                                    "person": {"unseen_rate": None, "values": 50, "scrubbed": 50}}}}})
    assert parsed.knows("brand", "acme") and not parsed.knows("person", "acme")
    assert parsed.truncated == {"brand"} and parsed.reference_rate("overall", "person") is None
    assert parsed.reference_rate("overall", "brand") == 0.25
    assert parsed.reference_rate("overall", "product") is None  # 18 judged values: no baseline


# -- the package side --------------------------------------------------------------------------------------------
def prediction(*slots: tuple[str, str]) -> SimpleNamespace:
    return SimpleNamespace(slots=tuple(SlotSpan(kind, 0, len(text), text, 0.9) for kind, text in slots))


def test_the_vocabulary_never_keeps_people_or_contact_data() -> None:
    train = [prediction(("person", "olivia")), prediction(("brand", "olivia")), prediction(("brand", "jordan")),
             prediction(("order_id", "call 415 555 0134")), prediction(("product", "ann.lee@example.com")),
             prediction(("order_id", "4111 1111 1111 1111")), prediction(("product", "ann dot lee at gmail dot com")),
             prediction(("product", "Paper  Towels")), prediction(("order_id", "48213"))]
    summary = slot_value_summary({"train": (train, ["s"] * len(train), [])})
    kept = {kind: entry["values"] for kind, entry in summary["types"].items()}
    assert kept == {"brand": ["jordan", "olivia"], "order_id": ["48213"], "person": [], "product": ["paper towels"]}
    assert summary["types"]["order_id"]["scrubbed"] == 2 and summary["types"]["person"]["scrubbed"] == 1
    # a caller that may use nlumon.pii passes the worker's own rule: a given name tagged as a brand goes too
    strict = slot_value_summary({"train": (train, ["s"] * len(train), [])}, keep_value=pii_keep_value)
    assert strict["types"]["brand"]["values"] == ["jordan"] and strict["types"]["brand"]["scrubbed"] == 1


def pii_keep_value(slot_type: str, value: str) -> bool:
    """The worker's verdict on a value on its own: a person never, a brand of the lexicon always, else unchanged by
    ``nlumon.pii.scrub``."""
    return slot_type != "person" and (value in brand_names() or scrub(value) == value)


@pytest.mark.parametrize("text", ["  Paper\tTOWELS ", "Ｊｏｒｄａｎ", "STRASSE Straße", "ﬁne\u00a0print", "Ǆemal", ""])
def test_the_three_normalisers_agree(text: str) -> None:
    assert normalise(text) == normalise_value(text) == pii_normalise(text)


def test_every_placeholder_of_the_worker_counts_as_scrubbed() -> None:
    assert all(is_scrubbed(placeholder) for placeholder in PLACEHOLDERS.values())
    assert all(PII_PLACEHOLDER.fullmatch(p) for p in PLACEHOLDERS.values())
    assert not is_scrubbed("<3 jordan") and not is_scrubbed("a < b > c")


def test_the_vocabulary_is_bounded_most_frequent_first() -> None:
    train = [prediction(("product", f"item{chr(97 + i % 7)}")) for i in range(7) for _ in range(i + 1)]
    entry = slot_value_summary({"train": (train, ["s"] * len(train), [])}, max_values=3)["types"]["product"]
    assert entry["values"] == ["itemg", "itemf", "iteme"] and entry["truncated"] and entry["distinct"] == 7


def test_window_tables_expire_with_day_partitions() -> None:
    assert set(WINDOW_TABLES) <= set(DAY_PARTITIONED) and "slot_value_windows" in WINDOW_TABLES


# -- end to end on generated retail traffic ----------------------------------------------------------------------
def gold(example: Any) -> SimpleNamespace:
    """The example's gold slots as a perfect model would predict them (char offsets into its text)."""
    starts = np.cumsum([0] + [len(token) + 1 for token in example.tokens])
    slots = tuple(SlotSpan(kind, int(starts[s]), int(starts[e] - 1), " ".join(example.tokens[s:e]), 0.95)
                  for kind, s, e in example.spans())
    return SimpleNamespace(slots=slots, intent=example.intent)


def package_vocabulary() -> SlotValueVocabulary:
    splits = {}
    for name, n, seed in (("train", 3000, 1), ("dev", 1000, 2)):
        examples = list(iter_examples(GeneratorConfig(n=n, seed=seed)))
        splits[name] = ([gold(e) for e in examples], [e.assistant for e in examples], [e.intent for e in examples])
    vocabulary = SlotValueVocabulary.from_summary({"slot_values": slot_value_summary(splits)})
    assert vocabulary is not None
    return vocabulary


def live_window(examples: list[Any]) -> pd.DataFrame:
    """Rows as the worker stores them: slot values de-identified in context, 5 utterances per session."""
    rows = []
    for index, example in enumerate(examples):
        slots = gold(example).slots
        _, values = deidentify_utterance(example.text, slots)
        rows.append((example.assistant, f"s{index // 5}", [s.type for s in slots], values))
    return window(rows)


@pytest.fixture(scope="module")
def traffic() -> dict[str, list[pd.DataFrame]]:
    ordinary = iter_examples(GeneratorConfig(n=4000, seed=10))
    new_names = iter_examples(GeneratorConfig(n=4000, seed=11, unseen_products=True, unseen_names=True))
    stable = [live_window([next(ordinary) for _ in range(500)]) for _ in range(4)]
    shifted = [live_window([next(ordinary) if i % 2 else next(new_names) for i in range(500)]) for _ in range(4)]
    return {"stable": stable, "new-names": shifted}


def test_stable_windows_stay_near_the_baseline_and_new_names_jump(traffic) -> None:
    vocabulary = package_vocabulary()
    excess: dict[str, list[dict[str, float]]] = {}
    for name, windows in traffic.items():
        excess[name] = [{p.slot_type: p.excess for p in excess_points(unseen_slot_values(w, vocabulary))
                         if p.group == "overall"} for w in windows]
    print({name: [{k: round(v, 3) for k, v in w.items()} for w in ws] for name, ws in excess.items()})
    threshold = 0.2  # alerts/default_rules.yaml, slot-values-unseen-jump
    assert all(value < threshold for w in excess["stable"] for value in w.values())
    assert all(w["brand"] > threshold and w["product"] > threshold for w in excess["new-names"])


def test_new_names_surface_as_new_values_and_people_as_scrubbed(traffic) -> None:
    vocabulary = package_vocabulary()
    stable = unseen_slot_values(traffic["stable"][0], vocabulary)
    shifted = unseen_slot_values(traffic["new-names"][0], vocabulary)
    assert not stable.get("overall", "brand").new_values and not stable.get("overall", "product").new_values
    assert shifted.get("overall", "brand").new_values or shifted.get("overall", "product").new_values
    person = shifted.get("overall", "person")
    assert person.scrubbed == person.values  # every person value is stored as <PERSON>: never a "new name"
    assert all(not is_scrubbed(v) for s in shifted.stats for v in s.new_values)
