"""Faust agents: micro-batches from ``utterances`` through the model into ClickHouse and ``predictions``.

Commit point: events are taken with ``noack_take`` and acknowledged only after (1) their dead
letters and predictions were acknowledged by the broker and (2) the sink has flushed their rows,
so Faust never commits an offset past a record whose row is not durable. Blocking work (the model,
the ClickHouse insert) runs in one worker thread so the event loop keeps heartbeating (see
ARCHITECTURE.md, "Faust event loop"); one thread also keeps the model and the sink strictly ordered.

Two batches are in flight: while batch N is in the model, the event loop publishes and stores batch
N-1 (``publish_and_store``), so the model does not sit idle while Kafka and the sink are busy.
A hot reload swaps the model in that same thread, after the last batch that used the old one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nlumon.schema import connect
from nlumon.settings import Settings
from streams.features import PREDICTION_COLUMNS
from streams.metrics import WorkerMetrics
from streams.model_service import LoadedModel, ModelService, limit_blas_threads
from streams.pipeline import DEAD_LETTER_COLUMNS, UTTERANCE_LOG_COLUMNS, BatchPipeline, RawRecord
from streams.sink import ClickHouseSink

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

SINK_COLUMNS = {
    "utterance_log": UTTERANCE_LOG_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
    "predictions": PREDICTION_COLUMNS,
    "model_versions": ("model_version", "loaded_at", "worker", "package_sha256", "backend"),
}
MODEL_POLL_INTERVAL_S = 5.0
LAG_INTERVAL_S = 5.0


class BatchCommitter:
    """Holds taken-but-unacknowledged events and acks them once their rows are durable."""

    def __init__(self, sink: ClickHouseSink, executor: ThreadPoolExecutor, metrics: WorkerMetrics) -> None:
        self.sink = sink
        self.executor = executor
        self.metrics = metrics
        self.unacked: list[Any] = []
        self.lock = asyncio.Lock()
        self.last_offsets: dict[Any, int] = {}  # TopicPartition -> last offset taken

    async def flush(self) -> int:
        async with self.lock:
            events, self.unacked = self.unacked, []
            before = dict(self.sink.stats.rows_by_table)
            started = time.perf_counter()
            written = await asyncio.get_running_loop().run_in_executor(self.executor, self.sink.flush)
            self.metrics.sink_flush_seconds.observe(time.perf_counter() - started)
            for table, total in self.sink.stats.rows_by_table.items():
                if total > before.get(table, 0):
                    self.metrics.rows(table, total - before.get(table, 0))
            for event in events:
                event.ack()
            return written

    async def flush_if_due(self) -> None:
        if self.unacked and self.sink.should_flush():
            await self.flush()


def _log_failure(task: asyncio.Future) -> None:
    """A failed batch is logged at once (the agent re-raises it when it takes the next batch); its events
    stay unacknowledged, so they are delivered again."""
    if not task.cancelled() and task.exception() is not None:
        log.error("batch failed before its rows were stored: %r", task.exception())


def _json_row(row: dict) -> bytes:
    return json.dumps(row, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)).encode()


def model_version_row(model: LoadedModel, worker: str) -> dict:
    return {
        "model_version": model.version,
        "loaded_at": datetime.utcnow().replace(microsecond=0),
        "worker": worker,
        "package_sha256": str(model.runtime.package.manifest.get("files", {}).get("model.onnx", "")),
        "backend": model.backend,
    }


def attach_agents(app: faust.App, settings: Settings, *, worker_id: str | None = None) -> None:
    """Declare the topics and register the inference agent and its timers on ``app``."""
    topics = settings.topics
    worker = worker_id or f"{app.conf.id}-{id(app):x}"
    utterances = app.topic(topics.utterances, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)
    predictions = app.topic(topics.predictions, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)

    limit_blas_threads(settings.model.blas_threads)
    metrics = WorkerMetrics(worker)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-batch")
    pipeline = BatchPipeline(settings)
    models = ModelService(settings.model, ood_fpr=settings.monitor.ood_in_distribution_fpr)
    sink = ClickHouseSink(
        lambda: connect(settings.clickhouse),
        columns=SINK_COLUMNS,
        batch_rows=settings.stream.sink_batch_rows,
        flush_interval_s=settings.stream.sink_flush_s,
        max_pending_rows=settings.stream.sink_max_pending_rows,
        on_retry=lambda error, attempt: metrics.sink_retries.inc(),
    )
    committer = BatchCommitter(sink, executor, metrics)
    pending_swap: list[LoadedModel] = []

    # Fail fast: a worker that cannot load its model must not consume (its records would pile up unpredicted).
    first_model = models.start()
    metrics.serve(settings.stream.metrics_port)
    metrics.serving(first_model.version, first_model.backend)
    sink.add("model_versions", model_version_row(first_model, worker))

    async def publish_and_store(previous: asyncio.Future | None, processing: asyncio.Future, events: list) -> None:
        """The event-loop half of one batch: dead letters and predictions to Kafka, rows to the sink.

        Runs while the next batch is in the model; waits for the batch before it, so batches finish in order."""
        if previous is not None:
            await previous
        result = await processing
        log.debug("batch processed: %d rows, %d dead letters", len(result.events), len(result.dead_letters),
                  extra={"worker": worker, "rows": len(result.events), "dead_letters": len(result.dead_letters),
                         "inference_ms": round(result.inference_s * 1000, 1), "model_version": result.model_version})
        if result.model_version:
            metrics.batch_size.observe(len(result.events))
            metrics.inference_seconds.observe(result.inference_s)
        deliveries = []
        for letter in result.dead_letters:
            deliveries.append(await dead_letter.send(key=(letter.key or "").encode(), value=letter.to_json()))
            metrics.dead_letter(letter.reason)
            log.warning("dead-lettered %s[%s]@%s: %s", letter.source_topic, letter.partition, letter.offset,
                        letter.reason, extra={"worker": worker, "topic": letter.source_topic,
                                              "partition": letter.partition, "offset": letter.offset,
                                              "reason": letter.reason})
        for row in result.rows.get("predictions", []):
            deliveries.append(await predictions.send(key=row["session_id"].encode(), value=_json_row(row)))
        await asyncio.gather(*deliveries)  # the broker has them before their records are acked
        log.debug("%d messages acknowledged by the broker", len(deliveries))
        metrics.predictions_out.inc(len(result.rows.get("predictions", [])))
        for table, rows in result.rows.items():
            for row in rows:
                sink.add(table, row)
        for event in events:
            committer.last_offsets[event.message.tp] = event.message.offset
        committer.unacked.extend(events)
        await committer.flush_if_due()

    @app.agent(utterances, name="inference")
    async def inference(stream: faust.Stream) -> None:
        """Two batches in flight: while batch N is in the model (worker thread), batch N-1 is published and
        stored (event loop), so neither waits for the other. The model and the sink share one thread, in order."""
        loop = asyncio.get_running_loop()
        in_flight: deque[asyncio.Future] = deque()
        async for events in stream.noack_take(settings.stream.max_batch, within=settings.stream.max_wait_s):
            while len(in_flight) >= 2 or (in_flight and in_flight[0].done()):
                await in_flight.popleft()  # bounded memory; re-raises what failed
            if pending_swap:  # between batches: the new model serves from the next batch on
                # in the worker thread, so the old runtime is closed only after the batch that uses it
                model = await loop.run_in_executor(executor, models.swap, pending_swap.pop())
                metrics.serving(model.version, model.backend)
                sink.add("model_versions", model_version_row(model, worker))
                log.info("now serving model %s", model.version,
                         extra={"worker": worker, "model_version": model.version})
            records = [
                RawRecord(e.message.value, e.message.key, e.message.partition, e.message.offset,
                          e.message.topic, e.message.timestamp)
                for e in events
            ]
            metrics.records_in.inc(len(records))
            log.debug("batch of %d taken", len(records))
            processing = loop.run_in_executor(executor, pipeline.process, records, models.current)
            previous = in_flight[-1] if in_flight else None
            task = asyncio.ensure_future(publish_and_store(previous, processing, events))
            task.add_done_callback(_log_failure)
            in_flight.append(task)

    @app.timer(interval=max(0.1, settings.stream.sink_flush_s / 2))
    async def flush_on_time() -> None:
        await committer.flush_if_due()

    @app.timer(interval=MODEL_POLL_INTERVAL_S)
    async def watch_model() -> None:
        try:
            candidate = await asyncio.get_running_loop().run_in_executor(None, models.poll)
        except Exception:
            metrics.model_reloads.labels(worker=worker, outcome="failed").inc()
            return
        if candidate is not None:
            pending_swap.append(candidate)
            metrics.model_reloads.labels(worker=worker, outcome="loaded").inc()

    @app.timer(interval=LAG_INTERVAL_S)
    async def measure_lag() -> None:
        for tp, offset in list(committer.last_offsets.items()):
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                metrics.consumer_lag.labels(worker=worker, partition=str(tp.partition)).set(
                    max(0, highwater - offset - 1))

    @app.on_partitions_assigned.connect
    async def _count_partitions(sender: Any, assigned: set, **_: Any) -> None:
        mine = [tp for tp in assigned if tp.topic == topics.utterances]
        metrics.assigned_partitions.set(len(mine))
        log.info("worker %s owns %d partition(s) of %s", worker, len(mine), topics.utterances,
                 extra={"worker": worker, "partitions": sorted(tp.partition for tp in mine)})

    @app.on_before_shutdown.connect
    async def _flush_on_stop(sender: Any, **_: Any) -> None:
        await committer.flush()
