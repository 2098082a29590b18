"""The one labelled-utterance type that every corpus (retail generator, SNIPS, CLINC150) yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One utterance with its labels.

    ``tokens`` are whitespace tokens and ``tags`` their BIO slot tags (``O``, ``B-brand``,
    ``I-brand``, ...), one per token. ``assistant`` is ``shopper`` or ``associate`` for the retail
    corpus and the dataset's name (``snips``, ``clinc150``) elsewhere. ``heads`` holds the labels of
    the extra heads (e.g. ``{"frustration": "frustrated"}``); it may be empty.

    >>> ex = Example(("add", "two", "jordans"), ("O", "B-quantity", "B-brand"), "add_to_cart", "shopper")
    >>> ex.text
    'add two jordans'
    >>> ex.spans()
    [('quantity', 1, 2), ('brand', 2, 3)]
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    intent: str
    assistant: str
    heads: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.tags)} tags: {self.tokens!r}")
        if not self.tokens:
            raise ValueError("an example needs at least one token")

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def spans(self) -> list[tuple[str, int, int]]:
        """Slot spans as (type, first token, end token exclusive); a stray I- starts a span."""
        spans: list[tuple[str, int, int]] = []
        current: list = []
        for index, tag in enumerate(self.tags):
            if tag.startswith("B-") or (tag.startswith("I-") and (not current or current[0] != tag[2:])):
                if current:
                    spans.append((current[0], current[1], index))
                current = [tag[2:], index]
            elif tag == "O" and current:
                spans.append((current[0], current[1], index))
                current = []
        if current:
            spans.append((current[0], current[1], len(self.tags)))
        return spans
