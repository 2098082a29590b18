"""Personal data handling before anything is stored, published or logged.

Raw utterance text never reaches ClickHouse: rows keep a keyed hash of it (HMAC-SHA256 with a
secret key from the settings) so duplicates can be found without the text being recoverable.

Every other string that is stored goes through one function, :func:`deidentify_row`, where the row is
built: it scrubs each string (and each string inside a list, a dict or a JSON column) of the row except the
columns the builder names as identifiers or closed vocabularies (a hash, an intent, an assistant). A new
column is therefore scrubbed unless someone decides it need not be. The utterance itself is de-identified
in context first (:func:`deidentify_utterance`): the whole text is scanned, with the model's slots, and
each slot value is mapped onto the spans found, so that a card number the model split over two slots, or
a surname the model tagged as a brand, still becomes a placeholder.

Detectors (:func:`find_pii`), most specific first; later ones never look inside earlier findings:

- ``<EMAIL>``: typed (``ann.lee@example.com``) and spoken (``ann dot lee at gmail dot com``);
- ``<CARD>``: 13 to 19 digits passing the Luhn check, in any grouping (spaces, dashes, dots, runs of
  separators) and spoken digit by digit (``four one one one ...``, ``double five``);
- ``<PHONE>``: North American shapes (``(415) 555-0134``, ``415.555.0134``, ``+1 415 555 0134``,
  ``1-800-555-0199``, ten bare digits), ``555-0134``, E.164 (``+44 20 7946 0958``), spoken digits, and
  any 7 to 15 digits right after a phone cue ("call", "text", "my number is");
- ``<ADDRESS>``: house number, street name and street type (``1234 Elm Street``, ``500 n main ave apt 4``);
- ``<PERSON>``: the model's person slots; Census given names (with a following surname); and context:
  after "ask", "tell", "call", "page", "swap my shift with", "is ... working", "for ...'s order", a token
  that is a given name or no common word. Brands named after people ("calvin klein", "jordan") stay in a
  product context ("two calvin klein shirts"); a strong person cue wins over a brand.

Numbers that are not personal data stay: order ids after an order cue, SKUs, UPCs, prices, quantities,
times and aisles (``tests/unit/test_pii.py``, ``benchmarks/pii.py``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for hashing and deduplication.

    >>> normalise("  Add  MILK to my cart ")
    'add milk to my cart'
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(key: str, text: str) -> str:
    """Keyed hash (hex) of the normalised text.

    >>> text_hash("k", "Add milk") == text_hash("k", "add  milk")
    True
    >>> text_hash("k", "add milk") == text_hash("other key", "add milk")
    False
    """
    return hmac.new(key.encode(), normalise(text).encode(), hashlib.sha256).hexdigest()


PLACEHOLDERS = {
    "email": "<EMAIL>", "card": "<CARD>", "phone": "<PHONE>", "address": "<ADDRESS>", "person": "<PERSON>",
}
KINDS = tuple(PLACEHOLDERS)
PLACEHOLDER = re.compile(r"<(?:EMAIL|CARD|PHONE|ADDRESS|PERSON)>")


@dataclass(frozen=True, order=True)
class Finding:
    """One piece of personal data: character offsets (end exclusive) into the text and its kind."""

    start: int
    end: int
    kind: str


# -- word lists ---------------------------------------------------------------------------------------
def _data_words(name: str) -> frozenset[str]:
    text = resources.files("nlumon").joinpath("data", name).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@functools.cache
def common_words() -> frozenset[str]:
    """Ordinary English and retail words (``nlumon/data/common_words.txt``): not a name on their own."""
    return _data_words("common_words.txt") | cue_stop_words()


@functools.cache
def cue_stop_words() -> frozenset[str]:
    """Words that follow a person cue without being a name: "ask *the* manager", "call *me*", "text *contains*"."""
    return _data_words("cue_stop_words.txt") | _data_words("inflected_words.txt") | FUNCTION_WORDS


@functools.cache
def product_words() -> frozenset[str]:
    """Product nouns (``nlumon/data/product_words.txt``): a brand next to one is the brand."""
    return _data_words("product_words.txt")


@functools.cache
def brand_names() -> frozenset[str]:
    """The brand lexicon (``nlumon/data/brands.txt``), lower case."""
    return _data_words("brands.txt")


# Census first names that are everyday English words are not names here: scrubbing "will", "may" or
# "summer" would shred ordinary requests. After a strong person cue ("ask grace to cover") they count.
COMMON_WORDS = frozenset("""
    january april may june september sunday bill ok
    alpha amber an angel angle art august aura autumn basil bee bell berry blossom brain brandy brook buck bud
    buddy candy carry chance charity chase cherish cherry chi chin china christen chuck clay cliff coral crystal
    curt daisy dale dawn dean delta desire destiny diamond dot drew dung dusty earl earnest ebony echo ed else
    emerald era eve fairy faith fern flora forest foster frank gala gale garland garnet gay gene genesis ginger
    glen glory golden grace grant guy ha hang harmony hazel heath heather herb holly honey hope hue hung in iris
    ivory ivy jack jade jewel joy junior karma kit lady lance lane lean liberty lily loan long love ma major man
    manual many maple margarita marina marine mark marry marvel max melody mercy merry meta mi mica miles min miss
    misty moon my noble nova numbers olive omega pa page patience pearl penny ping pinkie precious prince princess
    queen ray reed rich rocky rod romaine rose rosemary royal ruby rusty sage sandy sang season see shin so sol
    son song soon sparkle spring star sterling stormy sue summer sun sung sunny sunshine temple tequila tiny
    trinity velvet violet wan ward will windy winter yen yon young
