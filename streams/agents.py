"""Faust agents: micro-batches from ``utterances`` through the pipeline into ClickHouse.

Commit point: events are taken with ``noack_take`` and acknowledged only after the sink has
flushed their rows (and their dead letters were sent), so Faust never commits an offset past a
record whose row is not durable. Blocking work (the model, the ClickHouse insert) runs in a worker
thread so the event loop keeps heartbeating (see ARCHITECTURE.md, "Faust event loop").
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nlumon.schema import connect
from nlumon.settings import Settings
from streams.pipeline import DEAD_LETTER_COLUMNS, UTTERANCE_LOG_COLUMNS, BatchPipeline, RawRecord
from streams.sink import ClickHouseSink

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

SINK_COLUMNS = {"utterance_log": UTTERANCE_LOG_COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS}


class BatchCommitter:
    """Holds taken-but-unacknowledged events and acks them once their rows are durable."""

    def __init__(self, sink: ClickHouseSink, executor: ThreadPoolExecutor) -> None:
        self.sink = sink
        self.executor = executor
        self.unacked: list[Any] = []
        self.lock = asyncio.Lock()

    async def flush(self) -> int:
        async with self.lock:
            events, self.unacked = self.unacked, []
            loop = asyncio.get_running_loop()
            written = await loop.run_in_executor(self.executor, self.sink.flush)
            for event in events:
                event.ack()
            return written

    async def flush_if_due(self) -> None:
        if self.unacked and self.sink.should_flush():
            await self.flush()


def attach_agents(app: faust.App, settings: Settings, *, worker_id: str | None = None) -> None:
    """Declare the topics and register the inference agent and the flush timer on ``app``."""
    topics = settings.topics
    utterances = app.topic(topics.utterances, partitions=topics.partitions, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, partitions=topics.other_partitions, key_type=bytes, value_type=bytes)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlumon-batch")
    pipeline = BatchPipeline(settings)
    sink = ClickHouseSink(
        lambda: connect(settings.clickhouse),
        columns=SINK_COLUMNS,
        batch_rows=settings.stream.sink_batch_rows,
        flush_interval_s=settings.stream.sink_flush_s,
        max_pending_rows=settings.stream.sink_max_pending_rows,
    )
    committer = BatchCommitter(sink, executor)

    @app.agent(utterances, name="inference")
    async def inference(stream: faust.Stream) -> None:
        async for events in stream.noack_take(settings.stream.max_batch, within=settings.stream.max_wait_s):
            records = [
                RawRecord(e.message.value, e.message.key, e.message.partition, e.message.offset, e.message.topic)
                for e in events
            ]
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(executor, pipeline.process, records)
            deliveries = []
            for letter in result.dead_letters:
                deliveries.append(await dead_letter.send(key=(letter.key or "").encode(), value=letter.to_json()))
                log.warning("dead-lettered %s[%s]@%s: %s", letter.source_topic, letter.partition,
                            letter.offset, letter.reason)
            await asyncio.gather(*deliveries)  # the broker has every dead letter before its record is acked
            for table, rows in result.rows.items():
                for row in rows:
                    sink.add(table, row)
            committer.unacked.extend(events)
            await committer.flush_if_due()

    @app.timer(interval=max(0.1, settings.stream.sink_flush_s / 2))
    async def flush_on_time() -> None:
        await committer.flush_if_due()

    @app.task
    async def announce() -> None:
        log.info("worker %s consuming %s (batch %d, wait %.2f s)", worker_id or app.conf.id,
                 topics.utterances, settings.stream.max_batch, settings.stream.max_wait_s)

    @app.on_before_shutdown.connect
    async def _flush_on_stop(sender: Any, **_: Any) -> None:
        await committer.flush()
