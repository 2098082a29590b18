"""Prometheus metrics of the monitor: windows stored per status, window errors, runs that raised.

One :class:`MonitorMetrics` per registry (:func:`monitor_metrics`), so building several monitors in one
process (tests, the demo) reuses the counters instead of registering the same names twice. The default
registry is ``prometheus_client``'s process-wide one; ``nlumon monitor run --metrics-port`` serves it.

=========================================  ==========  ==================================================
metric                                     labels      counts
=========================================  ==========  ==================================================
``nlumon_monitor_windows_total``           status      windows stored: ``scored``, ``not_scored``, ``failed``
``nlumon_monitor_window_errors_total``     stage       windows that failed: ``score`` or a hand-off
                                                       (``alerts``, ``labeling``)
``nlumon_monitor_windows_not_scored_total`` reason     windows not scored, by reason code
                                                       (``no_reference``, ``reference_too_small``,
                                                       ``too_few_rows``, ``empty_window``)
``nlumon_monitor_run_errors_total``        where       runs that raised (``leader_timer``, ``run_loop``,
                                                       ``shutdown``, ``delivery_start``)
=========================================  ==========  ==================================================

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> monitor_metrics(registry) is monitor_metrics(registry)
    True
    >>> monitor_metrics(registry).window_errors.labels(stage="score").inc()
    >>> registry.get_sample_value("nlumon_monitor_window_errors_total", {"stage": "score"})
    1.0
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter


class MonitorMetrics:
    """The monitor's counters in one registry; get one with :func:`monitor_metrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.windows = Counter("nlumon_monitor_windows_total", "windows the monitor stored, by status",
                               ["status"], registry=registry)
        self.window_errors = Counter("nlumon_monitor_window_errors_total",
                                     "windows whose scoring or hand-off raised (stored as failed, retried later)",
                                     ["stage"], registry=registry)
        self.not_scored = Counter("nlumon_monitor_windows_not_scored_total",
                                  "windows stored as not scored (no reference, too few rows), by reason",
                                  ["reason"], registry=registry)
        self.run_errors = Counter("nlumon_monitor_run_errors_total",
                                  "monitor runs or timer ticks that raised (logged, retried on the next tick)",
                                  ["where"], registry=registry)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, MonitorMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def monitor_metrics(registry: CollectorRegistry | None = None) -> MonitorMetrics:
    """The monitor's metrics in ``registry`` (default: the process-wide registry), created once per registry."""
    registry = REGISTRY if registry is None else registry
    with _LOCK:
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = MonitorMetrics(registry)
        return metrics
