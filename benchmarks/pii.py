"""Personal data in stored rows: recall of the scrubbing per kind, and what it over-scrubs.

A seeded corpus of retail utterances with planted personal data (card numbers in many groupings and spoken,
phone numbers in North American and E.164 shapes and spoken, typed and spoken e-mail addresses, person names
from several sources, street addresses) and decoys that must survive (order ids, SKUs, UPCs, prices,
quantities, times, aisles, brands named after people, the generator's brands), half voice-style (lower case,
numbers spoken) and half typed. It runs through the real worker path: ``streams.pipeline.BatchPipeline`` with
the model package loaded as the worker loads it (``streams.model_service.ModelService``), then through the row
builders that copy what the worker stored (the labeling queue's row and Kafka message, an OOD cluster's
examples, an alert's evidence).

A planted item counts as *recovered* (a leak) when it can be read from any stored string of the rows built
from its utterance: the card's digits (also across the slot values joined), a phone's last seven digits, an
e-mail's local part, any word of a name, an address's house number with its street name. A decoy counts as
*lost* when it is no longer in the stored text. ``--clean`` generator utterances with no personal data at all
(5 % ASR noise) give the share of plain traffic the scrubbing alters. Person names come from the generator's
held-out names, the US Census lists and Faker's name lists of several locales (names the gazetteer has never seen).

    python benchmarks/pii.py --package .run/test/models/quick            # ~1 minute on 2 cores
    python benchmarks/pii.py --count 3000 --seed 3 --output /tmp/pii.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _meta import RESULTS, header, parameters, save  # noqa: E402

from nlumon.pii import luhn_valid  # noqa: E402

LIBRARIES = ("onnxruntime", "names", "Faker", "numpy")
PII_KINDS = ("card", "phone", "email", "person", "address")
DECOY_KINDS = ("brand_person", "brand", "order_id", "sku", "upc", "price", "quantity", "time", "aisle")
TARGETS = {"card": 1.0, "phone": 1.0, "email": 1.0, "person": 0.99, "address": None}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class Planted:
    kind: str
    value: str  # as written in the utterance
    probe: str  # what reading it back means (see recovered())


@dataclass
class Utterance:
    id: str
    text: str
    style: str  # voice or typed
    planted: list[Planted] = field(default_factory=list)
    decoys: list[Planted] = field(default_factory=list)


# -- generating the corpus ------------------------------------------------------------------------------
def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


CARD_NETWORKS = (("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                 ("6011", 16), ("65", 16), ("36", 14), ("35", 16), ("62", 17))


def spoken_digits(digits: str, rng: random.Random, doubles: bool = True) -> str:
    words, index = [], 0
    while index < len(digits):
        if doubles and index + 1 < len(digits) and digits[index] == digits[index + 1] and rng.random() < 0.3:
            words += ["double", DIGIT_WORDS[int(digits[index])]]
            index += 2
            continue
        digit = digits[index]
        words.append("oh" if digit == "0" and rng.random() < 0.3 else DIGIT_WORDS[int(digit)])
        index += 1
    return " ".join(words)


def group(digits: str, sizes: list[int], separators: list[str]) -> str:
    out, index = [], 0
    for n, size in enumerate(sizes):
        out.append(digits[index:index + size])
        index += size
        if index < len(digits):
            out.append(separators[n % len(separators)])
    if index < len(digits):
        out.append(digits[index:])
    return "".join(out)


def card_value(rng: random.Random, voice: bool) -> tuple[str, str]:
    prefix, length = rng.choice(CARD_NETWORKS)
    digits = luhn_complete(prefix, length, rng)
    if voice and rng.random() < 0.5:
        return spoken_digits(digits, rng), digits
    style = rng.randrange(8)
    if style == 0:
        text = digits
    elif style == 1:
        text = group(digits, [4] * 5, [" "])
    elif style == 2:
        text = group(digits, [4] * 5, ["-"])
    elif style == 3:
        text = group(digits, [4] * 5, ["."])
    elif style == 4:
        text = group(digits, [4] * 5, [rng.choice(["  ", " - ", "--", " . ", " -- "])])
    elif style == 5:  # odd groupings
        sizes = [rng.randint(1, 7) for _ in range(8)]
        text = group(digits, sizes, [rng.choice([" ", "-", "  "])])
    elif style == 6 and length == 15:
        text = group(digits, [4, 6, 5], [" "])
    else:
        text = group(digits, [4] * 5, [rng.choice([" ", "-", ". ", " ", "/"]) for _ in range(5)])
    return text, digits


def phone_value(rng: random.Random, voice: bool) -> tuple[str, str]:
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    line = f"{rng.randint(0, 9999):04d}"
    digits = area + exchange + line
    if voice and rng.random() < 0.6:
        spoken = spoken_digits(("1" if rng.random() < 0.2 else "") + digits, rng)
        return spoken, digits
    shapes = [
        f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}",
        f"{area} {exchange} {line}", f"+1 {area} {exchange} {line}", f"1-{area}-{exchange}-{line}",
        f"{area}{exchange}{line}", f"+1{area}{exchange}{line}", f"{exchange}-{line}", f"1 ({area}) {exchange}-{line}",
        f"+1 ({area}) {exchange}-{line}", f"{area}  {exchange}  {line}",
    ]
    foreign = [
        ("+44 20 {a} {b}", 4, 4), ("+49 151 {a}{b}", 4, 4), ("+33 6 {a} {b}", 4, 4), ("+91 98{a} {b}", 3, 5),
        ("+4915{a}{b}", 5, 4), ("+61 4{a} {b}", 4, 4),
    ]
    if rng.random() < 0.25:
        template, n_a, n_b = rng.choice(foreign)
        a = "".join(str(rng.randrange(10)) for _ in range(n_a))
        b = "".join(str(rng.randrange(10)) for _ in range(n_b))
        text = template.format(a=a, b=b)
        return text, re.sub(r"\D", "", text)
    text = rng.choice(shapes)
    return text, re.sub(r"\D", "", text)


def person_names(rng: random.Random) -> list[str]:
    """Names from several sources, lower-cased later for voice."""
    from faker import Faker

    from model_runtime.data import lexicon
    from nlumon.pii import census_given_names

    faker = Faker(["en_US", "en_IN", "es_MX", "de_DE", "fr_FR", "it_IT", "pl_PL", "sv_SE", "en_NG", "yo_NG",
                   "sw", "zu_ZA", "vi_VN", "tr_TR", "pt_BR", "nl_NL"])
    faker.seed_instance(rng.randrange(1 << 30))
    out = []
    for _ in range(1500):
        first, last = faker.first_name(), faker.last_name()
        if not re.fullmatch(r"[^\W\d_]+(?:[-'][^\W\d_]+)?", first) or not re.fullmatch(r"[^\W\d_]+(?:[-'][^\W\d_]+)?",
                                                                                     last):
            continue
        out.append(first if rng.random() < 0.55 else f"{first} {last}")
    unseen = list(lexicon.UNSEEN_PEOPLE_FIRST)
    out += [rng.choice(unseen) + (f" {rng.choice(lexicon.UNSEEN_PEOPLE_LAST)}" if rng.random() < 0.4 else "")
            for _ in range(200)]
    census = sorted(census_given_names())
    out += [rng.choice(census) for _ in range(200)]
    rng.shuffle(out)
    return out


STREETS = ("elm", "oak", "maple", "main", "pine", "cedar", "washington", "lake", "hill", "park", "sunset",
           "martin luther king",
           "5th", "42nd", "1st", "willow", "church", "mill", "river", "highland", "broad", "spring", "chestnut")
STREET_TYPES = ("street", "st", "avenue", "ave", "road", "rd", "boulevard", "blvd", "lane", "ln", "drive", "dr",
                "court", "ct", "place", "way", "parkway", "terrace", "circle")


def address_value(rng: random.Random, voice: bool) -> tuple[str, str]:
    number = str(rng.randint(1, 99999))
    street = rng.choice(STREETS)
    parts = [number]
    if rng.random() < 0.3:
        parts.append(rng.choice(["n", "s", "e", "w", "north", "south", "N.", "W."]))
    parts += [street, rng.choice(STREET_TYPES)]
    if rng.random() < 0.3:
        parts += [rng.choice(["apt", "suite", "unit", "#"]), str(rng.randint(1, 40)) + rng.choice(["", "b"])]
    text = " ".join(parts)
    if not voice and rng.random() < 0.6:
        text = text.title() if rng.random() < 0.5 else text
    return text, f"{number} {street.split()[0]}"


def email_value(rng: random.Random, voice: bool, name: str) -> tuple[str, str]:
    words = [w for w in re.findall(r"[a-z]+", name.lower()) if len(w) > 1] or ["sam"]
    domain = rng.choice(["gmail", "yahoo", "outlook", "example", "icloud", "hotmail", "proton"])
    tld = rng.choice(["com", "com", "net", "org", "co dot uk" if voice else "co.uk", "io"])
    if len(words) == 1:
        words.append(str(rng.randint(10, 99)))
    if voice:
        sep = rng.choice([" dot ", " underscore ", ""])
        local = sep.join(words) if sep else "".join(words)
        text = f"{local} at {domain} dot {tld}"
        probe = "".join(words)
    else:
        sep = rng.choice([".", "_", "", "-"])
        local = sep.join(words) + (f"+{rng.choice(['shop', 'orders'])}" if rng.random() < 0.2 else "")
        text = f"{local}@{domain}.{tld}"
        if rng.random() < 0.3:
            text = text.capitalize()
        probe = "".join(words)
    return text, probe


PERSON_CONTEXTS = (
    "swap my shift with {p} {when}", "can i swap shifts with {p}", "trade my {when} shift with {p}",
    "ask {p} to cover my shift {when}", "ask {p} to come to aisle {n}", "is {p} working {when}",
    "is {p} on shift {when}", "tell {p} the truck is here", "call {p} to the front", "page {p} to {dept}",
    "can {p} take my shift {when}", "have you seen {p}", "find the registry for {p}",
    "what time does {p} start {when}", "text {p} that the delivery came", "is {p} in today",
    "whats left on the registry for {p}", "i need the schedule for {p}", "switch shifts with {p}",
    "pull up {p}'s order", "where is {p} stationed today", "thanks {p}", "is {p} scheduled {when}",
    "tell {p} to call me back", "my name is {p}", "share my registry with {p}",
    # weaker contexts: no "ask", "tell", "with" or "is ... working" before the name
    "where is {p}", "i need {p} at the registers", "{p} needs help in {dept}", "is the pickup for {p} ready",
    "did {p} clock in {when}", "let {p} know the truck is here", "send {p} to {dept}", "meet {p} at the front",
)
CARD_CONTEXTS = ("pay with card {c}", "my card number is {c}", "charge it to {c}", "use {c} for the order",
                 "the card is {c} expires next year", "put it on {c}", "{c} is the card on file")
PHONE_CONTEXTS = ("call me at {c}", "my number is {c}", "text me on {c} when its ready", "reach me at {c}",
                  "{c} is my cell", "the customer left {c} for a callback", "phone {c}", "use {c} for the delivery")
EMAIL_CONTEXTS = ("email the receipt to {c}", "my email is {c}", "send it to {c}", "{c} is my email",
                  "update my account email to {c}")
ADDRESS_CONTEXTS = ("ship it to {c}", "deliver to {c} please", "my address is {c}", "change the address to {c}",
                    "is there a store near {c}")
DEPT = ("electronics", "the front", "customer service", "receiving", "the bakery", "pharmacy")
WHEN = ("today", "tomorrow", "on friday", "this weekend", "saturday morning", "next monday", "tonight")
PRODUCTS = ("shirts", "jeans", "sneakers", "handbags", "polo shirts", "boots", "perfume", "watches", "ice cream",
            "sunglasses", "wallets", "jackets", "dresses", "cake mix")
BRAND_CONTEXTS = ("add two {b} {p} to my cart", "do you carry {b} {p}", "where are the {b} {p}",
                  "is the {b} {p} on sale", "any {b} {p} in size 9", "show me {b} {p}", "restock the {b} {p}",
                  "the {b} {p} rang up wrong")


def person_named_brands() -> list[str]:
    return ["calvin klein", "tommy hilfiger", "ralph lauren", "michael kors", "kate spade", "ben & jerry's",
            "tory burch", "vera wang", "martha stewart", "jordan", "levi's", "hugo boss", "marc jacobs",
            "giorgio armani", "betty crocker", "dr martens", "paul mitchell", "ted baker", "kenneth cole",
            "steve madden", "tom ford", "stella mccartney", "estee lauder", "burt's bees", "eddie bauer",
            "hunter", "carter's", "sebastian", "wilson", "burton"]


def decoy_utterance(rng: random.Random, voice: bool) -> tuple[str, Planted]:
    from model_runtime.data import lexicon

    kind = rng.choice(DECOY_KINDS)
    if kind == "brand_person":
        brand = rng.choice(person_named_brands())
        text = rng.choice(BRAND_CONTEXTS).format(b=brand, p=rng.choice(PRODUCTS))
        return text, Planted(kind, brand, brand)
    if kind == "brand":
        category = rng.choice(list(lexicon.BRANDS))
        brand = rng.choice(lexicon.BRANDS[category] + lexicon.UNSEEN_BRANDS[category])
        product = rng.choice(lexicon.PRODUCTS[category])
        text = rng.choice(BRAND_CONTEXTS).format(b=brand, p=product)
        return text, Planted(kind, brand, brand)
    if kind == "order_id":
        digits = "".join(str(rng.randrange(10)) for _ in range(rng.choice((4, 5, 6, 7, 8, 9, 10, 12))))
        if rng.random() < 0.15:
            digits = f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}-{rng.randint(1000000, 9999999)}"
        value = spoken_digits(digits, rng, doubles=False) if voice and digits.isdigit() and len(digits) <= 6 else digits
        context = rng.choice(("track order {v}", "where is my order {v}", "cancel order number {v}",
                              "status of order {v}", "is order {v} ready for pickup", "refund for order {v}",
                              "order number {v} never arrived"))
        return context.format(v=value), Planted(kind, value, value)
    if kind == "sku":
        colour, size = rng.choice(["BLU", "RED", "BLK"]), rng.choice(["S", "M", "XL"])
        value = rng.choice((f"{rng.randint(10000, 99999)}-{colour}-{size}",
                            f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}", f"SKU{rng.randint(100000, 999999)}"))
        return rng.choice(("check stock for sku {v}", "sku {v} is out", "price check on item {v}")).format(v=value), \
            Planted(kind, value, value)
    if kind == "upc":
        value = "".join(str(rng.randrange(10)) for _ in range(12))
        if rng.random() < 0.3:
            value = f"{value[0]} {value[1:6]} {value[6:11]} {value[11]}"
        return rng.choice(("scan upc {v}", "the barcode says {v}", "look up upc {v}")).format(v=value), \
            Planted(kind, value, value)
    if kind == "price":
        value = rng.choice((f"${rng.randint(1, 999)}.{rng.randint(0, 99):02d}", f"{rng.randint(1, 99)}.99",
                            f"$1,{rng.randint(100, 999)}.00", f"{rng.randint(2, 9)} for ${rng.randint(5, 20)}"))
        return rng.choice(("override the price to {v}", "it rang up at {v}", "is it {v} online")).format(v=value), \
            Planted(kind, value, value)
    if kind == "quantity":
        value = str(rng.randint(1, 48))
        return f"add {value} {rng.choice(PRODUCTS)} to my cart", Planted(kind, value, value)
    if kind == "time":
        value = rng.choice((f"{rng.randint(1, 12)}:{rng.choice(['00', '15', '30', '45'])} {rng.choice(['am', 'pm'])}",
                            f"{rng.randint(1, 12)} pm", f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/2026"))
        return rng.choice(("am i working at {v}", "request time off on {v}", "pickup at {v}")).format(v=value), \
            Planted(kind, value, value)
    value = str(rng.randint(1, 60)) + rng.choice(["", "", "b"])
    return rng.choice(("which aisle has milk aisle {v}", "is aisle {v} open", "page someone to aisle {v}")).format(
        v=value), Planted("aisle", value, value)


def clean_traffic(count: int, seed: int) -> list[Utterance]:
    """Generator traffic without a person slot (5 % ASR noise): nothing in it should be scrubbed."""
    from model_runtime.data.retail import GeneratorConfig, iter_examples

    out = []
    for example in iter_examples(GeneratorConfig(n=count * 2, seed=seed + 1, noise_rate=0.05)):
        if len(out) == count:
            break
        if any(kind == "person" for kind, _, _ in example.spans()):
            continue
        out.append(Utterance(f"clean-{seed}-{len(out)}", example.text, "voice"))
    return out


def build_corpus(count: int, seed: int) -> list[Utterance]:
    rng = random.Random(seed)
    names = person_names(rng)
    out: list[Utterance] = []
    for index in range(count):
        voice = rng.random() < 0.5
        roll = rng.random()
        when, dept, n = rng.choice(WHEN), rng.choice(DEPT), rng.randint(1, 40)
        planted: list[Planted] = []
        if roll < 0.35:
            name = names[index % len(names)]
            text = rng.choice(PERSON_CONTEXTS).format(p=name, when=when, dept=dept, n=n)
            planted.append(Planted("person", name, name))
        elif roll < 0.5:
            value, digits = card_value(rng, voice)
            text = rng.choice(CARD_CONTEXTS).format(c=value)
            planted.append(Planted("card", value, digits))
        elif roll < 0.65:
            value, digits = phone_value(rng, voice)
            text = rng.choice(PHONE_CONTEXTS).format(c=value)
            planted.append(Planted("phone", value, digits))
        elif roll < 0.75:
            value, probe = email_value(rng, voice, names[(index * 7) % len(names)])
            text = rng.choice(EMAIL_CONTEXTS).format(c=value)
            planted.append(Planted("email", value, probe))
        elif roll < 0.82:
            value, probe = address_value(rng, voice)
            text = rng.choice(ADDRESS_CONTEXTS).format(c=value)
            planted.append(Planted("address", value, probe))
        else:
            text = ""
        decoys: list[Planted] = []
        if not text or rng.random() < 0.4:  # a decoy alone, or after the personal data
            decoy_text, decoy = decoy_utterance(rng, voice)
            text = f"{text} and {decoy_text}" if text else decoy_text
            decoys.append(decoy)
        if voice:
            text = text.lower()
        elif rng.random() < 0.7:
            text = text[:1].upper() + text[1:] + rng.choice([".", "?", "", "!"])
        if voice:
            planted = [Planted(p.kind, p.value.lower(), p.probe) for p in planted]
            decoys = [Planted(d.kind, d.value.lower(), d.probe.lower()) for d in decoys]
        out.append(Utterance(f"pii-bench-{seed}-{index}", text, "voice" if voice else "typed", planted, decoys))
    return out


# -- reading back ---------------------------------------------------------------------------------------
_SPOKEN = re.compile(r"\b(double|triple)\s+(zero|oh|one|two|three|four|five|six|seven|eight|nine)\b|"
                     r"\b(zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", re.IGNORECASE)


def digits_of(text: str) -> str:
    def spoken(match: re.Match) -> str:
        if match.group(1):
            digit = "0" if match.group(2).lower() == "oh" else str(DIGIT_WORDS.index(match.group(2).lower()))
            return digit * (2 if match.group(1).lower() == "double" else 3)
        word = match.group(3).lower()
        return "0" if word == "oh" else str(DIGIT_WORDS.index(word))

    return re.sub(r"\D", "", _SPOKEN.sub(spoken, text))


def words_of(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text)} | {
        w.lower() for w in re.findall(r"[^\W_]+", text)}


def recovered(item: Planted, strings: list[str], slot_join: str, template_words: set[str]) -> bool:
    if item.kind == "card":
        return any(item.probe in digits_of(s) for s in [*strings, slot_join])
    if item.kind == "phone":
        tail = item.probe[-7:]
        return any(tail in digits_of(s) for s in [*strings, slot_join])
    if item.kind == "email":
        squashed = [re.sub(r"[^a-z0-9]", "", re.sub(r"\b(dot|underscore|dash)\b", "", s.lower())) for s in strings]
        return any(item.probe in s for s in squashed)
    if item.kind == "person":
        name_words = {w for w in words_of(item.value) if len(w) > 1} - template_words
        return any(name_words & words_of(s) for s in strings)
    if item.kind == "address":
        number, street = item.probe.split(" ", 1)
        return any(number in digits_of(s) and street.lower() in words_of(s) for s in strings)
    raise ValueError(item.kind)


def kept(decoy: Planted, text: str) -> bool:
    return " ".join(decoy.value.lower().split()) in " ".join(text.lower().split())


def string_leaves(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in string_leaves(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in string_leaves(item)]
    return []


def stored_copies(prediction: dict, window_start: datetime) -> list[dict]:
    """What the monitor would store from this row: its labeling-queue row and message, a cluster's examples, an
    alert's evidence."""
    from labeling.flags import make_item
    from labeling.items import Reason
    from monitor.alerting import EVIDENCE_KEEP
    from monitor.job import OOD_CLUSTER_KEEP
    from monitor.labeling_sink import deidentified_prediction, kafka_message, queue_row
    from nlumon.pii import deidentify_row

    row = deidentified_prediction(prediction)
    item = make_item(row, [Reason.LOW_CONFIDENCE], (window_start, window_start + timedelta(minutes=5)))
    queued = queue_row(item, row, window_start, 1)
    message = json.loads(kafka_message(queued, item))
    cluster = deidentify_row({"cluster_id": "c1", "assistant": "all", "examples": [prediction["text_scrubbed"]]},
                             keep=OOD_CLUSTER_KEEP)
    evidence = deidentify_row({"examples": [prediction["text_scrubbed"]], "model_version": "m"}, keep=EVIDENCE_KEEP)
    return [queued, message, cluster, evidence]


