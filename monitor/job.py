"""The monitor job: score every closed window of stored predictions against a reference, store the results.

A window of ``monitor.window_s`` seconds closes ``grace_s`` after its end; rows that arrive until then are in
its first score. A window is due when it is closed and was never scored, or when it changed since it was
scored (late rows: more rows than scored, or rows ingested after the score) — then it is scored again and its
rows replace the old ones (every result table is a ``ReplacingMergeTree``).

One run (:meth:`MonitorJob.run_once`): find due windows → per window read a bounded, deterministic sample
(as many rows as the thresholds were calibrated for) and whole-window figures → run the
:class:`detectors.suite.MonitorSuite` and the unseen-slot-value detector (:mod:`detectors.slot_values`, over
the whole window's slot values, per assistant and overall), count the route mix (:mod:`monitor.routes`) and
the shadow challenger's disagreement (:mod:`monitor.shadow`) → write ``drift_results``, ``ood_clusters``,
``slot_value_windows``, ``route_windows`` and ``shadow_windows`` (and an Evidently HTML report for a drifted
window) → propose the new ``person`` and ``brand`` values to the name dictionary (:mod:`labeling.names`, when
one is configured) → hand the outcomes to the handlers (alerts, labeling queue) → write ``monitor_windows``.
That last write is the commit point: a run that cannot write it (ClickHouse gone) raises, stores nothing, and
the next run finds the same windows due.

The unseen-value detector never stops a window: a package without a vocabulary gives it ``not_scored``, an
error in it ``failed`` (logged, stored as the window's one ``slot_value_windows`` row with the reason), and the
window scores as usual; a name dictionary that cannot be written is logged and skipped. Neither do the route
mix and the shadow disagreement: an error in one (e.g. a table the schema has not created yet) is logged with
its traceback and the window scores without it (no ``route_windows`` / ``shadow_windows`` rows, no points).

No window stops the others. Each window ends in one ``monitor_windows`` status:

- ``scored``: the detectors ran and every hand-off took the outcome (``reason`` is empty, or says that no
  drift test ran because the sample was smaller than a test's minimum: OOD rate and accuracy still are);
- ``not_scored``: the window lacks what scoring needs — no usable model package, a reference with too few
  rows, no rows to read (``reason`` says which, as ``code: details``); only its ``all`` row is written;
- ``failed``: scoring raised, or a hand-off raised for it (``reason``: ``stage: Error: message``); it is
  logged with its start and the exception and counted (``nlumon_monitor_window_errors_total``).

A window that is not ``scored`` is due again when late rows change it (like a scored one) or once a backoff
has passed since the attempt: 60 s doubled per unsuccessful attempt in a row (``attempts``), at most an
hour — measured in real time, also for ``--now`` backfills. Windows are attempted oldest first and
independently, so a failing window never holds back later ones; it is retried until it scores or leaves the
run's lookback (24 h by default). Alert rules ignore a window older than the newest one they have seen, so a
window that scores late is stored and queued for labeling but does not move alert state backwards.

    >>> from datetime import datetime
    >>> from monitor.storage import ObservedWindow, ScoredWindow
    >>> t = datetime(2026, 1, 1, 10, 0)
    >>> w = ObservedWindow(t, datetime(2026, 1, 1, 10, 5), rows=500, last_ingested=datetime(2026, 1, 1, 10, 5, 3),
    ...                    model_version="m1")
    >>> [x.start.minute for x in due_windows([w], {}, now=datetime(2026, 1, 1, 10, 5, 59), grace_s=60)]
    []
    >>> [x.start.minute for x in due_windows([w], {}, now=datetime(2026, 1, 1, 10, 6), grace_s=60)]
    [0]
    >>> due_windows([w], {t: ScoredWindow(500, datetime(2026, 1, 1, 10, 6))}, now=datetime(2026, 1, 1, 11), grace_s=60)
    []
    >>> failed = ScoredWindow(500, datetime(2026, 1, 1, 10, 6), status="failed", attempts=1)
    >>> len(due_windows([w], {t: failed}, now=datetime(2026, 1, 1, 10, 6, 59), grace_s=60))  # retry after 60 s
    0
    >>> len(due_windows([w], {t: failed}, now=datetime(2026, 1, 1, 10, 7), grace_s=60))
    1
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import EmptyWindowError
from detectors.performance import average_confidence
from detectors.report import save_evidently_report
from detectors.slot_values import (
    DEFAULT_MIN_SESSIONS,
    DEFAULT_MIN_VALUES,
    SlotValueReport,
    SlotValueVocabulary,
    excess_points,
    metric_name,
    unseen_slot_values,
)
from detectors.suite import OVERALL, ROUTE, WindowReport, assistants_in
from labeling.names import NameDictionary, default_names_path
from monitor.metrics import MonitorMetrics, monitor_metrics
from monitor.reference import Reference, ReferenceProvider, ReferenceUnavailableError
from monitor.routes import ROUTE_WINDOW_COLUMNS, read_route_counts, route_mix, route_window_rows
from monitor.shadow import (
    MIN_INTENT_ROWS,
    MIN_JUMP_ROWS,
    SHADOW_WINDOW_COLUMNS,
    ShadowOutcome,
    score_shadow,
    shadow_window_rows,
)
from monitor.storage import (
    DRIFT_RESULT_COLUMNS,
    FAILED,
    MONITOR_WINDOW_COLUMNS,
    NOT_SCORED,
    OOD_CLUSTER_COLUMNS,
    SCORED,
    SLOT_VALUE_COLUMNS,
    SLOT_VALUE_ROWS,
    SLOT_VALUE_WINDOW_COLUMNS,
    ObservedWindow,
    ScoredWindow,
    WindowFacts,
    insert_rows,
    naive_utc,
    observed_windows,
    read_predictions,
    scored_windows,
    window_facts,
)
from nlumon.pii import deidentify_row
from nlumon.settings import Settings

log = logging.getLogger(__name__)

ALL = "all"  # the whole traffic, in the result tables (the suite calls it "overall")
N_EXAMPLES = 5
OutcomeHandler = Callable[[Sequence["WindowOutcome"]], None]
RETRY_BASE_S = 60.0  # a window that was not scored is tried again after this, doubled per attempt ...
RETRY_CAP_S = 3600.0  # ... up to this
MAX_REASON_CHARS = 500
PROPOSED_SLOT_TYPES = ("person", "brand")  # new values of these go to the name dictionary for review
UNSEEN_RATE_METRIC = "slot_unseen_rate"  # + ".<slot type>": the raw rate, for dashboards and custom rules
UNSEEN_EXCESS_METRIC = "slot_unseen_excess"  # rate minus the package's dev-split rate (alerts/default_rules.yaml)
NO_VOCABULARY = "no_vocabulary: the model package keeps no slot-value vocabulary (built before it was kept)"
MIGRATED_TABLES = ("monitor_windows", "predictions", "dead_letters")  # columns added after release (nlumon.schema.ADDED_COLUMNS)


class WindowNotScoredError(Exception):
    """Scoring found the window lacking (no rows to read...): store it as ``not_scored`` with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class HandoffError(Exception):
    """A hand-off (alerts, labeling) failed for some windows only: ``failures`` maps their start to the reason.

    A handler raises it after handling the other windows; any other exception fails every window it was given.
    """

    def __init__(self, failures: Mapping[datetime, str]) -> None:
        super().__init__(f"hand-off failed for {len(failures)} window(s)")
        self.failures = dict(failures)


