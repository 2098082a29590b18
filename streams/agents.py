"""Faust agents: micro-batches from ``utterances`` through the model into ClickHouse and ``predictions``.

Commit point: events are taken with ``noack_take`` and acknowledged only after (1) their dead
letters and predictions were acknowledged by the broker and (2) the sink has flushed their rows,
so Faust never commits an offset past a record whose row is not durable. Blocking work runs in two
threads so the event loop keeps heartbeating (see ARCHITECTURE.md, "Faust event loop"): the model's
thread runs ``BatchPipeline.process``, the sink's thread runs the ClickHouse inserts. The event loop
only touches the sink's buffer; it never waits on a lock that a retrying insert holds.

A row that ClickHouse refuses for good (a type or encoding the server will never take) does not block
the partition: the sink isolates it and its record goes to ``dead-letter`` with the server's message.

Every timer body is guarded (:func:`guarded`): an exception is logged and counted, never raised into
Faust, where it would stop the whole app. Per-partition state is dropped when a partition is revoked.

Two batches are in flight: while batch N is in the model, the event loop publishes and stores batch
N-1 (``publish_and_store``), so the model does not sit idle while Kafka and the sink are busy.
A hot reload swaps the model in that same thread, after the last batch that used the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from nlumon.pii import deidentify_row
from nlumon.records import DEFAULT_MAX_MESSAGE_BYTES, DeadLetter, describe_error
from nlumon.schema import connect, migrate_columns
from nlumon.settings import Settings
from streams.features import PREDICTION_COLUMNS
from streams.metrics import WorkerMetrics
from streams.model_service import LoadedModel, ModelService, limit_blas_threads
from streams.pipeline import (
    DEAD_LETTER_COLUMNS,
    SHADOW_COLUMNS,
    UTTERANCE_LOG_COLUMNS,
    BatchPipeline,
    RawRecord,
    dead_letter_row,
    key_arm,
)
from streams.serving import Challengers, Serving
from streams.sink import ClickHouseSink, Refused, SinkStoppedError

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

# Written in this order: a record's outcome is its ``predictions`` row, written after its ``utterance_log`` row;
# a record refused by either table is dead-lettered and its later rows are not written (streams.sink).
SINK_COLUMNS = {
    "utterance_log": UTTERANCE_LOG_COLUMNS,
    "predictions": PREDICTION_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
    "model_versions": ("model_version", "loaded_at", "worker", "package_sha256", "backend"),
    "shadow_predictions": SHADOW_COLUMNS,  # not linked to a record: a refused shadow row is logged, not dead-lettered
}
UNLINKED_TABLES = ("shadow_predictions", "model_versions")  # rows that are not a record's outcome
MODEL_POLL_INTERVAL_S = 5.0
LAG_INTERVAL_S = 5.0


class BatchCommitter:
    """Holds taken-but-unacknowledged events and acks them once their rows are durable.

    ``flush`` runs on the event loop: it takes the sink's buffer and the events it covers at the same moment,
    writes the rows in the sink's thread, dead-letters the records whose rows ClickHouse refused for good, and
    then acknowledges the events. The asyncio lock only orders flushes; the loop never blocks on it.
    """

    def __init__(
        self,
        sink: ClickHouseSink,
        executor: ThreadPoolExecutor,
        metrics: WorkerMetrics,
        on_refused: Callable[[list[Refused], list[Any]], Awaitable[list[dict]]] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.sink = sink
        self.on_fatal = on_fatal
        self.executor = executor
        self.metrics = metrics
        self.on_refused = on_refused
        self.unacked: list[Any] = []
        self.lock = asyncio.Lock()
        self.last_offsets: dict[Any, int] = {}  # TopicPartition -> last offset taken (dropped on revocation)

    async def flush(self) -> int:
        async with self.lock:
            events, self.unacked = self.unacked, []
            batch = self.sink.take()
            try:
                await self._write(batch, events)
            except SinkStoppedError:
                raise  # stopping: nothing acked, the next owner reads these records again
            except Exception as error:  # the events left ``unacked``: nothing may ack past them now
                if self.on_fatal is not None:
                    self.on_fatal(error)
                raise
            for event in events:
                event.ack()
            return sum(len(rows) for rows in batch.values())

    async def _write(self, batch: dict, events: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        before = dict(self.sink.stats.rows_by_table)
        started = time.perf_counter()
        refused = await loop.run_in_executor(self.executor, self.sink.write, batch) if batch else []
        if refused:
            for item in refused:
                self.metrics.rows_refused.labels(worker=self.metrics.worker_id, table=item.table).inc()
            letters = await self.on_refused(refused, events) if self.on_refused else []
            if letters:  # their dead_letters rows; a refusal of those is logged (the topic has the letter)
                again = await loop.run_in_executor(self.executor, self.sink.write,
                                                   self.sink.batch_of("dead_letters", letters))
                for item in again:
                    log.error("dead_letters row refused too (the letter is on the topic): %s", item.message)
        self.metrics.sink_flush_seconds.observe(time.perf_counter() - started)
        for table, total in self.sink.stats.rows_by_table.items():
            if total > before.get(table, 0):
                self.metrics.rows(table, total - before.get(table, 0))

    async def flush_if_due(self) -> None:
        """Flush when due, unless a flush is already under way (it may be waiting out an outage: the timer
        that calls this must not pile up behind it)."""
        if self.unacked and self.sink.should_flush() and not self.lock.locked():
            await self.flush()

    def forget(self, partitions: Iterable[Any]) -> None:
        """Drop the state of partitions this worker no longer owns."""
        for tp in partitions:
            self.last_offsets.pop(tp, None)


def guarded(name: str, worker: str, metrics: WorkerMetrics) -> Callable:
    """Wrap a timer or signal handler body: an exception is logged with context and counted, never raised.

    An exception that escapes a Faust (mode) timer stops the whole app, so no periodic task may raise."""

    def decorate(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(function)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await function(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # that is the point of the guard
                metrics.timer_errors.labels(worker=worker, timer=name).inc()
                log.exception("%s failed (the worker goes on): %r", name, error,
                              extra={"worker": worker, "timer": name})
                return None

        return run

    return decorate


def refused_letters(refused: list[Refused], events: list[Any], source_topic: str,
                    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[DeadLetter]:
    """One dead letter per record whose row ClickHouse refused, with the original bytes from its event."""
    by_offset = {(e.message.partition, e.message.offset): e.message for e in events}
    letters, seen = [], set()
    for item in refused:
        if item.table == "dead_letters":  # the record already has its letter on the topic: never a second one
            log.error("ClickHouse refused a dead_letters row (the letter is on the topic): %s", item.message)
            continue
        if item.table in UNLINKED_TABLES:  # the record was served and stored: only this side row is lost
            log.error("ClickHouse refused a %s row (the record itself is stored): %s", item.table, item.message)
            continue
        link = (item.row.get("kafka_partition"), item.row.get("kafka_offset"))
        message = by_offset.get(link)
        if message is None or link in seen:
            if message is None:
                log.error("ClickHouse refused a %s row that no record of this batch explains: %s",
                          item.table, item.message)
            continue
        seen.add(link)
        reason = f"clickhouse refused the {item.table} row: {item.message}"
        letters.append(DeadLetter.for_bytes(message.value, reason, source_topic=source_topic,
                                            partition=message.partition, offset=message.offset,
                                            key=message.key, max_bytes=max_bytes))
    return letters


EXIT_FATAL = 70  # EX_SOFTWARE: a batch failed as a whole (not one record's fault); the worker restarts clean


def fatal(app: Any, error: BaseException, shutdown_timeout_s: float) -> None:
    """A batch failed as a whole: a bug, or a Kafka error that retrying cannot mend. Its records were taken but
    neither stored nor acked, and Kafka will not give them to this consumer again, so going on would leave a
    gap that a later commit could skip. Stop the worker instead: the group moves its partitions, which are
    read again from the last committed offset. The deadline makes sure the process ends (exit code 70)."""
    from streams.worker import start_deadline

    if id(app) in _FATAL:
        return
    log.critical("a batch failed before its rows were stored (%r); stopping the worker so its partitions are "
                 "read again from the last commit", error, exc_info=error)
    start_deadline(shutdown_timeout_s, EXIT_FATAL)
    _FATAL[id(app)] = asyncio.ensure_future(app.crash(error))


_FATAL: dict[int, asyncio.Future] = {}  # the crash under way, per app (fatal() acts once)


def _json_row(row: dict) -> bytes:
    """A prediction row as JSON for the ``predictions`` topic (orjson: ~1 µs a row instead of ~10)."""
    try:
        return orjson.dumps(row, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError: e.g. a string orjson will not encode; the stdlib escapes it
        return json.dumps(row, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)).encode()


MODEL_VERSION_KEEP = ("model_version", "package_sha256", "backend")  # deidentify_row scrubs the rest (worker)


def model_version_row(model: LoadedModel, worker: str) -> dict:
    return deidentify_row({
        "model_version": model.version,
        "loaded_at": datetime.utcnow().replace(microsecond=0),
        "worker": worker,
        "package_sha256": str(model.runtime.package.manifest.get("files", {}).get("model.onnx", "")),
        "backend": model.backend,
    }, keep=MODEL_VERSION_KEEP)


@dataclass
class AgentHandle:
    """What the worker process needs from the agents to stop on time (see ``streams.worker``)."""

    drain: Callable[[], Awaitable[None]]
    stop_sink: Callable[[], None]
    registry: Any  # the worker's Prometheus registry, so the monitor's counters are served beside the worker's
    metrics: WorkerMetrics | None = None  # the worker's counters (the outcomes agent counts on them too)


SEND_RETRY_MAX_S = 5.0


def retriable(error: BaseException) -> bool:
    """May sending again succeed? Faust wraps the producer's errors (``ProducerSendError``), so the cause is
    read; a Kafka error says so itself (leader moving, broker down: yes; too large, not authorised: no);
    a timeout or a broken connection may pass; anything else (a bug) will not."""
    cause = error.__cause__ if isinstance(error.__cause__, BaseException) else error
    if type(cause).__name__ == "KafkaTimeoutError":  # aiokafka marks it final, but a broker restart ends it
        return True
    flag = getattr(cause, "retriable", None)
    if flag is not None:
        return bool(flag)
    return isinstance(cause, (OSError, TimeoutError))


async def send_confirmed(topic: Any, key: bytes, value: bytes, *, what: str) -> None:
    """Send one message and wait for the broker's acknowledgement; retry what may succeed later.

    A retriable error (leader moving, broker restarting, timeout) is retried with backoff until it works: the
    record it belongs to is not acknowledged before. Any other error is raised (and is fatal: see ``fatal``)."""
    delay = 0.2
    while True:
        try:
            await (await topic.send(key=key, value=value))
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # sorted by retriable() right here
            if not retriable(error):
                raise
            log.warning("sending %s failed (%r); retrying in %.1f s", what, error, delay)
            await asyncio.sleep(delay)
            delay = min(SEND_RETRY_MAX_S, delay * 2)


async def publish_all(messages: list[tuple[Any, bytes, bytes, str]]) -> None:
    """Send every (topic, key, value, what) and return once the broker acknowledged each one.

    The fast path sends them all and waits once; only the ones that failed are sent again one by one."""
    futures: list[Any] = []
    for topic, key, value, _ in messages:
        try:
            futures.append(await topic.send(key=key, value=value))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # retried below
            failed: asyncio.Future = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            futures.append(failed)
    results = await asyncio.gather(*futures, return_exceptions=True)
    for (topic, key, value, what), result in zip(messages, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            await send_confirmed(topic, key, value, what=what)


# -- pieces every agent of the worker shares (the inference agent below, the outcomes agent in streams.outcomes) ----
def worker_sink(settings: Settings, columns: dict, metrics: WorkerMetrics) -> ClickHouseSink:
    """A ClickHouse sink with the stream settings' batching and back-pressure; retries are counted."""
    return ClickHouseSink(
        lambda: connect(settings.clickhouse),
        columns=columns,
        batch_rows=settings.stream.sink_batch_rows,
        flush_interval_s=settings.stream.sink_flush_s,
        max_pending_rows=settings.stream.sink_max_pending_rows,
        on_retry=lambda error, attempt: metrics.sink_retries.inc(),
    )


