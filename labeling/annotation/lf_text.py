"""What every labeling function needs to read a token: one normal form, word lists, and a phrase matcher.

Store-associate logs are lower-case ASR text, but typed text arrives too: ``"Tomorrow?"``, ``"jordan's"``,
``"(ingrid)"``, ``"7:30pm."``. :func:`tokens_of` reads each token once into a :class:`Token` (its word without
surrounding punctuation or a possessive, and whether punctuation ends a phrase there) so that every rule
matches words, never raw strings, and no rule has to think about punctuation again. A token with no letter or
digit (``"?"``, ``""``, ``"—"``) has an empty word: every function abstains on it and no span crosses it.

Word lists live next to this module (``data/*.txt``: one entry a line, ``#`` comments) and are read once per
process; :class:`PhraseMatcher` finds multi-word entries ("new balance", "end of shift") longest first.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "ʼ": "'"})
_EDGE = re.compile(r"^[^\w#$]+|[^\w]+$", re.UNICODE)  # punctuation around a word ("#" and "$" lead codes, prices)
_TRAILING = re.compile(r"[^\w]+$", re.UNICODE)
_CLAUSE_END = frozenset(",;:!?…")
_ABBREVIATION = re.compile(r"^(?:[a-z]\.)+$|^(?:mr|mrs|ms|dr|st|jr|sr|no|vs)\.$")  # "a.m.", "dr.": no sentence end


@dataclass(frozen=True)
class Token:
    """One token, normalised: ``word`` is the lookup key, ``plain`` keeps a possessive's letters.

    ``breaks`` is set when punctuation after the token ends a phrase ("tomorrow," or "ingrid?"): a span
    never runs from this token into the next.
    """

    raw: str
    word: str
    plain: str
    possessive: bool
    breaks: bool
    capitalised: bool

    @property
    def alphabetic(self) -> bool:
        """Letters only, with inner apostrophes or hyphens ("o'neil", "mary-kate")."""
        return bool(self.word) and self.word.replace("'", "").replace("-", "").isalpha()


def read_token(raw: str) -> Token:
    """Normalise one token (NFKC, case-folded, edge punctuation off, possessive split).

    >>> read_token("Jordan's")
    Token(raw="Jordan's", word='jordan', plain='jordans', possessive=True, breaks=False, capitalised=True)
    >>> read_token("tomorrow?").word, read_token("tomorrow?").breaks, read_token("?").word
    ('tomorrow', True, '')
    """
    text = unicodedata.normalize("NFKC", str(raw)).translate(_APOSTROPHES)
    stripped = "and" if text.strip() in ("&", "+", "n") else _EDGE.sub("", text)  # "ben & jerry's", "mac n cheese"
    lowered = stripped.casefold()
    possessive = lowered.endswith("'s") and len(lowered) > 2
    word = lowered[:-2] if possessive else lowered
    if not any(char.isalnum() for char in word):
        word, possessive = "", False
    trailing = _TRAILING.search(text)
    tail = trailing.group() if trailing else ""
    breaks = not word or any(char in _CLAUSE_END for char in tail) or (
        tail.startswith(".") and not _ABBREVIATION.match(lowered + "."))
    return Token(
        raw=str(raw), word=word, plain=word.replace("'", "") + ("s" if possessive else ""),
        possessive=possessive, breaks=breaks, capitalised=stripped[:1].isupper(),
    )


def tokens_of(tokens: Sequence[str]) -> tuple[Token, ...]:
    """Every token of an utterance read once (cached: the functions of one annotator read the same tokens)."""
    try:
        return _read_all(tuple(tokens))
    except TypeError:  # an unhashable token: read without the cache
        return tuple(read_token(token) for token in tokens)


@functools.lru_cache(maxsize=8192)
def _read_all(tokens: tuple[str, ...]) -> tuple[Token, ...]:
    return tuple(read_token(token) for token in tokens)


def mixed_case(tokens: Sequence[Token]) -> bool:
    """Does the text carry case (some letter upper, some lower)? ASR logs are all lower case."""
    return any(t.capitalised for t in tokens) and any(char.islower() for t in tokens for char in t.raw)


def phrase_key(text: str) -> tuple[str, ...]:
    """A lexicon entry as the words :func:`read_token` gives ("Ben & Jerry's" -> ben, and, jerrys).

    >>> phrase_key("Ben & Jerry's"), phrase_key("dr. martens"), phrase_key("fisher-price")
    (('ben', 'and', 'jerrys'), ('dr', 'martens'), ('fisher', 'price'))
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold().replace("&", " and ")
    return tuple(word.replace("'", "") for word in re.split(r"[\s.\-/]+", text) if word.replace("'", ""))


@functools.cache
def data_words(name: str) -> frozenset[str]:
    """One word list of ``labeling/annotation/data`` (comments and blank lines skipped)."""
    text = resources.files("labeling.annotation").joinpath("data", name).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


class PhraseMatcher:
    """Longest-first matching of multi-word phrases over normalised tokens; each phrase carries a value.

    A token matches a phrase word by its ``word`` ("jordan" of "jordan's") or its ``plain`` form ("levis" of
    "levi's"); a match never runs past a token that ends a phrase.

    >>> m = PhraseMatcher({("new", "balance"): "brand", ("new",): "other"})
    >>> m.find(tokens_of(("two", "new", "balance", "shoes")))
    [(1, 3, 'brand')]
    """

    def __init__(self, phrases: dict[tuple[str, ...], object]) -> None:
        self._phrases = {key: value for key, value in phrases.items() if key}
        self._longest = max((len(key) for key in self._phrases), default=0)
        self._firsts = frozenset(key[0] for key in self._phrases)

    def __contains__(self, key: tuple[str, ...]) -> bool:
        return key in self._phrases

    def _forms(self, token: Token) -> tuple[str, ...]:
        return (token.word,) if token.plain == token.word else (token.word, token.plain)

    def match_at(self, tokens: Sequence[Token], start: int) -> tuple[int, object] | None:
        """The longest phrase starting at ``start``: (end exclusive, value), or None."""
        if not tokens[start].word or not any(form in self._firsts for form in self._forms(tokens[start])):
            return None
        limit = start
        while limit < len(tokens) and limit - start < self._longest and tokens[limit].word:
            limit += 1
            if tokens[limit - 1].breaks:
                break
        for end in range(limit, start, -1):
            for key in _keys(tokens[start:end], self._forms):
                if key in self._phrases:
                    return end, self._phrases[key]
        return None

    def find(self, tokens: Sequence[Token]) -> list[tuple[int, int, object]]:
        """Non-overlapping matches, left to right, longest at each start."""
        found: list[tuple[int, int, object]] = []
        index = 0
        while index < len(tokens):
            hit = self.match_at(tokens, index)
            if hit is None:
                index += 1
                continue
            found.append((index, hit[0], hit[1]))
            index = hit[0]
        return found


def _keys(tokens: Sequence[Token], forms) -> Iterable[tuple[str, ...]]:
    """The word tuples a run of tokens may stand for (``word``/``plain`` per token; at most a few)."""
    keys: list[tuple[str, ...]] = [()]
    for token in tokens:
        keys = [(*key, form) for key in keys for form in forms(token)][:16]
    return keys
