import json
import logging
from types import SimpleNamespace

import pytest

from nlumon.pii import (
    PiiLogFilter,
    deidentify_copy,
    deidentify_row,
    deidentify_utterance,
    find_pii,
    luhn_valid,
    normalise,
    scrub,
    text_hash,
)


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
    assert scrub("where is jordan", keep_spans=[(9, 15)]) == "where is <PERSON>"  # a person cue wins
    assert scrub("two jordan for me", keep_spans=[(4, 10)]) == "two jordan for me"
    assert scrub("two jordan for me") == "two <PERSON> for me"
    assert scrub("two jordan sneakers") == "two jordan sneakers"  # the brand, in a product context


def test_a_name_inside_an_email_address_goes_with_the_address():
    assert scrub("mail olivia.ng@example.com or olivia at gmail dot com") == "mail <EMAIL> or <EMAIL>"


def test_model_and_gazetteer_spans_that_overlap_become_one_placeholder():
    assert scrub("ask mason hill now", [(4, 9)]) == "ask <PERSON> now"


def test_pii_policy_keeps_names_in_confident_non_person_slots_only():
    from types import SimpleNamespace

    from model_runtime.predictions import SlotSpan
    from streams.features import PiiPolicy

    text = "two jordan for mason"  # no product word near "jordan": only the model's confidence keeps it
    sure = SimpleNamespace(slots=(SlotSpan("brand", 4, 10, "jordan", 0.97),))
    unsure = SimpleNamespace(slots=(SlotSpan("brand", 4, 10, "jordan", 0.40),))
    policy = PiiPolicy(gazetteer=True, keep_confidence=0.9)
    assert policy.scrub_text(text, sure) == "two jordan for <PERSON>"
    assert policy.scrub_slots(sure)[1] == ["jordan"]
    assert policy.scrub_text(text, unsure) == "two <PERSON> for <PERSON>"
    assert policy.scrub_slots(unsure)[1] == ["<PERSON>"]
    assert PiiPolicy(gazetteer=False).scrub_text(text, unsure) == text


@pytest.mark.parametrize(
    "text",
    ["ask mason hill to call 415-555-0134", "mail olivia.ng@example.com", "card 4111 1111 1111 1111 for jordan"],
)
def test_scrubbing_twice_changes_nothing_more(text):
    once = scrub(text)
    assert once != text and scrub(once) == once


# -- the detectors, one shape at a time -----------------------------------------------------------------
@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111",
        "4111  1111--1111 1111", "4111 - 1111 - 1111 - 1111", "41 11 11 11 11 11 11 11", "4111111 111111111",
        "3782 822463 10005", "6011 0009 9013 9424", "2223 0000 4840 0011", "4222222222222",
        "four one one one one one one one one one one one one one one one",
        "four double one one one one one one one one one one one one one one",
        "five five oh oh oh oh oh oh oh oh oh oh oh oh oh four",
    ],
)
def test_card_numbers_in_any_grouping_or_spoken_are_found(card):
    assert scrub(f"pay with {card} please") == "pay with <CARD> please"
    assert scrub(f"{card} is the card") == "<CARD> is the card"