""".split())
# Short English words that are also Census surnames ("is jordan on shift": "on" is no surname there).
FUNCTION_WORDS = frozenset("""
    a about after all also am an and any are as at be been but by can could did do does for from get go got had
    has have he her here him his how i if in into is it its just me more my no not now of off on or our out over
    so some than that the them then there they this to too two up us was we were what when where which who why
    will with would yes yet you your
""".split())
SURNAME_MAX_RANK = 5000  # the long tail of Census surnames is full of words: "trail" 8609, "shorts" 8612


def _census_names(*files: str, max_rank: int | None = None) -> frozenset[str]:
    import names  # the package's data files: "NAME frequency cumulative-frequency rank" per line

    found: set[str] = set()
    for key in files:
        with open(names.FILES[key], encoding="utf-8") as lines:
            for line in lines:  # most frequent first
                name, _, _, rank = line.split()
                if max_rank is not None and int(rank) > max_rank:
                    break
                found.add(name.lower())
    return frozenset(found)


@functools.cache
def census_given_names() -> frozenset[str]:
    """Every Census 1990 given name, everyday words included ("grace", "will")."""
    return _census_names("first:male", "first:female")


@functools.cache
def given_names() -> frozenset[str]:
    """Census given names, less :data:`COMMON_WORDS` (loaded once per process)."""
    return census_given_names() - COMMON_WORDS


@functools.cache
def surnames() -> frozenset[str]:
    """The most common Census surnames, less :data:`FUNCTION_WORDS` (loaded once per process)."""
    return _census_names("last", max_rank=SURNAME_MAX_RANK) - FUNCTION_WORDS


def load_word_lists() -> None:
    """Read every list now (the worker calls this at start, not inside its first batch)."""
    given_names(), surnames(), common_words(), cue_stop_words(), product_words(), _brand_pattern()


# -- e-mail addresses ---------------------------------------------------------------------------------
_TLDS = ("com|net|org|edu|gov|mil|io|co|uk|us|ca|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|ie|au|nz|in|jp|br|mx|"
         "info|biz|me|ai|app|dev|ly|tv|xyz|email|online|store|shop|site|tech|cloud|page")
_PROVIDERS = "gmail|googlemail|yahoo|hotmail|outlook|icloud|aol|protonmail|proton|live|msn|comcast|gmx|yandex"
_SPOKEN_DOT = r"(?:\s*\.\s*|\s+(?:dot|\(dot\)|\[dot\]|period)\s+)"
_LOCAL_SEP = r"(?:\s*[._+-]\s*|\s+(?:dot|underscore|under\s+score|dash|hyphen|plus|period)\s+)"
EMAIL = re.compile(
    r"[\w.+-]+\s*@\s*[\w-]+(?:\.[\w-]+)+"  # typed: ann.lee@example.com
    rf"|\b[a-z][a-z0-9]*(?:{_LOCAL_SEP}[a-z0-9]+)*"  # spoken: ann dot lee
    r"(?:\s*@\s*|\s+(?:at|\(at\)|\[at\])\s+)"  # at
    rf"(?:[a-z0-9-]+(?:{_SPOKEN_DOT}[a-z0-9-]+)*{_SPOKEN_DOT}(?:{_TLDS})\b|(?:{_PROVIDERS})\b)",
    re.IGNORECASE,
)

# -- numbers: cards and phones --------------------------------------------------------------------------
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_NUMBER_ATOM = re.compile(
    r"\d+|\b(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple|hundred)\b", re.IGNORECASE)
_GAP = re.compile(r"[\s\-–—.·/_,()+]{0,4}")  # what may separate two groups of one number
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
ID_CUES = frozenset("""
    order orders tracking track confirmation sku skus upc upcs ean barcode item items invoice receipt reference
    ref model serial aisle aisles shipment po case ticket pallet lot batch part isbn gtin asin style rma store
    bay register lane transaction dept department
""".split())
PHONE_CUES = frozenset("""
    call calling called phone cell mobile reach contact dial fax tel telephone text texting whatsapp sms ring
    number landline callback
""".split())
CARD_CUES = frozenset("card visa mastercard amex discover credit debit pay paying payment charge cc".split())
_CUE_FILLERS = frozenset("number no num nr id is was # my the a me at on to it be".split())


@dataclass
class _Group:
    start: int
    end: int
    digits: str
    spoken: bool


def luhn_valid(digits: str) -> bool:
    """The payment-card checksum.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _number_runs(text: str, blocked: Sequence[Finding]) -> list[list[_Group]]:
    """Runs of digit groups (typed or spoken digit by digit) separated only by separators."""
    atoms: list[_Group] = []
    pending_repeat = 0
    for match in _NUMBER_ATOM.finditer(text):
        if any(f.start < match.end() and match.start() < f.end for f in blocked):
            pending_repeat = 0
            continue
        word = match.group().lower()
        if word in ("double", "triple"):
            pending_repeat = 2 if word == "double" else 3
            atoms.append(_Group(match.start(), match.end(), "", True))
            continue
        if word == "hundred":  # "one eight hundred ...": 1-800; alone, two zeros that are no number
            digits = "00" if atoms and atoms[-1].spoken and atoms[-1].end < match.start() else ""
            pending_repeat = 0
            atoms.append(_Group(match.start(), match.end(), digits, True))
            continue
        digits = word if word.isdigit() else _DIGIT_WORDS[word]
        if pending_repeat and len(digits) == 1:
            digits *= pending_repeat
        pending_repeat = 0
        atoms.append(_Group(match.start(), match.end(), digits, not word.isdigit()))
    runs: list[list[_Group]] = []
    for atom in atoms:
        if runs and _GAP.fullmatch(text, runs[-1][-1].end, atom.start) is not None and (
            atom.start > runs[-1][-1].end or not (atom.spoken or runs[-1][-1].spoken)
        ):
            runs[-1].append(atom)
        else:
            runs.append([atom])
    cleaned = []
    for run in runs:  # a "double"/"triple" with no digit after it, or a lone "o"/"oh", is no part of a number
        while run and (not run[-1].digits or text[run[-1].start:run[-1].end].lower() in ("o", "oh")):
            run.pop()
        while run and (not run[0].digits or text[run[0].start:run[0].end].lower() in ("o", "oh")):
            run.pop(0)
        if run:
            cleaned.append(run)
    return cleaned


