"""Conversion per window and subject, scored once the outcomes are in, and the "high traffic, low conversion"
alert points.

What is counted (one ``conversion_windows`` row per window, assistant — and ``all`` — and subject):

- **subject**: ``subject_kind`` ``intent`` with the model's intent, for the rows the model took as in
  distribution (``is_ood = 0``); ``subject_kind`` ``ood``, subject ``ood``, for the rows it flagged OOD. An
  OOD row counts only there: the intent the model gave it is not the user's. The OOD *clusters* of
  ``ood_clusters`` are not subjects: the monitor clusters a bounded sample of each window and stores each
  cluster's size, growth and examples, not its members' ids, so no prediction can be linked to a cluster.
- **traffic**: predictions in the window, each utterance id once.
- **converted**: utterances with a converting outcome — kind ``converted`` or ``task_completed``
  (:data:`CONVERTING_KINDS`) — that names the utterance (``outcomes.utterance_id`` = ``predictions.id``), or,
  for an outcome without an utterance id, that belongs to the utterance's session and comes at or after
  it (every utterance of the session before the outcome converts). Either way the outcome must come before
  the utterance's *horizon*: the end of its window + ``monitor.outcome_delay_s``. Later outcomes never
  count, so a rate is final when it is scored, and the baseline is counted the same way.
- **rate** = converted / traffic; **baseline**: the same subject's traffic and rate over
  ``monitor.conversion_baseline_days`` before the window start (rate NaN without baseline traffic).

When: a window is scored once ``outcome_delay_s + grace_s`` have passed since its end (``grace_s``: the
ingestion lag the monitor already allows), and again only when it changed — late predictions (more rows,
or rows ingested after the score) or outcomes ingested after the score whose time falls inside the
window's horizon — like the monitor's own windows (``monitor.job.due_windows``). Rows are
``ReplacingMergeTree`` rows with one ``row_version`` per scoring, so scoring again replaces them. A window
whose scoring raises is logged, counted and retried after the monitor's backoff; the others go on.

Alerts: :func:`conversion_points` makes one ``conversion_drop`` point (baseline rate - rate) per subject
with a baseline, with its ``rank`` by traffic among the window's subjects of the same assistant, its
traffic and its baseline traffic as evidence; ``kind: low_conversion`` rules (``alerts/rules.py``) judge
the top ``top_n`` with enough traffic and fire on a drop of at least ``margin``, one alert group per subject.
A subject's whole-traffic point (``assistant`` None) is sent only when more than one assistant serves the
subject: otherwise it would repeat that assistant's alert. Events go through the monitor's
:class:`alerts.engine.AlertEngine` (state, outbox, webhooks) and are mirrored to ``alert_events``.

    >>> counts = [SubjectCount("shopper", INTENT, "track_order", 80, 4), SubjectCount("shopper", OOD, OOD, 20, 2)]
    >>> base = [SubjectCount("shopper", INTENT, "track_order", 1000, 600)]
    >>> [(s.assistant, s.subject, s.rank, s.traffic, round(s.drop, 2)) for s in summarise(counts, base)]
    [('all', 'track_order', 1, 80, 0.55), ('all', 'ood', 2, 20, nan), ('shopper', 'track_order', 1, 80, 0.55), \
('shopper', 'ood', 2, 20, nan)]
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from alerts.events import AlertEvent, MetricPoint
from alerts.rules import CONVERSION_DROP
from monitor.job import ALL, retry_delay_s
from monitor.metrics import MonitorMetrics, monitor_metrics
from monitor.storage import ObservedWindow, insert_rows, naive_utc, observed_windows
from nlumon.pii import deidentify_row
from nlumon.settings import Settings

if TYPE_CHECKING:
    from monitor.alerting import AlertHandoff

log = logging.getLogger(__name__)

CONVERTING_KINDS = ("converted", "task_completed")
INTENT, OOD = "intent", "ood"
CONVERSION_WINDOW_COLUMNS = (
    "window_start", "window_end", "assistant", "subject_kind", "subject", "traffic", "converted", "rate",
    "baseline_rate", "baseline_traffic", "scored_at", "row_version",
)
# What nlumon.pii.deidentify_row leaves as it is: enums and the model's intents (a closed vocabulary).
CONVERSION_KEEP = ("assistant", "subject_kind", "subject")
EVIDENCE_KEEP = ("window_start", "window_end", "subject_kind", "subject", "converting_kinds", "dashboard")

# Traffic and conversions per (assistant, subject) of the predictions with ts in [start, end). Each prediction's
# horizon is the end of its window + the outcome delay. ClickHouse 18.16 loses a column that a lambda reads
# from a joined subquery ("Unknown identifier"), so the session-level outcomes are joined on (session, horizon)
# instead of being searched with arrayExists (every joined subquery has an alias: current ClickHouse requires
# it with its default joined_subquery_requires_alias): each such outcome is given to every window whose span
# [start, horizon) holds it, and the latest one per (session, horizon) converts the utterances at or before it.
_COUNT_SQL = """
SELECT group_assistant, subject_kind, subject, count() AS traffic, sum(converted) AS converted FROM (
  SELECT toString(assistant) AS group_assistant, if(is_ood, 'ood', 'intent') AS subject_kind,
         if(is_ood, 'ood', intent) AS subject,
         ((utterance_hit AND utterance_converted_at < horizon) OR session_converted_at >= ts) AS converted
  FROM (
    SELECT ts, assistant, session_id, intent, is_ood, horizon, utterance_hit, utterance_converted_at FROM (
      SELECT id, ts, assistant, session_id, intent, is_ood,
             toDateTime(intDiv(toUInt32(ts), %(w)s) * %(w)s + %(w)s + %(delay)s) AS horizon
      FROM predictions FINAL WHERE ts >= %(start)s AND ts < %(end)s
    ) AS p ANY LEFT JOIN (
      SELECT utterance_id AS id, 1 AS utterance_hit, min(ts) AS utterance_converted_at FROM outcomes
      WHERE kind IN %(kinds)s AND utterance_id != '' AND ts >= %(start)s AND ts < %(horizon)s
      GROUP BY utterance_id
    ) AS u USING id
  ) AS pu ANY LEFT JOIN (
    SELECT session_id, horizon, max(ts) AS session_converted_at FROM (
      SELECT session_id, ts, arrayJoin(arrayMap(
               i -> toDateTime(intDiv(toUInt32(ts), %(w)s) * %(w)s + %(w)s + %(delay)s - i * %(w)s),
               range(%(spans)s))) AS horizon
      FROM outcomes WHERE kind IN %(kinds)s AND utterance_id = '' AND ts >= %(start)s AND ts < %(horizon)s
    ) WHERE horizon > ts GROUP BY session_id, horizon
  ) AS s USING session_id, horizon
) GROUP BY group_assistant, subject_kind, subject
"""

# The newest ingestion time of the outcomes inside each window's span [start, start + window + delay).
_OUTCOMES_INGESTED_SQL = """
SELECT toDateTime(window_start), max(ingested_at) FROM (
  SELECT ts, ingested_at,
         arrayJoin(arrayMap(i -> intDiv(toUInt32(ts), %(w)s) * %(w)s - i * %(w)s, range(%(spans)s))) AS window_start
  FROM outcomes WHERE ts >= %(since)s AND ts < %(until)s
) WHERE window_start + %(w)s + %(delay)s > toUInt32(ts) AND window_start >= toUInt32(toDateTime(%(since)s))
GROUP BY window_start
"""


@dataclass(frozen=True)
class SubjectCount:
    """Traffic and converted utterances of one subject of one assistant, as counted in SQL."""

    assistant: str
    subject_kind: str
    subject: str
    traffic: int
    converted: int


@dataclass(frozen=True)
class SubjectConversion:
    """One subject of one assistant (or ``all``) in a window, with its baseline and its traffic rank."""

    assistant: str
    subject_kind: str
    subject: str
    traffic: int
    converted: int
    baseline_traffic: int
    baseline_converted: int
    rank: int  # 1 = the most traffic among the window's subjects of this assistant (or of all)
    assistants: int = 1  # assistants that serve the subject (window or baseline); 1 for an assistant's own row

    @property
    def rate(self) -> float:
        return self.converted / self.traffic if self.traffic else math.nan

    @property
    def baseline_rate(self) -> float:
        return self.baseline_converted / self.baseline_traffic if self.baseline_traffic else math.nan

    @property
    def drop(self) -> float:
        """Baseline rate minus the window's rate: positive when the subject converts less than it used to."""
        return self.baseline_rate - self.rate


