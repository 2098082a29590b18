"""Personal data handling before anything is stored or published.

Raw utterance text never reaches ClickHouse: rows keep a keyed hash of it (HMAC-SHA256 with a
secret key from the settings) so duplicates can be found without the text being recoverable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for hashing and deduplication.

    >>> normalise("  Add  MILK to my cart ")
    'add milk to my cart'
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(key: str, text: str) -> str:
    """Keyed hash (hex) of the normalised text.

    >>> text_hash("k", "Add milk") == text_hash("k", "add  milk")
    True
    >>> text_hash("k", "add milk") == text_hash("other key", "add milk")
    False
    """
    return hmac.new(key.encode(), normalise(text).encode(), hashlib.sha256).hexdigest()


# -- de-identification ------------------------------------------------------------------------------
_DIGIT_WORDS = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
EMAIL = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # typed: ann.lee@example.com
    r"|\b[a-z0-9._-]+ at [a-z0-9-]+ dot (?:com|net|org|edu|io|co(?: dot uk)?)\b",  # spoken: ann at gmail dot com
    re.IGNORECASE,
)
# 13-19 digits, optionally grouped by spaces or dashes; confirmed by the Luhn checksum below.
CARD_CANDIDATE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
PHONE = re.compile(
    r"(?<![\w-])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?![\w-])"  # 555-123-4567 etc.
    rf"|\b(?:{_DIGIT_WORDS}\s+){{6,}}{_DIGIT_WORDS}\b",  # spoken digits: five five five one two ...
    re.IGNORECASE,
)
PLACEHOLDERS = {"email": "<EMAIL>", "card": "<CARD>", "phone": "<PHONE>", "person": "<PERSON>"}


def luhn_valid(digits: str) -> bool:
    """The payment-card checksum.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _replace_cards(text: str) -> str:
    def card_or_keep(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group())
        return PLACEHOLDERS["card"] if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()

    return CARD_CANDIDATE.sub(card_or_keep, text)


def scrub(text: str, person_spans: list[tuple[int, int]] | tuple = ()) -> str:
    """Replace e-mail addresses, card and phone numbers, and the given person spans with placeholders.

    ``person_spans`` are character offsets of the spans the model tagged as a person.

    >>> scrub("mail ann.lee@example.com or call 415-555-0134", [])
    'mail <EMAIL> or call <PHONE>'
    >>> scrub("is jordan on shift tomorrow", [(3, 9)])
    'is <PERSON> on shift tomorrow'
    >>> scrub("pay with 4111 1111 1111 1111 for order 12345")
    'pay with <CARD> for order 12345'
    """
    # Person spans first, right to left, while the model's offsets still point into the text.
    for start, end in sorted(person_spans, reverse=True):
        if 0 <= start < end <= len(text):
            text = text[:start] + PLACEHOLDERS["person"] + text[end:]
    text = EMAIL.sub(PLACEHOLDERS["email"], text)
    text = _replace_cards(text)
    return PHONE.sub(PLACEHOLDERS["phone"], text)
