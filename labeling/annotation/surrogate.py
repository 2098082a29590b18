"""Surrogate names: training examples keep the entity and lose the person.

An auto-labelled utterance is raw text. Before it is written anywhere, each person span is replaced by a
random name of the same kind (a given name by a given name, a surname by a surname, token for token, so the
BIO tags stay aligned), and the rest of the text is scanned with :func:`nlumon.pii.find_pii`. An utterance in
which the scan still finds personal data (a name the annotator missed, a phone number, an e-mail, a card, an
address) is not written at all: a training example with a placeholder would teach the model that
``<PHONE>`` is a word, and one with a real name would store a person. :class:`SurrogateResult` says why.

    >>> import random
    >>> result = surrogate(("ask", "ingrid", "okonkwo", "to", "cover"), ("O", "B-person", "I-person", "O", "O"),
    ...                    random.Random(3))
    >>> result.ok, result.tags
    (True, ('O', 'B-person', 'I-person', 'O', 'O'))
    >>> result.tokens[1] != "ingrid" and result.tokens[2] != "okonkwo"
    True
    >>> surrogate(("call", "me", "at", "415-555-0134"), ("O", "O", "O", "O"), random.Random(3)).reason
    'phone'

Surrogates come from the US Census lists the PII scrubber uses (``nlumon.pii.given_names``/``surnames``),
the most common ones only (so that a surrogate looks like a name, not a rare word), never the original name
and never a brand word. Draws are random per utterance: the same person gets different surrogates in
different utterances, so surrogates cannot be linked back to one person across the training set.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from model_runtime.data.bio import bio_spans
from nlumon.pii import PLACEHOLDER, brand_names, find_pii, given_names, surnames

MARKER = "<PERSON>"
_EDGE = re.compile(r"^([^\w]*)(.*?)((?:['’]s)?[^\w]*)$", re.UNICODE)  # leading punct, word, possessive/trailing


@dataclass(frozen=True)
class SurrogateResult:
    """``ok``: the tokens/tags are safe to store. Otherwise ``reason`` names the first kind of data found."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    reason: str = ""
    replaced: int = 0

    @property
    def ok(self) -> bool:
        return not self.reason


@functools.cache
def _pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(given names, surnames) to draw from: Census names of letters only, not brand words, sorted."""
    brands = {word for brand in brand_names() for word in brand.split()}

    def usable(names: frozenset[str]) -> tuple[str, ...]:
        return tuple(sorted(n for n in names if n.isalpha() and 3 <= len(n) <= 12 and n not in brands))

    return usable(given_names()), usable(surnames())


def _kind(word: str, position: int, length: int) -> str:
    """Which pool replaces the ``position``-th word of a ``length``-word name."""
    if length == 1:
        return "surname" if word in surnames() and word not in given_names() else "given"
    return "given" if position == 0 else "surname"


def _draw(pool: Sequence[str], avoid: str, rng: random.Random) -> str:
    while True:
        choice = pool[rng.randrange(len(pool))]
        if choice != avoid:
            return choice


def _replace_word(token: str, kind: str, rng: random.Random) -> str:
    """``token`` with its word swapped for a surrogate, keeping attached punctuation and a possessive."""
    lead, word, tail = _EDGE.match(token).groups()
    given, family = _pools()
    new = _draw(given if kind == "given" else family, word.casefold(), rng)
    if word[:1].isupper():
        new = new.capitalize()
    return f"{lead}{new}{tail}"


def surrogate(tokens: Sequence[str], tags: Sequence[str], rng: random.Random) -> SurrogateResult:
    """Person spans (``B-person``/``I-person`` tags) replaced by surrogates; see the module docstring."""
    tokens, tags = tuple(tokens), tuple(tags)
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    spans = [(start, end) for kind, start, end in bio_spans(tags) if kind == "person"]
    # 1. scan the text with every person span masked: what the scan still finds is data the annotator missed
    masked = list(tokens)
    for start, end in spans:
        masked[start:end] = [MARKER] * (end - start)
    text = " ".join(masked)
    findings = find_pii(text)
    if findings:
        return SurrogateResult(tokens, tags, reason=findings[0].kind)
    if any(match.group() != MARKER for match in PLACEHOLDER.finditer(text)):
        return SurrogateResult(tokens, tags, reason="placeholder")  # the input already held a placeholder
    # 2. swap each masked name for a surrogate of the same kind
    out = list(tokens)
    for start, end in spans:
        for offset, index in enumerate(range(start, end)):
            out[index] = _replace_word(tokens[index], _kind(_word(tokens[index]), offset, end - start), rng)
    return SurrogateResult(tuple(out), tags, replaced=len(spans))


def _word(token: str) -> str:
    return _EDGE.match(token).group(2).casefold()

