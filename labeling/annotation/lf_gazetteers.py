"""Dictionary voters: person names (Census lists and the staff roster) and the brand and product lexicon.

Both look words up and nothing else, so they are precise where the lists are right and silent elsewhere; the
context rules (:mod:`labeling.annotation.lf_store`) settle what a list cannot, such as "jordan" the brand and
"jordan" the coworker. A word that is both a name and a brand gets a low-confidence vote from each list.

>>> votes = NameGazetteer(roster=["Kwame Mensah"]).apply(Utterance(tuple("ask kwame mensah and maria lopez".split())))
>>> [(v.label, v.confidence) if v else None for v in votes]
[None, ('person', 0.85), ('person', 0.85), None, ('person', 0.5), ('person', 0.5)]
>>> [v.label if v else None for v in BrandGazetteer().apply(Utterance(("two", "new", "balance", "sneakers")))]
[None, 'brand', 'brand', 'product']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from labeling.annotation.base import BRAND, PERSON, PRODUCT, Utterance, Vote
from labeling.annotation.lf_lexicons import (
    Roster,
    brand_phrases,
    catalogue,
    given_names,
    in_catalogue_phrase,
    looks_like_name,
    name_words,
    ordinary_words,
    plural_word,
    surnames,
    titled,
    unknown_word,
)
from labeling.annotation.lf_text import Token, data_words, tokens_of
from labeling.annotation.lf_time import starts_time
from nlumon import pii

# Words of the product lists that say "some product" without naming one ("two pairs", "that item", "a set").
GENERIC_PRODUCT_WORDS = frozenset("""
    item items pair pairs size sizes product products style styles collection set model line run stuff top tops
    kit mix figure case cases card house frame pad seat stick table tool tools mat pot pan ring maker reader
""".split())


class NameGazetteer:
    """Votes person on Census given names (a following surname joins) and, more surely, on roster names."""

    name = "names_gazetteer"

    def __init__(
        self, roster: Iterable[str] = (), *, confidence: float = 0.5, roster_confidence: float = 0.85,
        ambiguous_confidence: float = 0.3, surname_confidence: float = 0.2,
    ) -> None:
        self.roster = roster if isinstance(roster, Roster) else Roster(roster)
        self.confidence = confidence
        self.roster_confidence = roster_confidence
        self.ambiguous_confidence = ambiguous_confidence  # a name that is also a brand ("jordan", "wilson")
        # a lone surname that is no ordinary word ("nguyen"): weak, as many are words too ("love", "forest")
        self.surname_confidence = surname_confidence

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tokens = tokens_of(utterance.tokens)
        votes: list[Vote | None] = [None] * len(tokens)
        for start, end, _ in self.roster.matcher.find(tokens):
            for index in range(start, end):
                votes[index] = Vote(PERSON, self.roster_confidence)
        sold = in_catalogue_phrase(tokens)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            confidence = None if votes[index] or sold[index] else self._first_name_confidence(token)
            if confidence is None:
                index += 1
                continue
            end = index + 1
            if not token.possessive and not token.breaks and end < len(tokens) and may_be_surname(tokens[end]) \
                    and not starts_time(tokens, end) and not sold[end]:  # not "nail" of "sebastian nail polish"
                end += 1
            if titled(tokens, index, end):  # "my vincent playlist", "weather in georgia"
                index = end
                continue
            for position in range(index, end):
                votes[position] = Vote(PERSON, confidence)
            index = end
        return votes

    def _first_name_confidence(self, token: Token) -> float | None:
        word = token.word
        if not word or not token.alphabetic or word in pii.FUNCTION_WORDS or word in data_words(
                "store_abbreviations.txt"):
            return None
        if word in self.roster:
            return round(self.roster_confidence - 0.1, 3)
        if word in given_names():
            return self.ambiguous_confidence if (word,) in brand_phrases() else self.confidence
        if word in surnames() and word not in ordinary_words() and (word,) not in brand_phrases() \
                and not plural_word(word):  # "have the keys": a lone surname that is a plural of a word
            return self.surname_confidence
        return None


def may_be_surname(token: Token) -> bool:
    """May this token, right after a given name, be its surname? A Census surname or an unknown word.

    >>> from labeling.annotation.lf_text import read_token
    >>> [may_be_surname(read_token(w)) for w in ("lopez", "okonkwo", "takahashi", "brown", "ends", "tomorrow", "rice")]
    [True, True, True, True, False, False, False]
    """
    word = token.word
    if not token.alphabetic or len(word) < 2 or word in pii.FUNCTION_WORDS or word in pii.cue_stop_words() \
            or word in data_words("title_nouns.txt"):  # "my vincent playlist": a title goes on, no surname
        return False
    if word in surnames():
        return word not in pii.product_words() and word not in ordinary_words() - name_words()
    # A rarer surname may be an English word to the tokenizer ("takahashi"), an inflected one seldom is ("ends").
    return unknown_word(token) or (looks_like_name(token) and not word.endswith(_INFLECTIONS))


_INFLECTIONS = ("s", "ed", "ing", "ly", "er", "est")


class BrandGazetteer:
    """Votes brand / product on lexicon matches, longest first ("new balance", "running shoes")."""

    name = "brand_lexicon"

    def __init__(self, *, confidence: float = 0.7, ambiguous_confidence: float = 0.35) -> None:
        self.confidence = confidence
        self.ambiguous_confidence = ambiguous_confidence  # a brand whose every word is a name ("calvin klein")

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tokens = tokens_of(utterance.tokens)
        votes: list[Vote | None] = [None] * len(tokens)
        for start, end, label in catalogue().find(tokens):
            words = [token.word for token in tokens[start:end]]
            if label == PRODUCT and len(words) == 1 and words[0] in GENERIC_PRODUCT_WORDS:
                continue
            confidence = self.confidence
            if label == BRAND and all(word in name_words() for word in words):
                confidence = self.ambiguous_confidence
            for index in range(start, end):
                votes[index] = Vote(str(label), confidence)
        return votes


def brand_spans(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """Where the lexicon finds a brand (for the context rules)."""
    return [(start, end) for start, end, label in catalogue().find(tokens) if label == BRAND]
