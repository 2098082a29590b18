"""Per-utterance feature rows: what the model saw and how sure it was, with personal data scrubbed.

One ``predictions`` row per utterance (columns in ``nlumon/schema.py``). The same row, minus the
embedding sketch's precision, is published on the ``predictions`` topic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from nlumon.records import UtteranceEvent
from nlumon.pii import PLACEHOLDERS, scrub, text_hash

PREDICTION_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "channel", "locale", "model_version",
    "text_scrubbed", "text_hash", "intent", "confidence", "top_intents", "top_scores", "margin", "entropy",
    "energy", "ood_score", "is_ood", "token_count", "unk_rate", "slot_types", "slot_values", "slot_confidences",
    "asr_confidence", "frustration", "batch_size", "inference_ms", "e2e_ms", "embedding_sketch",
    "kafka_partition", "kafka_offset", "row_version",
)


@dataclass(frozen=True)
class PiiPolicy:
    """How person names are found (``stream.pii_*`` settings): the model's person slots always, Census given
    names too when ``gazetteer``, except inside non-person slots at least ``keep_confidence`` sure."""

    gazetteer: bool = True
    keep_confidence: float = 0.9

    def kept(self, prediction) -> list[tuple[int, int]]:
        return [(span.start, span.end) for span in prediction.slots
                if span.type != "person" and span.confidence >= self.keep_confidence]

    def scrub_text(self, text: str, prediction) -> str:
        person_spans = [(span.start, span.end) for span in prediction.slots if span.type == "person"]
        return scrub(text, person_spans, keep_spans=self.kept(prediction), gazetteer=self.gazetteer)

    def scrub_slots(self, prediction) -> tuple[list[str], list[str], list[float]]:
        """Slot types, scrubbed values and confidences; person values become the placeholder."""
        types, values, confidences = [], [], []
        for span in prediction.slots:
            types.append(span.type)
            if span.type == "person":
                values.append(PLACEHOLDERS["person"])
            else:
                keep = span.confidence >= self.keep_confidence
                values.append(scrub(span.text, gazetteer=self.gazetteer and not keep))
            confidences.append(round(float(span.confidence), 4))
        return types, values, confidences


def frustration_of(prediction) -> float:
    """Probability that the speaker is frustrated, or -1 when the model has no such head."""
    head = prediction.heads.get("frustration")
    if head is None:
        return -1.0
    label, probability = head
    return float(probability if label == "frustrated" else 1.0 - probability)


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def prediction_rows(
    events: Sequence[UtteranceEvent],
    positions: Sequence[tuple[int, int, float | None]],
    predictions: Sequence,
    *,
    sketches: np.ndarray,
    ood_scores: np.ndarray,
    ood_threshold: float,
    model_version: str,
    hash_key: str,
    inference_ms: float,
    now: datetime,
    row_version: int,
    pii: PiiPolicy = PiiPolicy(),
) -> list[dict]:
    """One row per (event, prediction). ``positions`` = (partition, offset, kafka timestamp in s)."""
    rows = []
    now_naive = now.replace(tzinfo=None, microsecond=0)
    sketch_lists = np.round(np.asarray(sketches, dtype=np.float64), 5).tolist()  # one pass for the batch
    for event, (partition, offset, kafka_ts), prediction, sketch, ood in zip(
        events, positions, predictions, sketch_lists, ood_scores, strict=True
    ):
        types, values, confidences = pii.scrub_slots(prediction)
        e2e_ms = (now.timestamp() - kafka_ts) * 1000 if kafka_ts else 0.0
        rows.append({
            "id": event.id,
            "ts": event.ts.replace(tzinfo=None),
            "ingested_at": now_naive,
            "assistant": event.assistant,
            "session_id": event.session_id,
            "channel": event.channel,
            "locale": event.locale,
            "model_version": model_version,
            "text_scrubbed": pii.scrub_text(event.text, prediction),
            "text_hash": text_hash(hash_key, event.text),
            "intent": prediction.intent,
            "confidence": _finite(prediction.confidence),
            "top_intents": list(prediction.top_intents),
            "top_scores": [round(float(s), 5) for s in prediction.top_scores],
            "margin": _finite(prediction.margin),
            "entropy": _finite(prediction.entropy),
            "energy": _finite(prediction.energy),
            "ood_score": _finite(float(ood)),
            "is_ood": int(float(ood) > ood_threshold),
            "token_count": min(int(prediction.token_count), 65535),
            "unk_rate": _finite(prediction.unk_rate),
            "slot_types": types,
            "slot_values": values,
            "slot_confidences": confidences,
            "asr_confidence": event.asr_confidence,
            "frustration": frustration_of(prediction),
            "batch_size": min(len(events), 65535),
            "inference_ms": round(inference_ms, 3),
            "e2e_ms": round(max(0.0, e2e_ms), 3),
            "embedding_sketch": sketch,
            "kafka_partition": partition,
            "kafka_offset": offset,
            "row_version": row_version,
        })
    return rows
