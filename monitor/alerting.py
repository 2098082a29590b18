"""Hand-off from the monitor to the alerts package: metric points, rule evaluation, ClickHouse mirrors, delivery.

:func:`metric_points` turns one :class:`~monitor.job.WindowOutcome` into
:class:`alerts.events.MetricPoint` values with their evidence (value, threshold, window, report link, a few
scrubbed example texts). Metric names (the ones ``alerts/default_rules.yaml`` uses):

============================  ===========================================================  ===============
metric                        value                                                        scope
============================  ===========================================================  ===============
``drift.<feature>``           1.0 when the calibrated detector drifted, else 0.0           per assistant*
``ood_rate``                  share of rows above the package's OOD threshold              per assistant*
``accuracy_estimate``         OOD-aware ATC label-free accuracy estimate                   per assistant*
``dlq_rate``                  dead letters / (dead letters + predictions) in the window     global
``latency_p95_ms``            p95 end-to-end latency (inference latency for backfills)     global
``throughput_drop``           1 - rows / rows of the same window a week earlier            global
``ood_cluster_growth``        largest growth of an emerging OOD cluster, share of rows     global
``consumer_lag``              messages the worker group is behind on ``utterances``        global
``slot_unseen_rate.<t>``      share of slot type t's values never seen in training         per assistant*
``slot_unseen_excess``        worst slot type's unseen rate minus the dev-split rate       per assistant*
``route_share.<route>``       share of the window's decided rows routed to ``<route>``     per assistant*
                              (fulfil, clarify, confirm, escalate; rows without a
                              decision left out; only windows with decided rows)
``shadow_disagreement``       share of shadowed rows where the challenger's intent differs per assistant*
                              (only windows with shadow rows)
``shadow_disagreement_jump``  shadow_disagreement minus the median of the previous 12      per assistant*
                              windows of the same champion/challenger versions (0.0 until
                              3 exist); only groups with >= 200 shadow rows
============================  ===========================================================  ===============

(*) the whole traffic is sent with ``assistant=None``, so a per-assistant rule also watches it as ``rule|*``.

:class:`AlertHandoff` evaluates the points with the :class:`alerts.engine.AlertEngine` (durable SQLite state +
outbox), mirrors the new events to ClickHouse ``alert_events`` and the outbox's delivery states to
``alert_deliveries``. :class:`DeliveryLoop` runs the :class:`alerts.sender.WebhookSender` in a thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alerts.engine import AlertEngine
from alerts.events import AlertEvent, MetricPoint
from alerts.payloads import headline
from alerts.sender import WebhookSender
from alerts.store import AlertStore
from monitor.routes import route_metrics
from monitor.shadow import shadow_metrics
from monitor.storage import insert_rows, naive_utc
from nlumon.pii import deidentify_row

if TYPE_CHECKING:
    from monitor.job import WindowOutcome

log = logging.getLogger(__name__)

ALERT_EVENT_COLUMNS = (
    "event_id", "ts", "rule", "metric", "assistant", "severity", "state", "value", "threshold", "window_start",
    "window_end", "summary", "row_version",
)
ALERT_DELIVERY_COLUMNS = (
    "webhook_id", "receiver", "event_id", "state", "attempts", "last_error", "updated_at", "row_version",
)
# What nlumon.pii.deidentify_row leaves as it is (identifiers, enums, rule and metric names, times, links the
# monitor builds from its settings); everything else (example utterances, summaries, errors) is scrubbed.
EVIDENCE_KEEP = ("window_start", "window_end", "model_version", "reference", "evidently_report", "dashboard",
                 "method", "latency", "cluster_id", "slot_type", "route", "champion_version", "shadow_version")
ALERT_EVENT_KEEP = ("event_id", "rule", "metric", "assistant", "severity", "state")
ALERT_DELIVERY_KEEP = ("webhook_id", "receiver", "event_id", "state")


def report_link(report_path: str, base_url: str = "") -> str:
    """Where a person opens the Evidently report: ``base_url`` + file name when set, else the file path.

    >>> report_link("/srv/run/reports/window-1.html", "https://nlumon.example/reports/")
    'https://nlumon.example/reports/window-1.html'
    >>> report_link("", "https://nlumon.example/reports/")
    ''
    """
    if not report_path or not base_url:
        return report_path
    return base_url.rstrip("/") + "/" + Path(report_path).name


def metric_points(
    outcome: WindowOutcome, *, report_base_url: str = "", dashboard_url: str = "", consumer_lag: int | None = None,
) -> list[MetricPoint]:
    """The metric points of one scored window (see the module docstring for the names)."""
    start, end = outcome.window_start.replace(tzinfo=UTC), outcome.window_end.replace(tzinfo=UTC)
    common: dict[str, Any] = {
        "window_start": start.isoformat(), "window_end": end.isoformat(), "model_version": outcome.model_version,
        "reference": outcome.reference, "rows": outcome.rows,
    }
    if outcome.report_path:
        common["evidently_report"] = report_link(outcome.report_path, report_base_url)
    if dashboard_url:
        common["dashboard"] = dashboard_url
    points: list[MetricPoint] = []

    def add(metric: str, value: float, assistant: str | None, **evidence: Any) -> None:
        points.append(MetricPoint(metric, float(value), start, end, assistant,
                                  deidentify_row({**common, **evidence}, keep=EVIDENCE_KEEP)))

    for name, group in outcome.groups.items():
        assistant = None if name == "all" else name
        add("ood_rate", group.ood_rate, assistant, sampled_rows=group.sampled_rows,
            ood_score_threshold=outcome.ood_threshold, examples=list(group.ood_examples))
        add("accuracy_estimate", group.accuracy, assistant, method=group.accuracy_method,
            interval=[group.accuracy_low, group.accuracy_high], examples=list(group.low_confidence_examples))
    for result in outcome.report.results:
        group = result.details.get("group", "overall")
        add(f"drift.{result.feature}", 1.0 if result.drifted else 0.0, None if group == "overall" else group,
            score=result.score, detector_threshold=result.threshold, method=result.method,
            p_value=result.details.get("p_value"))
    from monitor.job import slot_value_metrics  # job.py is heavy; alerting is imported without it

    for metric, value, assistant, evidence in (*slot_value_metrics(outcome), *route_metrics(outcome),
                                               *shadow_metrics(outcome)):
        add(metric, value, assistant, **evidence)
    add("dlq_rate", outcome.dlq_rate, None, dead_letters=outcome.facts.dead_letters)
    if outcome.facts.latency_p95_ms is not None:
        add("latency_p95_ms", outcome.facts.latency_p95_ms, None, latency=outcome.facts.latency_source)
    if outcome.throughput_drop is not None:
        add("throughput_drop", outcome.throughput_drop, None, rows_week_before=outcome.facts.rows_week_before)
    if outcome.report.clusters:
        top = max(outcome.report.clusters, key=lambda cluster: cluster.growth)
        # a share of the rows scored, so one threshold fits windows of 500 and of 50,000 rows
        add("ood_cluster_growth", top.growth / max(1, outcome.report.n_rows), None, growth_rows=top.growth,
            scored_rows=outcome.report.n_rows, cluster_id=top.cluster_id, size=top.size,
            previous_size=top.previous_size, windows_seen=top.windows_seen, examples=list(top.examples))
    if consumer_lag is not None:
        add("consumer_lag", consumer_lag, None)
    return points


def alert_event_row(event: AlertEvent, row_version: int) -> dict[str, Any]:
    """The ``alert_events`` row of one alert event."""
    return deidentify_row({
        "event_id": event.id, "ts": naive_utc(datetime.now(UTC)), "rule": event.rule, "metric": event.metric,
        "assistant": event.assistant or "", "severity": event.severity, "state": event.status,
        "value": event.value, "threshold": event.threshold, "window_start": naive_utc(event.window_start),
        "window_end": naive_utc(event.window_end), "summary": headline(event.to_dict()), "row_version": row_version,
    }, keep=ALERT_EVENT_KEEP)


class AlertHandoff:
    """An outcome handler for :class:`monitor.job.MonitorJob`: evaluate rules, store and mirror events.

    If the ClickHouse mirror of new events fails, the call raises (the job stores the windows as failed and
    retries them) and the events are kept to be mirrored by the next call: evaluating a window again makes
    no new event (the engine has seen it), so they would otherwise never reach ``alert_events``.
    """

    name = "alerts"

    def __init__(
        self,
        engine: AlertEngine,
        clickhouse_client_factory: Callable[[], Any],
        *,
        report_base_url: str = "",
        dashboard_url: str = "",
        lag_probe: Callable[[], int | None] | None = None,
    ) -> None:
        self.engine = engine
        self.client_factory = clickhouse_client_factory
        self.report_base_url = report_base_url
        self.dashboard_url = dashboard_url
        self.lag_probe = lag_probe
        self._mirrored_until = 0.0
        self._unmirrored: list[AlertEvent] = []  # stored in SQLite, not yet in ClickHouse

    @property
    def store(self) -> AlertStore:
        return self.engine.store

    def __call__(self, outcomes: Sequence[WindowOutcome]) -> list[AlertEvent]:
        if not outcomes:
            return []
        lag = self._lag()
        points = [
            point for index, outcome in enumerate(outcomes)
            for point in metric_points(outcome, report_base_url=self.report_base_url,
                                       dashboard_url=self.dashboard_url,
                                       consumer_lag=lag if index == len(outcomes) - 1 else None)
        ]
        events = self.engine.evaluate(points)  # durable (SQLite) before anything else happens
        pending = self._unmirrored + events
        if pending:
            self._unmirrored = pending
            self._insert("alert_events", ALERT_EVENT_COLUMNS,
                         [alert_event_row(event, time.time_ns() // 1000) for event in pending])
            self._unmirrored = []
        self.mirror_deliveries()
        return events

    def _lag(self) -> int | None:
        if self.lag_probe is None:
            return None
        try:
            return self.lag_probe()
        except Exception as error:  # lag is one metric among many; its probe must not stop alerts
            log.warning("consumer lag not measured: %s", type(error).__name__)
            return None

    def mirror_deliveries(self) -> int:
        """Copy outbox rows that changed since the last mirror to ClickHouse ``alert_deliveries``."""
        since = self._mirrored_until
        now = time.time()
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT webhook_id, receiver, event_json, status, attempts, last_error,"
                " COALESCE(finished_at, created_at) FROM outbox"
                " WHERE status = 'pending' OR finished_at >= ? OR created_at >= ?", (since, since),
            ).fetchall()
        mirrored = [
            deidentify_row(
                {"webhook_id": webhook_id, "receiver": receiver, "event_id": json.loads(event_json).get("id", ""),
                 "state": status, "attempts": attempts, "last_error": last_error or "",
                 "updated_at": naive_utc(datetime.fromtimestamp(updated, UTC)),
                 "row_version": time.time_ns() // 1000}, keep=ALERT_DELIVERY_KEEP)
            for webhook_id, receiver, event_json, status, attempts, last_error, updated in rows
        ]
        self._insert("alert_deliveries", ALERT_DELIVERY_COLUMNS, mirrored)
        self._mirrored_until = now - 1.0  # a second of overlap: a row finished while we read is mirrored again
        return len(mirrored)

    def _insert(self, table: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        client = self.client_factory()
        try:
            insert_rows(client, table, columns, rows)
        finally:
            client.disconnect()


class DeliveryLoop:
    """Runs the webhook sender in a daemon thread and mirrors delivery states after each batch."""

    def __init__(self, sender: WebhookSender, handoff: AlertHandoff | None = None, *, idle_s: float = 1.0) -> None:
        self.sender = sender
        self.handoff = handoff
        self.idle_s = idle_s
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_once(self) -> int:
        """Try every due delivery once (one claim per batch until none is due); returns attempts made."""
        attempts = 0
        while True:
            report = self.sender.run_once()
            attempts += report.claimed
            if report.claimed == 0:
                break
        if attempts and self.handoff is not None:
            self.handoff.mirror_deliveries()
        return attempts

    def start(self) -> DeliveryLoop:
        if self._thread is None or not self._thread.is_alive():
            self.stop_event.clear()
            self._thread = threading.Thread(target=self._run, name="nlumon-webhooks", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                attempts = self.deliver_once()
            except Exception:  # the loop must outlive one bad iteration (e.g. ClickHouse down)
                log.exception("webhook delivery iteration failed; retrying")
                attempts = 0
            if attempts == 0:
                self.stop_event.wait(self.idle_s)