@dataclass(frozen=True)
class GroupSummary:
    """One assistant's (or ``all``) figures in a window."""

    rows: int
    sampled_rows: int
    mean_confidence: float
    ood_rate: float
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    accuracy_method: str
    drifted_features: tuple[str, ...]
    ood_examples: tuple[str, ...] = ()
    low_confidence_examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlotValueOutcome:
    """What the unseen-slot-value detector gave for one window: ``scored`` with its report, or ``not_scored`` /
    ``failed`` with the reason (``code: details``)."""

    status: str
    reason: str = ""
    report: SlotValueReport | None = None


@dataclass(frozen=True)
class WindowOutcome:
    """Everything the monitor found in one window, as stored and as handed to alerts and labeling."""

    window_start: datetime
    window_end: datetime
    model_version: str
    reference: str
    rows: int
    facts: WindowFacts
    report: WindowReport
    groups: Mapping[str, GroupSummary]
    ood_threshold: float
    scored_at: datetime
    rescored: bool = False
    report_path: str = ""
    growing_cluster_texts: frozenset[str] = field(default_factory=frozenset)
    slot_values: SlotValueOutcome | None = None
    routes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # group -> route -> rows (decided rows)
    shadow: ShadowOutcome | None = None  # None: no shadow rows in the window (or they could not be read)

    @property
    def drifted(self) -> bool:
        return bool(self.report.drifted)

    @property
    def dlq_rate(self) -> float:
        total = self.rows + self.facts.dead_letters
        return self.facts.dead_letters / total if total else 0.0

    @property
    def throughput_drop(self) -> float | None:
        """1 - rows / rows of the same window a week earlier; None without that history."""
        before = self.facts.rows_week_before
        return max(0.0, 1.0 - self.rows / before) if before else None


@dataclass(frozen=True)
class WindowResult:
    """What one attempt at a window gave: its status, the reason when not scored, and the outcome if scored."""

    window: ObservedWindow
    status: str  # scored | not_scored | failed
    reason: str = ""
    attempts: int = 0  # attempts in a row without a score, this one included (stored as 0 once scored)
    outcome: WindowOutcome | None = None
    stage: str = ""  # where a failed window failed: score, alerts, labeling
    attempted_at: datetime | None = None  # when (real time, naive UTC): stored as scored_at when not scored


