"""Flag predictions worth a human look, score them, and turn them into labeling items.

A prediction row is a mapping with the ClickHouse ``predictions`` columns: ``id``, ``assistant``,
``model_version``, ``text_scrubbed``, ``intent``, ``confidence``, ``margin``, ``ood_score``,
``is_ood``, ``slot_types``, ``slot_values`` — and optionally ``slot_tags`` (BIO per whitespace
token), which is used instead of locating slot values in the text when present.

    >>> row = {"id": "p1", "assistant": "associate", "model_version": "m1", "intent": "check_schedule",
    ...        "text_scrubbed": "is jordan on shift tomorrow", "confidence": 0.93, "margin": 0.6,
    ...        "ood_score": 0.1, "is_ood": 0, "slot_types": ["brand", "date"], "slot_values": ["jordan", "tomorrow"]}
    >>> [str(r) for r in flag(row, FlagContext())]
    ['brand_person_ambiguity']
    >>> prediction_tags(row)
    ('O', 'B-brand', 'O', 'O', 'B-date')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labeling.items import REASON_WEIGHTS, LabelingItem, Reason, dedup, sort_reasons

# Cue words specific enough that a brand next to them is suspicious (generic words such as "on" or
# "today" would flag "jordan sneakers on sale").
SCHEDULE_WORDS = frozenset({
    "shift", "shifts", "schedule", "scheduled", "schedules", "roster", "cover", "covering", "swap", "swapping",
    "clock", "clocked", "pto", "working", "sick", "opening", "closing", "overtime",
})
CART_WORDS = frozenset({
    "cart", "basket", "add", "buy", "order", "ordered", "price", "cost", "stock", "size", "sizes", "pair",
    "pairs", "product", "products", "sneakers", "shoes", "checkout", "coupon",
})
PERSON_SLOTS = frozenset({"person", "employee", "coworker", "name"})


class RowError(ValueError):
    """A prediction row lacks a column the labeling logic needs."""


@dataclass(frozen=True)
class FlagContext:
    """Thresholds and the per-window facts that are not in the row itself.

    ``growing_cluster_members``: prediction ids in an OOD cluster that keeps growing (from the
    clustering detector). ``challenger_intents``: prediction id → the challenger model's intent (the shadow
    challenger, ``monitor.shadow``). ``route_disagreements``: prediction ids the challenger would have routed
    differently. ``ood_threshold``: when set, ``ood_score >= ood_threshold`` counts as OOD; else ``is_ood`` decides.
    """

    low_confidence: float = 0.5
    small_margin: float = 0.1
    ood_threshold: float | None = None
    proximity: int = 3
    growing_cluster_members: frozenset[str] = frozenset()
    challenger_intents: Mapping[str, str] = field(default_factory=dict)
    route_disagreements: frozenset[str] = frozenset()
    schedule_words: frozenset[str] = SCHEDULE_WORDS
    cart_words: frozenset[str] = CART_WORDS


def flag(prediction_row: Mapping[str, Any], context: FlagContext) -> list[Reason]:
    """The reasons to label this prediction, most valuable first (empty: leave it alone)."""
    row_id = str(_get(prediction_row, "id"))
    reasons: list[Reason] = []
    ood_score = float(prediction_row.get("ood_score") or 0.0)
    is_ood = ood_score >= context.ood_threshold if context.ood_threshold is not None else bool(
        prediction_row.get("is_ood"))
    if is_ood:
        reasons.append(Reason.OOD)
    if float(_get(prediction_row, "confidence")) < context.low_confidence:
        reasons.append(Reason.LOW_CONFIDENCE)
    margin = prediction_row.get("margin")
    if margin is not None and float(margin) < context.small_margin:
        reasons.append(Reason.SMALL_MARGIN)
    if _brand_person_ambiguous(prediction_row, context):
        reasons.append(Reason.BRAND_PERSON)
    if row_id in context.growing_cluster_members:
        reasons.append(Reason.GROWING_OOD_CLUSTER)
    challenger = context.challenger_intents.get(row_id)
    if challenger is not None and challenger != _get(prediction_row, "intent"):
        reasons.append(Reason.CHAMPION_CHALLENGER)
    if row_id in context.route_disagreements:
        reasons.append(Reason.ROUTE_DISAGREEMENT)
    return list(sort_reasons(reasons))


def priority(reasons: Sequence[Reason], prediction_row: Mapping[str, Any]) -> float:
    """Sum of the reasons' weights, plus up to 1 for the model's own doubt (1 - confidence).

    >>> priority([Reason.OOD, Reason.SMALL_MARGIN], {"confidence": 0.75})
    3.25
    """
    confidence = min(max(float(prediction_row.get("confidence") or 0.0), 0.0), 1.0)
    return round(sum(REASON_WEIGHTS[r] for r in set(reasons)) + (1.0 - confidence), 6)


def prediction_tags(prediction_row: Mapping[str, Any]) -> tuple[str, ...]:
    """Predicted BIO tags per whitespace token: ``slot_tags`` if present, else slot values found in the text.

    Each slot value is matched as a whole-token sequence at its first free occurrence; a value that
    cannot be found (the scrubber may have replaced it) is left out rather than guessed.
    """
    tokens = str(_get(prediction_row, "text_scrubbed")).split()
    given = prediction_row.get("slot_tags")
    if given:
        if len(given) != len(tokens):
            raise RowError(f"row {prediction_row.get('id')}: {len(given)} slot_tags for {len(tokens)} tokens")
        return tuple(given)
    tags = ["O"] * len(tokens)
    lowered = [t.casefold() for t in tokens]
    for slot_type, value in zip(prediction_row.get("slot_types") or (), prediction_row.get("slot_values") or (),
                                strict=False):
        wanted = str(value).casefold().split()
        for start in range(len(tokens) - len(wanted) + 1):
            span = range(start, start + len(wanted))
            if wanted and lowered[start:start + len(wanted)] == wanted and all(tags[i] == "O" for i in span):
                tags[start] = f"B-{slot_type}"
                for i in span[1:]:
                    tags[i] = f"I-{slot_type}"
                break
    return tuple(tags)


def make_item(
    prediction_row: Mapping[str, Any], reasons: Sequence[Reason], window: tuple[datetime, datetime]
) -> LabelingItem:
    """A :class:`LabelingItem` with the prediction as pre-annotation."""
    text = str(_get(prediction_row, "text_scrubbed"))
    return LabelingItem(
        id=str(_get(prediction_row, "id")),
        text=text,
        tokens=tuple(text.split()),
        intent=str(_get(prediction_row, "intent")),
        tags=prediction_tags(prediction_row),
        reasons=sort_reasons(reasons),
        priority=priority(reasons, prediction_row),
        window_start=window[0],
        window_end=window[1],
        model_version=str(prediction_row.get("model_version", "")),
        assistant=str(_get(prediction_row, "assistant")),
        confidence=float(prediction_row["confidence"]) if prediction_row.get("confidence") is not None else None,
    )


def candidates(
    rows: Iterable[Mapping[str, Any]],
    context: FlagContext,
    window: tuple[datetime, datetime],
    *,
    seen_texts: Iterable[str] = (),
) -> list[LabelingItem]:
    """Flag, score and deduplicate one window's predictions; highest priority first."""
    items = []
    for row in rows:
        reasons = flag(row, context)
        if reasons:
            items.append(make_item(row, reasons, window))
    return sorted(dedup(items, seen_texts), key=lambda item: (-item.priority, item.id))


def _brand_person_ambiguous(row: Mapping[str, Any], context: FlagContext) -> bool:
    """A name tagged brand near schedule words, or tagged person near cart/product words."""
    tags = prediction_tags(row)
    words = [t.casefold() for t in str(_get(row, "text_scrubbed")).split()]
    for index, tag in enumerate(tags):
        if not tag.startswith("B-"):
            continue
        kind = tag[2:]
        cues = context.schedule_words if kind == "brand" else context.cart_words if kind in PERSON_SLOTS else None
        if cues is None:
            continue
        end = index + 1
        while end < len(tags) and tags[end] == f"I-{kind}":
            end += 1
        near = words[max(0, index - context.proximity):index] + words[end:end + context.proximity]
        if any(word in cues for word in near):
            return True
    return False


def _get(row: Mapping[str, Any], column: str) -> Any:
    try:
        return row[column]
    except KeyError:
        raise RowError(f"prediction row {row.get('id', '?')} has no column {column!r}") from None
