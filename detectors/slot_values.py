"""Unseen slot values per window: how many slot values the model never produced on its training sample, and
which new values several sessions use (a new product line, a new brand, a name the model keeps tagging).

The model package records, per slot type, the normalised values its predictions held on the training sample
(:class:`SlotValueVocabulary`, built by ``model_runtime.reference.build_reference``; normalised with
:func:`normalise`: NFKC, case-folded, whitespace collapsed) and the rate at which its held-out (dev)
split's values were unseen — the baseline a live rate is compared with. :func:`unseen_slot_values` counts, for
``overall`` and each assistant of a window, per slot type:

- ``values``: slot values of that type in the window;
- ``scrubbed``: values the worker stored as a placeholder (``<PERSON>``, ``<CARD>``... see ``nlumon/pii.py``).
  They are personal data that was removed, not new names, and they are not known values either: they are left
  out of the rate and counted on their own, so the rate stays honest. The worker stores *every* value of the
  ``person`` slot as ``<PERSON>`` (unless it reads as a brand in its context), so for ``person`` the signal
  is ``scrubbed``, not ``unseen``;
- ``unseen``: values (not scrubbed) that are not in the vocabulary; ``unseen_rate = unseen / (values -
  scrubbed)`` (NaN when every value was scrubbed or there was none);
- ``new_values``: unseen values used in at least ``min_sessions`` distinct sessions, most sessions first.

Defaults. ``min_sessions = 3``: one session repeats its own words (a shopper asks for the same thing three times,
an ASR error comes back with the same voice), two can be one person on two devices; three independent sessions
are the smallest count that says "people are asking for this", and a value that three sessions use is also far
less likely to single out one customer, which matters because new values feed the name dictionary
(``labeling/names.py``). ``min_values = 20``: an excess over the baseline is only reported (for alerting) when a
slot type has at least 20 judged values in the group — on fewer, one or two odd values move the rate by 5-10
points. ``max_new_values = 50`` bounds what one window stores per slot type.

No I/O: the caller reads the rows (``assistant``, ``session_id``, ``slot_types``, ``slot_values``).

    >>> import pandas as pd
    >>> vocabulary = SlotValueVocabulary({"brand": frozenset({"acme"})}, {"all": {"brand": 0.05}})
    >>> frame = pd.DataFrame({"assistant": ["shopper"] * 4, "session_id": ["a", "b", "c", "c"],
    ...                       "slot_types": [["brand"], ["brand"], ["brand", "person"], ["brand"]],
    ...                       "slot_values": [["Zorb"], ["zorb"], ["ACME", "<PERSON>"], ["zorb"]]})
    >>> stats = unseen_slot_values(frame, vocabulary).get("overall", "brand")
    >>> stats.values, stats.unseen, round(stats.unseen_rate, 2), stats.new_values, round(stats.excess, 2)
    (4, 3, 0.75, ('zorb',), 0.7)
    >>> person = unseen_slot_values(frame, vocabulary).get("overall", "person")
    >>> person.scrubbed, person.unseen, person.unseen_rate
    (1, 0, nan)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from detectors.base import InvalidInputError, json_safe
from detectors.suite import OVERALL, assistants_in

DEFAULT_MIN_SESSIONS = 3
DEFAULT_MIN_VALUES = 20
DEFAULT_MAX_NEW_VALUES = 50
REQUIRED_COLUMNS = ("slot_types", "slot_values")
ALL = "all"  # the whole traffic in the package summary and the result tables (the suite says "overall")
# The worker's de-identification placeholders (nlumon.pii.PLACEHOLDERS: <EMAIL>, <CARD>, <PHONE>, <ADDRESS>,
# <PERSON>); detectors may not import nlumon, so any upper-case tag counts (a test checks they all match).
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: ``nlumon.pii.normalise`` and ``model_runtime.reference``'s, which
    detectors may not import (a test checks that the three agree).

    >>> normalise("  Paper\tTOWELS "), normalise("Ｊｏｒｄａｎ")
    ('paper towels', 'jordan')
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def is_scrubbed(value: str) -> bool:
    """Whether a stored slot value is (or holds) a de-identification placeholder.

    >>> is_scrubbed("<PERSON>"), is_scrubbed("<CARD> <PHONE>"), is_scrubbed("jordan")
    (True, True, False)
    """
    return bool(PLACEHOLDER.search(value))


@dataclass(frozen=True)
class SlotValueVocabulary:
    """The package's known values per slot type (normalised) and its dev-split unseen rates per group.

    ``reference_rates[group][slot_type]``: the share of the dev split's (not scrubbed) values of that type
    that the training vocabulary lacks; ``group`` is ``all`` or an assistant.
    """

    values: Mapping[str, frozenset[str]]
    reference_rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    truncated: frozenset[str] = frozenset()  # slot types whose vocabulary hit the package's size bound

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any] | None,
                     min_baseline_values: int = DEFAULT_MIN_VALUES) -> SlotValueVocabulary | None:
        """From the ``slot_values`` section of a package's reference summary; None when the package has none
        (packages built before it). A dev-split rate measured on fewer than ``min_baseline_values`` judged values
        is no baseline (a rate of 0.5 on 4 values says little): that slot type gets no excess."""
        section = (summary or {}).get("slot_values")
        if not isinstance(section, Mapping) or not isinstance(section.get("types"), Mapping):
            return None
        values, truncated = {}, set()
        for slot_type, entry in section["types"].items():
            values[str(slot_type)] = frozenset(str(value) for value in (entry or {}).get("values", ()))
            if (entry or {}).get("truncated"):
                truncated.add(str(slot_type))
        rates: dict[str, dict[str, float]] = {}
        for group, by_type in (section.get("reference_rates") or {}).items():
            rates[str(group)] = {str(t): float(s["unseen_rate"]) for t, s in (by_type or {}).items()
                                 if isinstance(s, Mapping) and _finite(s.get("unseen_rate"))
                                 and _judged(s) >= min_baseline_values}
        return cls(values, rates, frozenset(truncated))

    def knows(self, slot_type: str, value: str) -> bool:
        """Whether ``value`` (already normalised) was seen for ``slot_type`` in training."""
        return value in self.values.get(slot_type, ())

    def reference_rate(self, group: str, slot_type: str) -> float | None:
        """The dev-split unseen rate of ``slot_type`` for ``group`` (``overall``/``all`` or an assistant); the
        whole package's rate when the assistant has none; None when the package measured none."""
        group = ALL if group == OVERALL else group
        for name in (group, ALL):
            rate = self.reference_rates.get(name, {}).get(slot_type)
            if rate is not None:
                return rate
        return None


