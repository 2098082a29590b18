"""The monitor job: score every closed window of stored predictions against a reference, store the results.

A window of ``monitor.window_s`` seconds closes ``grace_s`` after its end; rows that arrive until then are in
its first score. A window is due when it is closed and was never scored, or when it changed since it was
scored (late rows: more rows than scored, or rows ingested after the score) — then it is scored again and its
rows replace the old ones (every result table is a ``ReplacingMergeTree``).

One run (:meth:`MonitorJob.run_once`): find due windows → per window read a bounded, deterministic sample
(as many rows as the thresholds were calibrated for) and whole-window figures → run the
:class:`detectors.suite.MonitorSuite` → write ``drift_results`` and ``ood_clusters`` (and an Evidently HTML
report for a drifted window) → hand the outcomes to the handlers (alerts, labeling queue) → write
``monitor_windows``. That last write is the commit point: a window whose hand-off failed has no
``monitor_windows`` row yet and is scored again by the next run.

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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import DetectorError
from detectors.performance import average_confidence
from detectors.report import save_evidently_report
from detectors.suite import ASSISTANTS, OVERALL, WindowReport
from nlumon.settings import Settings
from monitor.storage import (
    DRIFT_RESULT_COLUMNS,
    MONITOR_WINDOW_COLUMNS,
    OOD_CLUSTER_COLUMNS,
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
from monitor.reference import Reference, ReferenceProvider, ReferenceUnavailableError

log = logging.getLogger(__name__)

ALL = "all"  # the whole traffic, in the result tables (the suite calls it "overall")
N_EXAMPLES = 5
OutcomeHandler = Callable[[Sequence["WindowOutcome"]], None]


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


def due_windows(
    observed: Iterable[ObservedWindow], scored: Mapping[datetime, ScoredWindow], *, now: datetime, grace_s: int
) -> list[ObservedWindow]:
    """Closed windows (``end + grace_s <= now``) never scored, or changed since they were scored."""
    now = naive_utc(now)
    due = []
    for window in observed:
        if window.end + timedelta(seconds=grace_s) > now:
            continue
        previous = scored.get(window.start)
        if previous is None or window.rows != previous.rows or window.last_ingested > previous.scored_at:
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
    ) -> None:
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

    def run_once(self, now: datetime | None = None, since: datetime | None = None) -> list[WindowOutcome]:
        """Score every due window that starts in [since, now) (``since`` defaults to ``now - lookback_s``)."""
        now = naive_utc(now or datetime.fromtimestamp(self.clock(), UTC))
        since = naive_utc(since) if since is not None else now - timedelta(seconds=self.lookback_s)
        client = self.client_factory()
        try:
            observed = observed_windows(client, self.window_s, since, now)
            scored = scored_windows(client, self.window_s, since, now)
            outcomes = []
            for window in due_windows(observed, scored, now=now, grace_s=self.grace_s):
                outcome = self._score_safely(client, window, rescored=window.start in scored)
                if outcome is not None:
                    outcomes.append(outcome)
            for handler in self.handlers:
                handler(outcomes)
            insert_rows(client, "monitor_windows", MONITOR_WINDOW_COLUMNS,
                        (row for outcome in outcomes for row in monitor_window_rows(outcome)))
        finally:
            client.disconnect()
        if outcomes:
            log.info("monitor scored %d window(s), %d drifted", len(outcomes), sum(o.drifted for o in outcomes))
        return outcomes

    def _score_safely(self, client: Any, window: ObservedWindow, rescored: bool) -> WindowOutcome | None:
        try:
            return self.score_window(client, window, rescored=rescored)
        except (DetectorError, ReferenceUnavailableError) as error:
            # A window the detectors cannot score (no reference, too few rows) must not stop the others.
            log.error("window %s not scored: %s: %s", window.start, type(error).__name__, error)
            return None

    def score_window(self, client: Any, window: ObservedWindow, *, rescored: bool = False) -> WindowOutcome | None:
        """Read, score and store one window (all but its ``monitor_windows`` rows)."""
        reference = self.references.reference_for(client, window.model_version, window.start)
        scored_at = naive_utc(datetime.fromtimestamp(self.clock(), UTC))  # before the read: late rows rescore
        frame = read_predictions(client, window.start, window.end, reference.window_size)
        if frame.empty:
            return None
        facts = window_facts(client, window.start, window.end)
        outcome = build_outcome(window, frame, facts, reference.suite, reference.kind, scored_at, rescored=rescored)
        if outcome.drifted:
            outcome = self._with_report(outcome, reference, frame)
        row_version = time.time_ns() // 1000
        insert_rows(client, "drift_results", DRIFT_RESULT_COLUMNS, drift_result_rows(outcome, row_version))
        insert_rows(client, "ood_clusters", OOD_CLUSTER_COLUMNS, ood_cluster_rows(outcome, row_version))
        return outcome

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


def _replace(outcome: WindowOutcome, **changes: Any) -> WindowOutcome:
    from dataclasses import replace

    return replace(outcome, **changes)


def summarise_groups(
    frame: pd.DataFrame, report: WindowReport, suite: Any, facts: WindowFacts
) -> dict[str, GroupSummary]:
    """Per group (``all`` and each assistant present): rows, mean confidence, OOD rate, accuracy, drifted features."""
    summaries = {}
    groups = [(ALL, OVERALL, frame)] + [
        (name, name, frame[frame["assistant"] == name]) for name in ASSISTANTS if "assistant" in frame.columns
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


def monitor_window_rows(outcome: WindowOutcome) -> list[dict[str, Any]]:
    """One ``monitor_windows`` row per group of the window."""
    rows = []
    for name, group in outcome.groups.items():
        rows.append({
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
            "row_version": time.time_ns() // 1000,
        })
    return rows


def drift_result_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """One ``drift_results`` row per detector result (details as JSON)."""
    rows = []
    for result in outcome.report.results:
        data = result.to_dict()
        group = result.details.get("group", OVERALL)
        rows.append({
            "window_start": outcome.window_start, "window_end": outcome.window_end,
            "assistant": ALL if group == OVERALL else group, "feature": result.feature, "method": result.method,
            "score": _finite(data["score"]), "threshold": _finite(data["threshold"]), "drifted": int(result.drifted),
            "details": json.dumps(data["details"], sort_keys=True), "scored_at": outcome.scored_at,
            "row_version": row_version,
        })
    return rows


def ood_cluster_rows(outcome: WindowOutcome, row_version: int) -> list[dict[str, Any]]:
    """One ``ood_clusters`` row per emerging cluster seen in the window."""
    rows = []
    for cluster in outcome.report.clusters:
        first_seen = _parse_time(cluster.first_seen) or outcome.window_start
        rows.append({
            "window_start": outcome.window_start, "cluster_id": cluster.cluster_id, "assistant": ALL,
            "size": cluster.size, "growth": float(cluster.growth), "first_seen": first_seen,
            "examples": list(cluster.examples), "row_version": row_version,
        })
    return rows


def _parse_time(text: str | None) -> datetime | None:
    try:
        return naive_utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


def _finite(value: float | None) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("nan")
