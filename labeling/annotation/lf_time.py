"""Rules that find time expressions in store-associate speech: clock times, dates, days, relative times.

A time is what an associate means by "when": ``tomorrow``, ``saturday morning``, ``next tuesday``, ``july
fourth``, ``the 21st``, ``12/24``, ``7:30``, ``5 pm``, ``noon``, ``in two hours``, ``christmas eve``, and anchors of
the working day: ``after my break``, ``before close``, ``end of shift``. Adjacent parts and their connectors form
one span: ``tomorrow at 5``, ``5 pm on friday``, ``from 9 to 5``, ``saturday morning``.

Numbers are the hard part: "add **two** sneakers", "aisle **5**", "size **9**", "**three fifty**" (a price) are no
times. A bare hour is a time only (a) after a time preposition ("at 5", "by three", "until 9") and before the end
of the phrase, a time word or a function word ("at 5 dollars", "by two jordan sneakers" are quantities); (b) with
``am``/``pm``/``o'clock`` or a colon; or (c) as "hour minutes" ("six thirty") in an utterance about schedules. No
bare number is a time after a code word ("aisle", "bay", "size", "sku": ``data/code_cues.txt``) or in an
utterance about prices. Leading prepositions stay outside a span ("at 5" votes "5"), except the ones that carry
the meaning of a shift anchor ("after my break") or an offset ("in two hours").

Decisions on shift words: ``closing shift``, ``opening`` and ``morning shift`` name a shift, not a time, so they
get no vote; ``after my break``, ``before close``, ``end of shift`` and ``eod`` are points in time and vote time
with a lower confidence (0.6), as annotation guides differ on them. ``now``, ``soon``, ``later`` get no vote.

``dateparser`` was measured as a second opinion and left out: 0.66 ms per utterance, token precision 0.76 and
recall 0.77 on generated associate logs ("we" read as Wednesday), below these rules.

>>> TimeExpressions().spans(tuple("is ingrid on shift tomorrow at 5".split()))
[(4, 7)]
>>> TimeExpressions().spans(tuple("add two jordan sneakers to the cart by 5 dollars".split()))
[]
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence

from labeling.annotation.base import OTHER, TIME, Utterance, Vote
from labeling.annotation.lf_text import PhraseMatcher, Token, data_words, phrase_key, tokens_of
from nlumon import pii

WEEKDAYS = frozenset("""
    monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays fridays
    saturdays sundays tues thurs weds
""".split())
# Short forms that are also words ("sat", "sun", "wed"): a day only after a preposition or a modifier ("on sat").
SHORT_WEEKDAYS = frozenset("mon tue wed thu thur fri sat sun".split())
SHORT_WEEKDAY_CUES = frozenset("on this next last every till til until by from through thru before after to".split())
RELATIVE_DAYS = frozenset("today tomorrow tonight yesterday tmrw tmr tmrow tomorow tonite 2day 2morrow 2nite".split())
PARTS_OF_DAY = frozenset("morning afternoon evening night mornings afternoons evenings nights overnight".split())
CLOCK_WORDS = frozenset("noon midnight midday".split())
MODIFIERS = frozenset("this next last coming following every each previous upcoming".split())
MODIFIED = frozenset("week weeks month months year weekend weekends weekday weekdays fortnight".split()) | PARTS_OF_DAY
MONTHS = {name: number for number, names in enumerate((
    "january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul", "august aug",
    "september sep sept", "october oct", "november nov", "december dec"), start=1) for name in names.split()}
# Full month names that are no ordinary word or name: a month wherever they stand ("off in july", "july").
PLAIN_MONTHS = frozenset("january february july september october november december".split())
# The others ("may", "june", "august") only next to a day or after one of these; abbreviations only next to a day.
NAME_MONTHS = frozenset("march april may june august".split())
NAME_MONTH_CUES = frozenset("in since until till through thru during early late mid".split())
TIME_PREPOSITIONS = frozenset("at @ by around about till til until before after from between starting since".split())
RANGE_WORDS = frozenset("to and - through thru".split())
DURATION_UNITS = frozenset("minute minutes min mins hour hours hr hrs day days week weeks month months".split())
ANCHOR_PREPOSITIONS = frozenset("after before until till til by at".split())
ANCHORS = frozenset("break lunch shift close closing opening open meeting huddle".split())
# After "at"/"by" only the store's own hours are a time: "is kwame at lunch" says where he is, not when.
STORE_HOURS = frozenset("close closing open opening".split())
DETERMINERS = frozenset("my the your his her our their this".split())
PERIOD_ENDS = frozenset("end start beginning middle close".split())
PERIODS = frozenset("shift day week month year break lunch business".split())
SHIFT_NAMES = frozenset("shift shifts crew team manager lead person people routine stocker".split())
PRICE_CUES = frozenset("""
    price prices priced pricing override cost costs charge charged rang ring rings pay paid dollar dollars bucks buck
    cents cent discount percent sale match tag
