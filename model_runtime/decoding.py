"""From logits to labels: BIO-consistent slot decoding and the intent uncertainty features. Numpy only.

Slot decoding is a Viterbi search over per-word log-probabilities in which a transition into
``I-x`` is allowed only from ``B-x`` or ``I-x``; so a decoded sequence never holds an ``I-x``
after ``O`` or after another type, and never starts with ``I-x``.

    >>> tags = ("O", "B-brand", "I-brand", "B-size")
    >>> probs = np.array([[0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.05, 0.8], [0.1, 0.05, 0.8, 0.05]])
    >>> decode_bio(np.log(probs), tags)  # greedy would give B-brand B-size I-brand
    ['B-brand', 'B-size', 'O']
    >>> decode_bio(np.log(probs[[2]]), tags)  # no I- at the start
    ['O']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_FORBIDDEN = -1e9


def transition_mask(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(start [T], transition [T_prev, T_next]) additive scores: 0 allowed, -1e9 forbidden."""
    size = len(tags)
    start = np.zeros(size)
    transition = np.zeros((size, size))
    for nxt, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[nxt] = _FORBIDDEN
        slot_type = tag[2:]
        for prev, prev_tag in enumerate(tags):
            if prev_tag not in (f"B-{slot_type}", f"I-{slot_type}"):
                transition[prev, nxt] = _FORBIDDEN
    return start, transition


def decode_bio(
    log_probs: np.ndarray, tags: Sequence[str], masks: tuple[np.ndarray, np.ndarray] | None = None
) -> list[str]:
    """Best BIO-consistent tag sequence for one utterance's [words, tags] log-probabilities."""
    if len(log_probs) == 0:
        return []
    start, transition = masks if masks is not None else transition_mask(tags)
    score = log_probs[0] + start
    back = np.zeros((len(log_probs), len(tags)), dtype=np.int64)
    for position in range(1, len(log_probs)):
        candidates = score[:, None] + transition  # [prev, next]
        back[position] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[position]
    best = [int(score.argmax())]
    for position in range(len(log_probs) - 1, 0, -1):
        best.append(int(back[position, best[-1]]))
    return [tags[i] for i in reversed(best)]


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(log_softmax(logits, axis))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def intent_features(logits: np.ndarray, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Calibrated probabilities and the uncertainty features the monitors log, per row.

    energy = -T * logsumexp(logits / T) (Liu et al. 2020: lower = more in-distribution).

    >>> f = intent_features(np.array([[2.0, 0.0, 0.0]]))
    >>> round(float(f["confidence"][0]), 4), round(float(f["energy"][0]), 4)
    (0.787, -2.2395)
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    log_p = log_softmax(scaled)
    probs = np.exp(log_p)
    top = np.sort(probs, axis=-1)[:, ::-1]
    second = top[:, 1] if probs.shape[1] > 1 else np.zeros(len(probs))
    peak = scaled.max(axis=-1)
    logsumexp = peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=-1))
    return {
        "probs": probs,
        "confidence": top[:, 0],
        "margin": top[:, 0] - second,
        "entropy": -(probs * log_p).sum(axis=-1),
        "energy": -temperature * logsumexp,
    }