@pytest.mark.parametrize(
    "phone",
    [
        "(415) 555-0134", "415-555-0134", "415.555.0134", "415 555 0134", "+1 415 555 0134", "1-800-555-0199",
        "4155550134", "+14155550134", "555-0134", "1 (415) 555-0134", "+44 20 7946 0958", "+4915112345678",
        "+33 6 12 34 56 78", "four one five five five five zero one three four",
        "one eight hundred five five five zero one nine nine",
    ],
)
def test_phone_numbers_in_north_american_and_e164_shapes_are_found(phone):
    out = scrub(f"call me at {phone} today")
    assert out.startswith("call me at <PHONE>") and not any(ch.isdigit() for ch in out), out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail Ann.Lee+shop@Example.com now", "mail <EMAIL> now"),
        ("it is ann dot lee at gmail dot com", "it is <EMAIL>"),
        ("it is ann underscore lee at outlook dot co dot uk", "it is <EMAIL>"),
        ("send it to annlee42 at yahoo dot com", "send it to <EMAIL>"),
        ("reach ann at gmail", "reach <EMAIL>"),
    ],
)
def test_typed_and_spoken_emails_are_found(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "address",
    ["1234 Elm Street", "12 oak st", "500 n main ave apt 4", "77 W. 42nd St, New York, NY 10036",
     "twelve thirty four maple drive", "9 Martin Luther King Blvd suite 200", "po box 1234"],
)
def test_street_addresses_are_found(address):
    assert scrub(f"ship it to {address}") == "ship it to <ADDRESS>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("swap my shift with kwame tomorrow", "swap my shift with <PERSON> tomorrow"),
        ("ask priya to cover aisle 5", "ask <PERSON> to cover aisle 5"),
        ("tell oluwaseun the truck is here", "tell <PERSON> the truck is here"),
        ("call Xiomara to the front", "call <PERSON> to the front"),
        ("is ingrid lindqvist working today", "is <PERSON> working today"),
        ("is grace working today", "is <PERSON> working today"),  # an everyday word after a strong cue
        ("is hunter brown scheduled 7 am", "is <PERSON> scheduled 7 am"),  # a brand's name, but a person's place
        ("pull up mahika kennedy's order", "pull up <PERSON>'s order"),
        ("find the registry for John Bose", "find the registry for <PERSON>"),
        ("Can Priya Okafor cover Friday?", "Can <PERSON> cover Friday?"),
        ("send ngozi to the bakery", "send <PERSON> to the bakery"),
        ("let zainab know the truck is here", "let <PERSON> know the truck is here"),
        ("adeolu needs help in pharmacy", "<PERSON> needs help in pharmacy"),
        ("where is olufunmilayo", "where is <PERSON>"),
    ],
)
def test_names_the_gazetteer_lacks_are_found_by_their_context(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "add two calvin klein jeans to my cart", "do you have Tommy Hilfiger polo shirts",
        "add ben & jerry's ice cream",
        "do you carry michael kors bags", "add two jordan sneakers", "levi's jeans for my son",
        "dr martens boots in size 9", "the dr pepper is out", "any Ralph Lauren shirts on sale",
        "restock the kate spade handbags", "mary janes in size 7", "add hunter rain boots",
        "ask the manager about it", "call me back tomorrow", "tell customer service", "is the wifi working",
        "track order 48213", "where is my order four two nine one eight", "order 113-4567890-1234567 status",
        "sku 48213-BLU-XL is out", "scan upc 012345678905", "upc 0 12345 67890 5", "override the price to $1,299.99",
        "am i working at 10:30 am on 11/23/2026", "page someone to aisle 14b", "add 12 bananas to my cart",
        "add 2 more court shoes", "is order 4821 ready for pickup at elm street",
    ],
)
def test_brands_named_after_people_and_retail_numbers_stay(text):
    assert scrub(text) == text


def test_a_strong_person_cue_wins_over_a_brand():
    assert scrub("ask jordan to grab the nike shoes") == "ask <PERSON> to grab the nike shoes"
    assert scrub("is hunter in today") == "is <PERSON> in today"


# -- slots in the context of the whole utterance ----------------------------------------------------------
def slot(kind, text, value, confidence=0.9, nth=0):
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return SimpleNamespace(type=kind, start=start, end=start + len(value), text=value, confidence=confidence)


def test_a_card_split_over_two_slot_values_is_one_card():
    text = "my card is 4111 1111 1111 1111 thanks"
    slots = [slot("order_id", text, "4111 1111", 0.94), slot("order_id", text, "1111 1111", 0.37, nth=1)]
    assert deidentify_utterance(text, slots) == ("my card is <CARD> thanks", ["<CARD>", "<CARD>"])


