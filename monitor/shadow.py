"""Shadow challenger disagreement per window: how often the challenger would have answered differently.

A worker with a shadow challenger (``shadow.package_path``) stores, per shadowed utterance, one
``shadow_predictions`` row (role ``shadow``) with the challenger's intent, slot types and route beside the
champion's and three flags: ``intent_agrees``, ``slots_agree``, ``route_agrees``. Per scored window the monitor
reads those rows (``FINAL``) and computes the disagreement rates (1 - agreement) for the whole traffic (``all``)
and per assistant, overall (intent ``''``) and per champion intent with at least ``min_intent_rows`` rows; they
are stored in ``shadow_windows``.

Only one (champion version, challenger version) pair is scored per window: the one with the most rows. Rates of
different pairs do not compare, so rows of other pairs (a challenger swapped mid-window) are counted in
:attr:`ShadowOutcome.other_rows` and logged, not mixed in.

Alert metrics (``monitor.alerting.metric_points``), per assistant and for the whole traffic (assistant None):

- ``shadow_disagreement``: the intent disagreement rate of the window;
- ``shadow_disagreement_jump``: that rate minus the median rate of the previous :data:`HISTORY_WINDOWS` scored
  windows of the same version pair and length, each with at least ``min_jump_rows`` rows (``0.0`` until
  :data:`MIN_HISTORY_WINDOWS` exist); emitted only when the window itself has ``min_jump_rows`` rows: below that
  a rate's binomial noise alone crosses the default rule (docs/monitoring.md, "Shadow challenger").

Evidence: both versions, the intents that disagree most, and a few scrubbed example texts of disagreeing
utterances (``predictions.text_scrubbed``, joined by id: the worker stores a shadow row with its prediction's
``ts``). The disagreeing ids (at most :data:`MAX_DISAGREEMENTS`, intent disagreements first) go to the labeling
queue (``monitor.labeling_sink``) as ``champion_challenger_disagreement`` / ``..._route_disagreement``.

    >>> disagreement_jump(0.30, [0.10, 0.12, 0.11, 0.50])
    Jump(value=0.185, baseline=0.115, windows=4)
    >>> disagreement_jump(0.30, [0.10, 0.12])  # too little history: no jump yet
    Jump(value=0.0, baseline=None, windows=2)
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.storage import naive_utc
from nlumon.pii import deidentify_row

if TYPE_CHECKING:
    from monitor.job import WindowOutcome

log = logging.getLogger(__name__)

ALL = "all"
WHOLE = ""  # the intent of a group's whole-window row in shadow_windows
SHADOW_ROLE = "shadow"
DISAGREEMENT_METRIC = "shadow_disagreement"
JUMP_METRIC = "shadow_disagreement_jump"
MIN_INTENT_ROWS = 30  # an intent gets its own shadow_windows row from this many rows (binomial sd <= 0.09)
MIN_JUMP_ROWS = 200  # a window (and a window of the baseline) needs this many rows for the jump (sd <= 0.03)
HISTORY_WINDOWS = 12  # the jump's baseline: the median of this many previous windows ...
MIN_HISTORY_WINDOWS = 3  # ... and no jump (0.0) until this many exist
HISTORY_LOOKBACK = timedelta(days=1)  # how far back the baseline's windows are looked for
MAX_DISAGREEMENTS = 1000  # disagreeing rows read per window (examples, labeling queue): bounded query sizes
N_TOP_INTENTS = 5
N_EXAMPLES = 5
SHADOW_WINDOW_COLUMNS = (
    "window_start", "window_end", "assistant", "intent", "champion_version", "shadow_version", "rows",
    "intent_disagreement", "slot_disagreement", "route_disagreement", "scored_at", "row_version",
)
SHADOW_WINDOW_KEEP = ("assistant", "intent", "champion_version", "shadow_version")  # labels and versions


@dataclass(frozen=True)
class Disagreement:
    """Shadowed rows and how many of them disagree on the intent, the slot types and the route."""

    rows: int
    intent: int = 0
    slots: int = 0
    route: int = 0

    def __add__(self, other: Disagreement) -> Disagreement:
        return Disagreement(self.rows + other.rows, self.intent + other.intent, self.slots + other.slots,
                            self.route + other.route)

    @property
    def intent_rate(self) -> float:
        return self.intent / self.rows if self.rows else 0.0

    @property
    def slot_rate(self) -> float:
        return self.slots / self.rows if self.rows else 0.0

    @property
    def route_rate(self) -> float:
        return self.route / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class ShadowCount:
    """One group of ``shadow_predictions`` rows of a window, as counted in SQL."""

    assistant: str
    champion_intent: str
    champion_version: str
    shadow_version: str
    counts: Disagreement


@dataclass(frozen=True)
class DisagreeingRow:
    """One shadowed utterance on which the challenger disagreed with the champion."""

    id: str
    assistant: str
    champion_intent: str
    intent: str  # the challenger's
    champion_route: str
    route: str  # the challenger's
    intent_agrees: bool
    slots_agree: bool
    route_agrees: bool


@dataclass(frozen=True)
class Jump:
    """``shadow_disagreement_jump`` of one group: the rate minus ``baseline`` (the median of ``windows``
    previous windows' rates; None, and value 0.0, while there are fewer than :data:`MIN_HISTORY_WINDOWS`)."""

    value: float
    baseline: float | None
    windows: int


@dataclass(frozen=True)
class ShadowOutcome:
    """The shadow challenger's disagreement in one window (one version pair); see the module docstring."""

    champion_version: str
    shadow_version: str
    stats: Mapping[tuple[str, str], Disagreement]  # (group, champion intent) -> counts; intent '' = whole group
    min_intent_rows: int = MIN_INTENT_ROWS
    other_rows: int = 0  # rows of other version pairs in the window, left out
    jumps: Mapping[str, Jump] = field(default_factory=dict)  # group -> jump (groups with enough rows only)
    disagreements: tuple[DisagreeingRow, ...] = ()
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> scrubbed example texts

    @property
    def groups(self) -> list[str]:
        """``all`` first, then the assistants, by name."""
        return sorted({group for group, _ in self.stats}, key=lambda g: (g != ALL, g))

    def whole(self, group: str) -> Disagreement:
        return self.stats.get((group, WHOLE), Disagreement(0))

    def intents(self, group: str) -> list[tuple[str, Disagreement]]:
        """The champion intents of ``group`` with at least ``min_intent_rows`` rows, by name."""
        return sorted((intent, counts) for (g, intent), counts in self.stats.items()
                      if g == group and intent != WHOLE and counts.rows >= self.min_intent_rows)

    def top_intents(self, group: str, n: int = N_TOP_INTENTS) -> list[tuple[str, Disagreement]]:
        """The ``n`` intents of ``group`` (with enough rows) that disagree most often, with at least one
        disagreement; ties: more rows first, then by name."""
        ranked = sorted(self.intents(group), key=lambda item: (-item[1].intent_rate, -item[1].rows, item[0]))
        return [(intent, counts) for intent, counts in ranked if counts.intent][:n]

    def challenger_intents(self) -> dict[str, str]:
        """Prediction id -> the challenger's intent, for every read row whose intent disagrees."""
        return {row.id: row.intent for row in self.disagreements if not row.intent_agrees}

    def route_disagreement_ids(self) -> frozenset[str]:
        """Prediction ids of the read rows whose route disagrees."""
        return frozenset(row.id for row in self.disagreements if not row.route_agrees)


def summarise_counts(counts: Iterable[ShadowCount], min_intent_rows: int = MIN_INTENT_ROWS) -> ShadowOutcome | None:
    """Disagreement per (group, champion intent) of the version pair with the most rows; None without rows.

    >>> c = [ShadowCount("shopper", "buy", "m1", "m2", Disagreement(10, 2, 1, 0)),
    ...      ShadowCount("associate", "swap", "m1", "m2", Disagreement(30, 3, 0, 3)),
    ...      ShadowCount("shopper", "buy", "m1", "m0", Disagreement(5, 5, 5, 5))]
    >>> s = summarise_counts(c)
    >>> (s.shadow_version, s.other_rows, s.whole("all").rows, round(s.whole("all").intent_rate, 3))
    ('m2', 5, 40, 0.125)
    """
    counts = [c for c in counts if c.counts.rows > 0]
    if not counts:
        return None
    per_pair: dict[tuple[str, str], int] = {}
    for count in counts:
        pair = (count.champion_version, count.shadow_version)
        per_pair[pair] = per_pair.get(pair, 0) + count.counts.rows
    champion, shadow = min(per_pair, key=lambda pair: (-per_pair[pair], pair))
    stats: dict[tuple[str, str], Disagreement] = {}
    for count in counts:
        if (count.champion_version, count.shadow_version) != (champion, shadow):
            continue
        for key in ((count.assistant, WHOLE), (count.assistant, count.champion_intent), (ALL, WHOLE),
                    (ALL, count.champion_intent)):
            stats[key] = stats.get(key, Disagreement(0)) + count.counts
    return ShadowOutcome(champion, shadow, stats, min_intent_rows,
                         other_rows=sum(rows for pair, rows in per_pair.items() if pair != (champion, shadow)))


def disagreement_jump(rate: float, history: Sequence[float], *, max_windows: int = HISTORY_WINDOWS,
                      min_windows: int = MIN_HISTORY_WINDOWS) -> Jump:
    """``rate`` minus the median of the newest ``max_windows`` rates of ``history`` (newest first); 0.0 while
    ``history`` has fewer than ``min_windows``."""
    recent = list(history)[:max_windows]
    if len(recent) < min_windows:
        return Jump(0.0, None, len(recent))
    baseline = float(statistics.median(recent))
    return Jump(round(rate - baseline, 12), round(baseline, 12), len(recent))


def with_jumps(outcome: ShadowOutcome, history: Mapping[str, Sequence[float]],
               min_jump_rows: int = MIN_JUMP_ROWS) -> ShadowOutcome:
    """``outcome`` with the jump of every group that has at least ``min_jump_rows`` rows (``history``: group ->
    the previous windows' intent disagreement rates, newest first)."""
    jumps = {group: disagreement_jump(outcome.whole(group).intent_rate, history.get(group, ()))
             for group in outcome.groups if outcome.whole(group).rows >= min_jump_rows}
    return replace(outcome, jumps=jumps)


def example_rows(outcome: ShadowOutcome, group: str, n: int) -> list[DisagreeingRow]:
    """Up to ``n`` intent disagreements of ``group`` to show: those of its top intents first (in their order),
    then the others, in the order read."""
    rank = {intent: index for index, (intent, _) in enumerate(outcome.top_intents(group))}
    rows = [row for row in outcome.disagreements
            if not row.intent_agrees and (group == ALL or row.assistant == group)]
    rows.sort(key=lambda row: rank.get(row.champion_intent, len(rank)))  # stable: read order within a rank
    return rows[:n]


def format_example(row: DisagreeingRow, text: str) -> str:
    """An example line: the scrubbed text and both intents.

    >>> format_example(DisagreeingRow("p1", "shopper", "buy", "track", "", "", False, True, True), "where is it")
    'where is it (champion buy, challenger track)'
    """
    return f"{text} (champion {row.champion_intent}, challenger {row.intent})"


def with_examples(outcome: ShadowOutcome, texts: Mapping[str, str], n: int = N_EXAMPLES) -> ShadowOutcome:
    """``outcome`` with up to ``n`` distinct example lines per group (rows whose text was found)."""
    examples = {}
    for group in outcome.groups:
        lines = [format_example(row, texts[row.id]) for row in example_rows(outcome, group, 4 * n)
                 if texts.get(row.id)]
        examples[group] = tuple(dict.fromkeys(lines))[:n]
    return replace(outcome, examples=examples)


# -- ClickHouse -------------------------------------------------------------------------------------------------
def read_shadow_counts(client: Any, start: datetime, end: datetime) -> list[ShadowCount]:
    """The window's shadow rows counted per (assistant, champion intent, version pair)."""
    rows = client.execute(
        "SELECT toString(assistant), champion_intent, champion_version, model_version, count(),"
        " countIf(intent_agrees = 0), countIf(slots_agree = 0), countIf(route_agrees = 0)"
        " FROM shadow_predictions FINAL WHERE ts >= %(start)s AND ts < %(end)s AND role = %(role)s"
        " GROUP BY assistant, champion_intent, champion_version, model_version",
        {"start": naive_utc(start), "end": naive_utc(end), "role": SHADOW_ROLE})
    return [ShadowCount(str(assistant), str(intent), str(champion), str(shadow),
                        Disagreement(int(n), int(intents), int(slots), int(routes)))
            for assistant, intent, champion, shadow, n, intents, slots, routes in rows]


def read_disagreements(client: Any, start: datetime, end: datetime, champion_version: str, shadow_version: str,
                       limit: int = MAX_DISAGREEMENTS) -> list[DisagreeingRow]:
    """Up to ``limit`` disagreeing shadow rows of the version pair: intent disagreements first, then a
    deterministic sample (by a hash of the id)."""
    rows = client.execute(
        "SELECT id, toString(assistant), champion_intent, intent, champion_route, route, intent_agrees,"
        " slots_agree, route_agrees FROM shadow_predictions FINAL"
        " WHERE ts >= %(start)s AND ts < %(end)s AND role = %(role)s AND champion_version = %(champion)s"
        " AND model_version = %(shadow)s AND (intent_agrees = 0 OR slots_agree = 0 OR route_agrees = 0)"
        " ORDER BY intent_agrees, cityHash64(id) LIMIT %(limit)s",
        {"start": naive_utc(start), "end": naive_utc(end), "role": SHADOW_ROLE, "champion": champion_version,
         "shadow": shadow_version, "limit": int(limit)})
    return [DisagreeingRow(str(row_id), str(assistant), str(champion_intent), str(intent), str(champion_route),
                           str(route), bool(intent_agrees), bool(slots_agree), bool(route_agrees))
            for row_id, assistant, champion_intent, intent, champion_route, route, intent_agrees, slots_agree,
            route_agrees in rows]


def read_history(client: Any, window_start: datetime, window_s: int, champion_version: str, shadow_version: str,
                 *, min_rows: int = MIN_JUMP_ROWS, lookback: timedelta = HISTORY_LOOKBACK) -> dict[str, list[float]]:
    """Group -> the whole-window intent disagreement rates of earlier scored windows (newest first, at most
    :data:`HISTORY_WINDOWS`) of the same length and version pair with at least ``min_rows`` rows.

    Only key columns are filtered in SQL (a filter on another column could see a replaced row under
    ``FINAL`` on older servers); versions, length and size are checked here.
    """
    start = naive_utc(window_start)
    rows = client.execute(
        "SELECT window_start, window_end, assistant, champion_version, shadow_version, rows, intent_disagreement"
        " FROM shadow_windows FINAL WHERE intent = '' AND window_start >= %(since)s AND window_start < %(start)s"
        " ORDER BY window_start DESC",
        {"since": start - lookback, "start": start})
    history: dict[str, list[float]] = {}
    for begin, end, group, champion, shadow, n, rate in rows:
        if ((champion, shadow) != (champion_version, shadow_version) or int(n) < min_rows
                or (end - begin) != timedelta(seconds=window_s)):
            continue
        rates = history.setdefault(str(group), [])
        if len(rates) < HISTORY_WINDOWS:
            rates.append(float(rate))
    return history


def read_texts(client: Any, start: datetime, end: datetime, ids: Iterable[str]) -> dict[str, str]:
    """Prediction id -> ``text_scrubbed`` of the given ids in the window."""
    wanted = tuple(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = client.execute(
        "SELECT id, text_scrubbed FROM predictions FINAL WHERE ts >= %(start)s AND ts < %(end)s AND id IN %(ids)s",
        {"start": naive_utc(start), "end": naive_utc(end), "ids": wanted})
    return {str(row_id): str(text) for row_id, text in rows}


def score_shadow(client: Any, start: datetime, end: datetime, *, min_intent_rows: int = MIN_INTENT_ROWS,
                 min_jump_rows: int = MIN_JUMP_ROWS) -> ShadowOutcome | None:
    """Read and summarise one window's shadow rows (None when it has none): rates, jumps, disagreements,
    examples."""
    outcome = summarise_counts(read_shadow_counts(client, start, end), min_intent_rows)
    if outcome is None:
        return None
    if outcome.other_rows:
        log.warning("shadow window %s: %d row(s) of other champion/challenger versions left out (scored: %s vs %s)",
                    start, outcome.other_rows, outcome.champion_version, outcome.shadow_version)
    window_s = int((naive_utc(end) - naive_utc(start)).total_seconds())
    history = read_history(client, start, window_s, outcome.champion_version, outcome.shadow_version,
                           min_rows=min_jump_rows)
    outcome = with_jumps(outcome, history, min_jump_rows)
    disagreements = read_disagreements(client, start, end, outcome.champion_version, outcome.shadow_version)
    outcome = replace(outcome, disagreements=tuple(disagreements))
    shown = {row.id for group in outcome.groups for row in example_rows(outcome, group, 4 * N_EXAMPLES)}
    return with_examples(outcome, read_texts(client, start, end, shown))


# -- results ----------------------------------------------------------------------------------------------------
def shadow_window_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """The ``shadow_windows`` rows of one scored window: per group its whole row (intent ``''``) and one per
    champion intent with at least ``min_intent_rows`` rows; none without shadow rows."""
    shadow = outcome.shadow
    if shadow is None:
        return []
    rows = []
    for group in shadow.groups:
        for intent, counts in [(WHOLE, shadow.whole(group)), *shadow.intents(group)]:
            rows.append(deidentify_row({
                "window_start": outcome.window_start, "window_end": outcome.window_end, "assistant": group,
                "intent": intent, "champion_version": shadow.champion_version,
                "shadow_version": shadow.shadow_version, "rows": counts.rows,
                "intent_disagreement": counts.intent_rate, "slot_disagreement": counts.slot_rate,
                "route_disagreement": counts.route_rate, "scored_at": outcome.scored_at, "row_version": row_version,
            }, keep=SHADOW_WINDOW_KEEP))
    return rows


def shadow_metrics(outcome: WindowOutcome) -> list[tuple[str, float, str | None, dict[str, Any]]]:
    """``shadow_disagreement`` for every group and ``shadow_disagreement_jump`` for the groups with enough rows,
    as ``(metric, value, assistant, evidence)`` (assistant None: the whole traffic)."""
    shadow = outcome.shadow
    if shadow is None:
        return []
    metrics: list[tuple[str, float, str | None, dict[str, Any]]] = []
    for group in shadow.groups:
        whole = shadow.whole(group)
        assistant = None if group == ALL else group
        evidence: dict[str, Any] = {
            "champion_version": shadow.champion_version, "shadow_version": shadow.shadow_version,
            "shadow_rows": whole.rows, "intent_disagreement": whole.intent_rate,
            "slot_disagreement": whole.slot_rate, "route_disagreement": whole.route_rate,
            "top_intents": [{"intent": intent, "rows": counts.rows, "intent_disagreement": round(counts.intent_rate, 4)}
                            for intent, counts in shadow.top_intents(group)],
            "examples": list(shadow.examples.get(group, ())),
        }
        if shadow.other_rows:
            evidence["other_version_rows"] = shadow.other_rows
        metrics.append((DISAGREEMENT_METRIC, whole.intent_rate, assistant, evidence))
        jump = shadow.jumps.get(group)
        if jump is not None:
            metrics.append((JUMP_METRIC, jump.value, assistant,
                            {**evidence, "baseline_median": jump.baseline, "baseline_windows": jump.windows}))
    return metrics