@dataclass(frozen=True)
class ConversionWindow:
    """One scored window: every subject with traffic, per assistant and ``all``."""

    start: datetime
    end: datetime
    subjects: tuple[SubjectConversion, ...]
    scored_at: datetime
    row_version: int

    @property
    def traffic(self) -> int:
        return sum(s.traffic for s in self.subjects if s.assistant == ALL)

    @property
    def converted(self) -> int:
        return sum(s.converted for s in self.subjects if s.assistant == ALL)


@dataclass(frozen=True)
class StoredConversion:
    """What the latest scoring of a window stored: its whole traffic and when it was scored."""

    traffic: int
    scored_at: datetime


@dataclass(frozen=True)
class ConversionRun:
    """What one :meth:`ConversionScorer.run_once` did: windows scored, alert events, windows that failed."""

    windows: tuple[ConversionWindow, ...] = ()
    events: tuple[AlertEvent, ...] = ()
    failed: tuple[tuple[datetime, str], ...] = ()


def count_conversions(
    client: Any, start: datetime, end: datetime, *, window_s: int, delay_s: int,
) -> list[SubjectCount]:
    """Traffic and conversions per (assistant, subject) of the predictions in [start, end) (see the module
    docstring for the definitions); ``start`` and ``end`` are window boundaries."""
    params = {
        "w": int(window_s), "delay": int(delay_s), "start": naive_utc(start), "end": naive_utc(end),
        "horizon": naive_utc(end) + timedelta(seconds=delay_s), "kinds": CONVERTING_KINDS,
        "spans": _spans(window_s, delay_s),
    }
    return [SubjectCount(str(assistant), str(kind), str(subject), int(traffic), int(converted))
            for assistant, kind, subject, traffic, converted in client.execute(_COUNT_SQL, params)]