""".split())
SMALL = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
ORDINALS = {word: value for value, word in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())} | {"thirtieth": 30}
COUNTS = frozenset("a an few couple several".split())
_CLOCK = re.compile(r"^(\d{1,2})[:h](\d{2})(am|pm)?$|^(\d{1,4})(am|pm)$")  # dots are gone: "7.30" reads "730"
_DIGIT_ORDINAL = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?$|^(\d{4})-(\d{1,2})-(\d{1,2})$")
_YEAR = re.compile(r"^(?:19|20)\d{2}$")

# Verbs whose particle is "in": "clock in two weeks from now" has no offset "in two weeks".
PHRASAL_IN = frozenset("""
    clock clocked clocking punch punched check checked come comes coming came call called log sign
""".split())
SURE, LIKELY, CONTEXT, WEAK = 0.9, 0.8, 0.75, 0.6
LEAD_IN = 0.8  # the O vote on a preposition before a span
# Prepositions a time span never starts with (the offset "in two hours" is a span of its own, marked whole).
LEAD_PREPOSITIONS = frozenset("at @ on by for until till til in around about from starting since".split())


@functools.cache
def time_vocabulary() -> frozenset[str]:
    """Words that name or build a time: a name rule must not read "tmrw" or "tues" as an unknown surname."""
    return (WEEKDAYS | SHORT_WEEKDAYS | RELATIVE_DAYS | PARTS_OF_DAY | CLOCK_WORDS | MODIFIED | frozenset(MONTHS)
            | DURATION_UNITS | frozenset({"am", "pm", "oclock", "eod", "eow", "eom", "cob", "weekend", "weekends"})
            | frozenset(key[0] for key in map(phrase_key, data_words("holidays.txt")) if len(key) == 1))


@functools.cache
def _followers() -> frozenset[str]:
    """Words after which a bare hour may still be a time ("at 5 tomorrow", "by 3 if you can")."""
    function_words = pii.FUNCTION_WORDS - {"of", "for", "a", "an", "two"}
    return (data_words("time_followers.txt") | function_words | WEEKDAYS | RELATIVE_DAYS | PARTS_OF_DAY
            | MODIFIERS | CLOCK_WORDS | {"am", "pm", "oclock"})


@functools.cache
def _holidays() -> PhraseMatcher:
    return PhraseMatcher({phrase_key(line): TIME for line in data_words("holidays.txt")})


def starts_time(tokens: Sequence[Token], index: int) -> bool:
    """Does a time word or a holiday start at ``index``? A name run must stop there ("cover for ana *black friday*").

    >>> from labeling.annotation.lf_text import tokens_of
    >>> [starts_time(tokens_of(tuple("ana black friday".split())), i) for i in range(3)]
    [False, True, True]
    """
    if not 0 <= index < len(tokens):
        return False
    return _key(tokens[index]) in time_vocabulary() or _holidays().match_at(tokens, index) is not None


def _key(token: Token) -> str:
    """The word with dots and apostrophes gone ("a.m." -> "am", "o'clock" -> "oclock")."""
    return token.word.replace(".", "").replace("'", "")


def number_at(words: Sequence[str], index: int) -> tuple[int, int] | None:
    """A cardinal 0..59 at ``index`` in digits or words ("twenty one" is two words): (value, end)."""
    if index >= len(words):
        return None
    word = words[index]
    if word.isdigit() and len(word) <= 2:
        return int(word), index + 1
    if word in SMALL:
        return SMALL[word], index + 1
    tens, _, unit = word.partition("-")
    if tens in TENS:
        if unit in SMALL and 0 < SMALL[unit] < 10:
            return TENS[tens] + SMALL[unit], index + 1
        if not unit and index + 1 < len(words) and 0 < SMALL.get(words[index + 1], 0) < 10:
            return TENS[tens] + SMALL[words[index + 1]], index + 2
        return (TENS[tens], index + 1) if not unit else None
    return None


def ordinal_at(words: Sequence[str], index: int) -> tuple[int, int] | None:
    """A day ordinal 1..31 ("21st", "fourth", "twenty first", "twenty-first"): (value, end)."""
    if index >= len(words):
        return None
    word = words[index]
    digit = _DIGIT_ORDINAL.match(word)
    if digit:
        value = int(digit.group(1))
        return (value, index + 1) if 1 <= value <= 31 else None
    if word in ORDINALS:
        return (ORDINALS[word], index + 1) if ORDINALS[word] else None
    tens, _, unit = word.partition("-")
    if tens in ("twenty", "thirty") and unit in ORDINALS and 0 < ORDINALS[unit] < 10:
        value = TENS[tens] + ORDINALS[unit]
        return (value, index + 1) if value <= 31 else None
    if word in ("twenty", "thirty") and index + 1 < len(words) and 0 < ORDINALS.get(words[index + 1], 0) < 10:
        value = TENS[word] + ORDINALS[words[index + 1]]
        return (value, index + 2) if value <= 31 else None
    return None


def _lead_in(tokens: Sequence[Token], start: int) -> list[int]:
    """Tokens right before a time span that are outside it by the span convention: the leading preposition
    ("coming **in** 3 pm", "**on** friday") and the object of "on"/"at"/"in", when it is an ordinary word and no
    time ("on **duty** tomorrow", "in **the** morning"; never "cover for okonkwo tomorrow"). The rules left them
    out; saying so (``O``) lets the aggregate drop a preposition another function put into the span.

    >>> from labeling.annotation.lf_text import tokens_of
    >>> _lead_in(tokens_of(tuple("is ana on duty tomorrow".split())), 4), _lead_in(tokens_of(("in", "july")), 1)
    ([3, 2], [0])
    """
    found: list[int] = []
    index = start - 1
    if index < 0 or tokens[index].breaks or not tokens[index].word:
        return found
    if _key(tokens[index]) not in LEAD_PREPOSITIONS:
        word = _key(tokens[index])
        if not ((word in DETERMINERS or word in data_words("english_words.txt")) and word not in time_vocabulary()
                and word not in MODIFIERS and index > 0 and not tokens[index - 1].breaks
                and _key(tokens[index - 1]) in ("on", "at", "in") and _holidays().match_at(tokens, start) is None):
            return found  # a holiday may have a qualifier: "on orthodox good friday"
        found.append(index)
        index -= 1
    found.append(index)
    return found


def round_clock(words: Sequence[str], index: int) -> int | None:
    """End of an hour then minutes on a multiple of five at ``index`` ("six thirty", "7 45", "ten oh five"): read
    as a clock time even outside scheduling talk (unless prices are spoken of), and after a place with an article
    ("on the floor six thirty": a number that names the floor follows it without one, "floor 2").

    >>> round_clock("here six thirty".split(), 1), round_clock("7 45".split(), 0), round_clock("2 22".split(), 0)
    (3, 2, None)
    """
    hour = number_at(words, index)
    if hour is None or hour[1] != index + 1 or not 1 <= hour[0] <= 12:
        return None
    if hour[1] < len(words) and words[hour[1]] in ("oh", "o") and 0 < SMALL.get(
            words[hour[1] + 1] if hour[1] + 1 < len(words) else "", 0) < 10:
        return hour[1] + 2
    minutes = number_at(words, hour[1])
    if minutes is None or not (10 <= minutes[0] < 60 and minutes[0] % 5 == 0):
        return None
    return minutes[1]


def clock_after_place(words: Sequence[str], index: int) -> int | None:
    """End of a round clock time right after "the <place word>" ("to the endcap 7 30"), else None."""
    if index < 2 or words[index - 1] not in data_words("code_cues.txt") or words[index - 2] not in DETERMINERS:
        return None
    return round_clock(words, index)


class TimeExpressions:
    """Votes time on the spans the rules find; abstains everywhere else."""

    name = "time_rules"

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        votes: list[Vote | None] = [None] * len(utterance.tokens)
        tokens = tokens_of(tuple(utterance.tokens))
        for start, end, confidence in self.scored_spans(utterance.tokens):
            for index in range(start, end):
                votes[index] = Vote(TIME, confidence)
            for index in _lead_in(tokens, start):
                if votes[index] is None:
                    votes[index] = Vote(OTHER, LEAD_IN)
        for index, token in enumerate(tokens):  # "clock in", "punch out": a verb, never a time
            if votes[index] is None and _key(token) in ("clock", "punch") and \
                    index + 1 < len(tokens) and _key(tokens[index + 1]) in ("in", "out"):
                votes[index] = Vote(OTHER, LEAD_IN)
        return votes

    def spans(self, tokens: tuple[str, ...]) -> list[tuple[int, int]]:
        """Where the time expressions are (token offsets, end exclusive)."""
        return [(start, end) for start, end, _ in self.scored_spans(tokens)]

    def scored_spans(self, tokens: tuple[str, ...]) -> list[tuple[int, int, float]]:
        return _Scan(tokens_of(tuple(tokens))).run()


class _Scan:
    """One pass of the rules over one utterance: marks a confidence per token, then joins the parts."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.words = [_key(token) for token in tokens]
        self.marks = [0.0] * len(tokens)
        self.priced = any(word in PRICE_CUES or word.startswith("$") for word in self.words)
        self.scheduling = any(word in data_words("scheduling_cues.txt") for word in self.words)

    def run(self) -> list[tuple[int, int, float]]:
        for start, end, _ in _holidays().find(self.tokens):
            self.mark(start, end, LIKELY)
        for index in range(len(self.words)):
            self.days(index)
            self.dates(index)
            self.relative(index)
            self.anchors(index)
        for index in range(len(self.words)):
            self.clocks(index)
        for index in range(len(self.words)):
            self.lead_words(index)
        for index in range(2, len(self.words)):  # "from 9 to 5", "the 14th and 15th", "2 to close"
            if self.marks[index] == 0.0 and self.words[index - 1] in RANGE_WORDS | {"until", "till", "til"} \
                    and self.marks[index - 2] > 0.0 and self.open_between(index - 2, index + 1):
                self.ranged(index)
        self.join()
        return self.spans()

    # -- helpers ----------------------------------------------------------------------------------------
    def mark(self, start: int, end: int, confidence: float) -> None:
        for index in range(start, min(end, len(self.marks))):
            self.marks[index] = max(self.marks[index], confidence)

    def word(self, index: int) -> str:
        return self.words[index] if 0 <= index < len(self.words) else ""

    def open_between(self, start: int, end: int) -> bool:
        """No phrase-ending punctuation from ``start`` up to ``end`` (exclusive), and no empty token."""
        return all(not self.tokens[i].breaks for i in range(max(start, 0), min(end, len(self.tokens)) - 1)) \
            and all(self.words[i] for i in range(max(start, 0), min(end, len(self.tokens))))

    def ends_phrase(self, end: int) -> bool:
        """Is ``end`` the end of the utterance or of a phrase, or followed by a word a time may precede?"""
        return end >= len(self.words) or self.tokens[end - 1].breaks or self.words[end] in _followers()

    def with_modifier(self, index: int) -> int:
        """Where a day expression starts, with its modifiers ("this coming", "every other", "the following")."""
        start = index
        while start > 0 and not self.tokens[start - 1].breaks and (
                self.word(start - 1) in MODIFIERS or (self.word(start - 1) == "other" and self.word(start - 2) in
                                                       ("every", "each")) or self.word(start - 1) == "the"):
            start -= 1
        return start

    def with_part_of_day(self, end: int) -> int:
        """Extend over a following part of day ("saturday morning", "tomorrow night")."""
        if end < len(self.words) and self.open_between(end - 1, end + 1) and (
                self.words[end] in PARTS_OF_DAY or self.words[end] in CLOCK_WORDS):
            return end + 1
        return end

    # -- rules ------------------------------------------------------------------------------------------
    def days(self, index: int) -> None:
        word = self.words[index]
        if word in WEEKDAYS or word in RELATIVE_DAYS:
            self.mark(self.with_modifier(index), self.with_part_of_day(index + 1), SURE)
        elif word in SHORT_WEEKDAYS and self.word(index - 1) in SHORT_WEEKDAY_CUES and self.open_between(index - 1,
                                                                                                        index + 1):
            self.mark(self.with_modifier(index), self.with_part_of_day(index + 1), CONTEXT)
        elif word in MODIFIED and self.word(index - 1) in MODIFIERS and self.open_between(index - 1, index + 1):
            self.mark(self.with_modifier(index), index + 1, LIKELY)
        elif word in ("weekend", "weekends"):
            self.mark(index - 1 if self.word(index - 1) == "the" else index, index + 1, LIKELY)
        elif word in CLOCK_WORDS and self.word(index + 1) not in ("blue", "black", "navy", "purple", "green"):
            self.mark(index, index + 1, LIKELY)
        elif word in PARTS_OF_DAY and self.word(index - 1) != "good" and self.word(index + 1) not in SHIFT_NAMES:
            self.mark(index, index + 1, WEAK)
        elif word == "day" and self.word(index + 1) in ("after", "before") and \
                self.word(index + 2) in ("tomorrow", "yesterday"):
            self.mark(index - 1 if self.word(index - 1) == "the" else index, index + 3, SURE)

    def dates(self, index: int) -> None:
        words, word = self.words, self.words[index]
        slash = _SLASH_DATE.match(word)
        if slash:
            month, day = (slash.group(1), slash.group(2)) if slash.group(1) else (slash.group(5), slash.group(6))
            if 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
                self.mark(index, index + 1, LIKELY)
            return
        if word in MONTHS:
            after = index + 2 if self.word(index + 1) == "the" else index + 1
            day = ordinal_at(words, after) or number_at(words, after)
            before = self.word(index - 1)
            if day and 1 <= day[0] <= 31 and self.open_between(index, day[1]):
                self.mark(index, self.with_year(day[1]), SURE)
            elif word in PLAIN_MONTHS:
                self.mark(index, self.with_year(index + 1), CONTEXT)
            elif word in NAME_MONTHS and before in NAME_MONTH_CUES and self.open_between(index - 1, index + 1):
                self.mark(index, self.with_year(index + 1), WEAK)
            return
        day = ordinal_at(words, index)
        if day is None:
            return
        start = index - 1 if self.word(index - 1) == "the" else index
        if self.word(day[1]) == "of" and self.word(day[1] + 1) in MONTHS and self.open_between(start, day[1] + 2):
            self.mark(start, self.with_year(day[1] + 2), SURE)
        elif (start < index and self.ends_phrase(day[1])) or (
                _DIGIT_ORDINAL.match(word) and self.word(index - 1) in TIME_PREPOSITIONS | {"on", "for"}
                and self.ends_phrase(day[1])):
            self.mark(start, day[1], CONTEXT if start < index else WEAK)

    def with_year(self, end: int) -> int:
        return end + 1 if _YEAR.match(self.word(end)) and self.open_between(end - 1, end + 1) else end

    def relative(self, index: int) -> None:
        """ "in two hours", "in a few minutes", "two days from now", "an hour ago"."""
        words = self.words
        count_end = self.count_at(index + 1) if words[index] == "in" and self.word(index - 1) not in PHRASAL_IN \
            else None
        if count_end and self.word(count_end) in DURATION_UNITS and self.open_between(index, count_end + 1) \
                and (self.word(count_end + 1), self.word(count_end + 2)) != ("from", "now"):
            self.mark(index, count_end + 1, CONTEXT)
            return
        count_end = self.count_at(index)
        if count_end and self.word(count_end) in DURATION_UNITS:
            after = count_end + 1
            if self.word(after) == "ago" or self.word(after) == "later":
                self.mark(index, after + 1, CONTEXT)
            elif self.word(after) == "from" and self.word(after + 1) == "now":
                self.mark(index, after + 2, CONTEXT)

    def count_at(self, index: int) -> int | None:
        word = self.word(index)
        if word in ("a", "an"):
            return index + 2 if self.word(index + 1) in ("few", "couple") else index + 1
        if word in COUNTS:
            return index + 1
        if word == "half" and self.word(index + 1) in ("an", "a"):
            return index + 2
        number = number_at(self.words, index)
        return number[1] if number else None

    def anchors(self, index: int) -> None:
        """Points of the working day: "after my break", "before close", "end of shift", "eod"."""
        word = self.words[index]
        if word in ("eod", "eow", "eom", "cob"):
            self.mark(index, index + 1, WEAK)
        elif word in ANCHOR_PREPOSITIONS:
            noun = index + 2 if self.word(index + 1) in DETERMINERS else index + 1
            end = noun + 2 if self.word(noun) == "shift" and self.word(noun + 1) == "change" else noun + 1
            if word in ("at", "by") and end == noun + 1 and self.word(noun) not in STORE_HOURS:
                return
            if self.word(noun) in ANCHORS and self.ends_phrase(end) and self.open_between(index, end):
                self.mark(index if word not in ("at", "by") else index + 1, end, WEAK)
        elif word in PERIOD_ENDS and self.word(index + 1) == "of":
            noun = index + 3 if self.word(index + 2) in DETERMINERS else index + 2
            if self.word(noun) in PERIODS and self.open_between(index, noun + 1):
                self.mark(index, noun + 1, WEAK)

    def lead_words(self, index: int) -> None:
        """Words that open a day expression found already: "later today", "first thing tomorrow", "first thing
        in the morning", and the store's hours as a time of day: "closing time"."""
        word, following = self.words[index], self.word(index + 1)
        if word in ("later", "earlier") and index + 1 < len(self.words) and self.marks[index + 1] > 0.0 and (
                following in RELATIVE_DAYS or following in WEEKDAYS or following in MODIFIERS) \
                and self.open_between(index, index + 2):
            self.mark(index, index + 1, self.marks[index + 1])
        elif word in ("first", "last") and following == "thing":
            start = index + 2
            if self.words[start:start + 2] == ["in", "the"] and self.word(start + 2) in PARTS_OF_DAY:
                self.mark(start + 2, start + 3, WEAK)
                start += 2
            if start < len(self.words) and self.marks[start] > 0.0 and self.open_between(index, start + 1):
                self.mark(index, start, min(self.marks[start], CONTEXT))
        elif word in STORE_HOURS | {"quitting", "lunch"} and following == "time" \
                and self.open_between(index, index + 2):
            self.mark(index, index + 2, WEAK)

    def ranged(self, index: int) -> None:
        """The far end of a range whose near end is marked: an hour, a day ordinal or the store's hours."""
        day = ordinal_at(self.words, index)
        if self.words[index] in STORE_HOURS and self.ends_phrase(index + 1):
            self.mark(index, index + 1, WEAK)
        elif day is not None and self.ends_phrase(day[1]):
            self.mark(index, day[1], CONTEXT)
        else:
            self.clocks(index, ranged=True)

    def clocks(self, index: int, ranged: bool = False) -> None:
        found = self.clock_at(index)
        if found is None:
            return
        end, certain, has_minutes = found
        if certain:
            self.mark(index, end, SURE)
            return
        before = self.word(index - 1)
        if self.priced or not self.ends_phrase(end):
            return
        if before in data_words("code_cues.txt"):
            if clock_after_place(self.words, index) == end:
                self.mark(index, end, WEAK)
            return
        if before in TIME_PREPOSITIONS or ranged or (self.marks[index - 1] if index else 0.0) > 0.0:
            self.mark(index, end, CONTEXT)
        elif (not before.isdigit() and before not in SMALL) or self.word(index - 2) in data_words("code_cues.txt"):
            # "start five thirty"; "get here 7 30" outside shift talk too
            if has_minutes and (self.scheduling or round_clock(self.words, index) == end):
                self.mark(index, end, WEAK)
            elif self.word(end) in ("to", "-", "til", "till", "until") and self.clock_at(end + 1) is not None:
                self.mark(index, end, WEAK)  # "i work 9 to 5": the second hour follows as a range

    def clock_at(self, index: int) -> tuple[int, bool, bool] | None:
        """A clock time at ``index``: (end, certain, has minutes), certain when am/pm, o'clock or a colon say so."""
        words, word = self.words, self.words[index]
        typed = _CLOCK.match(word)
        if typed:
            hour = int(typed.group(1) or typed.group(4))
            hour = hour // 100 if hour > 99 else hour
            minutes = int(typed.group(2) or typed.group(4)) % 100 if (typed.group(2) or len(typed.group(4)) > 2) else 0
            if hour > 24 or minutes > 59 or (typed.group(4) and hour > 12):
                return None
            end = index + 1 + (self.word(index + 1) in ("am", "pm"))
            return end, bool(typed.group(2)) or bool(typed.group(5)) or end > index + 1, True
        if word in ("half", "quarter") and self.word(index + 1) in ("past", "to", "after", "til", "till", "of"):
            hour = number_at(words, index + 2)
            if hour and 1 <= hour[0] <= 12:
                return self.with_meridiem(hour[1])[0], True, True
            return None
        hour = number_at(words, index)
        if hour is None or hour[1] != index + 1:  # "twenty two" is no hour
            if not (word.isdigit() and len(word) in (3, 4) and int(word[:-2]) <= 12 and int(word[-2:]) < 60):
                return None
            end, certain = self.with_meridiem(index + 1)
            return end, certain, False  # "at 1030" is a time, a bare "400" is not
        if not (1 <= hour[0] <= (24 if word.isdigit() else 12)):
            return None
        end, minutes = hour[1], self.minutes_at(hour[1])
        if minutes:
            end = minutes
        end, certain = self.with_meridiem(end)
        return end, certain, bool(minutes)

    def minutes_at(self, index: int) -> int | None:
        word = self.word(index)
        if word in ("oh", "o") and 0 < SMALL.get(self.word(index + 1), 0) < 10:
            return index + 2
        if word.isdigit() and len(word) == 2 and int(word) < 60:
            return index + 1
        number = number_at(self.words, index)
        return number[1] if number and number[0] >= 10 else None

    def with_meridiem(self, end: int) -> tuple[int, bool]:
        if self.word(end) in ("am", "pm", "oclock") and self.open_between(end - 1, end + 1):
            return end + 1, True
        return end, False

    # -- joining ----------------------------------------------------------------------------------------
    def join(self) -> None:
        """Join two marked parts across connectors: "tomorrow at 5", "5 pm on friday", "9 to 5"."""
        spans = self.spans()
        for (_, left_end, left), (right_start, _, right) in itertools.pairwise(spans):
            gap = tuple(self.words[left_end:right_start])
            if 0 < len(gap) <= 2 and self.open_between(left_end - 1, right_start + 1) and (
                    gap in _CONNECTORS or (gap == ("and",) and "between" in self.words[:left_end])):
                self.mark(left_end, right_start, min(left, right))

    def spans(self) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        start = None
        for index, mark in enumerate([*self.marks, 0.0]):
            if start is not None and (mark == 0.0 or self.tokens[index - 1].breaks):
                found.append((start, index, min(self.marks[start:index])))
                start = None
            if mark > 0.0 and start is None:
                start = index
        return found


_CONNECTORS = frozenset({
    ("at",), ("@",), ("around",), ("about",), ("on",), ("from",), ("to",), ("-",), ("through",), ("thru",),
    ("until",), ("till",), ("til",), ("by",), ("in", "the"), ("at", "around"), ("at", "about"), ("on", "the"),
})
