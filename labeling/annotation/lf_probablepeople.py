"""A trained name parser as a voter: is a candidate span a person's name or a company's?

``probablepeople`` (datamade) ships a CRF trained on US person and corporation names; it runs offline from
the model files inside the package. It is asked only about candidate spans — tokens the name gazetteer knows
(and an unknown word right after one, a likely surname), or, in text that carries case, capitalised tokens
that do not start a sentence — because on any other word it answers "person" by habit (asked about every
brand of the lexicon it called "apple", "pyrex" and "oxo" people). The vote is the CRF's marginal probability mass
of person labels (GivenName, Surname ...) against corporation labels (CorporationName, ShortForm ...)
averaged over the span; below ``threshold`` it abstains.

Case does not matter to it: every feature of the CRF is computed from the lower-cased token (prefixes,
suffixes, n-grams, metaphone codes, Census name ratios), so "jordan" and "Jordan" get the same answer and the
span is passed as it is, not title-cased. Measured on its own it is a weak voter ("under armour" reads as a
person, "thaddeus lindqvist" as a company): confidences stay low (0.25 to 0.45) so that it settles ties rather
than overrules.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

from labeling.annotation.base import BRAND, PERSON, Utterance, Vote
from labeling.annotation.lf_gazetteers import may_be_surname
from labeling.annotation.lf_lexicons import (
    Roster,
    given_names,
    in_catalogue_phrase,
    ordinary_words,
    plural_word,
    titled,
)
from labeling.annotation.lf_text import Token, mixed_case, tokens_of
from nlumon import pii

log = logging.getLogger(__name__)

PERSON_LABELS = frozenset({
    "GivenName", "Surname", "MiddleName", "MiddleInitial", "FirstInitial", "LastInitial", "Nickname",
    "SuffixGenerational", "SuffixOther", "PrefixMarital", "PrefixOther",
})
MAX_SPAN = 4


class MissingDependencyError(ImportError):
    """``probablepeople`` is not installed."""


@functools.cache
def _tagger():
    try:
        import probablepeople
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "PersonOrOrg needs the probablepeople package: pip install 'probablepeople==0.5.6'") from error
    return probablepeople, probablepeople.TAGGERS["generic"]


@functools.lru_cache(maxsize=16384)
def person_or_corporation(words: tuple[str, ...]) -> tuple[float, float]:
    """Mean marginal probability of person labels and of corporation labels over the span's words.

    >>> person, corporation = person_or_corporation(("ingrid", "okonkwo"))
    >>> person > 0.9 > corporation
    True
    """
    module, tagger = _tagger()
    try:
        tagger.set(module.tokens2features(list(words)))
        labels = tagger.labels()
        person = corporation = 0.0
        for position in range(len(words)):
            for label in labels:
                mass = tagger.marginal(label, position)
                if label in PERSON_LABELS:
                    person += mass
                elif label.startswith("Corporation") or label == "ShortForm":
                    corporation += mass
    except Exception:  # the CRF is a C extension: odd input must cost a vote, never the annotator
        log.debug("probablepeople failed on %r", words, exc_info=True)
        return 0.0, 0.0
    return person / len(words), corporation / len(words)


class PersonOrOrg:
    """Votes person or brand on candidate name spans from the probablepeople CRF; abstains elsewhere."""

    name = "probablepeople"

    def __init__(self, roster: Iterable[str] = (), *, threshold: float = 0.6) -> None:
        _tagger()  # fail at construction, with the install hint, not inside a batch
        self.roster = roster if isinstance(roster, Roster) else Roster(roster)
        self.threshold = threshold

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tokens = tokens_of(utterance.tokens)
        votes: list[Vote | None] = [None] * len(tokens)
        for start, end in self.candidate_spans(tokens):
            person, corporation = person_or_corporation(tuple(token.word for token in tokens[start:end]))
            label, mass = (PERSON, person) if person >= corporation else (BRAND, corporation)
            if mass >= self.threshold:
                for index in range(start, end):
                    votes[index] = Vote(label, round(0.2 + 0.5 * (min(mass, 1.0) - 0.5), 3))
        return votes

    def candidate_spans(self, tokens: Sequence[Token]) -> list[tuple[int, int]]:
        """Runs of candidate tokens (at most four, not across punctuation or a possessive)."""
        sold = in_catalogue_phrase(tokens)
        flags = [not sold[index] and self._candidate(tokens, index) for index in range(len(tokens))]
        for index in range(1, len(tokens)):  # "tobias okonkwo": an unknown surname after a known name
            if flags[index - 1] and not flags[index] and not sold[index] and not tokens[index - 1].breaks \
                    and may_be_surname(tokens[index]):
                flags[index] = True
        spans: list[tuple[int, int]] = []
        index = 0
        while index < len(tokens):
            if not flags[index]:
                index += 1
                continue
            end = index + 1
            while end < len(tokens) and flags[end] and end - index < MAX_SPAN and not tokens[end - 1].breaks \
                    and not tokens[end - 1].possessive:
                end += 1
            if not titled(tokens, index, end):  # "my vincent playlist", "weather in georgia"
                spans.append((index, end))
            index = end
        return spans

    def _candidate(self, tokens: Sequence[Token], index: int) -> bool:
        token = tokens[index]
        word = token.word
        if not token.alphabetic or len(word) < 2 or word in pii.FUNCTION_WORDS:
            return False
        if word in given_names() or word in self.roster:
            return True
        # A lone surname is asked about only when case marks it: in lower-case text many are words ("love", "keys");
        # after a given name the surname joins the run anyway (candidate_spans).
        starts_sentence = index == 0 or tokens[index - 1].breaks
        return token.capitalised and not starts_sentence and word not in ordinary_words() and not plural_word(word) \
            and mixed_case(tokens)

