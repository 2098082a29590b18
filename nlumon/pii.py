"""Personal data handling before anything is stored or published.

Raw utterance text never reaches ClickHouse: rows keep a keyed hash of it (HMAC-SHA256 with a
secret key from the settings) so duplicates can be found without the text being recoverable.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable


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


# -- person names the model missed ------------------------------------------------------------------
# The model's person slots catch names in context, but its recall varies from one training run to the
# next. A gazetteer of given names (US Census 1990 first names, from the ``names`` package) catches the
# common ones whatever the model says; a common surname (the Census's 5,000 most frequent) right after a
# given name joins it.
# Census first names that are everyday English words are not names here: scrubbing "will", "may" or
# "summer" would shred ordinary requests. Names the gazetteer lacks (newer or non-US names) rely on
# the model alone; see docs/streams.md.
COMMON_WORDS = frozenset("""
    january april may june september sunday bill ok
    alpha amber an angel angle art august aura autumn basil bee bell berry blossom brain brandy brook buck bud
    buddy candy carry chance charity chase cherish cherry chi chin china christen chuck clay cliff coral crystal
    curt daisy dale dawn dean delta desire destiny diamond dot drew dung dusty earl earnest ebony echo ed else
    emerald era eve fairy faith fern flora forest foster frank gala gale garland garnet gay gene genesis ginger
    glen glory golden grace grant guy ha hang harmony hazel heath heather herb holly honey hope hue hung in iris
    ivory ivy jack jade jewel joy junior karma kit lady lance lane lean liberty lily loan long love ma major man
    manual many maple margarita marina marine mark marry marvel max melody mercy merry meta mi mica miles min miss
    misty moon my noble nova numbers olive omega pa page patience pearl penny ping pinkie precious prince princess
    queen ray reed rich rocky rod romaine rose rosemary royal ruby rusty sage sandy sang season see shin so sol
    son song soon sparkle spring star sterling stormy sue summer sun sung sunny sunshine temple tequila tiny
    trinity velvet violet wan ward will windy winter yen yon young
""".split())
# Short English words that are also Census surnames ("is jordan on shift": "on" is no surname there).
FUNCTION_WORDS = frozenset("""
    a about after all also am an and any are as at be been but by can could did do does for from get go got had
    has have he her here him his how i if in into is it its just me more my no not now of off on or our out over
    so some than that the them then there they this to too two up us was we were what when where which who why
    will with would yes yet you your
""".split())
SURNAME_MAX_RANK = 5000  # the long tail of Census surnames is full of words: "trail" 8609, "shorts" 8612
_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


def _census_names(*files: str, max_rank: int | None = None) -> frozenset[str]:
    import names  # the package's data files: "NAME frequency cumulative-frequency rank" per line

    found: set[str] = set()
    for key in files:
        with open(names.FILES[key], encoding="utf-8") as lines:
            for line in lines:  # most frequent first
                name, _, _, rank = line.split()
                if max_rank is not None and int(rank) > max_rank:
                    break
                found.add(name.lower())
    return frozenset(found)


@functools.cache
def given_names() -> frozenset[str]:
    """Census given names, less :data:`COMMON_WORDS` (loaded once per process)."""
    return _census_names("first:male", "first:female") - COMMON_WORDS


@functools.cache
def surnames() -> frozenset[str]:
    """The most common Census surnames, less :data:`FUNCTION_WORDS` (loaded once per process)."""
    return _census_names("last", max_rank=SURNAME_MAX_RANK) - FUNCTION_WORDS


def name_spans(text: str, keep: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Character spans of given names (with a following surname) in ``text``, outside the ``keep`` spans.

    ``keep`` are spans the model tagged, confidently, as something other than a person (a brand
    called "jordan"): a name there stays, because the model read it in context.

    >>> text = "is mason hill on shift with olivia"
    >>> [text[s:e] for s, e in name_spans(text)]
    ['mason hill', 'olivia']
    >>> name_spans("will it be here in may"), name_spans("add two jordans", keep=[(8, 15)])
    ([], [])
    """
    keep = list(keep)
    first_names, last_names = given_names(), surnames()
    tokens = list(_NAME_TOKEN.finditer(text))
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        whole = token.group().lower()
        word = whole.removesuffix("'s").removesuffix("’s")
        if word in first_names and not any(s <= token.start() < e for s, e in keep):
            end = token.start() + len(word)
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and word == whole and following.group().lower() in last_names:
                end = following.end()  # "mason hill"; not after a possessive ("jordan's manager")
                index += 1
            spans.append((token.start(), end))
        index += 1
    return spans


def scrub(text: str, person_spans: list[tuple[int, int]] | tuple = (), *,
          keep_spans: Iterable[tuple[int, int]] = (), gazetteer: bool = True) -> str:
    """Replace e-mail addresses, card and phone numbers, and person names with placeholders.

    ``person_spans`` are character offsets of the spans the model tagged as a person; with
    ``gazetteer`` the given names of :func:`name_spans` (outside ``keep_spans``) go too.

    >>> scrub("mail ann.lee@example.com or call 415-555-0134", [])
    'mail <EMAIL> or call <PHONE>'
    >>> scrub("is jordan on shift tomorrow", [(3, 9)])
    'is <PERSON> on shift tomorrow'
    >>> scrub("pay with 4111 1111 1111 1111 for order 12345")
    'pay with <CARD> for order 12345'
    >>> scrub("ask mason hill if jordan can cover", [(18, 24)])
    'ask <PERSON> if <PERSON> can cover'
    """
    # Person spans first, right to left, while the offsets still point into the text.
    spans = [(s, e) for s, e in person_spans if 0 <= s < e <= len(text)]
    if gazetteer:  # not inside an e-mail address: that one goes whole, below
        spans += name_spans(text, [*keep_spans, *(m.span() for m in EMAIL.finditer(text))])
    for start, end in _merged(spans)[::-1]:
        text = text[:start] + PLACEHOLDERS["person"] + text[end:]
    text = EMAIL.sub(PLACEHOLDERS["email"], text)
    text = _replace_cards(text)
    return PHONE.sub(PLACEHOLDERS["phone"], text)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping spans joined (the model's span and the gazetteer's may overlap)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
