"""Parse and render the generator's templates (syntax in :mod:`model_runtime.data.templates`).

>>> import random
>>> template = parse_template("add {quantity} ({brand}) {product} to my [cart|basket]")
>>> tokens, tags = template.render(random.Random(0), lambda slot, category, rng: f"some {slot}")
>>> len(tokens) == len(tags) and tags[1:3] == ["B-quantity", "I-quantity"]
True
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from model_runtime.data.lexicon import CATEGORY_ATTRIBUTES

#: ``value(slot, category, rng) -> str``: draws one slot value (words joined by spaces).
ValueFn = Callable[[str, str, random.Random], str]

_TOKEN = re.compile(r"\[[^\]]*\]|\{[^}]*\}|\(|\)|[^\s()\[\]{}]+")
_ATTRIBUTE_SLOTS = frozenset().union(*CATEGORY_ATTRIBUTES.values())


class TemplateSyntaxError(ValueError):
    """A template does not follow the syntax of :mod:`model_runtime.data.templates`."""


@dataclass(frozen=True)
class _Literal:
    alternatives: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Slot:
    name: str


@dataclass(frozen=True)
class _Optional:
    nodes: tuple[_Literal | _Slot | _Optional, ...]


_Node = _Literal | _Slot | _Optional


def _attributes(nodes: tuple[_Node, ...]) -> frozenset[str]:
    """Category attributes (size, color) that the nodes need, optional groups included."""
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, _Slot) and node.name in _ATTRIBUTE_SLOTS:
            found.add(node.name)
        elif isinstance(node, _Optional):
            found |= _attributes(node.nodes)
    return frozenset(found)


@dataclass(frozen=True)
class Template:
    """A parsed template: render it to aligned tokens and BIO tags."""

    source: str
    nodes: tuple[_Node, ...]

    def render(self, rng: random.Random, value: ValueFn) -> tuple[list[str], list[str]]:
        required = frozenset(n.name for n in self.nodes if isinstance(n, _Slot) and n.name in _ATTRIBUTE_SLOTS)
        categories = [c for c, attrs in CATEGORY_ATTRIBUTES.items() if required <= attrs]
        category = rng.choice(categories)
        tokens: list[str] = []
        tags: list[str] = []
        self._emit(self.nodes, category, rng, value, tokens, tags)
        return tokens, tags

    def match(self, text: str, slot_patterns: Mapping[str, str]) -> list[tuple[str, str]] | None:
        """The (slot, value) pairs if this template can produce ``text``, else None.

        ``slot_patterns`` maps each slot to a regex of its values (a slot without one matches
        any words). Used to prove that hand-written queries are in the generator's distribution.

        >>> parse_template("add {quantity} ({brand}) {product}").match("add two nike socks", {"brand": "nike"})
        [('quantity', 'two'), ('brand', 'nike'), ('product', 'socks')]
        """
        names: list[str] = []
        pattern = self._regex(self.nodes, slot_patterns, names)
        found = re.fullmatch(pattern, text + " ")
        if found is None:
            return None
        return [(name, value) for name, value in zip(names, found.groups(), strict=True) if value is not None]

    def _regex(self, nodes, slot_patterns, names: list[str]) -> str:
        # Every word is followed by one space, so optional and empty parts need no spacing rules.
        parts = []
        for node in nodes:
            if isinstance(node, _Literal):
                parts.append("(?:" + "|".join(re.escape(" ".join(words) + " ") if words else "" for words in
                                                node.alternatives) + ")")
            elif isinstance(node, _Slot):
                names.append(node.name)
                parts.append("(" + slot_patterns.get(node.name, r"[a-z0-9]+(?: [a-z0-9]+)*?") + ") ")
            else:
                parts.append("(?:" + self._regex(node.nodes, slot_patterns, names) + ")?")
        return "".join(parts)

    def _emit(self, nodes, category, rng, value, tokens, tags) -> None:
        for node in nodes:
            if isinstance(node, _Literal):
                words = rng.choice(node.alternatives)
                tokens.extend(words)
                tags.extend(["O"] * len(words))
            elif isinstance(node, _Slot):
                words = value(node.name, category, rng).split()
                tokens.extend(words)
                tags.extend([f"B-{node.name}"] + [f"I-{node.name}"] * (len(words) - 1))
            elif rng.random() < 0.5 and _attributes(node.nodes) <= CATEGORY_ATTRIBUTES[category]:
                self._emit(node.nodes, category, rng, value, tokens, tags)


@cache
def parse_template(source: str) -> Template:
    """Parse one template string; raises :class:`TemplateSyntaxError` on unbalanced groups."""
    stack: list[list[_Node]] = [[]]
    for token in _TOKEN.findall(source):
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise TemplateSyntaxError(f"unbalanced ')' in {source!r}")
            group = stack.pop()
            stack[-1].append(_Optional(tuple(group)))
        elif token.startswith("{"):
            stack[-1].append(_Slot(token[1:-1]))
        elif token.startswith("["):
            options = tuple(tuple(option.replace("_", " ").split()) for option in token[1:-1].split("|"))
            stack[-1].append(_Literal(options))
        else:
            stack[-1].append(_Literal(((token,),)))
    if len(stack) != 1:
        raise TemplateSyntaxError(f"unclosed '(' in {source!r}")
    return Template(source, tuple(stack[0]))