@dataclass(frozen=True)
class SlotTypeStats:
    """One slot type in one group of one window."""

    group: str
    slot_type: str
    values: int
    unseen: int
    scrubbed: int
    new_values: tuple[str, ...] = ()
    sessions: Mapping[str, int] = field(default_factory=dict)  # new value -> distinct sessions that used it
    reference_rate: float | None = None

    @property
    def judged(self) -> int:
        """Values that are neither scrubbed nor empty: the denominator of the rate."""
        return self.values - self.scrubbed

    @property
    def unseen_rate(self) -> float:
        return self.unseen / self.judged if self.judged > 0 else math.nan

    @property
    def excess(self) -> float | None:
        """``unseen_rate`` minus the package's dev-split rate; None without a baseline or a rate."""
        if self.reference_rate is None or self.judged <= 0:
            return None
        return self.unseen_rate - self.reference_rate

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "group": self.group, "slot_type": self.slot_type, "values": self.values, "unseen": self.unseen,
            "scrubbed": self.scrubbed, "unseen_rate": self.unseen_rate, "reference_rate": self.reference_rate,
            "new_values": list(self.new_values), "sessions": dict(self.sessions),
        })


@dataclass(frozen=True)
class SlotValueReport:
    """Every (group, slot type) of one window, plus the settings it was computed with."""

    stats: tuple[SlotTypeStats, ...]
    min_sessions: int = DEFAULT_MIN_SESSIONS
    skipped_rows: int = 0  # rows whose slot types and values differ in length (not counted)

    def get(self, group: str, slot_type: str) -> SlotTypeStats | None:
        return next((s for s in self.stats if s.group == group and s.slot_type == slot_type), None)

    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.group for s in self.stats))

    def to_dict(self) -> dict[str, Any]:
        return {"min_sessions": self.min_sessions, "skipped_rows": self.skipped_rows,
                "stats": [s.to_dict() for s in self.stats]}


