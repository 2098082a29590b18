"""Rules of the store floor: who a name is from what is said around it, and which tokens are store codes.

:class:`StoreContext` reads the words around a name-like token. Scheduling talk ("ask _ to cover", "is _ working",
"swap my shift with _", "_'s schedule", a shift word a few tokens away) makes it a person; shopping talk ("two _
sneakers", "by _", "add _ to the cart") makes a brand of it. A token that the gazetteers know as both a name and a
brand ("jordan", "wilson", "calvin klein") goes to the side with the stronger cue and gets no vote on a tie; the
ambiguity is computed from the lists, so a new brand or roster name needs no code change. An unknown word (in no
list at all: "okonkwo", "zebulon") is a person only after a cue, with a lower confidence.

:class:`StoreAbbreviations` votes ``O``, surely, on store codes (SKU, UPC, BOPIS, POS, ETA, ASN, OOS ...), on
codes of letters and digits ("a12", "7b") and on the number after a code word ("bay 4", "aisle twenty three b",
"sku 40291"): "eta" or "pos" is never a person and "bay 4" is never a time, whatever another function says.

>>> [v.label if v else None for v in StoreContext().apply(Utterance(tuple("ask jordan to cover my shift".split())))]
[None, 'person', None, None, None, None]
>>> [v.label if v else None for v in StoreContext().apply(Utterance(tuple("add two jordan sneakers".split())))]
[None, None, 'brand', None]
>>> [v.label if v else None for v in StoreAbbreviations().apply(Utterance(tuple("eta for bay 4".split())))]
['O', None, 'O', 'O']
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labeling.annotation.base import BRAND, OTHER, PERSON, PRODUCT, Utterance, Vote
from labeling.annotation.lf_gazetteers import may_be_surname
from labeling.annotation.lf_lexicons import (
    Roster,
    catalogue,
    given_names,
    looks_like_name,
    name_words,
    ordinary_words,
    plural_word,
    product_heads,
    surnames,
    titled,
)
from labeling.annotation.lf_text import Token, data_words, tokens_of
from labeling.annotation.lf_time import SMALL, TENS, clock_after_place, starts_time, time_vocabulary
from nlumon import pii

STRONG, WEAK = 0.85, 0.6
GREETINGS = frozenset("hey hi hello yo morning night bye".split())  # "hey _" opens an utterance to a person
QUANTITY_WORDS = frozenset("some more any few pair pairs couple those these".split())
#: ASR fillers: no entity, and no word of a cue frame ("wojciech um is running late").
FILLERS = frozenset("um umm uh uhh uhm er erm hmm hm mm ah eh mhm".split())
# Verb frames of staff talk: the slot is a person whatever the word in it ("who trained okonkwo on the pos",
# "put saanvi on register 4", "when is maarten back", "has adaeze finished", "wojciech is running late").
# Object slot: one of these verbs, the name, then a particle.
OBJECT_VERBS = frozenset("""
    get put move send book remind schedule train trained training let assign assigned pair paired bring help
    moved sent booked reminded scheduled relieve cover covered tell told ask asked page call have
""".split())
OBJECT_PARTICLES = frozenset("to on for about off at in into from with up over back know onto".split())
# Subject slot after an auxiliary ("does _ have", "did _ clock in", "is _ the manager"): these may follow.
SUBJECT_FOLLOWERS = frozenset("""
    have has had finished finish done clock clocked punch punched back the still going gonna get got getting know
    need needs want wants stay staying leave leaving left come coming came work working running help take bring
    call called cover covering close closing open opening start starting off on in out here around free able ever
    usually already really also
""".split())
# Subject slot opening an utterance ("_ called out sick", "_ is running late", "_ wants to swap with _").
SUBJECT_VERBS = frozenset("""
    is was isnt wasnt has had hasnt wants wanted needs needed called calls said says left just can cant could will
    wont should might clocked quit got came went took asked told texted swapped covered didnt doesnt does did
    finished is running
