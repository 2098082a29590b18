"""Length-sorted batches with dynamic padding, and Examples → training tensors (torch).

Sorting by length inside large shuffled chunks keeps padding small (most CPU time of a short
utterance batch is otherwise spent on [PAD]) while the batch order stays random.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from model_runtime.config import ModelConfig
from model_runtime.data.example import Example
from model_runtime.encoding import EncodedBatch, WordpieceEncoder

IGNORE = -100


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, seed: int, chunk_batches: int = 50
) -> list[list[int]]:
    """Shuffled batches of indices; within each chunk of ``chunk_batches`` batches, sorted by length.

    >>> batches = length_sorted_batches([5, 1, 9, 3, 7, 2], batch_size=2, seed=0)
    >>> sorted(i for b in batches for i in b)
    [0, 1, 2, 3, 4, 5]
    >>> all(len(b) == 2 for b in batches)
    True
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def domain_weights(examples: Sequence[Example], base_weights: Sequence[float] | None = None) -> np.ndarray:
    """Per-example weights so that every assistant/domain contributes the same total weight (mean 1).

    ``base_weights`` (e.g. the weights of extra labelled examples) multiply each example's weight, and the
    balance is computed over them: each assistant still gets the same total, and inside an assistant an
    example of weight 2 counts twice one of weight 1. Final weight = domain-balance weight × base weight.

    >>> ex = [Example(("a",), ("O",), "i", d) for d in ("shopper", "shopper", "shopper", "associate")]
    >>> domain_weights(ex).round(3).tolist()
    [0.667, 0.667, 0.667, 2.0]
    >>> domain_weights(ex, [1.0, 1.0, 2.0, 1.0]).round(3).tolist()  # shopper total 2, associate total 2
    [0.5, 0.5, 1.0, 2.0]
    """
    base = np.ones(len(examples)) if base_weights is None else _checked(base_weights, len(examples))
    assistants = {example.assistant for example in examples}
    return _with_shares(examples, base, dict.fromkeys(assistants, 1.0 / len(assistants)))


def base_mix_weights(examples: Sequence[Example], weights: Sequence[float], n_base: int) -> np.ndarray:
    """Loss weights (mean 1) that keep each assistant's share of the total weight what it is in the first
    ``n_base`` examples (the base corpus), whatever the examples appended after them (extras) add.

    Inside an assistant each example keeps its relative weight. An assistant that only the extras have keeps the
    share its weights give it.

    >>> ex = [Example(("a",), ("O",), "i", d) for d in ("shopper", "shopper", "shopper", "associate",
    ...                                                  "associate", "associate")]
    >>> base_mix_weights(ex, [1.0] * 6, 4).round(3).tolist()  # base: 3 shopper, 1 associate -> shares 3/4, 1/4
    [1.5, 1.5, 1.5, 0.5, 0.5, 0.5]
    """
    base = _checked(weights, len(examples))
    if not 0 < n_base <= len(examples):
        raise ValueError(f"n_base must be within 1..{len(examples)}, got {n_base}")
    base_counts = Counter(example.assistant for example in examples[:n_base])
    totals = _totals(examples, base)
    grand = base.sum()
    leftover = {a: totals[a] / grand for a in totals if a not in base_counts}  # assistants only the extras have
    scale = 1.0 - sum(leftover.values())
    return _with_shares(examples, base, {**{a: n / n_base * scale for a, n in base_counts.items()}, **leftover})


def _totals(examples: Sequence[Example], weights: np.ndarray) -> Counter:
    totals: Counter = Counter()
    for example, weight in zip(examples, weights, strict=True):
        totals[example.assistant] += weight
    return totals


def _with_shares(examples: Sequence[Example], weights: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """``weights`` rescaled per assistant so that each assistant's total is its share (then mean 1); inside an
    assistant each example keeps its relative weight."""
    totals = _totals(examples, weights)
    out = np.array([w * shares[e.assistant] / totals[e.assistant] for e, w in zip(examples, weights, strict=True)])
    return out / out.mean()


def _checked(weights: Sequence[float], n: int) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    if array.shape != (n,) or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"example weights must be {n} finite positive numbers")
    return array


def loss_weights(
    examples: Sequence[Example], base_weights: Sequence[float] | None, domain_balance: bool
) -> np.ndarray:
    """The loss weight of every training example (mean 1): domain balance × base weight, or the base weights.

    >>> ex = [Example(("a",), ("O",), "i", d) for d in ("shopper", "associate")]
    >>> loss_weights(ex, None, False).tolist(), loss_weights(ex, [1.0, 3.0], False).tolist()
    ([1.0, 1.0], [0.5, 1.5])
    """
    if domain_balance:
        return domain_weights(examples, base_weights)
    if base_weights is None:
        return np.ones(len(examples))
    weights = _checked(base_weights, len(examples))
    return weights / weights.mean()


def collate(
    examples: Sequence[Example],
    encoder: WordpieceEncoder,
    config: ModelConfig,
    example_weight: np.ndarray | None = None,
) -> tuple[EncodedBatch, dict[str, torch.Tensor]]:
    """Encode a batch and build its targets; labels unknown to the config are ignored, never guessed."""
    encoded = encoder.encode_words([e.tokens for e in examples])
    intent_index = {name: i for i, name in enumerate(config.intents)}
    tag_index = {name: i for i, name in enumerate(config.slot_tags)}
    slot_labels = np.full(encoded.input_ids.shape, IGNORE, dtype=np.int64)
    for row, example in enumerate(examples):
        for word, tag in enumerate(example.tags):
            position = encoded.first_piece[row, word]
            if position >= 0:
                slot_labels[row, position] = tag_index.get(tag, 0)
    batch = {
        "input_ids": torch.from_numpy(encoded.input_ids),
        "attention_mask": torch.from_numpy(encoded.attention_mask),
        "intent": torch.tensor([intent_index.get(e.intent, IGNORE) for e in examples]),
        "slot_labels": torch.from_numpy(slot_labels),
        "example_weight": torch.tensor(
            example_weight if example_weight is not None else np.ones(len(examples)), dtype=torch.float32
        ),
    }
    for head in config.heads:
        index = {name: i for i, name in enumerate(head.labels)}
        golds = [head.gold(e) for e in examples]
        batch[f"has_{head.name}"] = torch.tensor([bool(g) for g in golds], dtype=torch.float32)
        if head.kind == "softmax":
            batch[f"head_{head.name}"] = torch.tensor([index.get(g, IGNORE) if g else IGNORE for g in golds])
            batch[f"has_{head.name}"] *= batch[f"head_{head.name}"] >= 0
        else:
            target = torch.zeros(len(examples), len(head.labels))
            for row, gold in enumerate(golds):
                for label in (gold or "").split("+"):
                    if label in index:
                        target[row, index[label]] = 1.0
            batch[f"head_{head.name}"] = target
    return encoded, batch
