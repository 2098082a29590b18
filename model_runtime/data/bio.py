"""BIO tag helpers shared by the corpora and the metrics (one place for the span rules)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def bio_labels(slot_types: Iterable[str]) -> tuple[str, ...]:
    """The tag vocabulary for some slot types: ``O`` first, then ``B-``/``I-`` per type.

    >>> bio_labels(["brand", "product"])
    ('O', 'B-brand', 'I-brand', 'B-product', 'I-product')
    """
    labels = ["O"]
    for slot in slot_types:
        labels += [f"B-{slot}", f"I-{slot}"]
    return tuple(labels)


def is_valid_bio(tags: Sequence[str]) -> bool:
    """True when every ``I-x`` follows a ``B-x`` or an ``I-x`` of the same type.

    >>> is_valid_bio(["O", "B-brand", "I-brand", "O"])
    True
    >>> is_valid_bio(["O", "I-brand"]), is_valid_bio(["B-size", "I-color"]), is_valid_bio(["X"])
    (False, False, False)
    """
    previous = "O"
    for tag in tags:
        if tag != "O" and not (tag.startswith(("B-", "I-")) and len(tag) > 2):
            return False
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Slot spans as (type, first token, end token exclusive), the way conlleval reads BIO.

    A ``B-`` always opens a span; an ``I-`` opens one when it does not continue a span of its
    own type (conlleval counts such a stray ``I-`` as the start of a chunk); ``O`` closes.

    >>> bio_spans(["B-quantity", "B-brand", "I-brand", "O", "I-person", "I-color"])
    [('quantity', 0, 1), ('brand', 1, 3), ('person', 4, 5), ('color', 5, 6)]
    """
    spans: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for index, tag in enumerate(tags):
        continues = tag.startswith("I-") and tag[2:] == kind
        if kind is not None and not continues:
            spans.append((kind, start, index))
            kind = None
        if tag != "O" and not continues:
            kind, start = tag[2:], index
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans


def repair_bio(tags: Sequence[str]) -> tuple[str, ...]:
    """``tags`` with every ``I-`` that does not continue a span of its own type turned into ``B-`` (after tags
    were replaced or merged, a span's inside may no longer follow its start).

    >>> repair_bio(["I-person", "O", "I-brand", "B-person", "I-brand"])
    ('B-person', 'O', 'B-brand', 'B-person', 'B-brand')
    """
    repaired = list(tags)
    for index, tag in enumerate(repaired):
        if tag.startswith("I-") and (index == 0 or repaired[index - 1][2:] != tag[2:]):
            repaired[index] = "B-" + tag[2:]
    return tuple(repaired)
