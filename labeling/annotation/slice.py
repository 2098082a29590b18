"""Gold-labelled store-associate logs for fitting and measuring the annotator.

Two disjoint sets come from here, both with a gold label per token (person / time / brand / product / O):

- :func:`fit_set`: the *small hand-labelled holdout* that the weighted vote's weights and the label model's
  class balance are fitted on (a few hundred utterances, as a team would label by hand);
- :func:`eval_slice`: the evaluation slice that the annotator never sees while fitting.

They are generated — nobody labelled them by hand here — from phrasings written for this module (not the
retail generator's templates the joint model was trained on), with

- names the training lexicon does not hold: Census names outside ``model_runtime.data.lexicon``'s lists, and
  names from many languages that are in no Census list; the two sets draw from disjoint halves of each pool,
  so no name of the evaluation slice was seen while fitting;
- names that are also brands (``jordan``, ``hunter``, ...), as a person in scheduling talk and as a brand
  in product talk;
- ASR-style text: lower case, no punctuation, and some fillers;
- store abbreviations and codes (SKU, UPC, BOPIS, POS, ETA, bay/aisle codes) that must stay ``O``.

:func:`eval_slice` can add SNIPS test sentences with their ``artist`` → person and ``timeRange`` → time spans
(:func:`snips_examples`), so that the measure does not rest on one generator alone.

Span conventions (the same as the retail corpus): a time span does not include a leading preposition
("at", "on", "by", "for", "until"): "cover my shift *tomorrow at five*", "in by *three pm*"; a person span is
the whole name ("*ingrid okonkwo*"), without a possessive's own token.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from labeling.annotation.base import BRAND, OTHER, PERSON, PRODUCT, TIME
from model_runtime.data import lexicon

#: Names in no Census list (many languages): the gazetteer cannot know them; context has to.
WORLD_NAMES: tuple[str, ...] = (
    "okonkwo", "chiamaka", "oluwaseun", "nkechi", "tendai", "kagiso", "thandiwe", "babajide", "adaeze",
    "yaw", "kofi", "abena", "efua", "mthunzi", "siyabonga", "lindiwe", "zanele", "wanjiru", "njeri", "kipchoge",
    "haruto", "yuki", "sakura", "ren", "hinata", "daichi", "minato", "aoi", "kenta", "shota", "takumi", "riku",
    "jiwoo", "seoyeon", "minjun", "haeun", "doyun", "xiaoming", "yuxuan", "zihan", "haoran", "meiling", "jingyi",
    "anh", "thuy", "quang", "duc", "linh", "phuong", "arjun", "ananya", "vivaan", "ishaan", "saanvi", "aarav",
    "kavya", "rohan", "nikhil", "deepika", "tarun", "siddharth", "bilal", "zeynep", "emre", "elif", "mehmet",
    "ayse", "oguz", "dariusz", "grzegorz", "malgorzata", "wojciech", "agnieszka", "bartosz", "katarzyna",
    "svetlana", "dmitri", "anastasia", "yevgeny", "oksana", "bogdan", "sigrun", "bjorn", "astrid", "leif",
    "solveig", "thorsten", "ingeborg", "henrik", "anneke", "joris", "maarten", "floor", "sanne", "ruairi",
    "siobhan", "niamh", "caoimhe", "eoin", "tadhg", "aoife", "ximena", "itzel", "yolotl", "nahuel", "ailen",
)

#: Surnames in no Census list.
WORLD_SURNAMES: tuple[str, ...] = (
    "okonkwo", "adeyemi", "oyelaran", "mbeki", "nakamura", "takahashi", "watanabe", "yamamoto", "kowalczyk",
    "wisniewski", "lindqvist", "haugen", "johansson", "van der berg", "delacroix", "fitzgerald", "ng",
    "oyelowo", "chukwu", "banerjee", "chatterjee", "raghavan", "subramanian", "ozturk", "yilmaz", "demir",
    "kuznetsov", "petrov", "ivanova", "novak", "horvat", "papadopoulos", "nikolaidis", "oconnell", "mcbride",
)

_TIMES: tuple[tuple[str, ...], ...] = tuple(tuple(t.split()) for t in (
    "tomorrow", "tonight", "today", "this afternoon", "this evening", "tomorrow morning", "tomorrow at five",
    "tomorrow at 5", "next tuesday", "next saturday", "this weekend", "monday", "friday", "sunday morning",
    "saturday night", "three pm", "3 pm", "10 am", "noon", "six thirty", "7 30", "in two hours", "in an hour",
    "after my break", "after lunch", "end of shift", "the 21st", "the fourth", "july fourth", "december 24th",
    "christmas eve", "black friday", "wednesday at noon", "thursday at eight", "next week", "two weeks from now",
    "later today", "first thing tomorrow", "before close", "closing time", "tonight at nine",
))

_ABBREVIATIONS: tuple[str, ...] = ("sku", "upc", "bopis", "pos", "eta", "asn", "dc", "oos", "plu")

# Phrasings of the store-associate assistant (not the retail generator's). {P} a person, {T} a time,
# {B} a brand, {R} a product, {A} an abbreviation, {N} a number, {D} a department.
_PERSON_TEMPLATES: tuple[str, ...] = (
    "hey can you check if {P} is coming in {T}", "did {P} clock in {T}", "{P} called out sick {T} who can cover",
    "need someone to cover for {P} {T}", "put {P} on register {N} {T}", "tell {P} the {A} order is ready",
    "when is {P} back from break", "move {P} to the closing shift {T}", "schedule {P} for {T}",
    "{P} wants to swap with {P} {T}", "who is closing with {P} {T}", "remind {P} about the meeting {T}",
    "has {P} finished the {A} pulls", "page {P} to bay {N}", "can {P} work a double {T}",
    "is {P} the manager on duty {T}", "get {P} to help a customer in {D}", "send {P} to register {N}",
    "i need {P} on the floor {T}", "is {P} off {T}", "who trained {P} on the {A} system",
    "{P} is running late {T}", "let {P} know the truck is here", "does {P} have the keys {T}",
    "swap my {T} shift with {P}", "is {P} scheduled {T}", "call {P} up to the front",
    "can you ask {P} to cover my shift {T}", "find out if {P} can stay late {T}", "um is {P} working {T}",
    "what time does {P} get here {T}", "book {P} for training {T}", "where is {P} working {T}",
)
_PRODUCT_TEMPLATES: tuple[str, ...] = (
    "do we have {B} {R} in size {N}", "how many {B} {R} are in stock", "check the {A} for the {B} {R}",
    "add a pair of {B} {R} to the cart", "is the {B} {R} on sale {T}", "restock {B} {R} in aisle {N}",
    "customer wants {B} {R} in black", "we are out of {B} {R} again", "price check on {B} {R}",
    "scan the {A} on the {B} {R}", "move the {B} {R} to the endcap {T}", "any {B} {R} coming on the truck {T}",
    "pull two {B} {R} for a {A} order", "are {B} {R} buy one get one", "the {B} {R} display fell over",
)
_CODE_TEMPLATES: tuple[str, ...] = (
    "what is the {A} on the {A} order", "{A} is down at register {N}", "{A} {N} is out of stock",
    "the {A} truck {A} is {T}", "look up {A} {N} in the system", "reprint the {A} label for bay {N}",
)


@dataclass(frozen=True)
class GoldUtterance:
    """One gold-labelled utterance: tokens and one annotation label per token."""

    id: str
    tokens: tuple[str, ...]
    labels: tuple[str, ...]
    assistant: str = "associate"
    source: str = "store-logs"

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.labels):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.labels)} labels")


def _split(pool: Sequence[str], half: int) -> tuple[str, ...]:
    """One of two disjoint, stable halves of ``pool`` (by a hash of each name, not by position)."""
    return tuple(sorted(name for name in pool if zlib.crc32(name.encode()) % 2 == half))


def _name_pools(half: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(census given, census surnames, world given, world surnames) of one half, none from the training lexicon."""
    from nlumon.pii import given_names, surnames  # Census lists, loaded once per process

    known = set(lexicon.PEOPLE_FIRST) | set(lexicon.PEOPLE_LAST) | set(lexicon.UNSEEN_PEOPLE_FIRST)
    known |= set(lexicon.UNSEEN_PEOPLE_LAST)
    brands = {w for names in lexicon.BRANDS.values() for b in names for w in b.split()}
    common_given = sorted(n for n in given_names() if n.isalpha() and 4 <= len(n) <= 9 and n not in known | brands)
    common_last = sorted(n for n in surnames() if n.isalpha() and 4 <= len(n) <= 10 and n not in known | brands)
    world = [n for n in WORLD_NAMES if n not in known]
    world_last = [n for n in WORLD_SURNAMES if n not in known]
    return _split(common_given, half), _split(common_last, half), _split(world, half), _split(world_last, half)