def _words_before(text: str, position: int, count: int = 4) -> list[str]:
    return [w.lower() for w in _WORD.findall(text[max(0, position - 60):position])][-count:]


def _cued(text: str, position: int, cues: frozenset[str], count: int = 4) -> bool:
    """A cue word among the few words before ``position`` (skipping "number", "is", "my" ...)."""
    words = _words_before(text, position, count)
    for word in reversed(words):
        if word in cues:
            return True
        if word not in _CUE_FILLERS and not word.isdigit():
            return False
    return False


def _phone_cued(text: str, position: int) -> bool:
    words = _words_before(text, position, 5)
    for index in range(len(words) - 1, -1, -1):
        word = words[index]
        if word in PHONE_CUES:
            return not (word == "number" and index > 0 and words[index - 1] in ID_CUES)  # "order number"
        if word not in _CUE_FILLERS and not word.isdigit() and word not in ("reach", "me", "us", "back", "on", "at"):
            return False
    return False


def _card_windows(text: str, run: list[_Group]) -> list[tuple[int, int]]:
    """(first, last) group indexes of the card numbers in a run: 13-19 digits that pass the Luhn check."""
    found: list[tuple[int, int]] = []
    if text[max(0, run[0].start - 3):run[0].start].rstrip(" (").endswith("+"):
        return found  # "+49...": an international phone number
    id_cued = _cued(text, run[0].start, ID_CUES)
    card_cued = _cued(text, run[0].start, CARD_CUES, 5)
    # After an order cue (no card cue), only a whole run that could be a card network's number is a card:
    # "order 113-4567890-1234567" is an order id even though its last 14 digits pass the Luhn check.
    only_whole = id_cued and not card_cued
    candidates = []
    for first in range(len(run)):
        digits = ""
        for last in range(first, len(run)):
            digits += run[last].digits
            if len(digits) > 19:
                break
            if len(digits) >= 13 and digits[0] != "0" and luhn_valid(digits):
                if only_whole and (first > 0 or last < len(run) - 1 or digits[0] not in "23456"
                                   or not _card_grouping([len(g.digits) for g in run])):
                    continue
                candidates.append((last - first, first, last))
    for _, first, last in sorted(candidates, key=lambda c: (-c[0], c[1])):  # the longest first
        if all(last < a or first > b for a, b in found):
            found.append((first, last))
    return sorted(found)


def _card_grouping(sizes: list[int]) -> bool:
    """Groups a card number is written in: one block, fours (the last may be shorter), 4-6-5 or 4-6-4."""
    return (len(sizes) == 1 or (all(size == 4 for size in sizes[:-1]) and sizes[-1] <= 4)
            or sizes in ([4, 6, 5], [4, 6, 4]))


_NANP_SHAPES = {(3, 3, 4), (1, 3, 3, 4), (3, 7), (1, 3, 7), (10,), (11,), (6, 4)}


def _phone_windows(text: str, run: list[_Group]) -> list[tuple[int, int]]:
    """(first, last) group indexes of the phone numbers in a run (cards already taken out)."""
    found: list[tuple[int, int]] = []
    # After an order cue (and no phone cue) only a whole run can be a phone number: "order 113-4567890-1234567".
    only_whole = _cued(text, run[0].start, ID_CUES) and not _phone_cued(text, run[0].start)
    index = 0
    while index < len(run):
        window = _phone_at(text, run, index)
        if window is None:
            index += 1
            continue
        if not only_whole or window == (0, len(run) - 1):
            found.append(window)
        index = window[1] + 1
    return found


def _phone_at(text: str, run: list[_Group], first: int) -> tuple[int, int] | None:
    start = run[first].start
    plus = text[max(0, start - 3):start].rstrip(" (").endswith("+")
    cued = _phone_cued(text, start)
    id_cued = _cued(text, start, ID_CUES)
    digits, shape, spoken = "", [], 0
    best: tuple[int, int] | None = None
    for last in range(first, len(run)):
        group = run[last]
        digits += group.digits
        shape.append(len(group.digits))
        spoken += group.spoken
        if len(digits) > 15:
            break
        count = len(digits)
        gap_dash = last > first and text[run[last - 1].end:group.start].strip() in ("-", ".")
        if plus and 8 <= count <= 15:  # E.164: +44 20 7946 0958, +4915112345678
            best = (first, last)
        elif run[first].digits in ("00", "011") and 10 <= count <= 15 and not id_cued:  # 00 44 20 ...
            best = (first, last)
        elif spoken and spoken == last - first + 1:  # spoken digit by digit
            if count in (10, 11) or (count >= 7 and (cued or not id_cued)):
                best = (first, last)
        elif tuple(shape) in _NANP_SHAPES and (count == 10 or (count == 11 and digits[0] == "1")):
            area = digits[-10:]
            shaped = len(shape) > 1 + (count == 11)
            if shaped or cued or (area[0] in "23456789" and area[3] in "23456789" and not id_cued):
                best = (first, last)
        elif tuple(shape) == (3, 4) and (gap_dash or cued) and not id_cued:  # 555-0134
            best = (first, last)
        elif cued and 7 <= count <= 15:  # "my number is 020 7946 0958"
            best = (first, last)
    return best