def dead_letter_sender(topic: Any, metrics: WorkerMetrics, worker: str) -> Callable[[DeadLetter], tuple]:
    """``letter -> message`` for :func:`publish_all` on ``topic``; each letter is counted and logged (one WARNING
    line per record)."""

    def message(letter: DeadLetter) -> tuple[Any, bytes, bytes, str]:
        metrics.dead_letter(letter.reason)
        log.warning("dead-lettered %s[%s]@%s: %s", letter.source_topic, letter.partition, letter.offset,
                    letter.reason, extra={"worker": worker, "topic": letter.source_topic,
                                          "partition": letter.partition, "offset": letter.offset,
                                          "reason": letter.reason})
        return topic, (letter.key or "").encode(), letter.to_json(), "a dead letter"

    return message


def failure_stopper(app: Any, settings: Settings, stopping: list[bool], worker: str) -> Callable[[BaseException], None]:
    """What a batch that failed as a whole does: nothing while the worker stops (the producer closing under it is
    not a fault; its records are redelivered), else :func:`fatal`."""

    def stop_on_failure(error: BaseException) -> None:
        if stopping or getattr(app, "should_stop", False):
            log.warning("a batch was cut short by the shutdown (%r); its records are redelivered", error,
                        extra={"worker": worker})
            return
        fatal(app, error, settings.stream.shutdown_timeout_s)

    return stop_on_failure


