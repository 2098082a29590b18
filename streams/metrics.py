"""Prometheus metrics of a stream worker, served on ``stream.metrics_port`` (0 = off).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms). One registry
per worker object, so tests can build several without clashing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class WorkerMetrics:
    def __init__(self, worker_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = {"worker": worker_id}
        self.records_in = Counter("nlumon_records_in_total", "records taken from Kafka", ["worker"],
                                  registry=self.registry).labels(**labels)
        self.rows_out = Counter("nlumon_rows_out_total", "rows made durable in ClickHouse", ["worker", "table"],
                                registry=self.registry)
        self.predictions_out = Counter("nlumon_predictions_published_total", "records sent to the predictions topic",
                                       ["worker"], registry=self.registry).labels(**labels)
        self.dead_letters = Counter("nlumon_dead_letters_total", "records sent to the dead-letter topic",
                                    ["worker", "reason"], registry=self.registry)
        self.batch_size = Histogram("nlumon_batch_size", "utterances per model batch", ["worker"],
                                    buckets=BATCH_BUCKETS, registry=self.registry).labels(**labels)
        self.inference_seconds = Histogram("nlumon_inference_seconds", "model time per batch", ["worker"],
                                           buckets=LATENCY_BUCKETS, registry=self.registry).labels(**labels)
        self.sink_flush_seconds = Histogram(
            "nlumon_sink_flush_seconds", "ClickHouse flush time, retries included", ["worker"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        ).labels(**labels)
        self.sink_retries = Counter("nlumon_sink_retries_total", "failed ClickHouse inserts that were retried",
                                    ["worker"], registry=self.registry).labels(**labels)
        self.consumer_lag = Gauge("nlumon_consumer_lag", "records behind the partition's end", ["worker", "partition"],
                                  registry=self.registry)
        self.assigned_partitions = Gauge("nlumon_assigned_partitions", "partitions of the utterances topic this "
                                         "worker owns", ["worker"], registry=self.registry).labels(**labels)
        self.rows_refused = Counter("nlumon_rows_refused_total", "rows ClickHouse refused for good (their records are "
                                    "dead-lettered)", ["worker", "table"], registry=self.registry)
        self.timer_errors = Counter("nlumon_timer_errors_total", "exceptions caught in a periodic task (logged; the "
                                    "worker goes on)", ["worker", "timer"], registry=self.registry)
        self.model_version = Gauge("nlumon_model_version_info", "1 for the model version in service",
                                   ["worker", "version", "backend"], registry=self.registry)
        self.model_reloads = Counter("nlumon_model_reloads_total", "hot reloads of the model", ["worker", "outcome"],
                                     registry=self.registry)
        self.shadow_rows = Counter("nlumon_shadow_predictions_total", "utterances the shadow challenger scored",
                                   ["worker"], registry=self.registry).labels(**labels)
        self.shadow_errors = Counter("nlumon_shadow_errors_total", "batches the shadow challenger failed on (the "
                                     "served rows are unaffected)", ["worker"], registry=self.registry).labels(**labels)
        self.shadow_seconds = Histogram("nlumon_shadow_seconds", "shadow challenger time per batch (model and "
                                        "features)", ["worker"], buckets=LATENCY_BUCKETS,
                                        registry=self.registry).labels(**labels)
        self.lineup = Gauge("nlumon_lineup_info", "1 per model beside the champion: an experiment arm or the shadow",
                            ["worker", "role", "name", "version"], registry=self.registry)
        self._worker_id = self.worker_id = worker_id

    def dead_letter(self, reason: str) -> None:
        # The label is the reason's kind (text before ':'), so label cardinality stays small.
        self.dead_letters.labels(worker=self._worker_id, reason=reason.split(":")[0][:60]).inc()

    def rows(self, table: str, count: int) -> None:
        self.rows_out.labels(worker=self._worker_id, table=table).inc(count)

    def serving(self, version: str, backend: str) -> None:
        self.model_version.clear()
        self.model_version.labels(worker=self._worker_id, version=version, backend=backend).set(1)

    def serving_lineup(self, entries: list[tuple[str, str, str]]) -> None:
        """(role, name, version) of every model beside the champion: ("arm", arm, version), ("shadow", "", v)."""
        self.lineup.clear()
        for role, name, version in entries:
            self.lineup.labels(worker=self._worker_id, role=role, name=name, version=version).set(1)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