""".split())
SUBORDINATORS = frozenset("if when whether that until unless because while".split())
OPENERS = frozenset("and but then so because also oh ok okay well".split())


@dataclass(frozen=True)
class Candidate:
    """A run of tokens that may be a person or a brand."""

    start: int
    end: int
    brand: bool  # the lexicon has it as a brand
    name: bool  # a known name: a brand whose every word is a name, or a run that starts with a known name
    unknown: bool  # a name-like word no list knows, and no brand


class StoreContext:
    """Votes person or brand on name-like tokens from the words around them; abstains without a cue."""

    name = "store_context"

    def __init__(self, roster: Iterable[str] = (), *, window: int = 3) -> None:
        self.roster = roster if isinstance(roster, Roster) else Roster(roster)
        self.window = window

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tokens = tokens_of(utterance.tokens)
        votes: list[Vote | None] = [None] * len(tokens)
        for candidate in self.candidates(tokens):
            decided = self.decide(tokens, candidate)
            while decided is None and candidate.end - candidate.start > 1 and not candidate.brand:
                candidate = self._rest(tokens, candidate)  # "yo dmitri": no cue for the run, one for "dmitri"
                decided = self.decide(tokens, candidate)
            if decided is not None:
                for index in range(candidate.start, candidate.end):
                    votes[index] = Vote(*decided)
        return votes

    def _rest(self, tokens: Sequence[Token], candidate: Candidate) -> Candidate:
        start = candidate.start + 1
        known = self._known(tokens[start].word)
        return Candidate(start, candidate.end, False, known, not known)

    def candidates(self, tokens: Sequence[Token]) -> list[Candidate]:
        brands = {start: end for start, end, label in catalogue().find(tokens) if label == BRAND}
        found: list[Candidate] = []
        index = 0
        while index < len(tokens):
            end = max(brands.get(index, index), self._name_run(tokens, index))
            if end > index:
                words = [token.word for token in tokens[index:end]]
                in_brand = brands.get(index) == end  # "jordan smith" is a name run, not the brand "jordan"
                known = all(map(self._known, words)) if in_brand else self._known(words[0])
                found.append(Candidate(index, end, in_brand, known, not known and not in_brand))
                index = end
            else:
                index += 1
        return found

    def _known(self, word: str) -> bool:
        return word in given_names() or word in self.roster or (
            word in surnames() and word not in ordinary_words() and not plural_word(word))

    def _name_run(self, tokens: Sequence[Token], start: int) -> int:
        """End of a name at ``start``: a name-like word and up to two surname-like words after it."""
        if not looks_like_name(tokens[start], self.roster) or tokens[start].word in time_vocabulary() \
                or tokens[start].word in FILLERS:
            return start
        end = start + 1
        while end < len(tokens) and end - start < 3 and not tokens[end - 1].breaks and not tokens[end - 1].possessive:
            if not (tokens[end].word in self.roster or may_be_surname(tokens[end])) or starts_time(tokens, end):
                break
            end += 1
        return end

    def decide(self, tokens: Sequence[Token], candidate: Candidate) -> tuple[str, float] | None:
        person = self.person_cue(tokens, candidate.start, candidate.end)
        brand = self.brand_cue(tokens, candidate.start, candidate.end, candidate.brand)
        if candidate.brand and not candidate.name:  # a brand only ("nike", "new balance")
            return (BRAND, brand) if brand else None
        if candidate.brand:  # a name and a brand ("jordan"): the stronger side wins, a tie gets no vote
            if person == brand:
                return None
            label, winner, loser = (PERSON, person, brand) if person > brand else (BRAND, brand, person)
            return label, round(winner - loser / 2, 3)
        if brand >= STRONG and person < STRONG:  # "two smith sneakers": a name that is sold is a brand
            return (BRAND, WEAK) if candidate.name else None
        first = tokens[candidate.start].word
        if candidate.unknown and person < STRONG and (first in data_words("english_words.txt") or plural_word(first)):
            return None  # "my shift ends at 10": an English word needs more than a shift word nearby
        if person and person < STRONG and titled(tokens, candidate.start, candidate.end):
            return None  # "my vincent playlist", "weather in georgia": a thing or a place, short of a strong cue
        if person:
            return PERSON, round(person if candidate.name else person - 0.2, 3)
        return None

    # -- cues ---------------------------------------------------------------------------------------------
    def person_cue(self, tokens: Sequence[Token], start: int, end: int) -> float:
        words = [token.word for token in tokens]
        before, before2 = _word(tokens, start - 1, left=True), _word(tokens, start - 2, left=True)
        after, after2 = _word(tokens, end, left=False), _word(tokens, end + 1, left=False)
        if before in name_words() and before2 in given_names() and tokens[start - 1].word not in self.roster:
            return 0.0  # "add patti page album": "page" ends a name here, it is no verb before "album"
        if before in pii.ASK_CUES or before in pii.TITLES or (before in GREETINGS and start == 1) or before in (
                "seen", "named", "cc"):
            return STRONG
        if before == "with" and any(word in pii.WITH_CONTEXT for word in words[max(0, start - 7):start - 1]):
            return STRONG
        if before in ("for", "of") and _before_codes(tokens, start - 2) in pii.FOR_CONTEXT:
            return STRONG  # "cover for _", "order 553421 for _"
        if tokens[end - 1].possessive and after in pii.POSSESSED:
            return STRONG
        if before in pii.AUXILIARIES and (after in pii.AFTER_CUES or (after, after2) in pii.AFTER_CUE_PAIRS or (
                after in pii.WHEREABOUTS and (after2 in pii.TIME_WORDS or after2 in time_vocabulary() or not after2))):
            return STRONG
        if before in ("", "and", "but", "then", "so", "because") and (after, after2) in pii.SUBJECT_PAIRS:
            return STRONG
        if after and after in pii.SEND_CUES.get(before, ()):
            return STRONG
        if before == "is" and before2 == "where" and after not in product_heads():
            return WEAK
        scheduling = self._near(tokens, start, end, data_words("scheduling_cues.txt"))
        if self.in_staff_frame(tokens, start, end):
            # An English word ("ren", "bjorn" are in the tokenizer's vocabulary) needs shift talk around it too,
            # besides a frame verb that may be a name itself ("patti page album to": "page" is no cue for "album").
            cues = data_words("scheduling_cues.txt") - (name_words() if before in name_words() else frozenset())
            if tokens[start].word not in data_words("english_words.txt") or self._near(tokens, start, end, cues):
                return STRONG
            return WEAK
        return WEAK if scheduling else 0.0

    @staticmethod
    def in_staff_frame(tokens: Sequence[Token], start: int, end: int) -> bool:
        """Is ``start:end`` the object or subject slot of a staff verb frame (fillers skipped)?

        >>> frame = lambda text, at: StoreContext.in_staff_frame(tokens_of(tuple(text.split())), at, at + 1)
        >>> frame("put okonkwo on register 4", 1), frame("when is okonkwo back", 2), frame("okonkwo um is late", 0)
        (True, True, True)
        >>> frame("add two okonkwo sneakers", 2), frame("is okonkwo", 1), frame("the okonkwo is", 1)
        (False, False, False)
        """
        left, right = _skip(tokens, start - 1, -1), _skip(tokens, end, 1)
        before = tokens[left].word if left >= 0 and not tokens[left].breaks else ""
        after = tokens[right].word if right < len(tokens) and not tokens[end - 1].breaks else ""
        if not after:
            return False
        if before in OBJECT_VERBS and after in OBJECT_PARTICLES:
            return True
        if (before in pii.AUXILIARIES and after in SUBJECT_FOLLOWERS) or (
                before in SUBORDINATORS and after in SUBJECT_VERBS):  # "check if _ is coming in"
            return True
        opening = left < 0 or before in OPENERS or (before in GREETINGS and _skip(tokens, left - 1, -1) < 0)
        return opening and after in SUBJECT_VERBS

    def brand_cue(self, tokens: Sequence[Token], start: int, end: int, is_brand: bool) -> float:
        before = _word(tokens, start - 1, left=True)
        if end < len(tokens) and not tokens[end - 1].breaks and not tokens[end - 1].possessive:
            hit = catalogue().match_at(tokens, end)
            if (hit is not None and hit[1] == PRODUCT) or tokens[end].word in product_heads():
                return STRONG  # "jordan sneakers", "wilson tennis balls"
        if is_brand and (before in ("by", "buy") or before in QUANTITY_WORDS or before.isdigit() or before in SMALL):
            return STRONG  # "made by hunter", "two jordans", "any carter"
        cues = data_words("shopping_cues.txt") | product_heads()
        return WEAK if self._near(tokens, start, end, cues) else 0.0

    def _near(self, tokens: Sequence[Token], start: int, end: int, cues: frozenset[str]) -> bool:
        """A cue word within ``window`` tokens of the span, not across phrase-ending punctuation."""
        for step, index in ((-1, start - 1), (1, end)):
            seen = 0
            while 0 <= index < len(tokens) and seen < self.window:
                if tokens[index if step < 0 else index - 1].breaks or not tokens[index].word:
                    break
                if tokens[index].word in cues:
                    return True
                seen += tokens[index].word not in FILLERS  # "running uhm late": a filler takes no place
                index += step
        return False


def _skip(tokens: Sequence[Token], index: int, step: int) -> int:
    """The first index from ``index`` on (going ``step``) that is no ASR filler."""
    while 0 <= index < len(tokens) and tokens[index].word in FILLERS and not tokens[index].breaks:
        index += step
    return index


def _before_codes(tokens: Sequence[Token], index: int) -> str:
    """The word at ``index``, or before the numbers and codes that end there ("order" of "order 553421")."""
    while index > 0 and (tokens[index].word.isdigit() or is_code(tokens[index])) and not tokens[index - 1].breaks:
        index -= 1
    return _word(tokens, index, left=True)


def _word(tokens: Sequence[Token], index: int, *, left: bool) -> str:
    """The word at ``index`` if no punctuation separates it from the span ("" otherwise or outside)."""
    if not 0 <= index < len(tokens):
        return ""
    if (left and tokens[index].breaks) or (not left and index > 0 and tokens[index - 1].breaks):
        return ""
    return tokens[index].word


# -- store codes ----------------------------------------------------------------------------------------
_TIME_SHAPED = re.compile(r"^\d{1,4}(?::\d{2})?(?:am|pm|a|p)?$|^\d{1,2}(?:st|nd|rd|th)$|^\d{1,2}/\d{1,2}(?:/\d{2,4})?$"
                          r"|^\d{4}-\d{1,2}-\d{1,2}$|^\d{1,2}h\d{2}$")
_SPOKEN_DIGITS = frozenset(SMALL) | frozenset(TENS) | frozenset({"oh", "o", "double", "triple", "hundred", "thousand"})
_FILLERS = frozenset({"number", "no", "num", "#", "is", "at", "in"})


@functools.cache
def _abbreviations() -> frozenset[str]:
    return data_words("store_abbreviations.txt")


def is_code(token: Token) -> bool:
    """A store code: letters with digits ("a12", "7b", "ab-1234"), five or more digits, or "#" and digits.

    >>> from labeling.annotation.lf_text import read_token
    >>> [is_code(read_token(t)) for t in ("a12", "7b", "40291", "#12", "5pm", "7:30", "21st", "12/24", "2025", "5")]
    [True, True, True, True, False, False, False, False, False, False]
    """
    word = token.word.replace(".", "")
    if not word or _TIME_SHAPED.match(word):
        return False
    digits = sum(char.isdigit() for char in word)
    letters = sum(char.isalpha() for char in word)
    return bool(digits and letters) or digits >= 5 or (word.startswith("#") and digits > 0)


class StoreAbbreviations:
    """Votes ``O`` with high confidence on store abbreviations, codes and the numbers after code words."""

    name = "store_abbrev"

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tokens = tokens_of(utterance.tokens)
        outside = [False] * len(tokens)
        for index, token in enumerate(tokens):
            key = token.word.replace(".", "").replace("'", "")
            if key in _abbreviations() or is_code(token) or key in FILLERS:  # an ASR filler is no entity either
                outside[index] = True
            if key in data_words("code_cues.txt"):
                run = self._code_after(tokens, index)
                words = [t.word for t in tokens[:run]]
                if run > index + 1 and clock_after_place(words, index + 1) == run and (
                        run == len(tokens) or tokens[run - 1].breaks):
                    run = index + 1  # "on the floor six thirty": a time after the place, not its number
                if run > index + 1:
                    for position in range(index, run):
                        outside[position] = True
        return [Vote(OTHER, self.confidence) if flag else None for flag in outside]

    @staticmethod
    def _code_after(tokens: Sequence[Token], cue: int) -> int:
        """End of the number or code after a code word ("bay 4", "aisle number twenty three b"); ``cue + 1`` if none."""
        index = cue + 1
        if index < len(tokens) and not tokens[cue].breaks and tokens[index].word in _FILLERS:
            index += 1
        start = index
        while index < len(tokens) and index - start < 8 and not tokens[index - 1].breaks:
            word = tokens[index].word
            if word in _SPOKEN_DIGITS and index > start and any(char.isdigit() for char in tokens[index - 1].word):
                break  # "register 4 six thirty": spoken words after digits start something else (a time)
            if word.isdigit() or word.lstrip("#").isdigit() or is_code(tokens[index]) or word in _SPOKEN_DIGITS:
                index += 1
            elif index > start and len(word) == 1 and word.isalpha():  # "aisle 7 b"
                index += 1
                break
            else:
                break
        if index == start or all(tokens[i].word in ("o", "oh") for i in range(start, index)):
            return cue + 1
        return index

