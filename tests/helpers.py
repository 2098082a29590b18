"""Helpers shared by integration tests: real data in the real ClickHouse, without hand-written rows.

``fill_clickhouse`` sends a replay scenario through the worker's own pipeline (validation, the
model on a tiny real package, features, PII scrubbing) and writes the rows with the worker's sink,
so tests of the monitor, the dashboards and the report query exactly what a worker stores.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from nlumon.schema import connect
from nlumon.settings import Settings
from streams.agents import SINK_COLUMNS
from streams.model_service import ModelService
from streams.pipeline import BatchPipeline, RawRecord
from streams.scenarios import ScenarioEvent, scenario_events
from streams.sink import ClickHouseSink


@dataclass(frozen=True)
class Filled:
    """What a fill wrote: the scenario's events (with truth) and the row counts per table."""

    events: list[ScenarioEvent]
    rows: dict[str, int]
    model_version: str
    first_ts: datetime
    last_ts: datetime


def tiny_model_settings(settings: Settings) -> Settings:
    """``settings`` with the model pointing at the cached tiny test package (built once, ~30 s)."""
    from model_runtime.testing import cached_tiny_package

    model = settings.model.model_copy(update={"package_path": cached_tiny_package()})
    return settings.model_copy(update={"model": model})


def fill_clickhouse(
    settings: Settings, scenario: str = "demo", count: int = 2000, *, seed: int = 0, spacing_ms: float = 300.0,
    start: datetime | None = None, batch: int = 64, malformed_share: float = 0.0,
) -> Filled:
    """Run ``count`` events of ``scenario`` through the pipeline and store the rows in ClickHouse."""
    settings = tiny_model_settings(settings)
    model = ModelService(settings.model).start()
    pipeline = BatchPipeline(settings)
    sink = ClickHouseSink(lambda: connect(settings.clickhouse), columns=SINK_COLUMNS, batch_rows=5000)
    events = list(scenario_events(scenario, count, seed=seed, spacing_ms=spacing_ms, start=start,
                                  malformed_share=malformed_share))
    written: dict[str, int] = {}
    # dead_letters are keyed by (topic, partition, offset): a topic name per fill keeps fills apart.
    source_topic = f"{settings.topics.utterances}-fill-{uuid.uuid4().hex[:8]}"
    for first in range(0, len(events), batch):
        chunk = events[first:first + batch]
        records = [RawRecord(e.value, e.key, 0, first + i, source_topic, None) for i, e in enumerate(chunk)]
        result = pipeline.process(records, model)
        for table, rows in result.rows.items():
            written[table] = written.get(table, 0) + len(rows)
            for row in rows:
                sink.add(table, row)
    sink.close()
    model.runtime.close()
    times = sorted(datetime.fromisoformat(e.truth["ts"]) for e in events)
    return Filled(events, written, model.version, times[0], times[-1])
