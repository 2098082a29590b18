"""The retail generator: determinism, valid labels, the hard cases it promises, and its knobs."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from model_runtime.data import lexicon
from model_runtime.data.bio import bio_spans, is_valid_bio
from model_runtime.data.retail import (
    ASSOCIATE_INTENTS,
    EMERGING_INTENTS,
    SHOPPER_INTENTS,
    SLOT_TYPES,
    TRAINED_INTENTS,
    GeneratorConfig,
    UnknownIntentError,
    generate,
    intent_assistant,
    iter_examples,
    slot_value_patterns,
    split,
    templates_for,
)
from model_runtime.data.template_engine import TemplateSyntaxError, parse_template
from model_runtime.data.templates import ASSOCIATE_TEMPLATES, EMERGING_TEMPLATES, SHOPPER_TEMPLATES


@pytest.fixture(scope="module")
def corpus():
    return generate(GeneratorConfig(n=6000, seed=0))


def span_texts(example, slot):
    return [" ".join(example.tokens[s:e]) for kind, s, e in bio_spans(example.tags) if kind == slot]


def flat(groups):
    return {value for values in groups.values() for value in values}


def test_same_config_gives_identical_examples_and_the_stream_matches_the_list():
    config = GeneratorConfig(n=300, seed=11, noise_rate=0.2, frustration_rate=0.3)
    assert generate(config) == generate(config)
    assert list(iter_examples(config)) == generate(config)
    # A longer run starts with the shorter one: a replay can be extended without reshuffling.
    assert generate(GeneratorConfig(n=50, seed=11, noise_rate=0.2, frustration_rate=0.3)) == generate(config)[:50]


def test_different_seeds_give_different_examples():
    first = [ex.text for ex in generate(GeneratorConfig(n=100, seed=1))]
    second = [ex.text for ex in generate(GeneratorConfig(n=100, seed=2))]
    assert sum(a != b for a, b in zip(first, second, strict=True)) > 80


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(n=3000, seed=3),
        GeneratorConfig(n=3000, seed=4, noise_rate=0.3, frustration_rate=0.5),
        GeneratorConfig(n=1500, seed=5, unseen_products=True, unseen_names=True, noise_rate=0.1),
        GeneratorConfig(n=1500, seed=6, intents=EMERGING_INTENTS, noise_rate=0.5),
    ],
    ids=["clean", "noisy", "unseen", "emerging"],
)
def test_every_example_has_aligned_valid_bio_of_known_slot_types(config):
    allowed = {"O"} | {f"{p}-{slot}" for slot in SLOT_TYPES for p in "BI"}
    for example in generate(config):
        assert len(example.tokens) == len(example.tags) > 0
        assert set(example.tags) <= allowed, example
        assert is_valid_bio(example.tags), example


def test_text_is_lowercase_voice_style_without_punctuation(corpus):
    noisy = generate(GeneratorConfig(n=1000, seed=9, noise_rate=0.3))
    for example in corpus + noisy:
        assert all(re.fullmatch(r"[a-z0-9]+", token) for token in example.tokens), example.tokens


def test_labels_fields_and_assistants_match_the_intent(corpus):
    for example in corpus:
        assert example.intent in TRAINED_INTENTS
        assert example.assistant == intent_assistant(example.intent)
        assert example.heads["frustration"] in {"calm", "frustrated"}
    assert set(SHOPPER_INTENTS) == {ex.intent for ex in corpus if ex.assistant == "shopper"}
    assert set(ASSOCIATE_INTENTS) == {ex.intent for ex in corpus if ex.assistant == "associate"}


def test_shopper_share_is_respected_within_sampling_noise(corpus):
    # n=6000, p=0.8: one standard deviation is sqrt(0.8*0.2/6000) = 0.0052; allow about 4.
    share = sum(ex.assistant == "shopper" for ex in corpus) / len(corpus)
    assert 0.78 <= share <= 0.82
    associate_only = generate(GeneratorConfig(n=200, seed=1, shopper_share=0.0))
    assert {ex.assistant for ex in associate_only} == {"associate"}


def test_the_same_name_is_a_brand_in_one_utterance_and_a_person_in_another(corpus):
    tags_by_name = defaultdict(set)
    for example in corpus:
        for kind in ("brand", "person"):
            for text in span_texts(example, kind):
                tags_by_name[text.split()[0]].add(kind)
    both = {name for name, kinds in tags_by_name.items() if kinds == {"brand", "person"}}
    assert "jordan" in both
    assert len(both & set(lexicon.AMBIGUOUS_NAMES)) >= 3


def test_one_number_word_serves_as_quantity_order_id_aisle_and_time(corpus):
    roles = defaultdict(set)
    for example in corpus:
        for token, tag in zip(example.tokens, example.tags, strict=True):
            if tag != "O":
                roles[token].add(tag[2:])
    number_roles = {"quantity", "order_id", "aisle", "date_time"}
    assert {"quantity", "order_id"} <= roles["two"]
    assert {"quantity", "aisle", "date_time"} <= roles["5"] | roles["7"] | roles["nine"]
    assert len([token for token, kinds in roles.items() if len(kinds & number_roles) >= 3]) >= 3


def test_held_out_lists_share_nothing_with_the_default_lists():
    assert not flat(lexicon.PRODUCTS) & flat(lexicon.UNSEEN_PRODUCTS)
    assert not flat(lexicon.BRANDS) & flat(lexicon.UNSEEN_BRANDS)
    assert not set(lexicon.PEOPLE_FIRST) & set(lexicon.UNSEEN_PEOPLE_FIRST)
    assert not set(lexicon.PEOPLE_LAST) & set(lexicon.UNSEEN_PEOPLE_LAST)
    assert set(lexicon.PRODUCTS) == set(lexicon.UNSEEN_PRODUCTS) == set(lexicon.CATEGORY_ATTRIBUTES)


def test_unseen_switches_draw_every_product_brand_and_person_from_the_held_out_lists():
    unseen = generate(GeneratorConfig(n=2000, seed=8, unseen_products=True, unseen_names=True))
    people = set(lexicon.UNSEEN_PEOPLE_FIRST) | set(lexicon.UNSEEN_PEOPLE_LAST)
    counts = Counter()
    for example in unseen:
        for text in span_texts(example, "product"):
            assert text in flat(lexicon.UNSEEN_PRODUCTS)
            counts["product"] += 1
        for text in span_texts(example, "brand"):
            assert text in flat(lexicon.UNSEEN_BRANDS)
            counts["brand"] += 1
        for text in span_texts(example, "person"):
            assert set(text.split()) <= people
            counts["person"] += 1
    assert min(counts.values()) > 50


def test_lexicons_are_large_enough_not_to_be_memorised():
    assert len(flat(lexicon.PRODUCTS)) >= 200
    assert len(flat(lexicon.BRANDS)) >= 40
    assert len(lexicon.PEOPLE_FIRST) >= 50
    assert len(lexicon.STORES) >= 20 and len(lexicon.DEPARTMENTS) >= 20


def test_most_generated_utterances_are_distinct(corpus):
    assert len({ex.text for ex in corpus}) / len(corpus) > 0.8


def test_emerging_intents_appear_only_when_asked(corpus):
    assert not {ex.intent for ex in corpus} & set(EMERGING_INTENTS)
    noisy = generate(GeneratorConfig(n=2000, seed=12, noise_rate=0.3, unseen_products=True))
    assert not {ex.intent for ex in noisy} & set(EMERGING_INTENTS)
    asked = generate(GeneratorConfig(n=400, seed=1, intents=("return_item", "report_spill", "check_stock")))
    assert {ex.intent for ex in asked} == {"return_item", "report_spill", "check_stock"}
    assert {ex.assistant for ex in asked if ex.intent == "report_spill"} == {"associate"}


def test_frustration_head_follows_the_rate_and_only_frustrated_utterances_carry_cues():
    examples = generate(GeneratorConfig(n=4000, seed=2, frustration_rate=0.25))
    frustrated = [ex for ex in examples if ex.heads["frustration"] == "frustrated"]
    # p=0.25, n=4000: one standard deviation is 0.0068; allow about 4.
    assert 0.22 <= len(frustrated) / len(examples) <= 0.28
    for example in examples:
        has_cue = bool(set(example.tokens) & lexicon.FRUSTRATION_WORDS)
        assert has_cue == (example.heads["frustration"] == "frustrated"), example.text
    never = generate(GeneratorConfig(n=500, frustration_rate=0.0))
    assert {ex.heads["frustration"] for ex in never} == {"calm"}


def test_noise_changes_text_but_keeps_intents_and_slot_spans_plausible():
    clean = generate(GeneratorConfig(n=1000, seed=21))
    noisy = generate(GeneratorConfig(n=1000, seed=21, noise_rate=0.2))
    fillers = sum(token in lexicon.FILLERS for ex in noisy for token in ex.tokens)
    assert fillers > 0
    assert sum(a.text != b.text for a, b in zip(clean, noisy, strict=True)) > 300
    for example in noisy:
        for token, tag in zip(example.tokens, example.tags, strict=True):
            if token in lexicon.FILLERS:
                assert tag == "O"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"intents": ("fly_to_mars",)}, UnknownIntentError),
        ({"intents": ()}, UnknownIntentError),
        ({"noise_rate": 1.5}, ValueError),
        ({"shopper_share": -0.1}, ValueError),
        ({"n": -1}, ValueError),
    ],
)
def test_bad_configs_raise_named_errors(kwargs, error):
    with pytest.raises(error):
        GeneratorConfig(**{"n": 10, **kwargs})


def test_every_template_parses_and_uses_known_slots_only():
    sources = [t for group in (SHOPPER_TEMPLATES, ASSOCIATE_TEMPLATES) for ts in group.values() for t in ts]
    sources += [t for _, ts in EMERGING_TEMPLATES.values() for t in ts]
    for source in sources:
        slots = set(re.findall(r"\{(\w+)\}", source))
        assert slots <= set(SLOT_TYPES), source
        assert parse_template(source).source == source
    for broken in ("add (quantity {product}", "add quantity) {product}"):
        with pytest.raises(TemplateSyntaxError):
            parse_template(broken)


def test_split_is_stratified_disjoint_complete_and_seeded():
    examples = generate(GeneratorConfig(n=2000, seed=5))
    train, dev, test = split(examples, seed=3)
    assert sorted(map(id, train + dev + test)) == sorted(map(id, examples))
    per_intent = Counter(ex.intent for ex in examples)
    train_counts, test_counts = Counter(ex.intent for ex in train), Counter(ex.intent for ex in test)
    for intent, total in per_intent.items():
        # round(0.8 * total) go to train; dev gets round(0.1 * total); test keeps the rest.
        assert train_counts[intent] == round(0.8 * total)
        assert abs(test_counts[intent] - 0.1 * total) <= 1
    again = split(examples, seed=3)
    assert [ex.text for ex in again[0]] == [ex.text for ex in train]
    assert [ex.text for ex in split(examples, seed=4)[0]] != [ex.text for ex in train]
    with pytest.raises(ValueError):
        split(examples, seed=0, fractions=(0.5, 0.1, 0.1))


def test_every_clean_example_parses_back_through_a_template_of_its_intent(corpus):
    # render() and match() must agree: this also proves the slot patterns the golden check uses.
    patterns = slot_value_patterns()
    for example in [ex for ex in corpus if ex.heads["frustration"] == "calm"][:400]:
        slots = [(kind, " ".join(example.tokens[s:e])) for kind, s, e in bio_spans(example.tags)]
        parses = [template.match(example.text, patterns) for template in templates_for(example.intent)]
        assert slots in parses, example