def drain_on_stop(committer: BatchCommitter, sink: ClickHouseSink, stopping: list[bool], budget_s: float,
                  worker: str, what: str = "rows") -> Callable[[], Awaitable[None]]:
    """The drain a worker runs on SIGTERM, before Faust stops the consumer: store and acknowledge what is
    buffered within ``budget_s`` (every call together: the signal handler and ``on_before_shutdown`` both call
    it); past that, stop the sink's retries, so nothing more is acked and Kafka redelivers it to the next owner."""
    deadline: list[float] = []

    async def drain() -> None:
        stopping.append(True)
        loop = asyncio.get_running_loop()
        if not deadline:
            deadline.append(loop.time() + budget_s)
        left = deadline[0] - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(committer.flush(), timeout=left)
            log.info("drained: buffered %s stored and their records acknowledged", what, extra={"worker": worker})
        except TimeoutError:
            sink.stop()
            log.warning("could not store the buffered %s within %.0f s; leaving them to the next owner", what,
                        budget_s, extra={"worker": worker})
        except Exception as error:  # stopping goes on whatever happened
            sink.stop()
            log.warning("drain of the buffered %s failed (%r); unacknowledged records go to the next owner", what,
                        error, extra={"worker": worker})

    return drain


def attach_agents(app: faust.App, settings: Settings, *, worker_id: str | None = None) -> AgentHandle:
    """Declare the topics and register the inference agent and its timers on ``app``."""
    topics = settings.topics
    worker = worker_id or f"{app.conf.id}-{id(app):x}"
    utterances = app.topic(topics.utterances, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)
    predictions = app.topic(topics.predictions, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)

    limit_blas_threads(settings.model.blas_threads)
    metrics = WorkerMetrics(worker)
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-model")
    sink_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-sink")
    pipeline = BatchPipeline(settings)
    models = ModelService(settings.model, ood_fpr=settings.monitor.ood_in_distribution_fpr)
    sink = worker_sink(settings, SINK_COLUMNS, metrics)
    dead_letter_message = dead_letter_sender(dead_letter, metrics, worker)

    async def dead_letter_refused(refused: list[Refused], events: list) -> list[dict]:
        letters = refused_letters(refused, events, topics.utterances, topics.max_message_bytes)
        await publish_all([dead_letter_message(letter) for letter in letters])
        rows, now = [], serving()
        for letter in letters:  # during an experiment, the row names the arm of the record's session
            experiment, arm = key_arm(now, letter.key)
            rows.append(dead_letter_row(letter, experiment=experiment, arm=arm))
        return rows

    stopping: list[bool] = []  # set when the worker starts to stop (signal or shutdown)
    stop_on_failure = failure_stopper(app, settings, stopping, worker)

    def batch_done(task: asyncio.Future) -> None:
        """A batch whose publish or store failed as a whole stops the worker at once, even if no batch follows."""
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(),
                                                                                     SinkStoppedError):
            stop_on_failure(task.exception())

    committer = BatchCommitter(sink, sink_thread, metrics, on_refused=dead_letter_refused, on_fatal=stop_on_failure)

    try:  # an older schema gets the columns this worker writes (else ClickHouse refuses every row: dead letters)
        added = migrate_columns(settings.clickhouse, ("predictions", "dead_letters"))
        if any(added.values()):
            log.info("added columns to older tables: %s", {t: c for t, c in added.items() if c})
    except Exception as error:  # no ALTER grant, or the server is not up yet: `nlumon services init` does it too
        log.warning("could not check the tables' columns (%s); run `nlumon services init` after an upgrade",
                    describe_error(error))

    # Fail fast: a worker that cannot load its model must not consume (its records would pile up unpredicted).
    first_model = models.start()
    metrics.serve(settings.stream.metrics_port)
    metrics.serving(first_model.version, first_model.backend)
    sink.add("model_versions", model_version_row(first_model, worker))
    challengers = Challengers(settings, models)

    def adopt_lineup(change: tuple) -> None:
        """In the model thread: the new line-up serves from the next batch; retired runtimes close after it."""
        lineup, retired = change
        challengers.adopt(lineup)
        for model in retired:
            model.runtime.close()
        experiment = lineup.experiment
        entries = [("arm", arm, challengers.describe(model)) for arm, model in lineup.arms.items()]
        if lineup.shadow is not None:
            entries.append(("shadow", "", lineup.shadow.version))
        metrics.serving_lineup(entries)
        for model in lineup.models():
            role = "shadow" if model is lineup.shadow else f"arm of {experiment.name if experiment else '?'}"
            sink.add("model_versions", model_version_row(model, f"{worker} ({role})"))

    initial = challengers.refresh()  # an experiment or shadow set before the start serves from the first batch
    if initial is not None:
        adopt_lineup(initial)

    def serving() -> Serving | None:
        """What serves the next batch (read in the model thread, where hot reloads and line-up swaps happen)."""
        champion = models.current
        return Serving(champion, challengers.lineup) if champion is not None else None

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
        messages = [dead_letter_message(letter) for letter in result.dead_letters]
        for row in result.rows.get("predictions", []):
            messages.append((predictions, row["session_id"].encode(), _json_row(row), "a prediction"))
        await publish_all(messages)  # the broker has them before their records are acked
        log.debug("%d messages acknowledged by the broker", len(messages))
        metrics.predictions_out.inc(len(result.rows.get("predictions", [])))
        if result.serving is not None and result.serving.lineup.shadow is not None:
            # the challenger scores the batch after its decisions are out, so it never delays them (its rows are
            # stored with the batch's; pipeline.shadow contains its own failures)
            result = await asyncio.get_running_loop().run_in_executor(model_thread, pipeline.shadow, result)
            metrics.shadow_rows.inc(len(result.rows.get("shadow_predictions", [])))
            metrics.shadow_seconds.observe(result.shadow_s)
            if result.shadow_error:
                metrics.shadow_errors.inc()
        for table, rows in result.rows.items():
            for row in rows:
                sink.add(table, row)
        for event in events:
            committer.last_offsets[event.message.tp] = event.message.offset
        committer.unacked.extend(events)
        if sink.over_limit:
            await committer.flush()  # back-pressure: the next batch waits, the event loop does not
        else:
            await committer.flush_if_due()

    @app.agent(utterances, name="inference")
    async def inference(stream: faust.Stream) -> None:
        """Two batches in flight: while batch N is in the model (model thread), batch N-1 is published and
        stored (event loop and sink thread), so neither waits for the other.

        Nothing raises out of this agent: Faust would restart it on the same stream, where the old
        ``noack_take`` left behind can stall the stream or turn acks back on. A batch that fails as a whole
        is fatal for the worker instead (:func:`fatal`)."""
        loop = asyncio.get_running_loop()
        in_flight: deque[asyncio.Future] = deque()
        batches = stream.noack_take(settings.stream.max_batch, within=settings.stream.max_wait_s)
        async with contextlib.aclosing(batches):
            async for events in batches:
                while len(in_flight) >= 2 or (in_flight and in_flight[0].done()):
                    try:
                        await in_flight.popleft()  # bounded memory; in order
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # batch_done has already stopped the worker (or it is stopping anyway)
                        return
                records = [
                    RawRecord(e.message.value, e.message.key, e.message.partition, e.message.offset,
                              e.message.topic, e.message.timestamp)
                    for e in events
                ]
                metrics.records_in.inc(len(records))
                log.debug("batch of %d taken", len(records))
                # the model is read in the model thread, so a hot reload queued before this batch applies to it
                processing = loop.run_in_executor(
                    model_thread, lambda r=records: pipeline.process(r, serving(), shadow=False))
                previous = in_flight[-1] if in_flight else None
                task = asyncio.ensure_future(publish_and_store(previous, processing, events))
                task.add_done_callback(batch_done)
                in_flight.append(task)

    @app.timer(interval=max(0.1, settings.stream.sink_flush_s / 2))
    @guarded("flush_on_time", worker, metrics)
    async def flush_on_time() -> None:
        await committer.flush_if_due()

    @app.timer(interval=MODEL_POLL_INTERVAL_S)
    @guarded("watch_model", worker, metrics)
    async def watch_model() -> None:
        """Load a newly promoted package beside the old one, then swap in the model thread: batches already
        queued there finish with the old model, the next ones use the new one (the old runtime closes after)."""
        loop = asyncio.get_running_loop()
        try:
            candidate = await loop.run_in_executor(None, models.poll)
        except Exception:
            metrics.model_reloads.labels(worker=worker, outcome="failed").inc()
            return
        if candidate is None:
            return
        metrics.model_reloads.labels(worker=worker, outcome="loaded").inc()
        model = await loop.run_in_executor(model_thread, models.swap, candidate)
        metrics.serving(model.version, model.backend)
        sink.add("model_versions", model_version_row(model, worker))
        log.info("now serving model %s", model.version, extra={"worker": worker, "model_version": model.version})

    @app.timer(interval=settings.experiments.poll_s)
    @guarded("watch_lineup", worker, metrics)
    async def watch_lineup() -> None:
        """Follow the experiment file and the shadow setting: load new packages in a thread (beside the ones in
        service), then swap the line-up in the model thread between two batches."""
        loop = asyncio.get_running_loop()
        change = await loop.run_in_executor(None, challengers.refresh)
        if change is not None:
            await loop.run_in_executor(model_thread, adopt_lineup, change)

    @app.timer(interval=LAG_INTERVAL_S)
    @guarded("measure_lag", worker, metrics)
    async def measure_lag() -> None:
        """Lag of every partition of ``utterances`` this worker owns now (highwater() asserts on any other):
        from the last record taken, or from the consumer's position where nothing was taken since assignment."""
        assigned = {tp for tp in app.consumer.assignment() if tp.topic == topics.utterances}
        committer.forget([tp for tp in list(committer.last_offsets) if tp not in assigned])
        for tp in assigned:
            highwater = app.consumer.highwater(tp)
            if highwater is None:
                continue
            taken = committer.last_offsets.get(tp)
            if taken is not None:
                lag = highwater - taken - 1
            else:
                position = await app.consumer.position(tp)
                if position is None:
                    continue
                lag = highwater - position
            metrics.consumer_lag.labels(worker=worker, partition=str(tp.partition)).set(max(0, lag))

    @app.on_partitions_assigned.connect
    @guarded("on_partitions_assigned", worker, metrics)
    async def _count_partitions(sender: Any, assigned: set, **_: Any) -> None:
        mine = [tp for tp in assigned if tp.topic == topics.utterances]
        metrics.assigned_partitions.set(len(mine))
        log.info("worker %s owns %d partition(s) of %s", worker, len(mine), topics.utterances,
                 extra={"worker": worker, "partitions": sorted(tp.partition for tp in mine)})

    @app.on_partitions_revoked.connect
    @guarded("on_partitions_revoked", worker, metrics)
    async def _forget_partitions(sender: Any, revoked: set, **_: Any) -> None:
        committer.forget(revoked)
        for tp in revoked:
            try:
                metrics.consumer_lag.remove(worker, str(tp.partition))
            except KeyError:  # never measured
                pass

    # on SIGTERM, before Faust stops the consumer (both calls together get half the shutdown timeout)
    drain = drain_on_stop(committer, sink, stopping, settings.stream.shutdown_timeout_s / 2, worker)

    @app.on_before_shutdown.connect
    @guarded("flush_on_stop", worker, metrics)
    async def _flush_on_stop(sender: Any, **_: Any) -> None:
        await drain()

    return AgentHandle(drain=drain, stop_sink=sink.stop, registry=metrics.registry, metrics=metrics)
