"""BIO-consistent slot decoding, intent uncertainty features and temperature scaling (no torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from model_runtime.calibration import fit_temperature, negative_log_likelihood
from model_runtime.data.bio import is_valid_bio
from model_runtime.decoding import decode_bio, intent_features, log_softmax

TAGS = ("O", "B-brand", "I-brand", "B-size", "I-size")


def test_decoding_never_yields_an_inside_tag_without_its_begin():
    rng = np.random.default_rng(7)
    for _ in range(300):
        length = int(rng.integers(1, 9))
        # strongly favour I- tags so a greedy argmax would break BIO most of the time
        logits = rng.normal(size=(length, len(TAGS))) + np.array([0, 0, 2.5, 0, 2.5])
        assert is_valid_bio(decode_bio(log_softmax(logits), TAGS))


def test_decoding_finds_the_best_valid_sequence():
    rng = np.random.default_rng(3)
    for _ in range(40):
        log_p = log_softmax(rng.normal(size=(4, len(TAGS))))
        valid = [seq for seq in itertools.product(range(len(TAGS)), repeat=4) if is_valid_bio([TAGS[i] for i in seq])]
        best = max(valid, key=lambda seq: sum(log_p[pos, tag] for pos, tag in enumerate(seq)))
        assert decode_bio(log_p, TAGS) == [TAGS[i] for i in best]


def test_decoding_keeps_a_valid_greedy_sequence():
    probs = np.full((3, len(TAGS)), 0.05)
    for position, tag in enumerate([1, 2, 0]):  # B-brand I-brand O is valid: nothing to fix
        probs[position, tag] = 0.8
    assert decode_bio(np.log(probs), TAGS) == ["B-brand", "I-brand", "O"]


def test_decoding_an_empty_utterance():
    assert decode_bio(np.zeros((0, len(TAGS))), TAGS) == []


def test_intent_features_follow_their_definitions():
    logits = np.array([[3.0, 1.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    temperature = 1.7
    features = intent_features(logits, temperature)
    probs = np.exp(logits / temperature - logsumexp(logits / temperature, axis=1, keepdims=True))
    ranked = np.sort(probs, axis=1)[:, ::-1]
    assert np.allclose(features["confidence"], ranked[:, 0])
    assert np.allclose(features["margin"], ranked[:, 0] - ranked[:, 1])
    assert np.allclose(features["entropy"], -(probs * np.log(probs)).sum(axis=1))
    assert np.allclose(features["energy"], -temperature * logsumexp(logits / temperature, axis=1))
    assert features["entropy"][1] == pytest.approx(np.log(4))  # uniform logits: maximal entropy, zero margin
    assert features["margin"][1] == pytest.approx(0.0)


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 3000)
    logits = rng.normal(size=(3000, 6))
    logits[np.arange(3000), labels] += 1.5
    overconfident = logits * 4.0  # the same ranking, four times too sharp
    temperature = fit_temperature(overconfident, labels)
    # NLL(x*4, T) = NLL(x, T/4): the fitted temperature must scale with the sharpening
    assert temperature / fit_temperature(logits, labels) == pytest.approx(4.0, rel=0.01)
    assert negative_log_likelihood(overconfident, labels, temperature) < negative_log_likelihood(
        overconfident, labels, 1.0
    )


def test_temperature_ignores_rows_without_a_known_label():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, np.array([-1, -1])) == 1.0
