"""Outcome events (topic ``outcomes``) into ClickHouse: what happened after the model's decision.

``OutcomePipeline.process`` turns each raw record into exactly one of two things, whatever it holds: an
``outcomes`` row, or a dead letter with a one-line reason (the contract and its hardened parser are
:func:`nlumon.records.parse_outcome`). ``attach_outcome_agent`` connects it to Faust with the durability of the
inference agent (``streams.agents``): records are taken with ``noack_take`` and acknowledged only after their
dead letters were acknowledged by the broker and their rows flushed; a row ClickHouse refuses for good is
dead-lettered; a batch that fails as a whole stops the worker (:func:`streams.agents.fatal`); the buffer is
drained on shutdown. It has its own ClickHouse sink and sink thread, so a slow ``outcomes`` insert never holds
up the predictions, and no model thread: validating and scrubbing a batch of 64 outcome events takes about
1.3 ms on the event loop (measured on 2 cores), too little to be worth the hop to a thread.

Rows are idempotent: ``outcomes`` is a ReplacingMergeTree ordered by (session_id, id), so a redelivered or
resent event replaces its row (``FINAL``). ``session_id`` is de-identified exactly as in ``predictions``
(``nlumon.pii.deidentify_row``), so the two tables join on it; ``utterance_id`` is kept exact, as the
predictions' ``id`` is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nlumon.pii import deidentify_row
from nlumon.records import DeadLetter, InvalidRecord, OutcomeEvent, describe_error, parse_outcome
from nlumon.settings import Settings
from streams.agents import (
    AgentHandle,
    BatchCommitter,
    dead_letter_sender,
    drain_on_stop,
    failure_stopper,
    guarded,
    publish_all,
    refused_letters,
    worker_sink,
)
from streams.metrics import WorkerMetrics
from streams.pipeline import DEAD_LETTER_COLUMNS, BatchResult, RawRecord, dead_letter_row
from streams.sink import Refused, SinkStoppedError

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = (
    "id", "ts", "ingested_at", "session_id", "utterance_id", "kind", "satisfaction", "value",
    "kafka_partition", "kafka_offset", "row_version",
)
# String columns deidentify_row leaves as they are: the idempotency key, the utterance's id (kept exact in
# predictions too) and the validated kind. session_id is scrubbed as the predictions' session_id is: same value.
OUTCOME_KEEP = ("id", "utterance_id", "kind")
# Written in this order: a record's row, then (for a record refused by ClickHouse) its dead letter's row.
OUTCOME_SINK_COLUMNS = {"outcomes": OUTCOME_COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS}


def outcome_row(event: OutcomeEvent, record: RawRecord, now: datetime, row_version: int) -> dict:
    """The ``outcomes`` row of one valid event (times naive UTC, as ClickHouse ``DateTime`` takes them)."""
    return deidentify_row({
        "id": event.id,
        "ts": event.ts.replace(tzinfo=None),
        "ingested_at": now.replace(tzinfo=None, microsecond=0),
        "session_id": event.session_id,
        "utterance_id": event.utterance_id or "",
        "kind": event.kind,
        "satisfaction": event.satisfaction,
        "value": event.value,
        "kafka_partition": record.partition,
        "kafka_offset": record.offset,
        "row_version": row_version,
    }, keep=OUTCOME_KEEP)


class OutcomePipeline:
    """Validate → an ``outcomes`` row or a dead letter, one per record; no exception leaves ``process``."""

    def __init__(self, settings: Settings) -> None:
        self.max_message_bytes = settings.topics.max_message_bytes

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        result = BatchResult()
        now = datetime.now(UTC)
        row_version = time.time_ns() // 1000
        for record in records:
            try:
                row = outcome_row(parse_outcome(record.value), record, now, row_version)
            except InvalidRecord as error:
                reason = str(error)
            except Exception as error:  # parse_outcome raises only InvalidRecord; a row that fails stays its own
                reason = f"internal error while storing: {describe_error(error)}"
            else:
                result.add_row("outcomes", row)
                continue
            letter = DeadLetter.for_bytes(record.value, reason, source_topic=record.topic, partition=record.partition,
                                          offset=record.offset, key=record.key, max_bytes=self.max_message_bytes)
            result.dead_letters.append(letter)
            result.add_row("dead_letters", dead_letter_row(letter))
        return result


def attach_outcome_agent(app: faust.App, settings: Settings, *, worker: str, metrics: WorkerMetrics) -> AgentHandle:
    """Register the ``outcomes`` agent, its flush timer and its shutdown drain on ``app``.

    Returns the handle the worker needs to stop on time: ``drain`` stores and acknowledges what is buffered
    (within half of ``stream.shutdown_timeout_s``), ``stop_sink`` stops the sink's retries."""
    topics = settings.topics
    source = app.topic(topics.outcomes, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)
    pipeline = OutcomePipeline(settings)
    sink_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-outcome-sink")
    sink = worker_sink(settings, OUTCOME_SINK_COLUMNS, metrics)
    stopping: list[bool] = []  # set when the worker starts to stop
    dead_letter_message = dead_letter_sender(dead_letter, metrics, worker)

    async def dead_letter_refused(refused: list[Refused], events: list) -> list[dict]:
        letters = refused_letters(refused, events, topics.outcomes, topics.max_message_bytes)
        await publish_all([dead_letter_message(letter) for letter in letters])
        return [dead_letter_row(letter) for letter in letters]

    stop_on_failure = failure_stopper(app, settings, stopping, worker)

    committer = BatchCommitter(sink, sink_thread, metrics, on_refused=dead_letter_refused, on_fatal=stop_on_failure)

    async def store(events: list) -> None:
        """One batch: dead letters to Kafka (confirmed), rows to the sink, events handed to the committer."""
        records = [RawRecord(e.message.value, e.message.key, e.message.partition, e.message.offset,
                             e.message.topic, e.message.timestamp) for e in events]
        result = pipeline.process(records)
        await publish_all([dead_letter_message(letter) for letter in result.dead_letters])
        for table, rows in result.rows.items():
            for row in rows:
                sink.add(table, row)
        committer.unacked.extend(events)
        if sink.over_limit:
            await committer.flush()  # back-pressure: the next batch waits, the event loop does not
        else:
            await committer.flush_if_due()

    @app.agent(source, name="outcomes")
    async def outcomes(stream: faust.Stream) -> None:
        """Nothing raises out of this agent (Faust would restart it on a stream it cannot resume): a batch that
        fails as a whole stops the worker instead, and its records are read again by the next owner."""
        batches = stream.noack_take(settings.stream.max_batch, within=settings.stream.max_wait_s)
        async with contextlib.aclosing(batches):
            async for events in batches:
                try:
                    await store(events)
                except asyncio.CancelledError:
                    raise
                except SinkStoppedError:
                    return  # stopping: nothing acked, the next owner reads these records again
                except Exception as error:  # not one record's fault (those are dead letters): fatal
                    stop_on_failure(error)
                    return

    @app.timer(interval=max(0.1, settings.stream.sink_flush_s / 2))
    @guarded("flush_outcomes_on_time", worker, metrics)
    async def flush_outcomes_on_time() -> None:
        await committer.flush_if_due()

    drain = drain_on_stop(committer, sink, stopping, settings.stream.shutdown_timeout_s / 2, worker, "outcome rows")

    @app.on_before_shutdown.connect
    @guarded("flush_outcomes_on_stop", worker, metrics)
    async def _flush_on_stop(sender: Any, **_: Any) -> None:
        await drain()

    return AgentHandle(drain=drain, stop_sink=sink.stop, registry=metrics.registry)