class _Generator:
    def __init__(self, seed: int, half: int) -> None:
        self.rng = random.Random(seed)
        self.given, self.last, self.world, self.world_last = _name_pools(half)
        self.ambiguous = tuple(n for n in lexicon.AMBIGUOUS_NAMES)
        self.brands = tuple(sorted({b for names in lexicon.BRANDS.values() for b in names}
                                   | {b for names in lexicon.UNSEEN_BRANDS.values() for b in names}))
        self.products = tuple(sorted({p for names in lexicon.PRODUCTS.values() for p in names}))

    def person(self) -> list[str]:
        roll = self.rng.random()
        if roll < 0.15:
            first = self.rng.choice(self.ambiguous)
        elif roll < 0.55:
            first = self.rng.choice(self.given)
        else:
            first = self.rng.choice(self.world)
        words = first.split()
        if self.rng.random() < 0.3:
            words += self.rng.choice(self.last if self.rng.random() < 0.6 else self.world_last).split()
        return words

    def fill(self, template: str) -> tuple[list[str], list[str]]:
        tokens: list[str] = []
        labels: list[str] = []
        for word in template.split():
            match = re.fullmatch(r"\{(\w)\}", word)
            if not match:
                tokens.append(word)
                labels.append(OTHER)
                continue
            kind = match.group(1)
            if kind == "P":
                value, label = self.person(), PERSON
            elif kind == "T":
                value, label = list(self.rng.choice(_TIMES)), TIME
            elif kind == "B":
                # a name that is also a brand, as a brand, in a quarter of product talk
                name = self.rng.choice(self.ambiguous) if self.rng.random() < 0.25 else self.rng.choice(self.brands)
                value, label = name.split(), BRAND
            elif kind == "R":
                value, label = self.rng.choice(self.products).split(), PRODUCT
            elif kind == "A":
                value, label = [self.rng.choice(_ABBREVIATIONS)], OTHER
            elif kind == "N":
                value, label = [self.rng.choice(("2", "4", "7", "12", "three", "nine", "a12", "4b", "20417"))], OTHER
            else:  # {D}
                value, label = self.rng.choice(lexicon.DEPARTMENTS).split(), OTHER
            tokens += value
            labels += [label] * len(value)
        return tokens, labels

    def utterance(self, index: int, prefix: str) -> GoldUtterance:
        roll = self.rng.random()
        pool = _PERSON_TEMPLATES if roll < 0.6 else _PRODUCT_TEMPLATES if roll < 0.9 else _CODE_TEMPLATES
        tokens, labels = self.fill(self.rng.choice(pool))
        if self.rng.random() < 0.1:  # an ASR filler somewhere
            gaps = [i for i in range(len(tokens) + 1) if i in (0, len(tokens)) or OTHER in (labels[i - 1], labels[i])
                    or labels[i - 1] != labels[i]]
            at = self.rng.choice(gaps)  # never inside a span
            tokens.insert(at, self.rng.choice(lexicon.FILLERS))
            labels.insert(at, OTHER)
        return GoldUtterance(f"{prefix}-{index}", tuple(tokens), tuple(labels))