def unseen_slot_values(
    frame: pd.DataFrame,
    vocabulary: SlotValueVocabulary,
    *,
    min_sessions: int = DEFAULT_MIN_SESSIONS,
    max_new_values: int = DEFAULT_MAX_NEW_VALUES,
) -> SlotValueReport:
    """Count unseen and scrubbed slot values of ``frame`` per group (``overall`` + each assistant) and slot type.

    ``frame`` needs ``slot_types`` and ``slot_values`` (lists per row); ``session_id`` (without it every row
    counts as its own session) and ``assistant`` (without it only ``overall``) are optional.
    """
    if min_sessions < 1:
        raise InvalidInputError(f"min_sessions must be >= 1, got {min_sessions}")
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise InvalidInputError(f"the window has no column(s) {', '.join(missing)}")
    sessions = (frame["session_id"].astype(str).tolist() if "session_id" in frame.columns
                else [f"row-{i}" for i in range(len(frame))])
    assistants = frame["assistant"].astype(str).tolist() if assistants_in(frame) else [None] * len(frame)
    wanted = set(assistants_in(frame))
    counters: dict[str, _Counts] = defaultdict(_Counts)
    skipped = 0
    for types, values, session, assistant in zip(frame["slot_types"], frame["slot_values"], sessions, assistants,
                                                 strict=True):
        types, values = _as_list(types), _as_list(values)
        if len(types) != len(values):
            skipped += 1
            continue
        groups = [OVERALL] + ([assistant] if assistant in wanted else [])
        for slot_type, raw in zip(types, values, strict=True):
            slot_type, raw = str(slot_type), str(raw)
            scrubbed = is_scrubbed(raw)  # before normalising: case-folding would hide "<PERSON>"
            value = "" if scrubbed else normalise(raw)
            if not scrubbed and not value:
                continue
            for group in groups:
                counters[group].add(slot_type, value, scrubbed, session, vocabulary)
    stats = []
    for group in [OVERALL, *sorted(wanted)]:
        if group in counters:
            stats += counters[group].stats(group, vocabulary, min_sessions, max_new_values)
    return SlotValueReport(tuple(stats), min_sessions, skipped)


class _Counts:
    """Running counts of one group: per slot type, values / scrubbed / unseen, and sessions per unseen value."""

    def __init__(self) -> None:
        self.values: Counter[str] = Counter()
        self.scrubbed: Counter[str] = Counter()
        self.unseen: Counter[str] = Counter()
        self.sessions: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(self, slot_type: str, value: str, scrubbed: bool, session: str, vocabulary: SlotValueVocabulary) -> None:
        self.values[slot_type] += 1
        if scrubbed:
            self.scrubbed[slot_type] += 1
        elif not vocabulary.knows(slot_type, value):
            self.unseen[slot_type] += 1
            self.sessions[(slot_type, value)].add(session)

    def stats(self, group: str, vocabulary: SlotValueVocabulary, min_sessions: int,
              max_new_values: int) -> list[SlotTypeStats]:
        out = []
        for slot_type in sorted(self.values):
            used = {value: len(seen) for (kind, value), seen in self.sessions.items()
                    if kind == slot_type and len(seen) >= min_sessions}
            new = sorted(used, key=lambda value: (-used[value], value))[:max_new_values]
            out.append(SlotTypeStats(
                group=group, slot_type=slot_type, values=self.values[slot_type], unseen=self.unseen[slot_type],
                scrubbed=self.scrubbed[slot_type], new_values=tuple(new), sessions={v: used[v] for v in new},
                reference_rate=vocabulary.reference_rate(group, slot_type),
            ))
        return out


def excess_points(report: SlotValueReport, min_values: int = DEFAULT_MIN_VALUES) -> list[SlotTypeStats]:
    """The (group, slot type) stats whose excess over the package baseline can be judged: a baseline exists and
    at least ``min_values`` values were not scrubbed. Alerting reads these."""
    return [s for s in report.stats if s.excess is not None and s.judged >= min_values]


def metric_name(prefix: str, slot_type: str) -> str:
    """A metric name for a slot type that fits ``alerts.rules``' metric pattern.

    >>> metric_name("slot_unseen_rate", "date_time"), metric_name("slot_unseen_rate", "Object-Name")
    ('slot_unseen_rate.date_time', 'slot_unseen_rate.object_name')
    """
    return f"{prefix}.{re.sub(r'[^a-z0-9_]', '_', slot_type.lower()) or 'unknown'}"


def _as_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _judged(counts: Mapping[str, Any]) -> float:
    """Values of a baseline that were not scrubbed (``inf`` when the summary does not say: trusted as given)."""
    values, scrubbed = counts.get("values"), counts.get("scrubbed", 0)
    return float(values) - float(scrubbed or 0) if _finite(values) else math.inf


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def known_values(values: Iterable[str]) -> frozenset[str]:
    """Normalised, non-empty values (how a vocabulary is built from raw strings).

    >>> sorted(known_values([" Acme ", "ACME", "", "zorb  shoes"]))
    ['acme', 'zorb shoes']
    """
    return frozenset(v for v in (normalise(str(value)) for value in values) if v)
