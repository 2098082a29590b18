"""Per-utterance feature rows: what the model saw and how sure it was, with personal data scrubbed.

One ``predictions`` row per utterance (columns in ``nlumon/schema.py``). The same row, minus the
embedding sketch's precision, is published on the ``predictions`` topic.

De-identification (``nlumon/pii.py``): the text and the slot values are scrubbed together, in context
(:func:`nlumon.pii.deidentify_utterance`: a card split over two slots is one card); then the whole row goes
through :func:`nlumon.pii.deidentify_row`, which scrubs every other string column except
:data:`PREDICTION_KEEP` (identifiers and closed vocabularies). A new column is scrubbed unless it is added there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from nlumon.pii import deidentify_row, deidentify_utterance, text_hash
from nlumon.records import UtteranceEvent
from streams.routing import RoutingPolicy, route_features

PREDICTION_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "channel", "locale", "model_version",
    "text_scrubbed", "text_hash", "intent", "confidence", "top_intents", "top_scores", "margin", "entropy",
    "energy", "ood_score", "is_ood", "token_count", "unk_rate", "slot_types", "slot_values", "slot_confidences",
    "asr_confidence", "frustration", "batch_size", "inference_ms", "e2e_ms", "embedding_sketch",
    "kafka_partition", "kafka_offset", "row_version", "route", "route_heads", "route_scores", "experiment", "arm",
)
# String columns that deidentify_row leaves as they are, and why.
PREDICTION_KEEP = (
    "id",  # the producer's idempotency key: rows are deduplicated on it, so it must stay exact
    "text_hash",  # HMAC of the raw text (hex)
    "model_version",  # a validated package version name
    "assistant", "channel",  # validated enums (shopper/associate, voice/text)
    "intent", "top_intents", "slot_types",  # the model's label vocabulary
    "text_scrubbed", "slot_values",  # de-identified in context by deidentify_utterance
    "route", "route_heads",  # the routing policy's route and feature names (streams.routing)
    "experiment", "arm",  # names checked by experiments.definition (letters, digits, _ . -)
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

    def deidentify(self, text: str, prediction) -> tuple[str, list[str]]:
        """The scrubbed text and slot values, found together (``nlumon.pii.deidentify_utterance``)."""
        return deidentify_utterance(text, prediction.slots, gazetteer=self.gazetteer,
                                    keep_confidence=self.keep_confidence)

    def scrub_text(self, text: str, prediction) -> str:
        return self.deidentify(text, prediction)[0]

    def scrub_slots(self, prediction, text: str | None = None) -> tuple[list[str], list[str], list[float]]:
        """Slot types, scrubbed values and confidences. Without ``text`` the slots' own text is the context."""
        if text is None:
            text = _text_of_slots(prediction.slots)
        values = self.deidentify(text, prediction)[1]
        types = [span.type for span in prediction.slots]
        confidences = [round(float(span.confidence), 4) for span in prediction.slots]
        return types, values, confidences


def _text_of_slots(slots) -> str:
    """A text in which every slot stands at its offsets (gaps as spaces): context for slots given alone."""
    end = max((span.end for span in slots), default=0)
    chars = [" "] * end
    for span in slots:
        if 0 <= span.start < span.end == span.start + len(span.text):
            chars[span.start:span.end] = span.text
    return "".join(chars)


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
    policy: RoutingPolicy | None = None,
    experiment: str = "",
    arm: str = "",
    head_labels: Mapping[str, Sequence[str]] | None = None,
) -> list[dict]:
    """One row per (event, prediction). ``positions`` = (partition, offset, kafka timestamp in s).

    ``policy`` decides each row's route from its features and the model's extra heads (none: route '');
    ``head_labels`` (the model's head labels) lets it read both probabilities of a binary head; ``experiment`` and
    ``arm`` name the experiment arm that served the batch ('' outside an experiment)."""
    rows = []
    now_naive = now.replace(tzinfo=None, microsecond=0)
    sketch_lists = np.round(np.asarray(sketches, dtype=np.float64), 5).tolist()  # one pass for the batch
    for event, (partition, offset, kafka_ts), prediction, sketch, ood in zip(
        events, positions, predictions, sketch_lists, ood_scores, strict=True
    ):
        text_scrubbed, values = pii.deidentify(event.text, prediction)
        types = [span.type for span in prediction.slots]
        confidences = [round(float(span.confidence), 4) for span in prediction.slots]
        e2e_ms = (now.timestamp() - kafka_ts) * 1000 if kafka_ts else 0.0
        row = {
            "id": event.id,
            "ts": event.ts.replace(tzinfo=None),
            "ingested_at": now_naive,
            "assistant": event.assistant,
            "session_id": event.session_id,
            "channel": event.channel,
            "locale": event.locale,
            "model_version": model_version,
            "text_scrubbed": text_scrubbed,
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
            "route": "",
            "route_heads": [],
            "route_scores": [],
            "experiment": experiment,
            "arm": arm,
        }
        if policy is not None:
            decision = policy.decide(route_features(row, prediction.heads, labels=head_labels))
            row["route"], row["route_heads"] = decision.route, list(decision.heads)
            row["route_scores"] = [round(_finite(score), 5) for score in decision.scores]
        rows.append(deidentify_row(row, keep=PREDICTION_KEEP))
    return rows