@dataclass(frozen=True)
class RunReport:
    """Every window one :meth:`MonitorJob.run_once` attempted, by status."""

    results: tuple[WindowResult, ...] = ()

    def with_status(self, status: str) -> list[WindowResult]:
        return [result for result in self.results if result.status == status]

    @property
    def scored(self) -> list[WindowOutcome]:
        return [result.outcome for result in self.with_status(SCORED) if result.outcome is not None]


def retry_delay_s(attempts: int, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """How long after an unsuccessful attempt a window is tried again: ``base_s`` doubled per attempt, capped.

    >>> [retry_delay_s(n) for n in (1, 2, 3, 7, 50)]
    [60.0, 120.0, 240.0, 3600.0, 3600.0]
    """
    return float(min(cap_s, base_s * 2 ** min(max(attempts, 1) - 1, 32)))


def due_windows(
    observed: Iterable[ObservedWindow], scored: Mapping[datetime, ScoredWindow], *, now: datetime, grace_s: int,
    retry_now: datetime | None = None, retry_base_s: float = RETRY_BASE_S, retry_cap_s: float = RETRY_CAP_S,
) -> list[ObservedWindow]:
    """Closed windows (``end + grace_s <= now``) never scored, changed since they were stored, or stored as not
    scored / failed and past their retry backoff (``retry_now``, the real time, defaults to ``now``)."""
    now = naive_utc(now)
    retry_now = naive_utc(retry_now) if retry_now is not None else now
    due = []
    for window in observed:
        if window.end + timedelta(seconds=grace_s) > now:
            continue
        previous = scored.get(window.start)
        if previous is None or window.rows != previous.rows or window.last_ingested > previous.scored_at:
            due.append(window)
        elif previous.status != SCORED:
            delay = retry_delay_s(previous.attempts, retry_base_s, retry_cap_s)
            if retry_now >= previous.scored_at + timedelta(seconds=delay):
                due.append(window)
    return sorted(due, key=lambda w: w.start)


class MonitorJob:
    """Scores due windows; see the module docstring. ``clickhouse_client_factory`` returns a fresh client."""

    def __init__(
        self,
        settings: Settings,
        clickhouse_client_factory: Callable[[], Any],
        *,
        references: ReferenceProvider | None = None,
        handlers: Sequence[OutcomeHandler] = (),
        lookback_s: int = 86400,
        report_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        metrics: MonitorMetrics | None = None,
        names: NameDictionary | str | Path | None = None,
        slot_value_min_sessions: int = DEFAULT_MIN_SESSIONS,
        shadow_min_intent_rows: int = MIN_INTENT_ROWS,
        shadow_min_jump_rows: int = MIN_JUMP_ROWS,
    ) -> None:
        """``names``: the name dictionary new ``person``/``brand`` values are proposed to (a path, or one loaded);
        default ``labeling.names_path``, else ``<state dir>/names.json`` (``labeling.names.default_names_path``).
        ``shadow_min_intent_rows``: rows an intent needs for its own ``shadow_windows`` row;
        ``shadow_min_jump_rows``: rows a window needs for ``shadow_disagreement_jump`` (:mod:`monitor.shadow`)."""
        monitor = settings.monitor
        self.window_s, self.grace_s = monitor.window_s, monitor.grace_s
        self.client_factory = clickhouse_client_factory
        self.references = references or ReferenceProvider(
            monitor.reference, settings.model.package_path, fpr=monitor.drift_false_alarm_rate,
            ood_fpr=monitor.ood_in_distribution_fpr, max_sample=monitor.max_sample, rolling_days=monitor.rolling_days,
        )
        self.handlers = list(handlers)
        self.lookback_s = lookback_s
        self.report_dir = Path(report_dir) if report_dir is not None else settings.services.run_dir / "reports"
        self.clock = clock
        self.metrics = metrics or monitor_metrics()
        self.database = settings.clickhouse.database
        self.last_run = RunReport()  # what the latest run_once attempted (the CLI prints it)
        self._columns_checked = False
        if names is None:
            names = default_names_path(settings)
        self.names = names if isinstance(names, NameDictionary) or names is None else NameDictionary(names)
        self.slot_value_min_sessions = slot_value_min_sessions
        self.shadow_min_intent_rows, self.shadow_min_jump_rows = shadow_min_intent_rows, shadow_min_jump_rows
        self._told: set[tuple[str, str]] = set()  # (reference kind, model version) told it has no routes

    def run_once(self, now: datetime | None = None, since: datetime | None = None) -> list[WindowOutcome]:
        """Score every due window that starts in [since, now) (``since`` defaults to ``now - lookback_s``).

        Returns the windows stored as scored; :attr:`last_run` has every window attempted, with its status.
        Raises only when the run itself cannot proceed (ClickHouse unreachable, results not storable): a
        window's own failure is stored, logged and counted, and the next window is scored.
        """
        retry_now = naive_utc(datetime.fromtimestamp(self.clock(), UTC))
        now = naive_utc(now) if now is not None else retry_now
        since = naive_utc(since) if since is not None else now - timedelta(seconds=self.lookback_s)
        client = self.client_factory()
        try:
            self._ensure_columns(client)
            observed = observed_windows(client, self.window_s, since, now)
            stored = scored_windows(client, self.window_s, since, now)
            results = [self._attempt(client, window, stored.get(window.start))
                       for window in due_windows(observed, stored, now=now, grace_s=self.grace_s,
                                                 retry_now=retry_now)]
            results = self._hand_off(results)
            insert_rows(client, "monitor_windows", MONITOR_WINDOW_COLUMNS,
                        (row for result in results for row in window_result_rows(result)))
        finally:
            client.disconnect()
        report = RunReport(tuple(results))
        self.last_run = report
        for result in results:
            self.metrics.windows.labels(status=result.status).inc()
        outcomes = report.scored
        if results:
            log.info("monitor: %d window(s) scored (%d drifted), %d not scored, %d failed", len(outcomes),
                     sum(o.drifted for o in outcomes), len(report.with_status(NOT_SCORED)),
                     len(report.with_status(FAILED)))
        return outcomes

    def _ensure_columns(self, client: Any) -> None:
        """Once per job: give an older ``monitor_windows`` the status columns and older ``predictions`` the route
        columns the monitor reads (a monitor upgraded before the schema was re-applied)."""
        if self._columns_checked:
            return
        from nlumon.schema import ensure_columns

        for table in MIGRATED_TABLES:
            try:
                added = ensure_columns(client, self.database, table)
            except Exception as error:  # e.g. no ALTER grant: the query says so if a column is really missing
                log.warning("%s columns not checked (%s: %s)", table, type(error).__name__, error)
                return
            if added:
                log.info("%s: added column(s) %s", table, ", ".join(added))
        self._columns_checked = True

    def _attempt(self, client: Any, window: ObservedWindow, previous: ScoredWindow | None) -> WindowResult:
        """Score one window; whatever it raises becomes its stored status, never the run's."""
        attempts = (previous.attempts if previous is not None and previous.status != SCORED else 0) + 1
        rescored = previous is not None and previous.status == SCORED
        attempted_at = naive_utc(datetime.fromtimestamp(self.clock(), UTC))  # before the reads, like scored_at
        try:
            outcome = self.score_window(client, window, rescored=rescored)
        except (WindowNotScoredError, ReferenceUnavailableError, EmptyWindowError) as error:
            code = getattr(error, "code", None) or "too_few_rows"
            reason = _reason(f"{code}: {error}")
            log.warning("monitor window %s (model %s) not scored: %s", window.start, window.model_version, reason)
            self.metrics.not_scored.labels(reason=code).inc()
            return WindowResult(window, NOT_SCORED, reason, attempts, attempted_at=attempted_at)
        except Exception as error:
            log.exception("monitor window %s (model %s, %d rows) failed (attempt %d); later windows go on, this "
                          "one is retried", window.start, window.model_version, window.rows, attempts)
            self.metrics.window_errors.labels(stage="score").inc()
            return WindowResult(window, FAILED, _reason(f"score: {type(error).__name__}: {error}"), attempts,
                                stage="score", attempted_at=attempted_at)
        note = ""
        if not outcome.report.results:  # scored (OOD rate, accuracy), but every drift test lacked rows
            note = _reason("no drift test ran: " + "; ".join(f"{group} {why}"
                                                             for group, why in outcome.report.skipped.items()))
        # attempts count only if a hand-off fails
        return WindowResult(window, SCORED, note, attempts, outcome, attempted_at=attempted_at)

    def _hand_off(self, results: list[WindowResult]) -> list[WindowResult]:
        """Give the scored outcomes to every handler; a window a handler failed on becomes ``failed``."""
        outcomes = [result.outcome for result in results if result.status == SCORED and result.outcome is not None]
        failures: dict[datetime, tuple[str, str]] = {}
        for handler in self.handlers:
            stage = handler_name(handler)
            try:
                handler(outcomes)
            except HandoffError as error:
                failed = {start: reason for start, reason in error.failures.items()}
            except Exception as error:
                log.exception("monitor %s hand-off failed for %d window(s) %s..%s", stage, len(outcomes),
                              outcomes[0].window_start if outcomes else "-",
                              outcomes[-1].window_start if outcomes else "-")
                failed = {o.window_start: f"{type(error).__name__}: {error}" for o in outcomes}
            else:
                continue
            for start, reason in failed.items():
                if start not in failures:
                    failures[start] = (stage, reason)
                    self.metrics.window_errors.labels(stage=stage).inc()
        if not failures:
            return results
        changed = []
        for result in results:
            failure = failures.get(result.window.start) if result.status == SCORED else None
            if failure is None:
                changed.append(result)
                continue
            stage, reason = failure
            log.error("monitor window %s scored but its %s hand-off failed: %s; stored as failed, retried later",
                      result.window.start, stage, reason)
            changed.append(replace(result, status=FAILED, reason=_reason(f"{stage}: {reason}"), stage=stage))
        return changed

    def score_window(self, client: Any, window: ObservedWindow, *, rescored: bool = False) -> WindowOutcome:
        """Read, score and store one window (all but its ``monitor_windows`` rows). Raises
        :class:`WindowNotScoredError` (or a reference error) when the window cannot be scored."""
        reference = self.references.reference_for(client, window.model_version, window.start)
        scored_at = naive_utc(datetime.fromtimestamp(self.clock(), UTC))  # before the read: late rows rescore
        frame = read_predictions(client, window.start, window.end, reference.window_size)
        if frame.empty:
            raise WindowNotScoredError("empty_window", f"no prediction rows to read in {window.start:%Y-%m-%d %H:%M:%S}"
                                       f"..{window.end:%H:%M:%S} (counted {window.rows})")
        facts = window_facts(client, window.start, window.end)
        outcome = build_outcome(window, frame, facts, reference.suite, reference.kind, scored_at, rescored=rescored)
        self._tell_if_no_routes(reference, window.model_version)
        vocabulary = getattr(reference, "vocabulary", None)  # None: a package built before it was kept
        outcome = _replace(outcome, slot_values=self._slot_values(client, window, vocabulary),
                           routes=self._routes(client, window), shadow=self._shadow(client, window))
        if outcome.drifted:
            outcome = self._with_report(outcome, reference, frame)
        row_version = time.time_ns() // 1000
        insert_rows(client, "drift_results", DRIFT_RESULT_COLUMNS, drift_result_rows(outcome, row_version))
        insert_rows(client, "ood_clusters", OOD_CLUSTER_COLUMNS, ood_cluster_rows(outcome, row_version))
        insert_rows(client, "slot_value_windows", SLOT_VALUE_WINDOW_COLUMNS, slot_value_rows(outcome, row_version))
        insert_rows(client, "route_windows", ROUTE_WINDOW_COLUMNS, route_window_rows(outcome, row_version))
        insert_rows(client, "shadow_windows", SHADOW_WINDOW_COLUMNS, shadow_window_rows(outcome, row_version))
        self._propose_names(outcome)
        return outcome

    def _tell_if_no_routes(self, reference: Reference, model_version: str) -> None:
        """Log once per (reference kind, model version) that route drift is not scored against this reference."""
        key = (reference.kind, model_version)
        if key in self._told or reference.suite.has_feature(ROUTE):
            return
        self._told.add(key)
        why = ("the model package's reference statistics hold no route decisions" if reference.kind.startswith(
            "package") else "its rows have too few route decisions (history from before the routing policy)")
        log.info("monitor reference %s of %s: %s, so the route mix is not a drift feature against it (route_windows "
                 "and route_share.* still report it)", reference.kind, model_version, why)

    def _routes(self, client: Any, window: ObservedWindow) -> dict[str, dict[str, int]]:
        """The window's route mix over all its rows; empty (logged) when it cannot be read."""
        try:
            return route_mix(read_route_counts(client, window.start, window.end))
        except Exception:  # one report among many: the window still scores
            log.exception("route mix of window %s (model %s) not read; the window scores without it",
                          window.start, window.model_version)
            return {}

    def _shadow(self, client: Any, window: ObservedWindow) -> ShadowOutcome | None:
        """The shadow challenger's disagreement in the window; None without shadow rows or when it cannot be read
        (logged)."""
        try:
            return score_shadow(client, window.start, window.end, min_intent_rows=self.shadow_min_intent_rows,
                                min_jump_rows=self.shadow_min_jump_rows)
        except Exception:  # one report among many: the window still scores
            log.exception("shadow disagreement of window %s (model %s) not read; the window scores without it",
                          window.start, window.model_version)
            return None

    def _slot_values(self, client: Any, window: ObservedWindow,
                     vocabulary: SlotValueVocabulary | None) -> SlotValueOutcome:
        """Run the unseen-slot-value detector over the window's slot values; never raises."""
        if vocabulary is None:
            return SlotValueOutcome(NOT_SCORED, NO_VOCABULARY)
        try:
            rows = read_predictions(client, window.start, window.end, SLOT_VALUE_ROWS, SLOT_VALUE_COLUMNS)
            return score_slot_values(rows, vocabulary, min_sessions=self.slot_value_min_sessions)
        except Exception as error:  # one detector: the window still scores
            log.exception("unseen-slot-value detector failed for window %s (model %s); the window scores without it",
                          window.start, window.model_version)
            return SlotValueOutcome(FAILED, _reason(f"slot_values: {type(error).__name__}: {error}"))

    def _propose_names(self, outcome: WindowOutcome) -> None:
        """Propose the window's new ``person``/``brand`` values (whole traffic) to the name dictionary."""
        report = outcome.slot_values.report if outcome.slot_values is not None else None
        if self.names is None or report is None:
            return
        for slot_type in PROPOSED_SLOT_TYPES:
            stats = report.get(OVERALL, slot_type)
            if stats is None or not stats.new_values:
                continue
            try:  # window time, not wall time: scoring a window again proposes nothing new
                result = self.names.propose(stats.new_values, slot_type, stats.sessions,
                                            seen_at=outcome.window_start.replace(tzinfo=UTC), proposed_by="monitor")
            except Exception as error:  # the dictionary is for people; its failure must not lose the window
                log.error("name dictionary %s: proposing %d %s value(s) of window %s failed: %s: %s",
                          self.names.path, len(stats.new_values), slot_type, outcome.window_start,
                          type(error).__name__, error)
                continue
            if result.added:
                log.info("name dictionary: %d new %s value(s) proposed from window %s (version %d)",
                         len(result.added), slot_type, outcome.window_start, result.version)

    def _with_report(self, outcome: WindowOutcome, reference: Reference, frame: pd.DataFrame) -> WindowOutcome:
        path = self.report_dir / f"window-{outcome.window_start:%Y%m%dT%H%M%S}-{self.window_s}s.html"
        common = [c for c in frame.columns if c in reference.rows.columns and c != "embedding_sketch"]
        try:
            save_evidently_report(reference.rows[common], frame[common], path)
        except Exception as error:  # a report is for people; its failure must not lose the window
            log.error("Evidently report for window %s failed: %s", outcome.window_start, error)
            return outcome
        return _replace(outcome, report_path=str(path))


def build_outcome(
    window: ObservedWindow, frame: pd.DataFrame, facts: WindowFacts, suite: Any, reference_kind: str,
    scored_at: datetime, *, rescored: bool = False,
) -> WindowOutcome:
    """Score one window's rows with ``suite`` and summarise it: no I/O (``benchmarks/detection.py`` uses it too)."""
    report = suite.score(frame, texts=list(frame["text_scrubbed"]), window_id=window.start.isoformat())
    return WindowOutcome(
        window_start=window.start, window_end=window.end, model_version=window.model_version,
        reference=reference_kind, rows=window.rows, facts=facts, report=report,
        groups=summarise_groups(frame, report, suite, facts), ood_threshold=suite.ood_threshold,
        scored_at=scored_at, rescored=rescored, growing_cluster_texts=growing_cluster_texts(report),
    )


def score_slot_values(rows: pd.DataFrame, vocabulary: SlotValueVocabulary | None, *,
                      min_sessions: int = DEFAULT_MIN_SESSIONS) -> SlotValueOutcome:
    """The unseen-slot-value detector over one window's rows (no I/O): ``not_scored`` without a vocabulary or
    without rows; raises what the detector raises (the job turns it into ``failed``)."""
    if vocabulary is None:
        return SlotValueOutcome(NOT_SCORED, NO_VOCABULARY)
    if rows.empty:
        return SlotValueOutcome(NOT_SCORED, "empty_window: no rows to read")
    return SlotValueOutcome(SCORED, "", unseen_slot_values(rows, vocabulary, min_sessions=min_sessions))


def slot_value_metrics(
    outcome: WindowOutcome, min_values: int = DEFAULT_MIN_VALUES,
) -> list[tuple[str, float, str | None, dict[str, Any]]]:
    """The alert metrics of the unseen-slot-value detector, as ``(metric, value, assistant, evidence)``
    (``assistant`` None for the whole traffic), for ``monitor.alerting.metric_points``:

    - ``slot_unseen_rate.<slot type>``: the unseen rate of every slot type with at least one judged value;
    - ``slot_unseen_excess``: the unseen rate minus the package's dev-split rate, for every slot type with at
      least ``min_values`` judged values (the rule takes the worst slot type of a window; evidence names it).
    """
    report = outcome.slot_values.report if outcome.slot_values is not None else None
    if report is None:
        return []
    metrics: list[tuple[str, float, str | None, dict[str, Any]]] = []
    for stats in report.stats:
        if stats.judged <= 0:
            continue
        assistant = None if stats.group == OVERALL else stats.group
        evidence = {"slot_type": stats.slot_type, "values": stats.values, "unseen": stats.unseen,
                    "scrubbed": stats.scrubbed, "reference_rate": stats.reference_rate,
                    "new_values": list(stats.new_values), "min_sessions": report.min_sessions}
        metrics.append((metric_name(UNSEEN_RATE_METRIC, stats.slot_type), stats.unseen_rate, assistant, evidence))
    for stats in excess_points(report, min_values):
        assistant = None if stats.group == OVERALL else stats.group
        metrics.append((UNSEEN_EXCESS_METRIC, float(stats.excess or 0.0), assistant, {
            "slot_type": stats.slot_type, "unseen_rate": stats.unseen_rate, "reference_rate": stats.reference_rate,
            "values": stats.values, "unseen": stats.unseen, "scrubbed": stats.scrubbed,
            "new_values": list(stats.new_values)}))
    return metrics


def _replace(outcome: WindowOutcome, **changes: Any) -> WindowOutcome:
    return replace(outcome, **changes)


def handler_name(handler: Any) -> str:
    """What a hand-off is called in reasons and metrics: its ``name`` attribute, else its type.

    >>> handler_name(print), handler_name(type("Sink", (), {"name": "labeling"})())
    ('builtin_function_or_method', 'labeling')
    """
    return str(getattr(handler, "name", None) or type(handler).__name__)


def _reason(text: str) -> str:
    """A reason as stored: one line, at most ``MAX_REASON_CHARS`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 3] + "..."


def summarise_groups(
    frame: pd.DataFrame, report: WindowReport, suite: Any, facts: WindowFacts
) -> dict[str, GroupSummary]:
    """Per group (``all`` and each assistant present): rows, mean confidence, OOD rate, accuracy, drifted features."""
    summaries = {}
    groups = [(ALL, OVERALL, frame)] + [
        (name, name, frame[frame["assistant"].astype(str) == name]) for name in assistants_in(frame)
    ]
    for name, suite_name, rows in groups:
        if rows.empty:
            continue
        is_ood = rows["ood_score"].to_numpy(float) > suite.ood_threshold
        estimator = suite.estimators.get("ood_aware_atc")
        estimate = (estimator.estimate(rows["confidence"], is_ood) if estimator is not None
                    else average_confidence(rows["confidence"]))
        drifted = sorted({r.feature for r in report.drifted if r.details.get("group") == suite_name})
        total = sum(facts.rows_by_assistant.values()) if name == ALL else facts.rows_by_assistant.get(name, len(rows))
        summaries[name] = GroupSummary(
            rows=int(total), sampled_rows=len(rows), mean_confidence=float(rows["confidence"].mean()),
            ood_rate=float(report.ood_rate.get(suite_name, is_ood.mean())),
            accuracy=float(estimate.value), accuracy_low=float(estimate.low), accuracy_high=float(estimate.high),
            accuracy_method=estimate.method, drifted_features=tuple(drifted),
            ood_examples=_examples(rows[is_ood].sort_values("ood_score", ascending=False)),
            low_confidence_examples=_examples(rows.sort_values("confidence")),
        )
    return summaries


def _examples(rows: pd.DataFrame) -> tuple[str, ...]:
    """A few distinct scrubbed texts, in the order given."""
    return tuple(dict.fromkeys(rows["text_scrubbed"].head(4 * N_EXAMPLES)))[:N_EXAMPLES]


def growing_cluster_texts(report: WindowReport) -> frozenset[str]:
    """Example texts of the clusters that grew in this window (the labeling queue flags them)."""
    return frozenset(text for cluster in report.clusters if cluster.growth > 0 for text in cluster.examples)


# String columns nlumon.pii.deidentify_row leaves as they are in the monitor's tables (identifiers, enums, names
# of features and methods, paths the monitor writes itself); every other string (reasons, examples, JSON
# details) is scrubbed where the row is built.
MONITOR_WINDOW_KEEP = ("assistant", "model_version", "drifted_features", "report_path", "status")
# new_values are scrubbed again on their own (a new value that reads as a given name is stored as <PERSON> here;
# the name dictionary, a roster people review, gets them as the worker stored them).
SLOT_VALUE_KEEP = ("assistant", "model_version", "slot_type", "status")
DRIFT_RESULT_KEEP = ("assistant", "feature", "method")
OOD_CLUSTER_KEEP = ("cluster_id", "assistant")


def window_result_rows(result: WindowResult) -> list[dict[str, Any]]:
    """The ``monitor_windows`` rows of one attempted window: one per group when scored (also when a hand-off
    failed: the scores are kept, the status says to retry), else only the ``all`` row with the reason."""
    if result.outcome is not None:
        status = {"status": result.status, "reason": result.reason,
                  "attempts": 0 if result.status == SCORED else result.attempts}
        return [deidentify_row({**row, **status}, keep=MONITOR_WINDOW_KEEP)
                for row in monitor_window_rows(result.outcome)]
    window = result.window
    nan = float("nan")
    return [deidentify_row({
        "window_start": window.start, "window_end": window.end, "assistant": ALL,
        "model_version": window.model_version, "rows": window.rows, "mean_confidence": nan, "ood_rate": nan,
        "accuracy_estimate": nan, "accuracy_low": nan, "accuracy_high": nan, "dead_letters": 0, "drifted": 0,
        "drifted_features": [], "report_path": "", "scored_at": result.attempted_at or naive_utc(datetime.now(UTC)),
        "row_version": time.time_ns() // 1000, "status": result.status, "reason": result.reason,
        "attempts": min(result.attempts, 65535),
    }, keep=MONITOR_WINDOW_KEEP)]


def monitor_window_rows(outcome: WindowOutcome) -> list[dict[str, Any]]:
    """One ``monitor_windows`` row per group of the window (status ``scored``)."""
    rows = []
    for name, group in outcome.groups.items():
        rows.append(deidentify_row({
            "window_start": outcome.window_start, "window_end": outcome.window_end, "assistant": name,
            "model_version": outcome.model_version,
            # ``all`` keeps the row count the window was found with: a later count that differs means late rows
            "rows": outcome.rows if name == ALL else group.rows,
            "mean_confidence": group.mean_confidence, "ood_rate": group.ood_rate,
            "accuracy_estimate": group.accuracy, "accuracy_low": group.accuracy_low,
            "accuracy_high": group.accuracy_high,
            "dead_letters": outcome.facts.dead_letters if name == ALL else 0,
            "drifted": int(bool(group.drifted_features)), "drifted_features": list(group.drifted_features),
            "report_path": outcome.report_path, "scored_at": outcome.scored_at,
            "row_version": time.time_ns() // 1000, "status": SCORED, "reason": "", "attempts": 0,
        }, keep=MONITOR_WINDOW_KEEP))
    return rows


def drift_result_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """One ``drift_results`` row per detector result (details as JSON)."""
    rows = []
    for result in outcome.report.results:
        data = result.to_dict()
        group = result.details.get("group", OVERALL)
        rows.append(deidentify_row({
            "window_start": outcome.window_start, "window_end": outcome.window_end,
            "assistant": ALL if group == OVERALL else group, "feature": result.feature, "method": result.method,
            "score": _finite(data["score"]), "threshold": _finite(data["threshold"]), "drifted": int(result.drifted),
            "details": json.dumps(data["details"], sort_keys=True), "scored_at": outcome.scored_at,
            "row_version": row_version,
        }, keep=DRIFT_RESULT_KEEP, json_columns=("details",)))
    return rows


def ood_cluster_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """One ``ood_clusters`` row per emerging cluster seen in the window."""
    rows = []
    for cluster in outcome.report.clusters:
        first_seen = _parse_time(cluster.first_seen) or outcome.window_start
        rows.append(deidentify_row({
            "window_start": outcome.window_start, "cluster_id": cluster.cluster_id, "assistant": ALL,
            "size": cluster.size, "growth": float(cluster.growth), "first_seen": first_seen,
            "examples": list(cluster.examples), "row_version": row_version,
        }, keep=OOD_CLUSTER_KEEP))
    return rows


def slot_value_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """The ``slot_value_windows`` rows of one window: one per (group, slot type) when the detector scored, else
    one ``all`` row (slot type ``''``) with its status and reason — also when it scored a window without slot
    values; none when the window has no slot-value outcome."""
    result = outcome.slot_values
    if result is None:
        return []
    common = {"window_start": outcome.window_start, "window_end": outcome.window_end,
              "model_version": outcome.model_version, "scored_at": outcome.scored_at, "row_version": row_version}
    nan = float("nan")
    if result.report is None or not result.report.stats:  # not scored, or scored without a single slot value
        reason = result.reason or "no slot values in the window"
        return [deidentify_row({**common, "assistant": ALL, "slot_type": "", "values": 0, "unseen": 0,
                                "unseen_rate": nan, "reference_rate": nan, "scrubbed": 0, "new_values": [],
                                "status": result.status, "reason": reason}, keep=SLOT_VALUE_KEEP)]
    rows = []
    for stats in result.report.stats:
        rows.append(deidentify_row({
            **common, "assistant": ALL if stats.group == OVERALL else stats.group, "slot_type": stats.slot_type,
            "values": stats.values, "unseen": stats.unseen, "unseen_rate": _finite(stats.unseen_rate),
            "reference_rate": _finite(stats.reference_rate), "scrubbed": stats.scrubbed,
            "new_values": list(stats.new_values), "status": SCORED, "reason": result.reason,
        }, keep=SLOT_VALUE_KEEP))
    return rows


def _parse_time(text: str | None) -> datetime | None:
    try:
        return naive_utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


def _finite(value: float | None) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("nan")