def run(args: argparse.Namespace) -> dict:
    from nlumon.records import UtteranceEvent
    from nlumon.settings import load_settings
    from streams.model_service import ModelService
    from streams.pipeline import BatchPipeline, RawRecord

    model_settings = {"package_path": args.package, **({"backend": args.backend} if args.backend else {})}
    settings = load_settings(args.config, model=model_settings)
    corpus = build_corpus(args.count, args.seed)
    model = ModelService(settings.model).load(Path(args.package).resolve())
    pipeline = BatchPipeline(settings)
    base = datetime(2026, 11, 23, 10, tzinfo=UTC)
    by_id: dict[str, list[dict]] = defaultdict(list)
    started = time.perf_counter()
    batch = settings.stream.max_batch
    clean = clean_traffic(args.clean, args.seed)
    corpus_and_clean = corpus + clean
    for first in range(0, len(corpus_and_clean), batch):
        records = []
        for offset, utterance in enumerate(corpus_and_clean[first:first + batch], start=first):
            event = UtteranceEvent(id=utterance.id, ts=base, assistant="associate" if offset % 3 else "shopper",
                                   session_id=f"s-{offset % 50}", text=utterance.text,
                                   channel="voice" if utterance.style == "voice" else "text",
                                   asr_confidence=0.9 if utterance.style == "voice" else None)
            records.append(RawRecord(event.to_json(), event.session_id.encode(), 0, offset, "utterances",
                                     base.timestamp()))
        result = pipeline.process(records, model)
        for table, rows in result.rows.items():
            for row in rows:
                by_id[row.get("id", "")].append({"table": table, **row})
        if result.dead_letters:
            raise SystemExit(f"{len(result.dead_letters)} dead letter(s): {result.dead_letters[0].reason}")
    elapsed = time.perf_counter() - started
    model.runtime.close()

    recall: dict[str, Counter] = defaultdict(Counter)
    lost: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    for utterance in corpus:
        rows = by_id[utterance.id]
        prediction = next(r for r in rows if r["table"] == "predictions")
        stored = [r for row in rows for r in [row]] + stored_copies(prediction, base)
        strings = [s for row in stored for s in string_leaves(row)]
        slot_join = " ".join(prediction["slot_values"])
        template_words = words_of(utterance.text) - set().union(*(words_of(p.value) for p in utterance.planted)) \
            if utterance.planted else set()
        for item in utterance.planted:
            leak = recovered(item, strings, slot_join, template_words)
            recall[item.kind][f"{utterance.style}_total"] += 1
            recall[item.kind]["total"] += 1
            if leak:
                recall[item.kind]["leaked"] += 1
                recall[item.kind][f"{utterance.style}_leaked"] += 1
                if len(examples[item.kind]) < args.examples:
                    examples[item.kind].append({"text": utterance.text, "stored_text": prediction["text_scrubbed"],
                                                "slot_values": prediction["slot_values"]})
        for decoy in utterance.decoys:
            lost[decoy.kind]["total"] += 1
            if not kept(decoy, prediction["text_scrubbed"]):
                lost[decoy.kind]["lost"] += 1
                if len(examples[f"lost_{decoy.kind}"]) < args.examples:
                    examples[f"lost_{decoy.kind}"].append({"text": utterance.text,
                                                           "stored_text": prediction["text_scrubbed"]})
    per_kind = {}
    for kind in PII_KINDS:
        counts = recall[kind]
        total = counts["total"]
        per_kind[kind] = {
            "planted": total, "recovered_from_storage": counts["leaked"],
            "recall": round(1 - counts["leaked"] / total, 4) if total else None,
            "recall_voice": _recall(counts, "voice"), "recall_typed": _recall(counts, "typed"),
            "target": TARGETS[kind],
        }
        per_kind[kind]["target_met"] = (None if TARGETS[kind] is None or total == 0
                                        else per_kind[kind]["recall"] >= TARGETS[kind])
    decoys = {kind: {"planted": lost[kind]["total"], "lost": lost[kind]["lost"],
                     "lost_rate": round(lost[kind]["lost"] / lost[kind]["total"], 4) if lost[kind]["total"] else None}
              for kind in DECOY_KINDS}
    altered = []
    for utterance in clean:
        stored = next(r for r in by_id[utterance.id] if r["table"] == "predictions")["text_scrubbed"]
        if stored != utterance.text:
            altered.append({"text": utterance.text, "stored_text": stored})
    examples["altered_clean"] = altered[:args.examples]
    brand_order = [k for k in ("brand_person", "brand", "order_id")]
    total = sum(lost[k]["total"] for k in brand_order)
    brand_order_rate = sum(lost[k]["lost"] for k in brand_order) / total if total else 0.0
    return {
        "utterances": len(corpus), "package": str(Path(args.package).resolve().name), "model_version": model.version,
        "backend": model.backend, "seconds": round(elapsed, 2),
        "recall": per_kind, "decoys": decoys,
        "brand_and_order_id_lost_rate": round(brand_order_rate, 4), "brand_and_order_id_target": 0.02,
        "brand_and_order_id_target_met": brand_order_rate <= 0.02,
        "clean_traffic": {"utterances": len(clean), "altered": len(altered),
                          "altered_rate": round(len(altered) / len(clean), 4) if clean else None},
        "examples": dict(examples),
    }