def stored_conversions(
    client: Any, window_s: int, since: datetime, until: datetime,
) -> dict[datetime, StoredConversion]:
    """The latest scoring of each window of this length starting in [since, until): its traffic and time."""
    rows = client.execute(
        "SELECT window_start, row_version, sumIf(traffic, assistant = 'all'), max(scored_at) FROM conversion_windows"
        " WHERE window_start >= %(since)s AND window_start < %(until)s"
        " AND toUInt32(window_end) - toUInt32(window_start) = %(w)s GROUP BY window_start, row_version",
        {"w": int(window_s), "since": naive_utc(since), "until": naive_utc(until)},
    )
    latest: dict[datetime, tuple[int, StoredConversion]] = {}
    for start, version, traffic, scored_at in rows:
        if start not in latest or version > latest[start][0]:
            latest[start] = (version, StoredConversion(int(traffic), scored_at))
    return {start: stored for start, (_, stored) in latest.items()}


def outcomes_ingested(
    client: Any, window_s: int, delay_s: int, since: datetime, until: datetime,
) -> dict[datetime, datetime]:
    """Per window starting in [since, until): the newest ingestion time of an outcome inside its span."""
    rows = client.execute(_OUTCOMES_INGESTED_SQL, {
        "w": int(window_s), "delay": int(delay_s), "since": naive_utc(since),
        "until": naive_utc(until) + timedelta(seconds=window_s + delay_s), "spans": _spans(window_s, delay_s),
    })
    return {start: ingested for start, ingested in rows if start < naive_utc(until)}