def _number_findings(text: str, blocked: Sequence[Finding]) -> list[Finding]:
    findings = []
    for run in _number_runs(text, blocked):
        if sum(len(g.digits) for g in run) < 7:
            continue
        taken = _card_windows(text, run)
        findings += [Finding(run[a].start, run[b].end, "card") for a, b in taken]
        rest: list[list[_Group]] = []
        edges = [-1] + [i for a, b in taken for i in (a, b)] + [len(run)]
        for left, right in zip(edges[::2], edges[1::2], strict=True):  # the groups between two cards
            if right - left > 1:
                rest.append(run[left + 1:right])
        for part in rest:
            findings += [Finding(_opening(text, part[a].start), part[b].end, "phone")
                         for a, b in _phone_windows(text, part)]
    return findings


def _opening(text: str, start: int) -> int:
    """``start`` moved left over a "+" or "(" that opens the number ("+44 ...", "(415) ...")."""
    while start > 0 and text[start - 1] in "+( ":
        if text[start - 1] == " " and (start < 2 or text[start - 2] not in "+("):
            break
        start -= 1
    return start


# -- street addresses ---------------------------------------------------------------------------------
_NUMBER_WORDS = ("zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
                 "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
                 "ninety|hundred|thousand")
_DIRECTION = r"(?:n|s|e|w|ne|nw|se|sw|north|south|east|west|northeast|northwest|southeast|southwest)\.?"
_STREET_TYPE = (r"(?:street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|way|"
                r"terrace|ter|circle|cir|parkway|pkwy|highway|hwy|trail|trl|square|sq|crescent|cres|alley|loop|"
                r"pike|plaza|plz|expressway|expy|freeway|fwy|route|rte)\.?")
_NOT_NAME = r"(?!(?:and|or|the|to|at|in|on|for|of|with|my|a|an|from|by|is|are|it|me|i)\b)"
_STREET_NAME = rf"(?:{_NOT_NAME}[a-z][a-z'’\-]*|\d+(?:st|nd|rd|th))"
_UNIT = r"(?:apt|apartment|suite|ste|unit|#|no|floor|fl|room|rm|bldg|building)\.?\s*#?\s*[a-z0-9][a-z0-9\-]*"
ADDRESS = re.compile(
    rf"\b(?:\d{{1,6}}[a-z]?|(?:(?:{_NUMBER_WORDS})\s+){{0,4}}(?:{_NUMBER_WORDS}))\s+"
    rf"(?:{_DIRECTION}\s+)?(?:{_STREET_NAME}\s+){{1,3}}{_STREET_TYPE}(?![\w'])"
    rf"(?:\s+{_DIRECTION}(?![\w']))?(?:,?\s+{_UNIT}\b)?"
    r"(?:,\s*(?:[a-z]+\s+){0,2}[a-z]+,?\s+(?:[a-z]{2}\s+)?\d{5}(?:-\d{4})?\b)?"  # ", city, ST 12345"
    r"|\bp\.?\s*o\.?\s*box\s+\d+\b",
    re.IGNORECASE,
)


def _product_follows(text: str, end: int) -> bool:
    """A product noun right after a would-be address: "2 more court shoes" is a quantity of shoes."""
    following = _WORD.match(text, end + len(text[end:]) - len(text[end:].lstrip()))
    return following is not None and following.group().lower() in product_words()


_STREET_WORDS = frozenset(re.findall(r"[a-z]+", _STREET_TYPE))
_SPOKEN_AT = re.compile(r"\s(?:at|\(at\)|\[at\])\s")
_STREET_HINT = re.compile(rf"(?:\d|\b(?:{_NUMBER_WORDS})\b)[^<]*\b{_STREET_TYPE}(?![\w'])|p\.?\s*o\.?\s*box")


# -- person names ---------------------------------------------------------------------------------------
_NAME_TOKEN = re.compile(r"(?:[^\W\d_][\u0300-\u036f]*)+(?:['’-](?:[^\W\d_][\u0300-\u036f]*)+)*", re.UNICODE)
ASK_CUES = frozenset("""
    ask asking asked tell telling told page paging paged call calling text texting message messaging ping notify
    remind thank thanks cc dm email emailing
""".split())
WITH_CONTEXT = frozenset("""
    swap swapping swapped trade trading switch switching shift shifts cover covering share sharing registry
    exchange work working lunch break meet meeting talk speak chat train training close closing open opening
""".split())
FOR_CONTEXT = frozenset("""
    registry schedule cover covering fill filling sub subbing shift pickup order orders reservation hold appointment
""".split())
# "is X in today", "is X off on friday": a person's whereabouts at a time
WHEREABOUTS = frozenset("in on off here out back".split())
TIME_WORDS = frozenset("""
    today tomorrow tonight yesterday monday tuesday wednesday thursday friday saturday sunday weekend week next
    this new christmas morning afternoon evening noon at until till
""".split())
# A name before these two words is someone's ("priya needs help", "kwame called out").
SUBJECT_PAIRS = frozenset({
    ("needs", "help"), ("needs", "a"), ("called", "out"), ("called", "in"), ("clocked", "in"), ("clocked", "out"),
    ("is", "working"), ("is", "covering"), ("is", "scheduled"), ("is", "on"), ("is", "late"), ("is", "sick"),
    ("is", "off"), ("wants", "to"), ("will", "cover"), ("can", "cover"), ("asked", "for"), ("said", "that"),
    ("told", "me"), ("left", "early"), ("is", "here"), ("quit", "today"),
})
# Verbs whose object is a person when a preposition follows: "send priya to electronics", "meet ann at the front".
SEND_CUES = {"send": ("to", "over", "home", "back", "up"), "meet": ("at", "in", "by", "near"), "find": ("to",),
             "need": ("at", "to", "in", "on"), "let": ("know",), "have": ("call", "cover", "come", "check")}
