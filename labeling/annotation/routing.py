"""Which annotated utterances a human should see: close calls, and a random audit of the confident rest.

The aggregate labels most utterances on its own. Two kinds go to the labeling queue instead:

- **ambiguous** (:data:`Reason.ANNOTATION_AMBIGUOUS`): on some token the top two labels are close and the
  call matters — both are entities, or one of them is a target type (``person``/``time``; ``O`` against
  ``brand`` is not worth a human) — or ``person`` and ``brand`` both keep real support on one token, the
  confusion the store names make ("jordan"). These are the items where weak supervision is least sure.
- **audit** (:data:`Reason.AUDIT`): a random share of the confidently auto-labelled utterances, so that humans
  measure the annotator's precision on what it decided alone. The draw hashes the seed and the utterance id:
  the same utterance is drawn (or not) whatever the batch, its order, or a rerun.

Everything else is auto-labelled. Item ids derive from the utterance id, so a rerun queues the same items.

    >>> from labeling.annotation.aggregate import TokenDecision
    >>> close = TokenDecision("person", 0.55, "brand", 0.1, {"person": 0.55, "brand": 0.45})
    >>> sure = TokenDecision("time", 0.95, "O", 0.9, {"time": 0.95, "O": 0.05})
    >>> is_ambiguous([sure]), is_ambiguous([close, sure])
    (False, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from labeling.annotation.aggregate import TokenDecision, UtteranceVotes, labels_of, token_count
from labeling.annotation.base import BRAND, OTHER, PERSON, TARGET_TYPES, bio_tags
from labeling.flags import priority
from labeling.items import LabelingItem, Reason

#: Top-two margin below which a token is a close call. 0.25 catches a 3-to-2 split of five equal votes
#: (shares 0.6/0.4) and posteriors around 0.6/0.4, and leaves 0.7/0.3 to the aggregate.
DEFAULT_MARGIN = 0.25
#: Support that person *and* brand must both reach on one token for a person/brand conflict.
DEFAULT_CONFLICT_SUPPORT = 0.25
#: Share of the confidently auto-labelled utterances sent to humans as an audit.
DEFAULT_AUDIT_RATE = 0.02
ITEM_PREFIX = "annotation-"


@dataclass(frozen=True)
class AnnotatedUtterance:
    """One utterance after aggregation: its tokens, every function's votes, the aggregate's decisions, and
    what the model said (intent, its confidence) for the pre-annotation."""

    id: str
    tokens: tuple[str, ...]
    function_names: tuple[str, ...]
    votes: UtteranceVotes  # [function][token]
    decisions: Sequence[TokenDecision]
    intent: str
    assistant: str
    model_version: str
    confidence: float | None = None
    text: str | None = None  # the scrubbed text; " ".join(tokens) when not given

    def __post_init__(self) -> None:
        n_tokens = token_count(self.votes, len(self.function_names)) if self.votes else len(self.tokens)
        if n_tokens != len(self.tokens) or len(self.decisions) != len(self.tokens):
            raise ValueError(f"utterance {self.id}: {len(self.tokens)} tokens, votes on {n_tokens}, "
                             f"{len(self.decisions)} decisions")


@dataclass(frozen=True)
class Routing:
    """The items to queue (highest priority first) and the ids of the auto-labelled utterances (audited
    ones included: their labels stand until a human corrects them)."""

    items: list[LabelingItem]
    auto_labelled: list[str]

    @property
    def ambiguous(self) -> list[LabelingItem]:
        return [item for item in self.items if Reason.ANNOTATION_AMBIGUOUS in item.reasons]

    @property
    def audited(self) -> list[LabelingItem]:
        return [item for item in self.items if Reason.AUDIT in item.reasons]


def ambiguous_tokens(decisions: Sequence[TokenDecision], margin_threshold: float = DEFAULT_MARGIN,
                     min_conflict_support: float = DEFAULT_CONFLICT_SUPPORT) -> list[int]:
    """Indices of the tokens that make an utterance ambiguous (see the module docstring)."""
    found = []
    for index, decision in enumerate(decisions):
        pair = (decision.label, decision.runner_up)
        matters = OTHER not in pair or any(label in TARGET_TYPES for label in pair)
        close = decision.runner_up is not None and decision.margin < margin_threshold and matters
        support = decision.support
        conflict = min(support.get(PERSON, 0.0), support.get(BRAND, 0.0)) >= min_conflict_support
        if close or conflict:
            found.append(index)
    return found


def is_ambiguous(decisions: Sequence[TokenDecision], margin_threshold: float = DEFAULT_MARGIN,
                 min_conflict_support: float = DEFAULT_CONFLICT_SUPPORT) -> bool:
    return bool(ambiguous_tokens(decisions, margin_threshold, min_conflict_support))


def drawn_for_audit(utterance_id: str, rate: float, seed: int = 0) -> bool:
    """A Bernoulli(``rate``) draw fixed by ``(seed, utterance_id)``.

    >>> drawn_for_audit("u1", 0.0), drawn_for_audit("u1", 1.0)
    (False, True)
    """
    digest = hashlib.blake2b(f"{seed}:{utterance_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def make_annotation_item(utterance: AnnotatedUtterance, reason: Reason, window: tuple[datetime, datetime],
                         doubt_tokens: Sequence[int] = ()) -> LabelingItem:
    """The queue item: aggregate labels as BIO tags, every function's per-token labels as ``votes``.

    Priority is :func:`labeling.flags.priority` with the aggregate's lowest score on the ambiguous tokens as
    the "confidence" (a closer call ranks higher); an audit item takes its reason's weight alone, so that a
    budget cut does not bias the audit toward any kind of utterance.
    """
    doubt = min((utterance.decisions[i].score for i in doubt_tokens), default=1.0)
    text = utterance.text if utterance.text is not None else " ".join(utterance.tokens)
    return LabelingItem(
        id=f"{ITEM_PREFIX}{utterance.id}",
        text=text,
        tokens=utterance.tokens,
        intent=utterance.intent,
        tags=bio_tags(labels_of(utterance.decisions)),
        reasons=(reason,),
        priority=priority([reason], {"confidence": doubt}),
        window_start=window[0],
        window_end=window[1],
        model_version=utterance.model_version,
        assistant=utterance.assistant,
        confidence=utterance.confidence,
        votes={name: tuple(vote.label if vote else None for vote in per_function)
               for name, per_function in zip(utterance.function_names, utterance.votes, strict=True)},
    )


def route(utterances: Sequence[AnnotatedUtterance], window: tuple[datetime, datetime], *,
          margin_threshold: float = DEFAULT_MARGIN, min_conflict_support: float = DEFAULT_CONFLICT_SUPPORT,
          audit_rate: float = DEFAULT_AUDIT_RATE, seed: int = 0) -> Routing:
    """Queue the ambiguous utterances and an audit sample of the rest; the rest is auto-labelled."""
    if not 0.0 <= audit_rate <= 1.0:
        raise ValueError(f"audit_rate must be in [0, 1], got {audit_rate}")
    items, auto = [], []
    for utterance in utterances:
        doubtful = ambiguous_tokens(utterance.decisions, margin_threshold, min_conflict_support)
        if doubtful:
            items.append(make_annotation_item(utterance, Reason.ANNOTATION_AMBIGUOUS, window, doubtful))
            continue
        auto.append(utterance.id)
        if drawn_for_audit(utterance.id, audit_rate, seed):
            items.append(make_annotation_item(utterance, Reason.AUDIT, window))
    return Routing(sorted(items, key=lambda item: (-item.priority, item.id)), auto)