def _spans(window_s: int, delay_s: int) -> int:
    """How many windows' spans (window + delay) one moment can fall in: enough candidates for the SQL above."""
    return (window_s + delay_s) // window_s + 1


def due_conversions(
    observed: Iterable[ObservedWindow], stored: Mapping[datetime, StoredConversion],
    ingested: Mapping[datetime, datetime], *, now: datetime, wait_s: int,
) -> list[ObservedWindow]:
    """Windows whose outcomes are in (``end + wait_s <= now``) and that were never scored, or changed since:
    another row count, rows ingested after the score, or outcomes of their span ingested after it.

    >>> t = datetime(2026, 1, 1, 10)
    >>> w = ObservedWindow(t, t + timedelta(minutes=5), 100, t + timedelta(minutes=5), "m1")
    >>> [len(due_conversions([w], {}, {}, now=t + timedelta(minutes=m), wait_s=360)) for m in (10, 11)]
    [0, 1]
    >>> done = {t: StoredConversion(100, t + timedelta(minutes=11))}
    >>> len(due_conversions([w], done, {t: t + timedelta(minutes=9)}, now=t + timedelta(hours=1), wait_s=360))
    0
    >>> len(due_conversions([w], done, {t: t + timedelta(minutes=12)}, now=t + timedelta(hours=1), wait_s=360))
    1
    """
    now = naive_utc(now)
    due = []
    for window in observed:
        if window.end + timedelta(seconds=wait_s) > now:
            continue
        previous = stored.get(window.start)
        late_outcome = ingested.get(window.start)
        if (previous is None or window.rows != previous.traffic or window.last_ingested > previous.scored_at
                or (late_outcome is not None and late_outcome > previous.scored_at)):
            due.append(window)
    return sorted(due, key=lambda w: w.start)


def summarise(current: Sequence[SubjectCount], baseline: Sequence[SubjectCount]) -> list[SubjectConversion]:
    """Every subject with traffic in ``current``, per assistant and ``all``, with its baseline and rank (no I/O).
    Ties in traffic rank by subject kind and name, so a rank never depends on the order rows came in."""
    now, before = _with_all(current), _with_all(baseline)
    served: dict[tuple[str, str], set[str]] = defaultdict(set)
    for count in (*current, *baseline):
        served[(count.subject_kind, count.subject)].add(count.assistant)
    by_assistant: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for assistant, kind, subject in now:
        by_assistant[assistant].append((kind, subject))
    subjects = []
    for assistant in sorted(by_assistant):
        keys = sorted(by_assistant[assistant], key=lambda k: (-now[(assistant, *k)][0], k))
        for rank, (kind, subject) in enumerate(keys, start=1):
            traffic, converted = now[(assistant, kind, subject)]
            base_traffic, base_converted = before.get((assistant, kind, subject), (0, 0))
            subjects.append(SubjectConversion(
                assistant, kind, subject, traffic, converted, base_traffic, base_converted, rank,
                assistants=len(served[(kind, subject)]) if assistant == ALL else 1))
    return subjects


