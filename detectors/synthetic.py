"""Synthetic feature rows shaped like the stream worker's output, for tests and benchmarks.

The generator knows the truth: rows from an unseen intent (``new_intent_share``) are predicted as some
known intent, fairly confidently and always wrongly, have higher ``ood_score`` and lie around one new
embedding direction; ``length_shift`` adds tokens to every row (a covariate shift the model shrugs off).

    >>> rows = make_rows(1000, seed=0, new_intent_share=0.3)
    >>> sorted(rows.columns)[:4], len(rows), round(float(rows["is_new_intent"].mean()), 1)
    (['asr_confidence', 'assistant', 'confidence', 'correct'], 1000, 0.3)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SKETCH_DIMS = 32
SLOT_TYPES = ("product", "brand", "quantity", "store", "aisle", "date", "price", "size", "color", "order_id")


def _topics(n_intents: int, world_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed intent centroids, one unseen-intent centroid and intent shares (the 'world', seed-independent)."""
    rng = np.random.default_rng(world_seed)
    centroids = rng.normal(size=(n_intents + 1, SKETCH_DIMS))
    shares = 1.0 / np.arange(1, n_intents + 1) ** 0.8
    return centroids[:n_intents], centroids[n_intents], shares / shares.sum()


def make_rows(
    n: int,
    seed: int,
    new_intent_share: float = 0.0,
    length_shift: float = 0.0,
    n_intents: int = 20,
    world_seed: int = 12345,
) -> pd.DataFrame:
    """``n`` feature rows with truth columns ``correct`` and ``is_new_intent``."""
    rng = np.random.default_rng(seed)
    centroids, new_topic, shares = _topics(n_intents, world_seed)
    is_new = rng.uniform(size=n) < new_intent_share
    true_intent = rng.choice(n_intents, size=n, p=shares)
    predicted = np.where(is_new, rng.choice(n_intents, size=n), true_intent)
    confidence = np.where(is_new, rng.beta(6, 2.5, n), rng.beta(9, 1.2, n))
    # A calibrated model on known intents; unseen intents are always wrong.
    correct = ~is_new & (rng.uniform(size=n) < confidence)
    predicted = np.where(correct | is_new, predicted, (true_intent + 1 + rng.integers(0, n_intents - 1, n)) % n_intents)
    second = (1.0 - confidence) * rng.uniform(0.3, 1.0, n)
    centre = np.where(is_new[:, None], new_topic, centroids[true_intent])
    sketch = centre + 0.6 * rng.normal(size=(n, SKETCH_DIMS))
    sketch /= np.linalg.norm(sketch, axis=1, keepdims=True)
    token_count = 1 + rng.poisson(6 + length_shift, n)
    return pd.DataFrame(
        {
            "assistant": rng.choice(["shopper", "associate"], size=n, p=[0.7, 0.3]),
            "intent": [f"intent_{k:02d}" for k in predicted],
            "confidence": confidence,
            "margin": confidence - second,
            "entropy": -(confidence * np.log(confidence) + second * np.log(np.maximum(second, 1e-9))),
            "energy": -np.log(np.exp(6 * confidence) + 5.0) + 0.2 * rng.normal(size=n),
            "ood_score": np.where(is_new, rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n)),
            "token_count": token_count,
            "unk_rate": rng.binomial(token_count, 0.02) / token_count,
            "asr_confidence": np.where(rng.uniform(size=n) < 0.4, np.nan, rng.beta(20, 2, n)),
            "slot_types": [_slots(rng, k) for k in predicted],
            "embedding_sketch": list(sketch),
            "correct": correct,
            "is_new_intent": is_new,
        }
    )


def _slots(rng: np.random.Generator, intent: int) -> list[str]:
    """Each intent prefers two slot types; zero to three slots per row."""
    preferred = [SLOT_TYPES[intent % len(SLOT_TYPES)], SLOT_TYPES[(3 * intent + 1) % len(SLOT_TYPES)]]
    count = rng.integers(0, 4)
    return [
        preferred[i % 2] if rng.uniform() < 0.8 else SLOT_TYPES[rng.integers(len(SLOT_TYPES))] for i in range(count)
    ]
