import pytest

from nlumon.pii import luhn_valid, normalise, scrub, text_hash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email ann.lee+shop@example.co.uk about it", "email <EMAIL> about it"),
        ("my email is ann at gmail dot com", "my email is <EMAIL>"),
        ("call me on (415) 555-0134 please", "call me on <PHONE> please"),
        ("call +1 415 555 0134", "call <PHONE>"),
        ("my number is five five five one two three four", "my number is <PHONE>"),
        ("card 4111-1111-1111-1111 expires soon", "card <CARD> expires soon"),
        ("card 5500 0000 0000 0004", "card <CARD>"),
    ],
)
def test_personal_data_is_replaced_by_typed_placeholders(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "track order 4111111111111112",  # 16 digits that fail the card checksum: an order id
        "add two jordans to my cart",
        "is aisle 12 open until 9",
        "order 12345678 status",
    ],
)
def test_ordinary_retail_text_is_left_alone(text):
    assert scrub(text) == text


def test_person_spans_from_the_model_are_replaced_and_other_offsets_stay_valid():
    text = "tell maria lopez that jordan covers her shift"
    spans = [(5, 16), (22, 28)]  # "maria lopez", "jordan"
    assert scrub(text, spans) == "tell <PERSON> that <PERSON> covers her shift"


def test_out_of_range_spans_are_ignored():
    assert scrub("hi there", [(5, 50)]) == "hi there"


def test_luhn():
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_hash_is_keyed_and_insensitive_to_case_and_spacing():
    assert normalise(" Add  MILK ") == "add milk"
    assert text_hash("k1", "Add  milk") == text_hash("k1", "add milk")
    assert text_hash("k1", "add milk") != text_hash("k2", "add milk")
    assert "milk" not in text_hash("k1", "add milk")


# -- the name gazetteer: names the model did not tag ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ask mason hill if he can cover", "ask <PERSON> if he can cover"),  # given name + surname
        ("is olivia working today", "is <PERSON> working today"),
        ("tell jordan's manager", "tell <PERSON>'s manager"),
        ("is jordan on shift", "is <PERSON> on shift"),  # "on" is a Census surname, not here
    ],
)
def test_census_given_names_are_scrubbed_without_a_model_span(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "will it be in stock in may",  # "will", "may", "in" and "my" are Census first names
        "summer sale on rose gold watches",
        "pay my bill and add a jack cable",
        "ok see you on sunday",
    ],
)
def test_everyday_words_that_are_census_names_stay(text):
    assert scrub(text) == text


def test_the_gazetteer_can_be_turned_off_and_keep_spans_protect_a_brand():
    assert scrub("is olivia in", gazetteer=False) == "is olivia in"
    assert scrub("two jordan sneakers", keep_spans=[(4, 10)]) == "two jordan sneakers"
    assert scrub("two jordan sneakers") == "two <PERSON> sneakers"


def test_a_name_inside_an_email_address_goes_with_the_address():
    assert scrub("mail olivia.ng@example.com or olivia at gmail dot com") == "mail <EMAIL> or <EMAIL>"


def test_model_and_gazetteer_spans_that_overlap_become_one_placeholder():
    assert scrub("ask mason hill now", [(4, 9)]) == "ask <PERSON> now"


def test_pii_policy_keeps_names_in_confident_non_person_slots_only():
    from types import SimpleNamespace

    from model_runtime.predictions import SlotSpan
    from streams.features import PiiPolicy

    text = "add two jordan sneakers for mason"
    sure = SimpleNamespace(slots=(SlotSpan("brand", 8, 14, "jordan", 0.97),))
    unsure = SimpleNamespace(slots=(SlotSpan("brand", 8, 14, "jordan", 0.40),))
    policy = PiiPolicy(gazetteer=True, keep_confidence=0.9)
    assert policy.scrub_text(text, sure) == "add two jordan sneakers for <PERSON>"
    assert policy.scrub_slots(sure)[1] == ["jordan"]
    assert policy.scrub_text(text, unsure) == "add two <PERSON> sneakers for <PERSON>"
    assert policy.scrub_slots(unsure)[1] == ["<PERSON>"]
    assert PiiPolicy(gazetteer=False).scrub_text(text, unsure) == text


@pytest.mark.parametrize(
    "text",
    ["ask mason hill to call 415-555-0134", "mail olivia.ng@example.com", "card 4111 1111 1111 1111 for jordan"],
)
def test_scrubbing_twice_changes_nothing_more(text):
    once = scrub(text)
    assert once != text and scrub(once) == once
