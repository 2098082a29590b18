"""The one small interface every labeling function follows: tokens in, one vote or abstain per token.

An :class:`Utterance` is what an annotator sees: whitespace tokens (lower-case ASR-style text is normal),
the assistant, and — when the champion model already ran on it — the model's BIO slot tags and per-token
slot confidences. A labeling function returns one :class:`Vote` (an entity label and a confidence in
``(0, 1]``) or ``None`` (abstain) per token:

    >>> class Shift:
    ...     name = "shift_word"
    ...     def apply(self, utterance):
    ...         return [Vote(TIME, 0.6) if t == "tomorrow" else None for t in utterance.tokens]
    >>> Shift().apply(Utterance(("is", "ana", "in", "tomorrow")))
    [None, None, None, Vote(label='time', confidence=0.6)]

Labels are entity types, not BIO tags: consecutive tokens with the same label form one span
(:func:`label_spans`). ``O`` is a real vote ("this token is no entity", e.g. a store abbreviation), not an
abstention. ``brand`` and ``product`` are voted so that a name that is also a brand can lose to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

PERSON, TIME, BRAND, PRODUCT, OTHER = "person", "time", "brand", "product", "O"
LABELS: tuple[str, ...] = (PERSON, TIME, BRAND, PRODUCT, OTHER)
#: The entity types the loop annotates and is measured on.
TARGET_TYPES: tuple[str, ...] = (PERSON, TIME)
#: Annotation label -> the joint model's slot type.
SLOT_OF_LABEL: dict[str, str] = {PERSON: "person", TIME: "date_time", BRAND: "brand", PRODUCT: "product"}
LABEL_OF_SLOT: dict[str, str] = {slot: label for label, slot in SLOT_OF_LABEL.items()}


@dataclass(frozen=True)
class Vote:
    """One labeling function's answer for one token."""

    label: str
    confidence: float

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown annotation label {self.label!r}; expected one of {LABELS}")
        if not 0.0 < self.confidence <= 1.0:
            raise ValueError(f"vote confidence must be in (0, 1], got {self.confidence!r}")


@dataclass(frozen=True)
class Utterance:
    """What a labeling function sees. ``model_tags``/``model_confidences`` are the champion's, when known."""

    tokens: tuple[str, ...]
    assistant: str = "associate"
    model_tags: tuple[str, ...] | None = None
    model_confidences: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("model_tags", "model_confidences"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.tokens):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.tokens)} tokens")


@runtime_checkable
class LabelingFunction(Protocol):
    """``name`` is unique and stable (it names the function in weights, reports and pre-annotations)."""

    name: str

    def apply(self, utterance: Utterance) -> list[Vote | None]: ...


def label_spans(labels: Sequence[str | None], types: Sequence[str] = TARGET_TYPES) -> list[tuple[str, int, int]]:
    """Spans ``(type, start, end exclusive)`` of consecutive equal labels among ``types``.

    >>> label_spans(["O", "person", "person", None, "time"])
    [('person', 1, 3), ('time', 4, 5)]
    """
    spans: list[tuple[str, int, int]] = []
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            if labels[start] in types:
                spans.append((labels[start], start, index))
            start = index
    return spans


def bio_tags(labels: Sequence[str | None]) -> tuple[str, ...]:
    """The model's BIO slot tags for annotation labels (``O``/abstain/unknown -> ``O``).

    >>> bio_tags(["O", "person", "person", "time", None])
    ('O', 'B-person', 'I-person', 'B-date_time', 'O')
    """
    tags: list[str] = []
    for index, label in enumerate(labels):
        slot = SLOT_OF_LABEL.get(label or "")
        if slot is None:
            tags.append("O")
        elif index and labels[index - 1] == label:
            tags.append(f"I-{slot}")
        else:
            tags.append(f"B-{slot}")
    return tuple(tags)
