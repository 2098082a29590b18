"""ASR noise keeps tokens and tags aligned, and the BIO helpers read tags the conlleval way."""

from __future__ import annotations

import random
from random import Random

import pytest

from model_runtime.data.bio import bio_labels, bio_spans, is_valid_bio
from model_runtime.data.lexicon import FILLERS, HOMOPHONES
from model_runtime.data.noise import add_asr_noise, mishear

# Tokens "t0".."t8" have no vowel and no homophone, so mishear() leaves them unchanged and every
# output token can be traced back to its input position: drops and fillers are then visible.
TOKENS = tuple(f"t{i}" for i in range(9))
TAGS = ("O", "B-quantity", "B-brand", "I-brand", "I-brand", "O", "B-product", "I-product", "B-store")


def origins(tokens):
    return [int(token[1:]) for token in tokens if token not in FILLERS]


def test_noise_keeps_each_surviving_slot_as_one_span_of_its_type_and_fillers_outside_spans():
    for seed in range(300):
        check_alignment(*add_asr_noise(TOKENS, TAGS, rate=0.5, rng=random.Random(seed)))


def check_alignment(tokens, tags):
    assert len(tokens) == len(tags) > 0
    assert is_valid_bio(tags)
    kept = origins(tokens)
    assert kept == sorted(kept)  # order preserved, nothing invented
    position_of = {}
    index = 0
    for out_position, token in enumerate(tokens):
        if token in FILLERS:
            assert tags[out_position] == "O"
        else:
            position_of[kept[index]] = out_position
            index += 1
    expected = []
    for kind, start, end in bio_spans(TAGS):
        survivors = [position_of[i] for i in range(start, end) if i in position_of]
        if survivors:
            expected.append((kind, survivors[0], survivors[-1] + 1))
    assert bio_spans(tags) == expected


def test_noise_with_rate_zero_changes_nothing_and_rate_one_changes_something():
    assert add_asr_noise(TOKENS, TAGS, 0.0, random.Random(0)) == (TOKENS, TAGS)
    assert add_asr_noise(TOKENS, TAGS, 1.0, random.Random(0)) != (TOKENS, TAGS)


def test_noise_never_empties_an_utterance():
    for seed in range(200):
        tokens, _ = add_asr_noise(("hi",), ("O",), 1.0, random.Random(seed))
        assert tokens


def test_misheard_words_use_homophones_and_keep_their_tag():
    rng = random.Random(3)
    assert {mishear("two", rng) for _ in range(50)} == set(HOMOPHONES["two"])
    assert mishear("four", rng) == "for"
    seen_misheard_quantity = False
    for seed in range(200):
        tokens, tags = add_asr_noise(("add", "two", "hoodies"), ("O", "B-quantity", "B-product"), 0.5, Random(seed))
        for token, tag in zip(tokens, tags, strict=True):
            if token in {"to", "too"}:
                assert tag == "B-quantity"  # the gold label is about the position, not the spelling
                seen_misheard_quantity = True
    assert seen_misheard_quantity


def test_bad_noise_rate_raises():
    with pytest.raises(ValueError):
        add_asr_noise(TOKENS, TAGS, 1.2, random.Random(0))


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        # conlleval: a stray I- opens a chunk, and I- of another type closes the open chunk.
        (["I-brand", "I-brand", "O"], [("brand", 0, 2)]),
        (["B-brand", "I-person"], [("brand", 0, 1), ("person", 1, 2)]),
        (["B-brand", "B-brand"], [("brand", 0, 1), ("brand", 1, 2)]),
        (["O", "O"], []),
        (["B-size", "I-size", "I-size"], [("size", 0, 3)]),
    ],
)
def test_bio_spans_follow_conlleval_chunking(tags, spans):
    assert bio_spans(tags) == spans


def test_bio_labels_and_validity():
    assert bio_labels(["a"]) == ("O", "B-a", "I-a")
    assert is_valid_bio(["B-a", "I-a", "O", "B-b"])
    assert not is_valid_bio(["O", "I-a"])
    assert not is_valid_bio(["B-a", "I-b"])
