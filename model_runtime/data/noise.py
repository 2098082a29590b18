"""ASR-style noise for tagged utterances: dropped words, misheard words, fillers.

Tags stay aligned with tokens and BIO stays valid: a dropped token takes its tag with it (an
``I-`` that loses its ``B-`` becomes the new ``B-``), a misheard token keeps its tag (the gold
label is about the position, not the spelling), and a filler gets ``O`` and is only inserted
where it does not split a slot.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from model_runtime.data.lexicon import FILLERS, HOMOPHONES

_VOWELS = "aeiou"


def mishear(word: str, rng: random.Random) -> str:
    """A plausible mis-recognition of ``word``: a homophone when one is known, else a small edit.

    >>> mishear("two", random.Random(0)) in {"to", "too"}
    True
    """
    if word in HOMOPHONES:
        return rng.choice(HOMOPHONES[word])
    if len(word) > 3 and word.endswith("s"):
        return word[:-1]
    vowel_positions = [i for i, char in enumerate(word) if char in _VOWELS]
    if len(word) > 2 and vowel_positions:
        # A swapped vowel is the commonest acoustic confusion and keeps the word length.
        position = rng.choice(vowel_positions)
        replacement = rng.choice([v for v in _VOWELS if v != word[position]])
        return word[:position] + replacement + word[position + 1:]
    return word + "s" if len(word) > 2 else word


def add_asr_noise(
    tokens: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Corrupt about ``rate`` of the tokens (drop 35 %, mishear 40 %, filler before 25 %).

    >>> add_asr_noise(("add", "two", "jordan"), ("O", "B-quantity", "B-brand"), 0.0, random.Random(1))
    (('add', 'two', 'jordan'), ('O', 'B-quantity', 'B-brand'))
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be within 0..1, got {rate}")
    out_tokens: list[str] = []
    out_tags: list[str] = []
    promote_next = False  # the previous token was a dropped B-: its I- successor must open the span
    for index, (token, tag) in enumerate(zip(tokens, tags, strict=True)):
        if promote_next and tag.startswith("I-"):
            tag = "B-" + tag[2:]
        promote_next = False
        if rng.random() >= rate:
            out_tokens.append(token)
            out_tags.append(tag)
            continue
        action = rng.random()
        remaining = len(tokens) - index - 1
        if action < 0.35 and (out_tokens or remaining):
            promote_next = tag.startswith("B-") or (tag.startswith("I-") and not _continues(out_tags, tag))
            continue
        if action < 0.75:
            out_tokens.append(mishear(token, rng))
            out_tags.append(tag)
            continue
        if not tag.startswith("I-"):
            out_tokens.append(rng.choice(FILLERS))
            out_tags.append("O")
        out_tokens.append(token)
        out_tags.append(tag)
    return tuple(out_tokens), tuple(out_tags)


def _continues(previous_tags: Sequence[str], tag: str) -> bool:
    return bool(previous_tags) and previous_tags[-1][2:] == tag[2:] and previous_tags[-1] != "O"
