"""The prediction types the stream worker consumes, and the one function that builds them from raw
model outputs. Torch-free: every backend (ONNX, torch CUDA) and the training-time evaluation call
:func:`build_predictions`, so they cannot disagree on decoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model_runtime.config import ModelConfig
from model_runtime.data.bio import bio_spans
from model_runtime.decoding import decode_bio, intent_features, log_softmax, sigmoid, softmax, transition_mask
from model_runtime.encoding import EncodedBatch, Word

TOP_K = 3


@dataclass(frozen=True)
class SlotSpan:
    type: str
    start: int  # char offsets into the input text
    end: int
    text: str
    confidence: float


@dataclass(frozen=True)
class UtterancePrediction:
    intent: str
    confidence: float  # calibrated (temperature-scaled) softmax probability of ``intent``
    top_intents: tuple[str, ...]  # top-3
    top_scores: tuple[float, ...]
    margin: float
    entropy: float
    energy: float  # -T * logsumexp(logits / T)
    slots: tuple[SlotSpan, ...]
    tags: tuple[str, ...]  # BIO per whitespace token
    token_count: int  # wordpieces (without [CLS]/[SEP], before truncation)
    unk_rate: float  # share of [UNK] wordpieces
    embedding: np.ndarray  # float32 L2-normalised mean-pooled sentence embedding
    heads: Mapping[str, tuple[str, float]]  # extra heads: name -> (label, probability)


class SlotDecoder:
    """Per-word BIO-consistent decoding of slot logits; caches the transition masks."""

    def __init__(self, tags: Sequence[str]) -> None:
        self.tags = tuple(tags)
        self._masks = transition_mask(self.tags)

    def decode(self, slot_logits: np.ndarray, first_piece: np.ndarray, n_words: int) -> tuple[list[str], np.ndarray]:
        """Tags and per-word probability of the chosen tag for one utterance; words cut off get ``O``."""
        kept = [w for w in range(n_words) if first_piece[w] >= 0]
        tags = ["O"] * n_words
        probs = np.ones(n_words)
        if kept:
            log_p = log_softmax(slot_logits[first_piece[kept]].astype(np.float64))
            decoded = decode_bio(log_p, self.tags, self._masks)
            index = {t: i for i, t in enumerate(self.tags)}
            for word, tag, row in zip(kept, decoded, log_p, strict=True):
                tags[word] = tag
                probs[word] = float(np.exp(row[index[tag]]))
        return tags, probs


def build_predictions(
    texts: Sequence[str],
    words: Sequence[Sequence[Word]],
    encoded: EncodedBatch,
    outputs: Mapping[str, np.ndarray],
    config: ModelConfig,
    temperature: float,
    decoder: SlotDecoder | None = None,
) -> list[UtterancePrediction]:
    """Turn one batch of model outputs into predictions (one per text, same order)."""
    decoder = decoder or SlotDecoder(config.slot_tags)
    features = intent_features(outputs["intent_logits"], temperature)
    order = np.argsort(-features["probs"], axis=-1)[:, :TOP_K]
    head_probs = {
        h.name: (softmax if h.kind == "softmax" else sigmoid)(outputs[f"head_{h.name}"].astype(np.float64))
        for h in config.heads
    }
    embeddings = np.asarray(outputs["embedding"], dtype=np.float32)
    results = []
    for i, text in enumerate(texts):
        tags, tag_probs = decoder.decode(outputs["slot_logits"][i], encoded.first_piece[i], len(words[i]))
        spans = tuple(
            SlotSpan(
                type=slot_type,
                start=words[i][s].start,
                end=words[i][e - 1].end,
                text=text[words[i][s].start : words[i][e - 1].end],
                confidence=float(tag_probs[s:e].mean()),
            )
            for slot_type, s, e in bio_spans(tags)
        )
        heads = {}
        for head in config.heads:
            best = int(head_probs[head.name][i].argmax())
            heads[head.name] = (head.labels[best], float(head_probs[head.name][i, best]))
        pieces = int(encoded.piece_counts[i])
        results.append(
            UtterancePrediction(
                intent=config.intents[order[i, 0]],
                confidence=float(features["confidence"][i]),
                top_intents=tuple(config.intents[j] for j in order[i]),
                top_scores=tuple(float(features["probs"][i, j]) for j in order[i]),
                margin=float(features["margin"][i]),
                entropy=float(features["entropy"][i]),
                energy=float(features["energy"][i]),
                slots=spans,
                tags=tuple(tags),
                token_count=pieces,
                unk_rate=float(encoded.unk_counts[i] / pieces) if pieces else 0.0,
                embedding=embeddings[i].copy(),
                heads=heads,
            )
        )
    return results
