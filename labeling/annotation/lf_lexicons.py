"""The gazetteers the labeling functions share: names, the staff roster, brands, products, ordinary words.

Names are the US Census given names and surnames of :mod:`nlumon.pii` (everyday English words already taken
out: "will", "may", "grace" ...). Brands and products are the retail generator's trained lists
(``model_runtime.data.lexicon.BRANDS``/``PRODUCTS``) plus the project's brand and product-noun lists
(``nlumon/data/brands.txt``, ``product_words.txt``). Whether a token is *both* a name and a brand ("jordan",
"wilson", "calvin klein") is decided from these lists, never from a hand-written list of ambiguous names, so a
new brand or a new roster name changes the answer by itself.

Everything is loaded once per process (``functools.cache``); a :class:`Roster` is built per annotator.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from labeling.annotation.base import BRAND, PRODUCT
from labeling.annotation.lf_text import PhraseMatcher, Token, data_words, phrase_key
from nlumon import pii


@functools.cache
def given_names() -> frozenset[str]:
    """Census given names less everyday words (:func:`nlumon.pii.given_names`)."""
    return pii.given_names()


@functools.cache
def surnames() -> frozenset[str]:
    """The 5,000 most common Census surnames less function words (:func:`nlumon.pii.surnames`)."""
    return pii.surnames()


@functools.cache
def brand_phrases() -> frozenset[tuple[str, ...]]:
    """Every brand as words ("new balance" -> ("new", "balance"))."""
    from model_runtime.data import lexicon

    names = set(pii.brand_names()) | {brand for brands in lexicon.BRANDS.values() for brand in brands}
    return frozenset(key for key in map(phrase_key, names) if key)


@functools.cache
def product_phrases() -> frozenset[tuple[str, ...]]:
    """Every product as words, with the head noun's singular or plural too ("running shoe", "sneaker")."""
    from model_runtime.data import lexicon

    names = set(pii.product_words()) | {product for products in lexicon.PRODUCTS.values() for product in products}
    keys: set[tuple[str, ...]] = set()
    for key in filter(None, map(phrase_key, names)):
        keys.add(key)
        head = key[-1]
        if len(head) > 3:
            keys.add(key[:-1] + ((head[:-1],) if head.endswith("s") else (head + "s",)))
    return frozenset(keys)


@functools.cache
def catalogue() -> PhraseMatcher:
    """Brands (and their plurals: "jordans") and products in one matcher; a brand wins over a product of the same
    words ("champion")."""
    phrases: dict[tuple[str, ...], object] = {key: PRODUCT for key in product_phrases()}
    phrases.update({key: BRAND for key in brand_phrases()})
    english = data_words("english_words.txt") | pii.common_words()
    for (brand, *rest) in brand_phrases():  # "any more jordans?": a plural brand names its products
        plural = brand + "s"
        if not rest and not brand.endswith("s") and (plural,) not in phrases and not {brand, plural} & english:
            phrases[(plural,)] = BRAND
    return PhraseMatcher(phrases)


@functools.cache
def product_heads() -> frozenset[str]:
    """Single words that end a product phrase ("shoes" of "running shoes"): a brand right before one is a brand."""
    return frozenset(key[-1] for key in product_phrases())


@functools.cache
def ordinary_words() -> frozenset[str]:
    """Words that are no name on their own: common English and retail words, cue words, codes, products, times."""
    from labeling.annotation.lf_time import time_vocabulary

    return (time_vocabulary() | pii.common_words() | pii.cue_stop_words() | pii.product_words() | product_heads()
            | data_words("store_abbreviations.txt") | data_words("scheduling_cues.txt")
            | data_words("shopping_cues.txt") | data_words("code_cues.txt"))


@functools.cache
def name_words() -> frozenset[str]:
    """Given names and surnames in one set."""
    return given_names() | surnames()


@functools.cache
def brand_words() -> frozenset[str]:
    """Words of single-word brands and the first word of every brand ("calvin" of "calvin klein")."""
    return frozenset(key[0] for key in brand_phrases())


def in_catalogue_phrase(tokens: Sequence[Token]) -> list[bool]:
    """Tokens inside a brand or product of several words that are not all names ("mary janes", "le creuset"):
    a name list must not read "mary" there. A brand that is all names ("calvin klein") stays open to both.

    >>> from labeling.annotation.lf_text import tokens_of
    >>> in_catalogue_phrase(tokens_of(("two", "mary", "janes", "for", "mary")))
    [False, True, True, False, False]
    """
    covered = [False] * len(tokens)
    for start, end, _ in catalogue().find(tokens):
        if end - start > 1 and not all(
                token.word in given_names() or (token.word in surnames() and token.word not in ordinary_words())
                for token in tokens[start:end]):
            covered[start:end] = [True] * (end - start)
    return covered