TITLES = frozenset("mr mrs ms miss mister missus dr doctor prof professor sir madam".split())
AUXILIARIES = frozenset("is was isnt wasnt does did doesnt didnt can could will would should has have".split())
AFTER_CUES = frozenset("""
    working work works scheduled stationed clocked clocking clock start starts starting covering cover closing
    opening coming come get gets take taking
""".split())
AFTER_CUE_PAIRS = frozenset({
    ("on", "shift"), ("on", "the"), ("on", "break"), ("on", "lunch"), ("on", "duty"), ("on", "today"),
    ("on", "tomorrow"), ("in", "today"), ("in", "tomorrow"), ("here", "today"), ("off", "today"),
    ("off", "tomorrow"), ("still", "here"), ("still", "on"), ("around", "today"), ("free", "to"), ("able", "to"),
})
POSSESSED = frozenset("""
    shift shifts order orders schedule registry manager number phone cell email address account birthday car desk
    locker team wife husband son daughter mom dad package pickup hours break lunch department station cart kids
""".split())
SHOP_WORDS = frozenset("""
    add buy carry sell sells stock stocked restock order ordered cart basket aisle price prices sale discount
    size sizes pair pairs any brand new collection outlet online return
""".split())


@functools.cache
def _brand_pattern() -> re.Pattern[str]:
    def loose(name: str) -> str:
        out = []
        for char in name:
            if char.isalnum():
                out.append(re.escape(char))
            elif char in "'’":
                out.append("['’]?")
            elif char == "&":
                out.append(r"(?:&|and|n)")
            else:  # space, dot, hyphen
                out.append(r"[\s.\-]*")
        pattern = "".join(out)
        return pattern + r"(?:['’]?s)?" if not name.endswith("s") else pattern

    names_sorted = sorted(brand_names(), key=len, reverse=True)
    return re.compile(r"(?<![\w])(?:" + "|".join(loose(n) for n in names_sorted) + r")(?![\w])", re.IGNORECASE)


@dataclass
class _Token:
    start: int
    end: int
    text: str
    word: str  # lower case, possessive 's removed
    possessive: bool


def _glued(text: str, start: int, end: int) -> bool:
    """Is the letter run ``text[start:end]`` part of a longer token of digits or underscores?

    >>> _glued("utt-b12fe554", 7, 9), _glued("ask fe to", 4, 6)
    (True, False)
    """
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isdigit() or before == "_" or after.isdigit() or after == "_"


def _tokens(text: str, blocked: Sequence[Finding]) -> list[_Token]:
    tokens = []
    for match in _NAME_TOKEN.finditer(text):
        if any(f.start < match.end() and match.start() < f.end for f in blocked):
            continue
        if _glued(text, match.start(), match.end()):  # letters inside a code ("utt-b12fe554", "sku ab12"): no name
            continue
        whole = match.group()
        lower = whole.lower()
        word = lower.removesuffix("'s").removesuffix("’s")
        tokens.append(_Token(match.start(), match.end(), whole, word, word != lower))
    return tokens


def _overlaps(span: tuple[int, int], spans: Iterable[tuple[int, int]]) -> bool:
    return any(s < span[1] and span[0] < e for s, e in spans)


WEAK, STRONG = 1, 2
_BREAK = re.compile(r"[:;()\[\]{}=\"'<>|/\\]")  # punctuation that ends the reach of a cue word


def _strong_cue(tokens: list[_Token], index: int, text: str = "") -> int:
    """Is token ``index`` where a person's name goes? :data:`STRONG` ("ask _ to", "swap my shift with _",
    "is _ working": it wins over a brand), :data:`WEAK` ("where is _", not before a product word), or 0."""
    words = [t.word for t in tokens]
    token = tokens[index]
    before = words[index - 1] if index > 0 else ""
    before2 = words[index - 2] if index > 1 else ""
    if index > 0 and text and _BREAK.search(text[tokens[index - 1].end:token.start]):
        before = before2 = ""  # "field 'text': Input should be ...": a cue does not reach across a break
    if before in ASK_CUES or before in TITLES or before in ("seen", "named"):
        return STRONG
    if before2 == "name" and before == "is":
        return STRONG
    if before == "with" and any(w in WITH_CONTEXT for w in words[max(0, index - 7):index - 1]):
        return STRONG
    if before in ("for", "of") and before2 in FOR_CONTEXT and (
            not text or not text[tokens[index - 2].end:tokens[index - 1].start].strip()):  # not "order 4088 for"
        return STRONG
    if token.possessive and index + 1 < len(words) and words[index + 1] in POSSESSED:
        return STRONG
    for width in (1, 2):  # "is priya working", "is priya okafor on shift"
        after = words[index + width:index + width + 2]
        if not after:
            break
        middle = words[index + 1]
        if width == 2 and not ((middle in surnames() and middle not in cue_stop_words())
                               or (middle not in common_words() and middle not in product_words())):
            break  # the word between is no surname: "we need more sneakers on the floor" ("hunter brown": it is)
        if before in AUXILIARIES and (after[0] in AFTER_CUES or tuple(after) in AFTER_CUE_PAIRS or (
                len(after) == 2 and after[0] in WHEREABOUTS and after[1] in TIME_WORDS)):
            return STRONG
        if before in ("", "and", "but", "then", "so", "because") and tuple(after) in SUBJECT_PAIRS:
            return STRONG
        if after[0] in SEND_CUES.get(before, ()):
            return STRONG
    if before == "is" and before2 == "where":  # "where is ngozi" (an unknown product there is scrubbed too)
        following = words[index + 1] if index + 1 < len(words) else ""
        return 0 if following in product_words() else WEAK
    return 0