def store_logs(n: int, seed: int, half: int, prefix: str) -> list[GoldUtterance]:
    generator = _Generator(seed, half)
    return [generator.utterance(index, prefix) for index in range(n)]


def fit_set(n: int = 300, seed: int = 101) -> list[GoldUtterance]:
    """The small labelled holdout the aggregators are fitted on (names from the first half of each pool)."""
    return store_logs(n, seed, half=0, prefix="fit")


def eval_slice(n: int = 2000, seed: int = 202, snips: int = 300) -> list[GoldUtterance]:
    """The evaluation slice: store logs with names from the other half of each pool, plus ``snips`` SNIPS test
    sentences that hold a person or time span (fewer when the shipped data has fewer)."""
    logs = store_logs(n, seed, half=1, prefix="eval")
    return logs + list(snips_examples(snips, seed))


def snips_examples(n: int, seed: int) -> Iterator[GoldUtterance]:
    """SNIPS test sentences (shipped with ``labeling.snips_tagger``, tags already mapped) with a person or time
    span; the tagger's auxiliary types (title, place) are ``O`` here."""
    if n <= 0:
        return
    from labeling.snips_tagger.corpus import load_split

    def label(tag: str) -> str:
        kind = tag[2:] if tag != "O" else OTHER
        return kind if kind in (PERSON, TIME) else OTHER

    chosen = [(tokens, tags) for tokens, tags in load_split("test") if any(label(t) != OTHER for t in tags)]
    random.Random(seed).shuffle(chosen)
    for index, (tokens, tags) in enumerate(chosen[:n]):
        yield GoldUtterance(f"snips-{index}", tuple(t.lower() for t in tokens), tuple(label(t) for t in tags),
                            "snips", "snips")