class Roster:
    """Accepted staff names (the growing roster dictionary): whole entries and their parts.

    An entry of several words ("ingrid okonkwo") is matched as a span; each of its words that is no ordinary
    word is accepted alone too, because associates call each other by a first name ("ask ingrid").

    >>> from labeling.annotation.lf_text import tokens_of
    >>> roster = Roster(["Ingrid Okonkwo", "kwame", ""])
    >>> sorted(roster.words), roster.matcher.find(tokens_of(("ask", "ingrid", "okonkwo")))
    (['ingrid', 'kwame', 'okonkwo'], [(1, 3, 'roster')])
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        entries = {phrase_key(name) for name in names if isinstance(name, str)}
        entries.discard(())
        self.entries = frozenset(entries)
        self.words = frozenset(
            word for entry in entries for word in entry
            if len(word) > 1 and word.replace("-", "").isalpha() and (len(entry) == 1 or word not in ordinary_words()))
        self.matcher = PhraseMatcher({entry: "roster" for entry in entries})

    def __contains__(self, word: str) -> bool:
        return word in self.words


def is_name(token: Token, roster: Roster | None = None) -> bool:
    """A Census given name or surname, or a roster word."""
    return token.word in name_words() or (roster is not None and token.word in roster)


def looks_like_name(token: Token, roster: Roster | None = None) -> bool:
    """Could this token be (part of) a person's name on its own, without a given name before it?

    A given name or roster word; a surname or a word of letters that no list knows, unless it is an ordinary
    word ("brown", "price" are surnames too). Functions vote on an unknown word only with a cue around it.

    >>> from labeling.annotation.lf_text import read_token
    >>> [looks_like_name(read_token(w)) for w in ("ingrid", "okonkwo", "brown", "sneakers", "eta", "5")]
    [True, True, False, False, False, False]
    """
    word = token.word
    if not token.alphabetic or len(word) < 2 or word in pii.FUNCTION_WORDS or word in _abbreviations():
        return False
    if word in given_names() or (roster is not None and word in roster):
        return True
    return word not in ordinary_words() and (word in surnames() or word not in brand_words())


def unknown_word(token: Token) -> bool:
    """Name-like and in no English word list either (``data/english_words.txt``): "okonkwo", not "ends".

    >>> from labeling.annotation.lf_text import read_token
    >>> [unknown_word(read_token(w)) for w in ("okonkwo", "ends", "ingrid")]
    [True, False, False]
    """
    return looks_like_name(token) and token.word not in name_words() and token.word not in data_words(
        "english_words.txt")


PLACE_OPENERS = frozenset("saint st san santa fort mount mt port lake new north south east west".split())
PLACE_PREPOSITIONS = frozenset("in near".split())


def titled(tokens: Sequence[Token], start: int, end: int) -> bool:
    """Is ``start:end`` inside the name of a thing or a place rather than a person? A title or venue noun follows
    it (``data/title_nouns.txt``: "my vincent playlist", "gus stevens seafood restaurant"), a place word opens
    it ("saint vincent", "south carolina"), or a place preposition comes right before it ("weather in georgia").

    >>> from labeling.annotation.lf_text import tokens_of
    >>> tokens = tokens_of(tuple("add it to my vincent playlist in georgia".split()))
    >>> titled(tokens, 4, 5), titled(tokens, 7, 8), titled(tokens_of(("ask", "vincent", "to", "cover")), 1, 2)
    (True, True, False)
    """
    after = tokens[end].word if end < len(tokens) and not tokens[end - 1].breaks else ""
    before = tokens[start - 1].word if start > 0 and not tokens[start - 1].breaks else ""
    return after in data_words("title_nouns.txt") or before in PLACE_OPENERS or before in PLACE_PREPOSITIONS


@functools.lru_cache(maxsize=65536)
def plural_word(word: str) -> bool:
    """The plural of an everyday English word ("keys", "hills", "fields"): a Census surname of this
    form names a thing as often as a person ("does ana have the keys"), so alone (no given name before it) it is
    no name by itself.

    >>> [plural_word(w) for w in ("keys", "hills", "boxes", "fields", "james", "torres", "ross")]
    [True, True, True, True, False, False, False]
    """
    english = pii.common_words()  # everyday words: "torre" or "rio" of the English list would take "torres", "rios"
    if len(word) < 4 or not word.endswith("s") or word.endswith("ss"):
        return False
    if word.endswith("ies") and word[:-3] + "y" in english:
        return True
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and word[:-2] in english:
        return True
    return word[:-1] in english


@functools.cache
def _abbreviations() -> frozenset[str]:
    return data_words("store_abbreviations.txt")