def _may_be_name(word: str) -> bool:
    """After a strong cue: a given name, or a word that is no common word."""
    if word in cue_stop_words() or len(word) < 2 or word in _STREET_WORDS:
        return False
    return word in census_given_names() or word not in common_words()


def _surname_like(token: _Token, mixed_case: bool) -> bool:
    word = token.word
    if word in cue_stop_words() or len(word) < 2:
        return False
    if word in surnames():
        return True
    if word in product_words():
        return False
    if mixed_case and token.text[:1].isupper() and word not in common_words():
        return True
    return word not in common_words()


@functools.cache
def _brand_words() -> frozenset[str]:
    return frozenset(w for name in brand_names() for w in re.findall(r"[a-z]+", name))


def _is_brand_word(word: str) -> bool:
    return word in _brand_words()


def person_spans(
    text: str,
    model_spans: Iterable[tuple[int, int]] = (),
    *,
    keep: Iterable[tuple[int, int]] = (),
    blocked: Sequence[Finding] = (),
    gazetteer: bool = True,
) -> list[tuple[int, int]]:
    """Character spans of person names in ``text`` (outside ``blocked`` findings).

    ``model_spans`` are the model's person slots; ``keep`` spans the model tagged, confidently, as
    something else (a name there stays unless a strong person cue says otherwise).

    >>> text = "is mason hill on shift with olivia"
    >>> [text[s:e] for s, e in person_spans(text)]
    ['mason hill', 'olivia']
    >>> text = "ask kwame to cover, then add two calvin klein shirts"
    >>> [text[s:e] for s, e in person_spans(text)]
    ['kwame']
    """
    keep = list(keep)
    tokens = _tokens(text, blocked)
    if not tokens:
        return []
    mixed_case = text != text.lower() and text != text.upper()
    words = [t.word for t in tokens]
    brands = _kept_brands(text, tokens, words)
    spans: list[tuple[int, int]] = []
    for s, e in _model_name_parts(text, tokens, model_spans):
        if _overlaps((s, e), [(f.start, f.end) for f in blocked]):
            continue
        if _overlaps((s, e), brands):
            outside = [t for t in tokens if s <= t.start < e and not _overlaps((t.start, t.end), brands)]
            if not any(t.word not in common_words() for t in outside):
                continue  # the model's "person" is the brand: "two jordan sneakers"
            brands = [b for b in brands if not _overlaps(b, [(s, e)])]  # "aiden burton": a name with a brand in it
        spans.append((s, e))
    index = 0
    while index < len(tokens):
        token = tokens[index]
        span = (token.start, token.start + len(token.word))
        cued = (_strong_cue(tokens, index, text) and not _overlaps(span, brands)
                and (_may_be_name(token.word) or _capitalised_name(text, token, mixed_case)))
        named = gazetteer and token.word in given_names() and not _overlaps(span, keep) and not _overlaps(span, brands)
        in_model = any(s <= token.start < e for s, e in spans)
        if cued or named or in_model:
            end = span[1]
            following = index + 1
            while (following < len(tokens) and following - index <= 2 and not tokens[following - 1].possessive
                   and _adjacent(text, tokens[following - 1], tokens[following])
                   and (gazetteer or cued or in_model)
                   and _surname_like(tokens[following], mixed_case)
                   and (cued or not _overlaps((tokens[following].start, tokens[following].end), brands))):
                end = tokens[following].start + len(tokens[following].word)
                following += 1
            start = token.start
            previous = index - 1
            while (previous >= 0 and index - previous <= 2 and not tokens[previous].possessive
                   and _adjacent(text, tokens[previous], tokens[previous + 1])
                   and _given_name_like(tokens[previous], mixed_case)
                   and not _overlaps((tokens[previous].start, tokens[previous].end), brands)):
                start = tokens[previous].start  # "pull up mahika kennedy's order": the name before a cued surname
                previous -= 1
            if cued or named or end > span[1] or start < token.start:
                spans.append((start, end))
            index = following
            continue
        index += 1
    return _merged(spans)


def _capitalised_name(text: str, token: _Token, mixed_case: bool) -> bool:
    """In typed text, a capitalised word inside a sentence that is no cue-stop word ("call Peace Fechant")."""
    if not mixed_case or not token.text[:1].isupper() or token.text.isupper() or token.word in cue_stop_words():
        return False
    before = text[:token.start].rstrip()
    return bool(before) and before[-1] not in ".!?"


def _given_name_like(token: _Token, mixed_case: bool) -> bool:
    """A word right before a name that reads as a first name: a Census given name, or no common word."""
    word = token.word
    if word in cue_stop_words() or word in product_words() or len(word) < 2 or _is_brand_word(word):
        return False
    return word in census_given_names() or word not in common_words()