def _recall(counts: Counter, style: str) -> float | None:
    total = counts[f"{style}_total"]
    return round(1 - counts[f"{style}_leaked"] / total, 4) if total else None


def print_table(result: dict) -> None:
    print(f"\n{result['utterances']} utterances through BatchPipeline with {result['model_version']} "
          f"({result['backend']}) in {result['seconds']} s")
    print(f"{'personal data':14} {'planted':>8} {'leaked':>7} {'recall':>8} {'voice':>8} {'typed':>8} {'target':>7}")
    for kind, row in result["recall"].items():
        def pct(value):
            return "-" if value is None else f"{value:.1%}"
        target = "-" if row["target"] is None else f"{row['target']:.0%}"
        print(f"{kind:14} {row['planted']:>8} {row['recovered_from_storage']:>7} {pct(row['recall']):>8} "
              f"{pct(row['recall_voice']):>8} {pct(row['recall_typed']):>8} {target:>7}"
              + ("" if row["target_met"] in (None, True) else "  MISSED"))
    print(f"\n{'decoy':14} {'planted':>8} {'lost':>7} {'lost %':>8}")
    for kind, row in result["decoys"].items():
        rate = "-" if row["lost_rate"] is None else f"{row['lost_rate']:.1%}"
        print(f"{kind:14} {row['planted']:>8} {row['lost']:>7} {rate:>8}")
    print(f"brand + order-id decoys lost: {result['brand_and_order_id_lost_rate']:.2%} (target <= 2%)")
    clean = result["clean_traffic"]
    if clean["utterances"]:
        print(f"clean generator traffic (no person slot, 5 % ASR noise) altered: {clean['altered']} of "
              f"{clean['utterances']} ({clean['altered_rate']:.1%})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_package = ROOT / ".run" / "test" / "models" / "quick"
    parser.add_argument("--package", type=Path, default=default_package,
                        help="model package (default: the test suite's quick model)")
    parser.add_argument("--backend", default=None,
                        help="model backend (onnx-cpu, onnx-int8, ...; default: the settings' model.backend)")
    parser.add_argument("--config", type=Path, default=None, help="nlumon settings file (TOML/YAML)")
    parser.add_argument("--count", type=int, default=2000, help="utterances in the corpus")
    parser.add_argument("--seed", type=int, default=7, help="seed of the corpus")
    parser.add_argument("--clean", type=int, default=1000,
                        help="generator utterances without personal data, for the over-scrub rate of plain traffic")
    parser.add_argument("--examples", type=int, default=5, help="leaks and losses kept as examples per kind")
    parser.add_argument("--output", type=Path, default=RESULTS / "pii.json", help="where the JSON goes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    body = run(args)
    result = {**header(argv, LIBRARIES), "parameters": parameters(args), **body}
    print_table(result)
    save(result, args.output)
    return result


if __name__ == "__main__":
    main()
