"""``nlumon labeling annotate``: the annotator as a consumer of the ``utterances`` topic.

Annotation needs raw text, and nlumon stores none. So the annotator reads it where it already is: the
``utterances`` topic, within the topic's retention, as its own consumer group (``nlumon-annotator``), and
only events whose producer marked them ``cleared_for_analysis`` (the wire contract's field, default false).
Records that do not parse are skipped here (the worker dead-letters them); events of other assistants or
not cleared are skipped and counted.

Per batch, what the annotator made is written before the batch's offsets are committed:

- auto-labelled examples (surrogate names; :mod:`labeling.annotation.surrogate`) appended to
  ``<out>/auto-<YYYYMMDD>.jsonl`` and fsync'ed — the file ``nlumon model train --extra`` reads;
- ambiguous and audit items to the ClickHouse ``labeling_queue`` through the monitor's queue writer
  (``queue_row`` scrubs the text once more), where ``nlumon labeling push`` and ``export`` find them.

A crash between the write and the commit re-reads the batch: the queue deduplicates on the text hash and
:func:`dedupe_examples` keeps one example line per event id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labeling.annotation.annotator import AnnotationBatch, Annotator, LogEvent
from labeling.items import LabelingItem
from nlumon.records import InvalidRecord, parse_utterance

log = logging.getLogger(__name__)

GROUP = "nlumon-annotator"


@dataclass
class AnnotateReport:
    counts: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    person_sessions: dict[str, set[str]] = field(default_factory=dict)  # raw names, in memory (name proposals)

    def summary(self) -> str:
        keys = sorted(self.counts)
        return ", ".join(f"{k} {self.counts[k]}" for k in keys) or "nothing read"


def select_events(raw_values: Sequence[bytes | None], assistants: Sequence[str], counts: Counter) -> list[LogEvent]:
    """The cleared events of ``assistants`` among raw records (everything else counted, not kept)."""
    events = []
    for raw in raw_values:
        try:
            event = parse_utterance(raw)
        except InvalidRecord:
            counts["skipped:invalid"] += 1
            continue
        if not event.cleared_for_analysis:
            counts["skipped:not_cleared"] += 1
            continue
        if event.assistant not in assistants:
            counts["skipped:other_assistant"] += 1
            continue
        events.append(LogEvent(event.id, event.text, event.assistant, event.session_id, event.ts))
    return events


def append_examples(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append example rows as JSON lines and fsync (the batch is committed only after this returns)."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode()
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def queue_items(client: Any, items: Sequence[LabelingItem]) -> int:
    """Write items to ``labeling_queue`` (scrubbed again by ``queue_row``); returns the number of rows."""
    from model_runtime.data.bio import bio_spans
    from monitor.labeling_sink import QUEUE_COLUMNS, queue_row
    from monitor.storage import insert_rows

    now = datetime.now(UTC)
    version = time.time_ns()
    rows = []
    for item in items:
        spans = bio_spans(item.tags)
        row = {"slot_types": [kind for kind, _, _ in spans],
               "slot_values": [" ".join(item.tokens[start:end]) for _, start, end in spans]}
        rows.append(queue_row(item, row, now.replace(tzinfo=None), version))
    return insert_rows(client, "labeling_queue", QUEUE_COLUMNS, rows)


def annotate_topic(
    settings: Any,
    annotator: Annotator,
    out_dir: Path,
    *,
    assistants: Sequence[str] = ("associate",),
    max_events: int | None = None,
    idle_timeout_s: float = 10.0,
    batch_size: int = 256,
    group_id: str = GROUP,
    progress: bool = True,
) -> AnnotateReport:
    """Consume ``utterances`` until ``idle_timeout_s`` pass without a record (or ``max_events`` were read)."""
    from kafka import KafkaConsumer
    from tqdm.auto import tqdm

    from nlumon.schema import connect

    report = AnnotateReport()
    consumer = KafkaConsumer(
        settings.topics.utterances, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group_id,
        enable_auto_commit=False, auto_offset_reset="earliest", client_id="nlumon-annotator",
        max_poll_records=batch_size,
    )
    client = connect(settings.clickhouse)
    bar = tqdm(total=max_events, unit="utt", desc="annotating", disable=not progress)
    try:
        idle_since = time.monotonic()
        while max_events is None or report.counts["records"] < max_events:
            polled = consumer.poll(timeout_ms=1000, max_records=batch_size)
            records = [r for part in polled.values() for r in part]
            if not records:
                if time.monotonic() - idle_since > idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            report.counts["records"] += len(records)
            bar.update(len(records))
            events = select_events([r.value for r in records], assistants, report.counts)
            batch = annotator.annotate(events) if events else AnnotationBatch()
            path = out_dir / f"auto-{datetime.now(UTC):%Y%m%d}.jsonl"
            append_examples(path, batch.examples)
            if batch.examples and path not in report.files:
                report.files.append(path)
            queue_items(client, batch.queue)
            consumer.commit()  # only after examples and queue rows are durable
            report.counts.update(batch.counts)
            for name, sessions in batch.person_sessions.items():
                report.person_sessions.setdefault(name, set()).update(sessions)
    finally:
        bar.close()
        consumer.close()
        client.disconnect()
    dropped = sum(dedupe_examples(path) for path in report.files)  # a batch re-read after a crash, written again
    if dropped:
        report.counts["duplicate_lines_dropped"] = dropped
    return report


def dedupe_examples(path: Path) -> int:
    """Keep the first line of each event id (a batch re-read after a crash before its commit is written again,
    with other surrogates); returns the lines dropped."""
    if not path.exists():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    seen, kept = set(), []
    for line in lines:
        key = json.loads(line).get("id") or line
        if key not in seen:
            seen.add(key)
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        temp = path.with_suffix(".tmp")
        temp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temp, path)
    return dropped
