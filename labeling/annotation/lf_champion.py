"""The champion model as one voter among others: its BIO slot tags, weighted by its own token confidence.

The joint model already tags every logged utterance. Its person, date-time, brand and product slots become
votes of the same label; every other tag (``O``, quantity, size, aisle, order id ...) is a vote for ``O``,
because the loop annotates only people and times and a quantity is no entity of either kind. The vote's
confidence is the model's per-token confidence, so the label model can learn how far to trust the champion
where it is unsure. Below ``min_confidence`` it abstains: a guess that weak is no evidence either way.

>>> utterance = Utterance(("ask", "ingrid", "tomorrow"), model_tags=("O", "B-person", "B-date_time"),
...                       model_confidences=(0.99, 0.62, 0.9))
>>> [vote.label if vote else None for vote in ChampionSlots(min_confidence=0.7).apply(utterance)]
['O', None, 'time']
"""

from __future__ import annotations

import math

from labeling.annotation.base import LABEL_OF_SLOT, OTHER, Utterance, Vote


class ChampionSlots:
    """Votes the champion's slot type per token with its confidence; abstains when the model did not run."""

    name = "champion"

    def __init__(self, min_confidence: float = 0.0, default_confidence: float = 0.5) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within 0..1, got {min_confidence!r}")
        if not 0.0 < default_confidence <= 1.0:
            raise ValueError(f"default_confidence must be within (0, 1], got {default_confidence!r}")
        self.min_confidence = min_confidence
        self.default_confidence = default_confidence  # when tags come without confidences

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        tags = utterance.model_tags
        if tags is None:
            return [None] * len(utterance.tokens)
        confidences = utterance.model_confidences
        votes: list[Vote | None] = []
        for index, tag in enumerate(tags):
            confidence = self.default_confidence if confidences is None else _probability(confidences[index])
            label = label_of_tag(tag)
            if label is None or confidence is None or confidence < self.min_confidence or confidence <= 0.0:
                votes.append(None)
            else:
                votes.append(Vote(label, confidence))
        return votes


def label_of_tag(tag: object) -> str | None:
    """The annotation label of one BIO tag: a target slot's label, ``O`` for any other tag, None if unreadable.

    >>> [label_of_tag(t) for t in ("B-person", "I-date_time", "B-quantity", "O", "person", "", None)]
    ['person', 'time', 'O', 'O', None, None, None]
    """
    if not isinstance(tag, str):
        return None
    if tag == "O":
        return OTHER
    prefix, _, slot = tag.partition("-")
    if prefix not in ("B", "I") or not slot:
        return None
    return LABEL_OF_SLOT.get(slot, OTHER)


def _probability(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return min(number, 1.0) if math.isfinite(number) else None
