"""Wiring of the monitor from the settings: the job, its alert and labeling hand-offs, the conversion scorer, and
webhook delivery.

Two ways to run it:

- in the Faust app, on the leader only: ``attach_monitor(app, settings)`` (called from ``streams.app``) adds a
  ``@app.timer(on_leader=True)`` that runs :meth:`MonitorJob.run_once` in a worker thread (the event loop keeps
  heartbeating), and starts the webhook delivery thread on the first leader tick;
- as its own process: ``nlumon monitor run`` (loop + delivery thread) or ``nlumon monitor run-once``.

The alert store (SQLite state + outbox) is a local file: run the monitor where that file persists.

After each run of the job, :class:`monitor.conversion.ConversionScorer` scores the windows whose outcomes are in
(conversion per intent, "high traffic, low conversion" alerts through the same alert engine). It is guarded:
its failure is logged and counted (``nlumon_monitor_run_errors_total{where="conversion"}``) and never stops
or fails window scoring; a failure of the job does not skip it either.

Nothing the monitor does may crash the Faust app: an exception that escapes a ``mode`` timer stops the whole
worker. The leader timer and the shutdown hook catch every ``Exception``, log it with context and count it
(``nlumon_monitor_run_errors_total``); the next tick runs again (due windows stay due).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.alerting import AlertHandoff, DeliveryLoop
from monitor.conversion import ConversionRun, ConversionScorer
from monitor.job import MonitorJob, WindowOutcome
from monitor.labeling_sink import LabelingSink, kafka_producer_factory
from monitor.metrics import MonitorMetrics
from nlumon.schema import connect
from nlumon.settings import Settings

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


@dataclass
class MonitorRuntime:
    """The monitor job plus what it hands results to, and the conversion scorer that runs after it."""

    job: MonitorJob
    alerts: AlertHandoff | None
    labeling: LabelingSink | None
    delivery: DeliveryLoop | None
    conversion: ConversionScorer | None = None

    @property
    def metrics(self) -> MonitorMetrics:
        return self.job.metrics

    def run_once(self, now: datetime | None = None, since: datetime | None = None) -> list[WindowOutcome]:
        """Score the due windows, then the due conversion windows (guarded: see :meth:`score_conversion`).
        Raises what the job raises, after the conversion scorer had its turn."""
        try:
            return self.job.run_once(now=now, since=since)
        finally:
            self.score_conversion(now=now, since=since)

    def score_conversion(self, now: datetime | None = None, since: datetime | None = None) -> ConversionRun | None:
        """Run the conversion scorer once; never raises: a failure is logged and counted, and its windows stay
        due for the next run. None when there is no scorer or it failed."""
        if self.conversion is None:
            return None
        try:
            return self.conversion.run_once(now=now, since=since)
        except Exception:
            _count_error(self, "conversion")
            log.exception("conversion scoring failed; window scoring goes on, due conversion windows stay due")
            return None

    def close(self) -> None:
        """Stop delivery, close the producer and the alert store; each is tried even if another fails."""
        parts = [("webhook delivery", self.delivery.stop if self.delivery is not None else None),
                 ("labeling producer", self.labeling.close if self.labeling is not None else None),
                 ("alert store", self.alerts.store.close if self.alerts is not None else None)]
        for what, close in parts:
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.exception("monitor shutdown: closing the %s failed", what)


def consumer_lag_probe(bootstrap_servers: str, group: str, topic: str) -> Callable[[], int | None]:
    """A callable that returns how many ``topic`` messages ``group`` has not committed yet (None if unknown)."""

    def probe() -> int | None:
        from kafka import KafkaAdminClient, KafkaConsumer

        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="nlumon-monitor-lag",
                                 request_timeout_ms=5000)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="nlumon-monitor-lag")
        try:
            committed = {tp: meta.offset for tp, meta in admin.list_consumer_group_offsets(group).items()
                         if tp.topic == topic}
            if not committed:
                return None
            ends = consumer.end_offsets(list(committed))
            return int(sum(max(0, ends[tp] - offset) for tp, offset in committed.items()))
        finally:
            consumer.close()
            admin.close()

    return probe


def build_monitor(
    settings: Settings,
    clickhouse_client_factory: Callable[[], Any] | None = None,
    *,
    alerts: bool = True,
    labeling: bool = True,
    kafka: bool = True,
    measure_lag: bool = True,
    metrics: MonitorMetrics | None = None,
    conversion: bool = True,
) -> MonitorRuntime:
    """The monitor for ``settings``: job + alert hand-off + labeling sink + webhook delivery (not started) + the
    conversion scorer (``conversion=False``: none). ``metrics``: default, the monitor's counters in the
    process-wide Prometheus registry."""
    from alerts.engine import AlertEngine
    from alerts.outbox import Outbox
    from alerts.receivers import load_receivers
    from alerts.rules import load_rules
    from alerts.sender import RetryPolicy, WebhookSender
    from alerts.store import AlertStore

    factory = clickhouse_client_factory or (lambda: connect(settings.clickhouse))
    handlers: list[Callable[[list[WindowOutcome]], Any]] = []
    handoff = delivery = sink = None
    if labeling:
        lab = settings.labeling
        sink = LabelingSink(
            factory, daily_budget=lab.daily_budget, max_per_window=lab.max_per_window,
            low_confidence=lab.low_confidence, small_margin=lab.small_margin,
            candidates_per_window=lab.candidates_per_window, topic=settings.topics.labeling_queue,
            producer_factory=kafka_producer_factory(settings.kafka.bootstrap_servers) if kafka else None,
        )
        handlers.append(sink)
    if alerts:
        conf = settings.alerts
        store = AlertStore(conf.resolved_store_path(settings.services.run_dir))
        lag = (consumer_lag_probe(settings.kafka.bootstrap_servers, settings.kafka.consumer_group,
                                  settings.topics.utterances) if kafka and measure_lag else None)
        handoff = AlertHandoff(AlertEngine(load_rules(conf.rules_path), store), factory,
                               report_base_url=conf.report_base_url, dashboard_url=conf.dashboard_url, lag_probe=lag)
        handlers.insert(0, handoff)  # alerts first: they matter most if a later hand-off fails
        receivers = load_receivers(conf.receivers_path) if conf.receivers_path is not None else {}
        if not receivers:
            log.warning("no webhook receivers configured (alerts.receivers_path): alerts stay queued in %s",
                        store.path)
        policy = RetryPolicy(base_s=conf.retry_base_s, cap_s=conf.retry_cap_s, horizon_s=conf.retry_horizon_s,
                             lease_s=conf.lease_s)
        delivery = DeliveryLoop(WebhookSender(Outbox(store), receivers, policy=policy), handoff)
    job = MonitorJob(settings, factory, handlers=handlers, metrics=metrics)
    scorer = (ConversionScorer(settings, factory, alerts=handoff, lookback_s=job.lookback_s, clock=job.clock,
                               metrics=job.metrics)
              if conversion else None)
    return MonitorRuntime(job, handoff, sink, delivery, scorer)


def timer_interval_s(window_s: int) -> float:
    """How often the leader looks for closed windows: a fifth of a window, between 5 s and 60 s.

    >>> timer_interval_s(300), timer_interval_s(10), timer_interval_s(3600)
    (60.0, 5.0, 60.0)
    """
    return float(min(60.0, max(5.0, window_s / 5)))


def attach_monitor(
    app: faust.App, settings: Settings, *, runtime: MonitorRuntime | None = None, metrics: MonitorMetrics | None = None,
) -> MonitorRuntime:
    """Register the leader-only monitor timer on ``app``; returns the runtime it drives. ``metrics``: e.g.
    ``monitor_metrics(<the worker's registry>)`` to serve the monitor's counters with the worker's."""
    runtime = runtime or build_monitor(settings, metrics=metrics)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-monitor")
    started = threading.Event()
    interval = timer_interval_s(settings.monitor.window_s)
    app_id = settings.kafka.consumer_group  # the app id (streams.app)

    @app.timer(interval=interval, on_leader=True)
    async def monitor_windows() -> None:
        await leader_tick(runtime, executor, started, interval_s=interval, app_id=app_id)

    @app.on_before_shutdown.connect
    async def _stop_monitor(sender: Any, **_: Any) -> None:
        try:
            runtime.close()
            executor.shutdown(wait=False)
        except Exception:  # shutdown goes on whatever the monitor does
            _count_error(runtime, "shutdown")
            log.exception("monitor shutdown failed (app %s)", app_id)

    return runtime


async def leader_tick(
    runtime: MonitorRuntime, executor: ThreadPoolExecutor, started: threading.Event, *, interval_s: float = 0.0,
    app_id: str = "",
) -> None:
    """The body of the leader timer: start webhook delivery once, run the monitor in ``executor``.

    Never raises an ``Exception`` (one escaping a Faust timer crashes the app): a failure is logged with its
    context and counted; delivery start is retried on the next tick, and due windows stay due.
    """
    if runtime.delivery is not None and not started.is_set():
        try:
            runtime.delivery.start()
            started.set()
        except Exception:
            _count_error(runtime, "delivery_start")
            log.exception("monitor leader timer (app %s): webhook delivery did not start; retried next tick", app_id)
    try:
        await asyncio.get_running_loop().run_in_executor(executor, runtime.run_once)
    except Exception:
        _count_error(runtime, "leader_timer")
        log.exception("monitor leader timer (app %s): run failed; due windows stay due, next run in %.0f s",
                      app_id, interval_s)


def _count_error(runtime: MonitorRuntime, where: str) -> None:
    try:
        runtime.metrics.run_errors.labels(where=where).inc()
    except Exception:  # a metric must never be what crashes the app
        log.debug("monitor error metric not counted", exc_info=True)
