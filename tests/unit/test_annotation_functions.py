"""The labeling functions of the store-associate annotator (labeling/annotation/functions.py), one by one.

Every function gets the same contract checks (one vote or abstention per token, valid labels, no exception on
any input: hypothesis fuzzes the tokens), then its own positive, negative and abstain cases on lower-case ASR
text and on tokens with punctuation attached ("tomorrow?", "jordan's"). The sentences are written here, not
drawn from the retail generator, so that passing them says something beyond the generator's templates.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeling.annotation.base import LABELS, OTHER, PERSON, LabelingFunction, Utterance, Vote
from labeling.annotation.functions import (
    BrandGazetteer,
    ChampionSlots,
    NameGazetteer,
    PersonOrOrg,
    StoreAbbreviations,
    StoreContext,
    TimeExpressions,
    default_functions,
)
from labeling.annotation.lf_text import read_token

ROSTER = ("Ingrid Okonkwo", "zebulon", "Nike Adeyemi")
FUNCTIONS = default_functions(roster=ROSTER)


def utterance(text: str, **kwargs) -> Utterance:
    return Utterance(tuple(text.split()), **kwargs)


def labels(function: LabelingFunction, text: str, **kwargs) -> list[str | None]:
    return [vote.label if vote else None for vote in function.apply(utterance(text, **kwargs))]


def voted(function: LabelingFunction, text: str, label: str) -> list[str]:
    """The tokens that got ``label``."""
    tokens = text.split()
    return [token for token, vote in zip(tokens, function.apply(utterance(text)), strict=True)
            if vote is not None and vote.label == label]


def time_spans(text: str) -> list[str]:
    tokens = tuple(text.split())
    return [" ".join(tokens[start:end]) for start, end in TimeExpressions().spans(tokens)]


# -- contract: every function ---------------------------------------------------------------------------
def test_default_functions_have_unique_stable_names_and_follow_the_protocol():
    names = [function.name for function in FUNCTIONS]
    assert names == ["champion", "names_gazetteer", "brand_lexicon", "time_rules", "probablepeople",
                     "store_context", "store_abbrev"]
    assert all(isinstance(function, LabelingFunction) for function in FUNCTIONS)


def test_roster_may_be_any_iterable_of_names():
    functions = default_functions(roster=(name for name in ["Xiomara Haugen", "", "  "]))
    names = next(function for function in functions if function.name == "names_gazetteer")
    assert voted(names, "ask xiomara haugen to cover", PERSON) == ["xiomara", "haugen"]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda function: function.name)
@pytest.mark.parametrize("text", [
    "", "?", "is ingrid on shift tomorrow at 5", "ASK JORDAN!!! 7:30pm??", "sku 40291 eta 12/24 — ok", "ǅ ß ﬁ ١٢ 😀",
    " ".join(["ingrid", "tomorrow", "at", "5", "jordan", "sneakers", "aisle", "7b", ",", "eta"] * 20),
])
def test_one_vote_or_abstention_per_token(function, text):
    tags = tuple("B-person" if index % 3 == 0 else "O" for index in range(len(text.split())))
    for case in (utterance(text), utterance(text, model_tags=tags, model_confidences=(0.7,) * len(tags))):
        votes = function.apply(case)
        assert len(votes) == len(case.tokens)
        assert all(vote is None or (isinstance(vote, Vote) and vote.label in LABELS) for vote in votes)
        assert function.apply(case) == votes  # deterministic


_TOKEN = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["tomorrow?", "jordan's", "at", "5", "pm", "aisle", "the", "21st", "ingrid", "&", "'s", "--",
                     "7:30", "12/24", "eta", "new", "balance", "twenty", "first", "of", "july", "in", "two", "hours"]),
)
_TAG = st.sampled_from(["O", "B-person", "I-person", "B-date_time", "I-date_time", "B-brand", "B-quantity",
                        "I-aisle", "person", "", "B-", "X-person"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(_TOKEN, max_size=30), data=st.data())
def test_no_function_raises_on_fuzzed_tokens(tokens, data):
    tags = data.draw(st.none() | st.lists(_TAG, min_size=len(tokens), max_size=len(tokens)).map(tuple))
    confidences = None if tags is None else data.draw(st.none() | st.lists(
        st.floats(allow_nan=True, allow_infinity=True), min_size=len(tokens), max_size=len(tokens)).map(tuple))
    case = Utterance(tuple(tokens), model_tags=tags, model_confidences=confidences)
    for function in FUNCTIONS:
        votes = function.apply(case)
        assert len(votes) == len(tokens), function.name
        assert all(vote is None or vote.label in LABELS for vote in votes), function.name


def test_read_token_strips_punctuation_and_possessives():
    assert (read_token("Tomorrow?").word, read_token("Tomorrow?").breaks) == ("tomorrow", True)
    assert (read_token("jordan's").word, read_token("jordan's").possessive) == ("jordan", True)
    assert read_token("JORDAN’S").plain == "jordans"
    assert read_token("a.m.").breaks is False and read_token("—").word == ""


# -- ChampionSlots --------------------------------------------------------------------------------------
def test_champion_votes_its_slot_types_with_its_confidence():
    case = utterance("ask ingrid to cover tomorrow two nike shoes",
                     model_tags=("O", "B-person", "O", "O", "B-date_time", "B-quantity", "B-brand", "B-product"),
                     model_confidences=(0.99, 0.7, 0.98, 0.97, 0.8, 0.9, 0.6, 0.65))
    votes = ChampionSlots().apply(case)
    assert [vote.label for vote in votes] == ["O", "person", "O", "O", "time", "O", "brand", "product"]
    assert [vote.confidence for vote in votes] == list(case.model_confidences)


def test_champion_abstains_without_model_tags_and_below_its_floor():
    assert ChampionSlots().apply(utterance("is ingrid in")) == [None, None, None]
    case = utterance("is ingrid in", model_tags=("O", "B-person", "O"), model_confidences=(0.9, 0.4, float("nan")))
    assert labels(ChampionSlots(min_confidence=0.5), "is ingrid in", model_tags=case.model_tags,
                  model_confidences=case.model_confidences) == ["O", None, None]


def test_champion_without_confidences_uses_its_default_and_skips_unreadable_tags():
    votes = ChampionSlots(default_confidence=0.4).apply(utterance("x y z", model_tags=("I-person", "weird", "B-")))
    assert votes == [Vote(PERSON, 0.4), None, None]
    with pytest.raises(ValueError, match="min_confidence"):
        ChampionSlots(min_confidence=1.5)


# -- NameGazetteer --------------------------------------------------------------------------------------
def test_names_vote_census_given_names_and_a_following_surname():
    names = NameGazetteer()
    assert voted(names, "is ingrid on shift tomorrow?", PERSON) == ["ingrid"]
    assert voted(names, "where is maria lopez", PERSON) == ["maria", "lopez"]
    assert voted(names, "is desmond okafor-smith in", PERSON) == ["desmond", "okafor-smith"]
    assert voted(names, "Ask Tobias about it", PERSON) == ["Tobias"]
    assert voted(names, "maria's shift", PERSON) == ["maria's"]


def test_names_skip_everyday_words_products_and_store_codes():
    names = NameGazetteer()
    for text in ("may i take a break", "add two sneakers to the cart", "we need brown rice", "eta on the truck"):
        assert labels(names, text) == [None] * len(text.split()), text


def test_names_inside_a_product_or_brand_phrase_are_left_to_the_lexicon():
    names = NameGazetteer()
    assert voted(names, "two mary janes for mary", PERSON) == ["mary"]
    assert voted(names, "le creuset dutch oven", PERSON) == []
    assert voted(names, "calvin klein", PERSON) == ["calvin", "klein"]  # all names: context decides


def test_names_that_are_brands_get_a_lower_confidence_and_roster_names_a_higher_one():
    names = NameGazetteer(roster=ROSTER)
    jordan, _, maria = names.apply(utterance("jordan and maria"))
    assert jordan.confidence < maria.confidence
    roster_votes = names.apply(utterance("ask ingrid okonkwo and zebulon, or ingrid"))
    # a whole roster entry is surest; a part of one ("ingrid") a little less; both above a Census name
    assert [vote.confidence if vote else None for vote in roster_votes] == [None, 0.85, 0.85, None, 0.85, None, 0.75]
    assert maria.confidence < 0.75


# -- BrandGazetteer -------------------------------------------------------------------------------------
def test_brands_and_products_match_as_spans():
    brands = BrandGazetteer()
    assert labels(brands, "two new balance running shoes") == [None, "brand", "brand", "product", "product"]
    assert labels(brands, "levi's jeans?") == ["brand", "product"]
    assert labels(brands, "Ben & Jerry's ice cream") == ["brand", "brand", "brand", "product", "product"]
    assert labels(brands, "is ingrid working today") == [None] * 4
    assert labels(brands, "any more jordans?") == [None, None, "brand"]  # a plural brand names its products


def test_a_brand_that_is_a_name_gets_a_lower_confidence():
    nike, jordan = BrandGazetteer().apply(utterance("nike jordan"))
    assert jordan.confidence < nike.confidence


# -- TimeExpressions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("is ingrid on shift tomorrow at 5", ["tomorrow at 5"]),
    ("bopis order for okonkwo ready by 3 pm", ["3 pm"]),
    ("can i have july fourth off", ["july fourth"]),
    ("request time off for the 21st", ["the 21st"]),
    ("schedule for 12/24 please", ["12/24"]),
    ("clock in at 7:30", ["7:30"]),
    ("clock in at five thirty", ["five thirty"]),
    ("is kwame working saturday morning?", ["saturday morning?"]),
    ("swap next tuesday with leif", ["next tuesday"]),
    ("i need this weekend off", ["this weekend"]),
    ("can you cover in two hours", ["in two hours"]),
    ("see me after my break", ["after my break"]),
    ("finish it by end of shift", ["end of shift"]),
    ("i work 9 to 5 on friday", ["9 to 5 on friday"]),
    ("lunch at noon", ["noon"]),
    ("off for christmas eve", ["christmas eve"]),
    ("the day after tomorrow works", ["the day after tomorrow"]),
    ("every other saturday", ["every other saturday"]),
    ("TOMORROW, at 5pm", ["TOMORROW,", "5pm"]),
    ("off in june", ["june"]),
])
def test_time_rules_find_time_expressions(text, expected):
    assert time_spans(text) == expected


@pytest.mark.parametrize("text", [
    "add two jordan sneakers to the cart",
    "page kwame to aisle 5",
    "meet at bay 4",
    "size 9 in stock",
    "change the price to three fifty",
    "ring it up at 5 dollars each",
    "by two pairs of socks",
    "at one of the registers",
    "the third aisle on the left",
    "who is on closing shift",
    "who is on the morning shift",
    "may i take a break",
    "good morning team",
    "is kwame at lunch",
    "we have 400 boxes",
    "midnight blue hoodie",
])
def test_time_rules_leave_quantities_codes_prices_and_shift_names_alone(text):
    assert time_spans(text) == []


def test_time_confidence_is_higher_for_explicit_times_than_for_context_ones():
    votes = TimeExpressions().apply(utterance("tomorrow 5 pm or start six thirty"))
    assert votes[0].confidence > votes[5].confidence and votes[1].confidence > votes[6].confidence


# -- PersonOrOrg (probablepeople) -----------------------------------------------------------------------
def test_probablepeople_votes_person_on_name_candidates_in_lower_case():
    people = PersonOrOrg()
    assert voted(people, "ask ingrid okonkwo to cover my shift", PERSON) == ["ingrid", "okonkwo"]
    lower = people.apply(utterance("ask ingrid okonkwo"))
    assert lower == people.apply(utterance("ask Ingrid Okonkwo"))  # the CRF's features ignore case
    assert all(vote is None or vote.confidence <= 0.45 for vote in lower)


def test_probablepeople_votes_brand_on_a_company_and_abstains_off_candidates():
    people = PersonOrOrg()
    assert voted(people, "the Walmart Supercenter truck", "brand") == ["Walmart", "Supercenter"]
    assert labels(people, "add milk to the cart") == [None] * 5
    assert labels(people, "the walmart supercenter truck") == [None] * 4  # lower case, no name: no candidate


# -- StoreContext ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "person"), [
    ("ask jordan to cover my saturday shift", ["jordan"]),
    ("is zebulon working tomorrow", ["zebulon"]),
    ("swap my shift with leif", ["leif"]),
    ("can hunter take my shift friday", ["hunter"]),
    ("bopis order for okonkwo ready by 3 pm", ["okonkwo"]),
    ("jordan's shift starts at 5", ["jordan's"]),
    ("is tobias mbeki in today?", ["tobias", "mbeki"]),
    ("ask stanley to cover", ["stanley"]),
])
def test_scheduling_context_makes_a_person(text, person):
    assert voted(StoreContext(), text, PERSON) == person


@pytest.mark.parametrize(("text", "brand"), [
    ("add two jordan sneakers to the cart", ["jordan"]),
    ("wilson tennis balls in aisle 7", ["wilson"]),
    ("two stanley tumblers", ["stanley"]),
    ("do we carry carter in size 8", ["carter"]),
])
def test_shopping_context_makes_a_brand(text, brand):
    assert voted(StoreContext(), text, "brand") == brand
    assert voted(StoreContext(), text, PERSON) == []


def test_context_reads_past_codes_and_greetings_but_not_english_words_near_a_shift_word():
    context = StoreContext()
    assert voted(context, "order 553421 for jordan smith", PERSON) == ["jordan", "smith"]
    assert voted(context, "yo dmitri you on at 6?", PERSON) == ["dmitri"]
    assert voted(context, "my shift ends at 10", PERSON) == []


def test_context_abstains_without_a_cue_and_on_a_tie():
    assert labels(StoreContext(), "jordan") == [None]
    assert labels(StoreContext(), "the blue one please") == [None] * 4
    assert labels(StoreContext(), "where is the kombucha") == [None] * 4


def test_ambiguity_comes_from_the_lists_so_a_roster_name_can_be_a_brand_word():
    with_roster, without = StoreContext(roster=ROSTER), StoreContext()
    assert voted(with_roster, "ask nike to cover my shift", PERSON) == ["nike"]
    assert voted(without, "ask nike to cover my shift", PERSON) == []
    assert voted(with_roster, "two nike sneakers", "brand") == ["nike"]


# -- StoreAbbreviations ---------------------------------------------------------------------------------
def test_store_codes_vote_outside_with_high_confidence():
    abbreviations = StoreAbbreviations()
    assert labels(abbreviations, "ETA? on the bopis order") == ["O", None, None, "O", None]
    assert voted(abbreviations, "check the pos at register two", OTHER) == ["pos", "register", "two"]
    assert voted(abbreviations, "sku 40291 is in a12", OTHER) == ["sku", "40291", "a12"]
    assert voted(abbreviations, "meet at bay 4", OTHER) == ["bay", "4"]
    assert voted(abbreviations, "aisle twenty three b is empty", OTHER) == ["aisle", "twenty", "three", "b"]
    assert all(vote.confidence >= 0.9 for vote in abbreviations.apply(utterance("eta pos")))


def test_store_codes_leave_times_names_and_plain_words_alone():
    text = "ingrid at 5pm 7:30 on the 21st or 12/24 tomorrow in aisle"
    assert labels(StoreAbbreviations(), text) == [None] * len(text.split())


def test_a_code_outvotes_a_name_rule():
    case = utterance("ask eta about it")
    code = StoreAbbreviations().apply(case)[1]
    name_votes = [function.apply(case)[1] for function in FUNCTIONS if function.name != "store_abbrev"]
    assert code.label == OTHER and all(vote is None or vote.confidence < code.confidence for vote in name_votes)
    assert not math.isnan(code.confidence)


# -- general rules added for the weak-supervision annotator (issue #15) ---------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("is ngozi coming in later today", ["later today"]),
    ("can kwabena do it first thing tomorrow", ["first thing tomorrow"]),
    ("restock it first thing in the morning", ["first thing in the morning"]),
    ("przemek called out sick closing time", ["closing time"]),
    ("what time does ivo get here 7 30", ["7 30"]),
    ("i need ivo on the floor six thirty", ["six thirty"]),
    ("put ivo on register 4 six thirty", ["six thirty"]),
    ("did ivo clock in two weeks from now", ["two weeks from now"]),
    ("is ngozi coming in 3 pm", ["3 pm"]),
    ("can you cover in an hour", ["in an hour"]),
])
def test_time_rules_find_lead_words_store_hours_and_round_clock_times(text, expected):
    assert time_spans(text) == expected


@pytest.mark.parametrize("text", [
    "i will be there later",
    "we need to close the store",
    "add two twenty packs",
    "aisle 7 30 is empty",
    "the first thing to do is restock",
    "change the price to six thirty",
])
def test_time_rules_leave_bare_later_close_and_unround_or_coded_numbers_alone(text):
    assert time_spans(text) == []


def test_time_rules_vote_outside_on_a_leading_preposition_and_its_object_but_not_on_a_name():
    assert labels(TimeExpressions(), "is ngozi coming in 3 pm") == [None, None, None, "O", "time", "time"]
    assert labels(TimeExpressions(), "is ivo on duty tomorrow") == [None, None, "O", "O", "time"]
    # "for" sits before the name, not before the time, and a name is no ordinary word: no vote on either
    assert labels(TimeExpressions(), "cover for okonkwo tomorrow") == [None, None, None, "time"]
    assert labels(TimeExpressions(), "did ivo clock in") == [None, None, "O", None]  # "clock in" is a verb


def test_store_codes_stop_before_a_spoken_time_and_mark_fillers():
    abbreviations = StoreAbbreviations()
    assert voted(abbreviations, "put ivo on register 4 six thirty", OTHER) == ["register", "4"]
    assert voted(abbreviations, "i need ivo on the floor six thirty", OTHER) == []
    assert voted(abbreviations, "aisle twenty three b is empty", OTHER) == ["aisle", "twenty", "three", "b"]
    assert voted(abbreviations, "um is ivo in", OTHER) == ["um"]


def test_a_lone_surname_that_is_a_plural_word_is_no_name():
    assert voted(NameGazetteer(), "does ana have the keys", PERSON) == ["ana"]
    assert voted(PersonOrOrg(), "does ana have the keys", PERSON) == ["ana"]
    assert voted(NameGazetteer(), "ask maria keys to cover", PERSON) == ["maria", "keys"]  # after a given name it is


def test_a_lone_surname_is_weak_for_the_gazetteer_and_no_candidate_for_the_crf_in_lower_case():
    votes = NameGazetteer().apply(utterance("is nguyen here"))
    assert votes[1].label == PERSON and votes[1].confidence <= 0.2
    assert voted(PersonOrOrg(), "is nguyen here", PERSON) == []
    assert voted(PersonOrOrg(), "ask maria nguyen", PERSON) == ["maria", "nguyen"]


def test_a_surname_stops_before_a_time_or_a_product():
    assert voted(NameGazetteer(), "cover for maria lopez black friday", PERSON) == ["maria", "lopez"]
    assert voted(NameGazetteer(), "two sebastian nail polish", PERSON) != ["sebastian", "nail"]
    assert voted(StoreContext(), "cover for maria lopez black friday", PERSON) == ["maria", "lopez"]


@pytest.mark.parametrize("text", [
    "add this song to my vincent playlist", "what is the weather in georgia", "book a table at gus stevens restaurant",
    "is it sunny in saint vincent",
])
def test_names_inside_titles_and_places_get_no_person_vote(text):
    for function in (NameGazetteer(), PersonOrOrg(), StoreContext()):
        assert voted(function, text, PERSON) == [], function.name
    assert voted(NameGazetteer(), "ask vincent to cover", PERSON) == ["vincent"]


@pytest.mark.parametrize(("text", "person"), [
    ("when is kwabena back from break", ["kwabena"]),
    ("has ngozi finished the sku pulls", ["ngozi"]),
    ("did oyelaran clock in", ["oyelaran"]),
    ("przemek um is running late", ["przemek"]),
    ("who trained kwabena on the pos system", ["kwabena"]),
    ("get ngozi to help a customer", ["ngozi"]),
    ("book przemek for training", ["przemek"]),
    ("remind kwabena about the meeting", ["kwabena"]),
    ("put ngozi oyelaran on register 4", ["ngozi", "oyelaran"]),
    ("check if kwabena is coming in at noon", ["kwabena"]),
    ("kwabena wants to swap with ngozi", ["kwabena", "ngozi"]),
])
def test_staff_verb_frames_make_a_person_of_an_unknown_word(text, person):
    assert voted(StoreContext(), text, PERSON) == person


@pytest.mark.parametrize("text", [
    "put cardboard in the baler", "move pallets to the back", "add patti page album to my list",
    "does anyone have the keys", "when is dinner",
])
def test_staff_verb_frames_leave_english_words_and_things_alone(text):
    assert [word for word in voted(StoreContext(), text, PERSON) if word not in ("patti", "page")] == []


def test_staff_verb_frames_keep_brands_in_shopping_talk():
    assert voted(StoreContext(), "add two jordan sneakers to the cart", "brand") == ["jordan"]
    assert voted(StoreContext(), "put jordan on register 4", PERSON) == ["jordan"]