def _model_name_parts(text: str, tokens: list[_Token], model_spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The model's person spans without the words no name holds: function words, identifier words ("sku"), a
    word glued to digits ("SKU114944"). A span that held no word at all is dropped."""
    parts = []
    for start, end in model_spans:
        if not 0 <= start < end <= len(text):
            continue
        run: list[_Token] = []
        for token in (t for t in tokens if start <= t.start < end):
            glued = (token.end < len(text) and text[token.end].isdigit()) or (
                token.start > 0 and text[token.start - 1].isdigit())
            if token.word in FUNCTION_WORDS or token.word in ID_CUES or glued:
                if run:
                    parts.append((run[0].start, min(run[-1].end, end)))
                run = []
            else:
                run.append(token)
        if run:
            parts.append((run[0].start, min(run[-1].end, end)))
    return parts


def _adjacent(text: str, left: _Token, right: _Token) -> bool:
    """Only spaces between two tokens (a comma or a placeholder ends a name)."""
    return text[left.end:right.start].strip() == ""


def _kept_brands(text: str, tokens: list[_Token], words: list[str]) -> list[tuple[int, int]]:
    """Brand-lexicon matches that read as the brand: several words ("calvin klein"), or one word in a product
    context ("jordan sneakers"); never where a strong person cue points ("ask jordan to ...")."""
    kept: list[tuple[int, int]] = []
    if not any(word in _brand_words() for word in words):
        return kept
    for match in _brand_pattern().finditer(text):
        inside = [i for i, t in enumerate(tokens) if match.start() <= t.start < match.end()]
        if not inside:
            continue
        if any(_strong_cue(tokens, i, text) == STRONG and _may_be_name(tokens[i].word) for i in inside[:1]):
            continue
        first, last = inside[0], inside[-1]
        around = words[max(0, first - 3):first] + words[last + 1:last + 4]
        product = any(w in product_words() or w in SHOP_WORDS for w in around)
        if product or len(inside) > 1:  # "valentino" alone may be a surname: "ask güngördü valentino"
            kept.append(match.span())
    return kept


# -- the whole text -------------------------------------------------------------------------------------
def find_pii(
    text: str,
    person: Iterable[tuple[int, int]] = (),
    *,
    keep_spans: Iterable[tuple[int, int]] = (),
    gazetteer: bool = True,
) -> list[Finding]:
    """Every piece of personal data in ``text``, sorted, not overlapping.

    ``person`` are the model's person spans; ``keep_spans`` spans it tagged confidently as something else.

    >>> [(f.kind, "pay 4111 1111  1111-1111 or call 415.555.0134"[f.start:f.end])
    ...  for f in find_pii("pay 4111 1111  1111-1111 or call 415.555.0134")]
    [('card', '4111 1111  1111-1111'), ('phone', '415.555.0134')]
    """
    lower = text.lower()
    findings = [Finding(m.start(), m.end(), "placeholder") for m in PLACEHOLDER.finditer(text)] if "<" in text else []
    if "@" in text or _SPOKEN_AT.search(lower):  # the regex only where an address could be
        findings += [Finding(m.start(), m.end(), "email") for m in EMAIL.finditer(text)
                     if not _overlaps(m.span(), [(f.start, f.end) for f in findings])]
    findings += _number_findings(text, findings)
    if _STREET_HINT.search(lower):
        findings += [Finding(m.start(), m.end(), "address") for m in ADDRESS.finditer(text)
                     if not _overlaps(m.span(), [(f.start, f.end) for f in findings])
                     and not _product_follows(text, m.end())]
    people = person_spans(text, person, keep=keep_spans, blocked=findings, gazetteer=gazetteer)
    findings += [Finding(s, e, "person") for s, e in people]
    return sorted(f for f in findings if f.kind != "placeholder")


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding replaced by its placeholder."""
    for finding in sorted(findings, reverse=True):
        text = text[:finding.start] + PLACEHOLDERS[finding.kind] + text[finding.end:]
    return text


def scrub(text: str, person_spans: Sequence[tuple[int, int]] = (), *,
          keep_spans: Iterable[tuple[int, int]] = (), gazetteer: bool = True) -> str:
    """Replace e-mail addresses, card and phone numbers, street addresses and person names with placeholders.

    ``person_spans`` are character offsets of the spans the model tagged as a person; with ``gazetteer``
    the Census given names (outside ``keep_spans``) go too.

    >>> scrub("mail ann.lee@example.com or call 415-555-0134", [])
    'mail <EMAIL> or call <PHONE>'
    >>> scrub("is jordan on shift tomorrow", [(3, 9)])
    'is <PERSON> on shift tomorrow'
    >>> scrub("pay with 4111 1111 1111 1111 for order 12345")
    'pay with <CARD> for order 12345'
    >>> scrub("ask mason hill if jordan can cover", [(18, 24)])
    'ask <PERSON> if <PERSON> can cover'
    >>> scrub("ship it to 500 n main ave apt 4 please")
    'ship it to <ADDRESS> please'
    """
    return redact(text, find_pii(text, person_spans, keep_spans=keep_spans, gazetteer=gazetteer))


def deidentify_utterance(
    text: str, slots: Sequence[Any], *, gazetteer: bool = True, keep_confidence: float = 0.9,
) -> tuple[str, list[str]]:
    """The scrubbed text and one scrubbed value per slot (``slots``: objects with ``type``, ``start``,
    ``end``, ``text``, ``confidence``, offsets into ``text``).

    The whole text is scanned first; a slot that overlaps a finding is stored as the finding's placeholder
    (a card split over two slots becomes ``<CARD>`` twice). A slot whose offsets do not match its text is
    scrubbed on its own.

    >>> from types import SimpleNamespace as S
    >>> text = "ask kwame to pay 4111 1111 1111 1111"
    >>> slots = [S(type="brand", start=4, end=9, text="kwame", confidence=0.6),
    ...          S(type="order_id", start=17, end=26, text="4111 1111", confidence=0.9),
    ...          S(type="order_id", start=27, end=36, text="1111 1111", confidence=0.5)]
    >>> deidentify_utterance(text, slots)
    ('ask <PERSON> to pay <CARD>', ['<PERSON>', '<CARD>', '<CARD>'])
    """
    person = [(s.start, s.end) for s in slots if s.type == "person"]
    keep = [(s.start, s.end) for s in slots if s.type != "person" and s.confidence >= keep_confidence]
    findings = find_pii(text, person, keep_spans=keep, gazetteer=gazetteer)
    values = []
    for slot in slots:
        aligned = 0 <= slot.start < slot.end <= len(text) and text[slot.start:slot.end] == slot.text
        if not aligned:
            values.append(PLACEHOLDERS["person"] if slot.type == "person" else scrub(str(slot.text)))
            continue
        kinds = [f.kind for f in findings if f.start < slot.end and slot.start < f.end]
        if kinds:
            values.append(" ".join(dict.fromkeys(PLACEHOLDERS[kind] for kind in kinds)))
        else:
            values.append(slot.text)
    return redact(text, findings), values


@dataclass(frozen=True)
class _Located:
    type: str
    start: int
    end: int
    text: str
    confidence: float = 0.0


def deidentify_copy(text: str, values: Sequence[str], types: Sequence[str] = ()) -> tuple[str, list[str]]:
    """A stored text and its slot values, scrubbed again together (for tables that copy them: the labeling
    queue). Each value is looked up in the text (whole words, first free occurrence) and takes the text's
    verdict there; a value not in the text is scrubbed on its own. A value whose slot type (``types``) is
    ``person`` is a person. Scrubbing twice changes nothing.

    >>> deidentify_copy("add two jordan sneakers for 4111 1111 1111 1111", ["jordan", "4111 1111", "1111"])
    ('add two jordan sneakers for <CARD>', ['jordan', '<CARD>', '<CARD>'])
    """
    located: list[_Located] = []
    taken: list[tuple[int, int]] = []
    alone: dict[int, str] = {}
    types = list(types) + [""] * (len(values) - len(types))
    for index, value in enumerate(values):
        value, kind = str(value), str(types[index])
        span = _find_words(text, value, taken) if value and not PLACEHOLDER.fullmatch(value) else None
        if span is None:
            person = kind == "person" and value and not PLACEHOLDER.fullmatch(value)
            alone[index] = PLACEHOLDERS["person"] if person else scrub(value) if value else value
            located.append(_Located(kind, 0, 0, ""))
        else:
            taken.append(span)
            located.append(_Located(kind, span[0], span[1], text[span[0]:span[1]]))
    kept = [s for i, s in enumerate(located) if i not in alone]
    scrubbed, mapped = deidentify_utterance(text, kept)
    verdict = {id(slot): value for slot, value in zip(kept, mapped, strict=True)}
    out = []
    for index, value in enumerate(values):
        if index in alone:
            out.append(alone[index])
        else:  # the value as it was ("jordan" for "Jordan" in the text) unless the text's verdict replaced it
            slot = located[index]
            out.append(str(value) if verdict[id(slot)] == slot.text else verdict[id(slot)])
    return scrubbed, out


def _find_words(text: str, value: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    pattern = re.compile(r"(?<!\S)" + r"\s+".join(re.escape(w) for w in value.split()) + r"(?!\S)", re.IGNORECASE)
    position = 0
    while (match := pattern.search(text, position)) is not None:  # overlapping candidates too
        if not _overlaps(match.span(), taken):
            return match.span()
        position = match.start() + 1
    return None


# -- every stored string --------------------------------------------------------------------------------
def deidentify_value(value: Any) -> Any:
    """``value`` with every string in it scrubbed (lists, tuples and dicts walked; other types as they are)."""
    if isinstance(value, str):
        return _scrub_plain(value) if value else value
    if isinstance(value, Mapping):
        return {key: deidentify_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if all(isinstance(item, _SCALARS) for item in value):  # scores, sketches: nothing to scrub
            return value
        return type(value)(deidentify_value(item) for item in value)
    return value


_SCALARS = (int, float, bool, type(None))


@functools.lru_cache(maxsize=8192)
def _scrub_plain(text: str) -> str:
    """:func:`scrub` without model spans, remembered: the same session id, locale or label comes back often."""
    return scrub(text)


def deidentify_row(
    row: Mapping[str, Any], *, keep: Iterable[str] = (), json_columns: Iterable[str] = (),
) -> dict[str, Any]:
    """The one de-identification every row builder applies: each string column scrubbed, except ``keep``.

    ``keep`` names columns that hold no free text (identifiers, hashes, closed vocabularies such as the
    intent) or text already de-identified in context (:func:`deidentify_utterance`); ``json_columns`` hold
    JSON whose strings are scrubbed and whose numbers stay exact.

    >>> deidentify_row({"id": "u1", "examples": ["call 415 555 0134"], "n": 3}, keep=["id"])
    {'id': 'u1', 'examples': ['call <PHONE>'], 'n': 3}
    """
    keep, json_columns = set(keep), set(json_columns)
    out = {}
    for column, value in row.items():
        if column in keep:
            out[column] = value
        elif column in json_columns and isinstance(value, str):
            out[column] = _deidentify_json(value)
        else:
            out[column] = deidentify_value(value)
    return out


def _deidentify_json(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return scrub(text)
    return json.dumps(deidentify_value(data), sort_keys=True)


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class PiiLogFilter(logging.Filter):
    """A logging filter (on the handler, ``nlumon/logs.py``) that scrubs each record: its message with the
    arguments merged in, its traceback (kept as ``exc_text``) and the string fields passed in ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        record.msg, record.args = scrub(message), ()
        if record.exc_info:
            record.exc_text = scrub(record.exc_text or logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # formatters print exc_text; the raw traceback is not formatted again
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, key, scrub(value))
        return True


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping spans joined (the model's span and the gazetteer's may overlap)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def name_spans(text: str, keep: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Person spans found without the model (gazetteer and context), outside ``keep`` (kept for callers of the
    old API).

    >>> name_spans("will it be here in may"), name_spans("add two jordans", keep=[(8, 15)])
    ([], [])
    """
    return person_spans(text, keep=keep)