def _with_all(counts: Sequence[SubjectCount]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(assistant, kind, subject) → (traffic, converted), plus the ``all`` sums over assistants."""
    totals: dict[tuple[str, str, str], tuple[int, int]] = {}
    for count in counts:
        for assistant in (count.assistant, ALL):
            traffic, converted = totals.get((assistant, count.subject_kind, count.subject), (0, 0))
            totals[(assistant, count.subject_kind, count.subject)] = (traffic + count.traffic,
                                                                      converted + count.converted)
    return {key: value for key, value in totals.items() if value[0] > 0}


def conversion_rows(window: ConversionWindow) -> list[dict[str, Any]]:
    """The ``conversion_windows`` rows of one scored window (one per assistant/``all`` and subject)."""
    return [deidentify_row({
        "window_start": window.start, "window_end": window.end, "assistant": s.assistant,
        "subject_kind": s.subject_kind, "subject": s.subject, "traffic": s.traffic, "converted": s.converted,
        "rate": s.rate, "baseline_rate": s.baseline_rate, "baseline_traffic": s.baseline_traffic,
        "scored_at": window.scored_at, "row_version": window.row_version,
    }, keep=CONVERSION_KEEP) for s in window.subjects]


def conversion_points(
    window: ConversionWindow, *, baseline_days: int, delay_s: int, dashboard_url: str = "",
) -> list[MetricPoint]:
    """One ``conversion_drop`` point per subject with a baseline (see the module docstring); the rules decide
    which ones they judge from the evidence (``rank``, ``traffic``, ``baseline_traffic``)."""
    start, end = window.start.replace(tzinfo=UTC), window.end.replace(tzinfo=UTC)
    ranked = defaultdict(int)
    for subject in window.subjects:
        ranked[subject.assistant] += 1
    points = []
    for s in window.subjects:
        if not s.baseline_traffic or (s.assistant == ALL and s.assistants < 2):
            continue
        evidence = {
            "window_start": start.isoformat(), "window_end": end.isoformat(), "subject_kind": s.subject_kind,
            "subject": s.subject, "traffic": s.traffic, "converted": s.converted, "rate": s.rate,
            "baseline_rate": s.baseline_rate, "baseline_traffic": s.baseline_traffic, "baseline_days": baseline_days,
            "rank": s.rank, "subjects": ranked[s.assistant], "outcome_delay_s": delay_s,
            "converting_kinds": list(CONVERTING_KINDS),
        }
        if dashboard_url:
            evidence["dashboard"] = dashboard_url
        points.append(MetricPoint(CONVERSION_DROP, s.drop, start, end, None if s.assistant == ALL else s.assistant,
                                  deidentify_row(evidence, keep=EVIDENCE_KEEP), subject=s.subject))
    return points


class ConversionScorer:
    """Scores due windows' conversion, stores ``conversion_windows`` and hands the points to the alert engine.

    ``alerts``: the monitor's :class:`monitor.alerting.AlertHandoff` (its engine, store and ClickHouse mirror);
    None scores and stores without alerts. ``clickhouse_client_factory`` returns a fresh client.
    """

    name = "conversion"

    def __init__(
        self,
        settings: Settings,
        clickhouse_client_factory: Callable[[], Any],
        *,
        alerts: AlertHandoff | None = None,
        lookback_s: int = 86400,
        clock: Callable[[], float] = time.time,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        monitor = settings.monitor
        self.window_s, self.grace_s = monitor.window_s, monitor.grace_s
        self.delay_s, self.baseline_days = monitor.outcome_delay_s, monitor.conversion_baseline_days
        self.client_factory = clickhouse_client_factory
        self.alerts = alerts
        self.lookback_s = lookback_s
        self.clock = clock
        self.metrics = metrics or monitor_metrics()
        self.last_run = ConversionRun()
        self._failures: dict[datetime, tuple[int, datetime]] = {}  # window start -> (attempts, last attempt)
        self._unmirrored: list[AlertEvent] = []  # in the alert store, not yet in ClickHouse alert_events

    @property
    def wait_s(self) -> int:
        """How long after its end a window is first scored: the outcome delay + the monitor's grace."""
        return self.delay_s + self.grace_s

    def run_once(self, now: datetime | None = None, since: datetime | None = None) -> ConversionRun:
        """Score every due window that starts in [since, now) (``since``: ``now - lookback_s``), evaluate the
        alert rules, store the rows. Raises when the run cannot proceed (ClickHouse unreachable, rows or
        events not storable): nothing is committed then and the same windows are due next time."""
        retry_now = naive_utc(datetime.fromtimestamp(self.clock(), UTC))
        now = naive_utc(now) if now is not None else retry_now
        since = naive_utc(since) if since is not None else now - timedelta(seconds=self.lookback_s)
        client = self.client_factory()
        try:
            due = self._due(client, since, now, retry_now)
            windows, failed = [], []
            for window in due:
                try:
                    windows.append(self.score_window(client, window))
                except Exception as error:
                    failed.append((window.start, f"{type(error).__name__}: {error}"))
                    self._failed(window, retry_now)
            events = self._alert(client, windows)
            insert_rows(client, "conversion_windows", CONVERSION_WINDOW_COLUMNS,
                        (row for window in windows for row in conversion_rows(window)))
        finally:
            client.disconnect()
        for window in windows:
            self._failures.pop(window.start, None)
        run = ConversionRun(tuple(windows), tuple(events), tuple(failed))
        self.last_run = run
        if due:
            log.info("conversion: %d window(s) scored, %d failed, %d alert event(s)", len(windows), len(failed),
                     len(events))
        return run

    def score_window(self, client: Any, window: ObservedWindow) -> ConversionWindow:
        """Count one window and its baseline (no write)."""
        scored_at = naive_utc(datetime.fromtimestamp(self.clock(), UTC))  # before the reads: late rows rescore
        counts = dict(window_s=self.window_s, delay_s=self.delay_s)
        current = count_conversions(client, window.start, window.end, **counts)
        baseline = count_conversions(client, window.start - timedelta(days=self.baseline_days), window.start,
                                     **counts)
        return ConversionWindow(window.start, window.end, tuple(summarise(current, baseline)), scored_at,
                                time.time_ns() // 1000)

    def _due(self, client: Any, since: datetime, now: datetime, retry_now: datetime) -> list[ObservedWindow]:
        observed = observed_windows(client, self.window_s, since, now)
        stored = stored_conversions(client, self.window_s, since, now)
        ingested = outcomes_ingested(client, self.window_s, self.delay_s, since, now)
        due = due_conversions(observed, stored, ingested, now=now, wait_s=self.wait_s)
        self._failures = {start: f for start, f in self._failures.items() if start >= since}
        return [window for window in due if self._retry_due(window.start, retry_now)]

    def _retry_due(self, start: datetime, retry_now: datetime) -> bool:
        """False while a window that failed waits for its backoff (the monitor's: 60 s doubled, at most 1 h)."""
        if start not in self._failures:
            return True
        attempts, last = self._failures[start]
        return retry_now >= last + timedelta(seconds=retry_delay_s(attempts))

    def _failed(self, window: ObservedWindow, retry_now: datetime) -> None:
        attempts = self._failures.get(window.start, (0, retry_now))[0] + 1
        self._failures[window.start] = (attempts, retry_now)
        self.metrics.window_errors.labels(stage=self.name).inc()
        log.exception("conversion window %s (%d rows) failed (attempt %d); the other windows go on, this one is "
                      "retried in %.0f s", window.start, window.rows, attempts, retry_delay_s(attempts))

    def _alert(self, client: Any, windows: Sequence[ConversionWindow]) -> list[AlertEvent]:
        """Evaluate the windows' points (durable in the alert store first), then mirror new events to ClickHouse;
        events whose mirror failed are kept and mirrored by the next run."""
        if self.alerts is None:
            return []
        from monitor.alerting import ALERT_EVENT_COLUMNS, alert_event_row

        points = [point for window in windows
                  for point in conversion_points(window, baseline_days=self.baseline_days, delay_s=self.delay_s,
                                                 dashboard_url=self.alerts.dashboard_url)]
        events = self.alerts.engine.evaluate(points) if points else []
        pending = self._unmirrored + events
        if pending:
            self._unmirrored = pending
            insert_rows(client, "alert_events", ALERT_EVENT_COLUMNS,
                        [alert_event_row(event, time.time_ns() // 1000) for event in pending])
            self._unmirrored = []
        if events:
            self.alerts.mirror_deliveries()
        return events
