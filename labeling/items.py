"""The labeling item, its reasons, and text normalisation for deduplication.

    >>> normalise_text("  Is JORDAN on shift, tomorrow?? ")
    'is jordan on shift tomorrow'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a prediction was sent to the labelers."""

    OOD = "ood"
    LOW_CONFIDENCE = "low_confidence"
    SMALL_MARGIN = "small_margin"
    BRAND_PERSON = "brand_person_ambiguity"
    GROWING_OOD_CLUSTER = "growing_ood_cluster"
    CHAMPION_CHALLENGER = "champion_challenger_disagreement"


# How much a reason is worth to the next model: new traffic (clusters, OOD) and model disagreement
# teach the most; a small margin alone is the weakest signal.
REASON_WEIGHTS: dict[Reason, float] = {
    Reason.GROWING_OOD_CLUSTER: 3.0,
    Reason.CHAMPION_CHALLENGER: 2.5,
    Reason.BRAND_PERSON: 2.0,
    Reason.OOD: 2.0,
    Reason.LOW_CONFIDENCE: 1.5,
    Reason.SMALL_MARGIN: 1.0,
}

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """The dedup key of an utterance: NFKC, case-folded, punctuation dropped, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", folded)).strip()


@dataclass(frozen=True)
class LabelingItem:
    """One utterance for the labelers, with the model's answer as pre-annotation.

    ``text`` is the scrubbed text and ``tokens`` its whitespace tokens; ``tags`` are the predicted
    BIO slot tags (one per token). ``reasons`` are sorted by weight, most valuable first.
    """

    id: str
    text: str
    tokens: tuple[str, ...]
    intent: str
    tags: tuple[str, ...]
    reasons: tuple[Reason, ...]
    priority: float
    window_start: datetime
    window_end: datetime
    model_version: str
    assistant: str
    confidence: float | None = None

    @property
    def primary_reason(self) -> Reason:
        return self.reasons[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "text": self.text, "tokens": list(self.tokens), "intent": self.intent,
            "tags": list(self.tags), "reasons": [str(r) for r in self.reasons], "priority": self.priority,
            "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
            "model_version": self.model_version, "assistant": self.assistant, "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelingItem:
        return cls(
            id=str(data["id"]), text=data["text"], tokens=tuple(data["tokens"]), intent=data["intent"],
            tags=tuple(data["tags"]), reasons=tuple(Reason(r) for r in data["reasons"]),
            priority=float(data["priority"]), window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]), model_version=data["model_version"],
            assistant=data["assistant"], confidence=data.get("confidence"),
        )


def sort_reasons(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    """Unique reasons, most valuable first (ties by name, so the order is stable)."""
    return tuple(sorted(set(reasons), key=lambda r: (-REASON_WEIGHTS[r], r.value)))


def dedup(items: Iterable[LabelingItem], seen: Iterable[str] = ()) -> list[LabelingItem]:
    """One item per normalised text: the highest-priority one, carrying every copy's reasons.

    Texts whose normalised form is in ``seen`` (already queued earlier) are dropped.
    """
    skip = set(seen)
    best: dict[str, LabelingItem] = {}
    for item in items:
        key = normalise_text(item.text)
        if key in skip:
            continue
        kept = best.get(key)
        if kept is None:
            best[key] = item
            continue
        winner, other = (item, kept) if (item.priority, item.id) > (kept.priority, kept.id) else (kept, item)
        best[key] = replace(winner, reasons=sort_reasons(winner.reasons + other.reasons))
    return list(best.values())