def test_slots_that_hold_personal_data_become_its_placeholder():
    text = "find the registry for Ingrid Lindqvist or call (415) 555-0134 about 1234 elm street"
    slots = [slot("person", text, "Ingrid", 0.92), slot("brand", text, "Lindqvist", 0.71),
             slot("product", text, "call", 0.4), slot("order_id", text, "555-0134", 0.38),
             slot("order_id", text, "1234", 0.99), slot("store", text, "elm street", 0.98)]
    scrubbed, values = deidentify_utterance(text, slots)
    assert scrubbed == "find the registry for <PERSON> or call <PHONE> about <ADDRESS>"
    assert values == ["<PERSON>", "<PERSON>", "call", "<PHONE>", "<ADDRESS>", "<ADDRESS>"]


def test_a_slot_whose_offsets_do_not_match_is_scrubbed_on_its_own():
    text = "add it"
    bad = SimpleNamespace(type="order_id", start=40, end=50, text="4111 1111 1111 1111", confidence=0.9)
    assert deidentify_utterance(text, [bad])[1] == ["<CARD>"]


def test_copies_of_text_and_slots_are_scrubbed_together_and_keep_brands():
    text, values = deidentify_copy("add two jordan sneakers for 4111 1111 1111 1111 and mail ann.lee@example.com",
                                   ["jordan", "4111 1111", "1111 1111", "ann.lee@example.com", "kwame 415 555 0134"])
    assert text == "add two jordan sneakers for <CARD> and mail <EMAIL>"
    assert values == ["jordan", "<CARD>", "<CARD>", "<EMAIL>", "kwame <PHONE>"]


def test_rows_are_scrubbed_except_the_columns_kept_and_json_numbers_stay_exact():
    details = json.dumps({"p_value": 0.4111111111111111, "examples": ["call 415 555 0134"]}, sort_keys=True)
    row = deidentify_row(
        {"id": "4111 1111 1111 1111", "reason": "bad ann.lee@example.com", "examples": ("ask kwame to",),
         "nested": {"x": ["pay 4111-1111-1111-1111"]}, "details": details, "n": 4111111111111111},
        keep=["id"], json_columns=["details"])
    assert row["id"] == "4111 1111 1111 1111"
    assert row["reason"] == "bad <EMAIL>" and row["examples"] == ("ask <PERSON> to",)
    assert row["nested"] == {"x": ["pay <CARD>"]} and row["n"] == 4111111111111111
    assert json.loads(row["details"]) == {"p_value": 0.4111111111111111, "examples": ["call <PHONE>"]}


def test_log_records_are_scrubbed_message_arguments_extra_and_traceback():
    record = logging.LogRecord("streams", logging.ERROR, __file__, 1, "bad text %r", ("mail ann.lee@example.com",),
                               None)
    record.reason = "card 4111 1111 1111 1111"
    try:
        raise ValueError("call 415-555-0134")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert PiiLogFilter().filter(record)
    line = logging.Formatter("%(message)s %(reason)s").format(record)
    assert "ann.lee" not in line and "4111" not in line and "555-0134" not in line
    assert "<EMAIL>" in line and "<CARD>" in line and "<PHONE>" in line


def test_the_logging_config_scrubs_every_line(capsys):
    from nlumon.logs import setup_logging

    setup_logging("json")
    try:
        logging.getLogger("nlumon.test").warning("utterance %s", "ask kwame to call 415 555 0134")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        setup_logging("text")
    assert json.loads(line)["message"] == "utterance ask <PERSON> to call <PHONE>"


@pytest.mark.parametrize(
    "text",
    ["pay 4111 1111 1111 1111 and ask kwame lindqvist to call +44 20 7946 0958",
     "ship to 500 n main ave apt 4 and mail ann dot lee at gmail dot com", "Pull up Borahan Wanjala's order"],
)
def test_scrubbing_is_idempotent(text):
    once = scrub(text)
    assert once != text and scrub(once) == once
    assert [f.kind for f in find_pii(once)] == []
