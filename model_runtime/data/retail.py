"""Seeded generator of labelled retail utterances for the shopper and the associate assistants.

No retail NLU data is public, so the joint model trains and is monitored on this corpus. It
carries the hard cases of a real retail log: a name that is a brand in one utterance and a
person in another, numbers that are a quantity, an order id, an aisle or a time, products the
model has never seen (``unseen_products``), ASR noise (``noise_rate``), frustrated users (the
``frustration`` head) and intents the model was not trained on (``EMERGING_INTENTS``, only when
asked for).

>>> examples = generate(GeneratorConfig(n=3, seed=7))
>>> [ex.assistant for ex in examples] == [ex.assistant for ex in generate(GeneratorConfig(n=3, seed=7))]
True
>>> all(len(ex.tokens) == len(ex.tags) for ex in examples)
True
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from model_runtime.data import lexicon
from model_runtime.data.bio import bio_labels
from model_runtime.data.example import Example
from model_runtime.data.noise import add_asr_noise
from model_runtime.data.template_engine import Template, parse_template
from model_runtime.data.templates import ASSOCIATE_TEMPLATES, EMERGING_TEMPLATES, SHOPPER_TEMPLATES

SHOPPER_INTENTS: tuple[str, ...] = tuple(SHOPPER_TEMPLATES)
ASSOCIATE_INTENTS: tuple[str, ...] = tuple(ASSOCIATE_TEMPLATES)
TRAINED_INTENTS: tuple[str, ...] = SHOPPER_INTENTS + ASSOCIATE_INTENTS
EMERGING_INTENTS: tuple[str, ...] = tuple(EMERGING_TEMPLATES)
ASSISTANTS: tuple[str, ...] = ("shopper", "associate")
SLOT_TYPES: tuple[str, ...] = (
    "product", "brand", "quantity", "size", "color", "department", "aisle", "order_id", "date_time",
    "person", "store", "price",
)
#: The BIO tag vocabulary of the retail corpus (``O`` first).
TAG_LABELS: tuple[str, ...] = bio_labels(SLOT_TYPES)
FRUSTRATION_LABELS: tuple[str, ...] = ("calm", "frustrated")
_AMBIGUOUS_SHARE = 0.25  # of brand and person draws, where the list has a brand/person name


class UnknownIntentError(ValueError):
    """An intent was asked for that the generator has no templates for."""


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. The same config always yields the same examples in the same order.

    ``noise_rate`` is the share of tokens hit by ASR noise; ``unseen_products`` draws products
    and brands from the held-out lists, ``unseen_names`` people; ``intents`` restricts the
    intents (and may name ``EMERGING_INTENTS``); ``shopper_share`` applies when intents of both
    assistants are allowed.
    """

    n: int
    seed: int = 0
    shopper_share: float = 0.8
    noise_rate: float = 0.0
    unseen_products: bool = False
    unseen_names: bool = False
    intents: tuple[str, ...] | None = None
    frustration_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        for name in ("shopper_share", "noise_rate", "frustration_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        unknown = sorted(set(self.intents or ()) - set(TRAINED_INTENTS) - set(EMERGING_INTENTS))
        if unknown:
            raise UnknownIntentError(f"unknown intents {unknown}; known: {TRAINED_INTENTS + EMERGING_INTENTS}")
        if self.intents is not None and not self.intents:
            raise UnknownIntentError("intents is empty; pass None for all trained intents")


def intent_assistant(intent: str) -> str:
    """The assistant an intent belongs to.

    >>> intent_assistant("swap_shift"), intent_assistant("gift_registry")
    ('associate', 'shopper')
    """
    if intent in SHOPPER_TEMPLATES:
        return "shopper"
    if intent in ASSOCIATE_TEMPLATES:
        return "associate"
    if intent in EMERGING_TEMPLATES:
        return EMERGING_TEMPLATES[intent][0]
    raise UnknownIntentError(f"unknown intent {intent!r}")


def templates_for(intent: str) -> tuple[Template, ...]:
    """The parsed templates of one intent (trained or emerging)."""
    intent_assistant(intent)  # raises UnknownIntentError for a name with no templates
    raw = SHOPPER_TEMPLATES.get(intent) or ASSOCIATE_TEMPLATES.get(intent) or EMERGING_TEMPLATES[intent][1]
    return tuple(parse_template(text) for text in raw)


class _Lexicon:
    """The value lists one config draws from (default or held-out)."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.products = lexicon.UNSEEN_PRODUCTS if config.unseen_products else lexicon.PRODUCTS
        self.brands = lexicon.UNSEEN_BRANDS if config.unseen_products else lexicon.BRANDS
        self.first = lexicon.UNSEEN_PEOPLE_FIRST if config.unseen_names else lexicon.PEOPLE_FIRST
        self.last = lexicon.UNSEEN_PEOPLE_LAST if config.unseen_names else lexicon.PEOPLE_LAST

    def value(self, slot: str, category: str, rng: random.Random) -> str:
        if slot == "product":
            return rng.choice(self.products[category])
        if slot == "brand":
            return self._maybe_ambiguous(self.brands[category], rng)
        if slot == "person":
            first = self._maybe_ambiguous(self.first, rng)
            return f"{first} {rng.choice(self.last)}" if rng.random() < 0.3 else first
        if slot in _NUMBER_SLOTS:
            return _NUMBER_SLOTS[slot](rng)
        return rng.choice(_PLAIN_SLOTS[slot])


    @staticmethod
    def _maybe_ambiguous(values: tuple[str, ...], rng: random.Random) -> str:
        # Uniform draws would make a brand/person name rare (1 in ~50 people); real logs repeat the
        # few popular ones ("jordan") often, so a fixed share of draws goes to the ambiguous names.
        ambiguous = [value for value in values if value in lexicon.AMBIGUOUS_NAMES]
        if ambiguous and rng.random() < _AMBIGUOUS_SHARE:
            return rng.choice(ambiguous)
        return rng.choice(values)


def _number_words(number: int) -> str:
    """0..99 in words: ``_number_words(42) == 'forty two'``."""
    tens = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
    if number < 20:
        return lexicon.DIGIT_WORDS[number] if number < 10 else lexicon.NUMBER_WORDS[number - 1]
    return tens[number // 10] + ("" if number % 10 == 0 else " " + lexicon.DIGIT_WORDS[number % 10])


def _quantity(rng: random.Random) -> str:
    roll = rng.random()
    count = rng.choice((1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12))
    if roll < 0.6:
        return _number_words(count)
    return str(count) if roll < 0.85 else rng.choice(lexicon.QUANTITY_PHRASES)


def _order_id(rng: random.Random) -> str:
    digits = [str(rng.randrange(10)) for _ in range(rng.choice((4, 5, 6)))]
    if rng.random() < 0.6:
        return "".join(digits)
    return " ".join(lexicon.DIGIT_WORDS[int(d)] for d in digits)  # spoken digit by digit


def _aisle(rng: random.Random) -> str:
    number = rng.randint(1, 40)
    spoken = _number_words(number) if rng.random() < 0.6 else str(number)
    return spoken + (" " + rng.choice("abc") if rng.random() < 0.15 else "")


_NUMBER_SLOTS = {"quantity": _quantity, "order_id": _order_id, "aisle": _aisle}
_PLAIN_SLOTS: dict[str, tuple[str, ...]] = {
    "size": lexicon.SIZES, "color": lexicon.COLORS, "department": lexicon.DEPARTMENTS, "store": lexicon.STORES,
    "date_time": lexicon.DATE_TIMES, "price": lexicon.PRICES,
}


def _one_of(values) -> str:
    # Longest first, so that "paper towels" wins over "paper" in a regex alternation.
    return "|".join(re.escape(value) for value in sorted(set(values), key=len, reverse=True))


def slot_value_patterns() -> dict[str, str]:
    """A regex per slot type that matches exactly the values the default lists can produce.

    With :meth:`Template.match` this tells whether a hand-written query is in the generator's
    distribution (the golden set is checked this way).

    >>> import re
    >>> bool(re.fullmatch(slot_value_patterns()["order_id"], "four 2 nine")), "jordan" in slot_value_patterns()["brand"]
    (True, True)
    """
    number = rf"(?:[0-9]+|{_one_of(lexicon.NUMBER_WORDS + lexicon.DIGIT_WORDS)})"
    patterns = {
        "product": _one_of(v for values in lexicon.PRODUCTS.values() for v in values),
        "brand": _one_of(v for values in lexicon.BRANDS.values() for v in values),
        "person": rf"(?:{_one_of(lexicon.PEOPLE_FIRST)})(?: (?:{_one_of(lexicon.PEOPLE_LAST)}))?",
        "quantity": rf"{number}|{_one_of(lexicon.QUANTITY_PHRASES)}",
        "order_id": rf"{number}(?: {number})*",
        "aisle": rf"{number}(?: {number})?(?: [abc])?",
    }
    patterns.update({slot: _one_of(values) for slot, values in _PLAIN_SLOTS.items()})
    return patterns


def _intent_pools(config: GeneratorConfig) -> dict[str, tuple[str, ...]]:
    allowed = config.intents if config.intents is not None else TRAINED_INTENTS
    pools: dict[str, list[str]] = {assistant: [] for assistant in ASSISTANTS}
    for intent in dict.fromkeys(allowed):
        pools[intent_assistant(intent)].append(intent)
    return {assistant: tuple(intents) for assistant, intents in pools.items() if intents}


def _frustrate(tokens: list[str], tags: list[str], rng: random.Random) -> None:
    where = rng.random()
    if where < 0.6:
        cue = rng.choice(lexicon.FRUSTRATION_SUFFIXES).split()
        tokens.extend(cue)
        tags.extend(["O"] * len(cue))
    if where >= 0.4:  # 20 % get a cue at both ends
        cue = rng.choice(lexicon.FRUSTRATION_PREFIXES).split()
        tokens[:0] = cue
        tags[:0] = ["O"] * len(cue)


def iter_examples(config: GeneratorConfig) -> Iterator[Example]:
    """Yield ``config.n`` examples lazily; the same config yields the same sequence."""
    rng = random.Random(config.seed)
    pools = _intent_pools(config)
    words = _Lexicon(config)
    templates = {intent: templates_for(intent) for pool in pools.values() for intent in pool}
    for _ in range(config.n):
        if len(pools) == 1:
            assistant = next(iter(pools))
        else:
            assistant = "shopper" if rng.random() < config.shopper_share else "associate"
        intent = rng.choice(pools[assistant])
        tokens, tags = rng.choice(templates[intent]).render(rng, words.value)
        frustrated = rng.random() < config.frustration_rate
        if frustrated:
            _frustrate(tokens, tags, rng)
        if config.noise_rate > 0:
            tokens, tags = add_asr_noise(tokens, tags, config.noise_rate, rng)
        heads = {"frustration": FRUSTRATION_LABELS[frustrated]}
        yield Example(tuple(tokens), tuple(tags), intent, assistant, heads)


def generate(config: GeneratorConfig) -> list[Example]:
    """All ``config.n`` examples as a list (``list(iter_examples(config))``)."""
    return list(iter_examples(config))


def split(
    examples: Sequence[Example], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list[Example], list[Example], list[Example]]:
    """Shuffle and cut into train/dev/test, stratified by intent (each intent keeps its share).

    >>> train, dev, test = split(generate(GeneratorConfig(n=200, seed=1)), seed=0)
    >>> len(train) + len(dev) + len(test)
    200
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = random.Random(seed)
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for intent in sorted(by_intent):
        group = by_intent[intent]
        rng.shuffle(group)
        n_train = round(fractions[0] * len(group))
        n_dev = min(round(fractions[1] * len(group)), len(group) - n_train)
        parts[0].extend(group[:n_train])
        parts[1].extend(group[n_train:n_train + n_dev])
        parts[2].extend(group[n_train + n_dev:])
    for part in parts:
        rng.shuffle(part)
    return parts
