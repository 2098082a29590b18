"""The labeling item, its reasons, and text normalisation for deduplication.

    >>> normalise_text("  Is JORDAN on shift, tomorrow?? ")
    'is jordan on shift tomorrow'

An item's text is a copy of a stored, already scrubbed text; :meth:`LabelingItem.deidentified` scrubs it
once more (``nlumon.pii.scrub``) before it leaves for the queue or Label Studio, and re-aligns the BIO tags
when a placeholder replaced several words.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from model_runtime.data.bio import repair_bio
from nlumon.pii import scrub


class Reason(StrEnum):
    """Why a prediction was sent to the labelers."""

    OOD = "ood"
    LOW_CONFIDENCE = "low_confidence"
    SMALL_MARGIN = "small_margin"
    BRAND_PERSON = "brand_person_ambiguity"
    GROWING_OOD_CLUSTER = "growing_ood_cluster"
    CHAMPION_CHALLENGER = "champion_challenger_disagreement"  # the shadow challenger predicts another intent
    ROUTE_DISAGREEMENT = "champion_challenger_route_disagreement"  # ... or would route the utterance differently
    ANNOTATION_AMBIGUOUS = "annotation_ambiguous"  # the labeling functions disagree (close vote, person vs brand)
    AUDIT = "audit"  # a random auto-labelled utterance, for humans to measure the annotator's precision


# How much a reason is worth to the next model: new traffic (clusters, OOD) and model disagreement
# teach the most; a small margin alone is the weakest signal. A route disagreement with the same intent is a
# disagreement on confidence or OOD-ness near a policy threshold: worth a label, less than another intent.
REASON_WEIGHTS: dict[Reason, float] = {
    Reason.GROWING_OOD_CLUSTER: 3.0,
    Reason.CHAMPION_CHALLENGER: 2.5,
    Reason.ROUTE_DISAGREEMENT: 1.5,
    Reason.BRAND_PERSON: 2.0,
    Reason.OOD: 2.0,
    Reason.LOW_CONFIDENCE: 1.5,
    Reason.SMALL_MARGIN: 1.0,
    Reason.ANNOTATION_AMBIGUOUS: 2.0,
    Reason.AUDIT: 1.0,
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
    #: Labeling function name -> its label per token (``None`` = abstained); shown to annotators as predictions.
    votes: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)

    def deidentified(self, text: str | None = None) -> LabelingItem:
        """This item with its text scrubbed (``nlumon.pii.scrub``, or ``text`` when the caller scrubbed it
        already, with the slots); itself when nothing changes.

        >>> from datetime import datetime, timezone
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> item = LabelingItem("p1", "swap with mason hill", ("swap", "with", "mason", "hill"), "swap_shift",
        ...                     ("O", "O", "B-person", "I-person"), (Reason.OOD,), 1.0, t, t, "m", "associate")
        >>> clean = item.deidentified()
        >>> clean.text, clean.tokens, clean.tags
        ('swap with <PERSON>', ('swap', 'with', '<PERSON>'), ('O', 'O', 'B-person'))
        """
        text = scrub(self.text) if text is None else text
        if text == self.text:
            return self
        tokens = tuple(text.split())
        votes = {name: _realign_votes(self.tokens, labels, tokens) for name, labels in self.votes.items()}
        return replace(self, text=text, tokens=tokens, tags=realign_tags(self.tokens, self.tags, tokens), votes=votes)

    @property
    def primary_reason(self) -> Reason:
        return self.reasons[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "text": self.text, "tokens": list(self.tokens), "intent": self.intent,
            "tags": list(self.tags), "reasons": [str(r) for r in self.reasons], "priority": self.priority,
            "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
            "model_version": self.model_version, "assistant": self.assistant, "confidence": self.confidence,
            "votes": {name: list(labels) for name, labels in self.votes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelingItem:
        return cls(
            id=str(data["id"]), text=data["text"], tokens=tuple(data["tokens"]), intent=data["intent"],
            tags=tuple(data["tags"]), reasons=tuple(Reason(r) for r in data["reasons"]),
            priority=float(data["priority"]), window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]), model_version=data["model_version"],
            assistant=data["assistant"], confidence=data.get("confidence"),
            votes={str(name): tuple(labels) for name, labels in (data.get("votes") or {}).items()},
        )


def realign_tags(old_tokens: Iterable[str], old_tags: Iterable[str], new_tokens: Iterable[str]) -> tuple[str, ...]:
    """BIO tags for ``new_tokens`` (the old tokens with some words replaced): unchanged words keep their tag, a
    replacement takes the kind of the first word it replaced (``B-``, then ``I-``).

    >>> realign_tags(["ask", "mason", "hill"], ["O", "B-person", "I-person"], ["ask", "<PERSON>"])
    ('O', 'B-person')
    """
    old_tokens, old_tags, new_tokens = list(old_tokens), list(old_tags), list(new_tokens)
    if len(old_tags) != len(old_tokens):
        return ("O",) * len(new_tokens)
    tags = ["O"] * len(new_tokens)
    matcher = difflib.SequenceMatcher(a=old_tokens, b=new_tokens, autojunk=False)
    for operation, a0, a1, b0, b1 in matcher.get_opcodes():
        if operation == "equal":
            tags[b0:b1] = old_tags[a0:a1]
            continue
        kinds = [tag[2:] for tag in old_tags[a0:a1] if tag != "O"]
        if kinds:
            tags[b0:b1] = [f"B-{kinds[0]}"] + [f"I-{kinds[0]}"] * (b1 - b0 - 1)
    return repair_bio(tags)  # an I- that now follows another kind (or nothing) begins a span


def _realign_votes(
    old_tokens: tuple[str, ...], labels: tuple[str | None, ...], new_tokens: tuple[str, ...]
) -> tuple[str | None, ...]:
    """A labeling function's per-token labels carried over to the re-tokenised text (as :func:`realign_tags`)."""
    as_tags = ["O" if label is None else f"B-{label}" for label in labels]
    return tuple(None if tag == "O" else tag[2:] for tag in realign_tags(old_tokens, as_tags, new_tokens))


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
