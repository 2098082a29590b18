import pytest

from streams.pii import luhn_valid, normalise, scrub, text_hash


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
