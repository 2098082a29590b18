"""What the worker does with one micro-batch of raw Kafka records, without Faust in the way.

``BatchPipeline.process`` validates each record, routes the bad ones to the dead-letter list with
their reason, and turns the good ones into ClickHouse rows. It is plain Python so unit tests can
drive it directly; ``streams.agents`` connects it to Faust.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nlumon.records import DeadLetter, InvalidRecord, UtteranceEvent, parse_utterance
from nlumon.settings import Settings
from streams.pii import text_hash

UTTERANCE_LOG_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "channel", "asr_confidence",
    "text_chars", "text_hash", "kafka_partition", "kafka_offset", "row_version",
)
DEAD_LETTER_COLUMNS = (
    "ts", "source_topic", "kafka_partition", "kafka_offset", "reason", "original_bytes", "original_hash",
)


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as the worker received it."""

    value: bytes | None
    key: bytes | None
    partition: int
    offset: int
    topic: str


@dataclass
class BatchResult:
    """Rows per ClickHouse table and the dead letters of one batch."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: list[UtteranceEvent] = field(default_factory=list)

    def add_row(self, table: str, row: dict) -> None:
        self.rows.setdefault(table, []).append(row)


class BatchPipeline:
    """Validate → dead-letter or row. One instance per worker; stateless between batches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        result = BatchResult()
        now = datetime.now(UTC).replace(microsecond=0)
        row_version = time.time_ns() // 1000
        for record in records:
            try:
                if record.value is None:
                    raise InvalidRecord("empty record (no value)")
                event = parse_utterance(record.value, max_text_chars=self.settings.stream.max_text_chars)
            except InvalidRecord as error:
                letter = DeadLetter.for_bytes(
                    record.value, str(error), source_topic=record.topic,
                    partition=record.partition, offset=record.offset, key=record.key,
                )
                result.dead_letters.append(letter)
                result.add_row("dead_letters", dead_letter_row(letter))
                continue
            result.events.append(event)
            result.add_row("utterance_log", {
                "id": event.id,
                "ts": event.ts.replace(tzinfo=None),
                "ingested_at": now.replace(tzinfo=None),
                "assistant": event.assistant,
                "session_id": event.session_id,
                "channel": event.channel,
                "asr_confidence": event.asr_confidence,
                "text_chars": min(len(event.text), 65535),
                "text_hash": text_hash(self.settings.stream.pii_hash_key, event.text),
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
                "row_version": row_version,
            })
        return result


def dead_letter_row(letter: DeadLetter) -> dict:
    original = letter.original()
    return {
        "ts": letter.failed_at.replace(tzinfo=None, microsecond=0),
        "source_topic": letter.source_topic,
        "kafka_partition": -1 if letter.partition is None else letter.partition,
        "kafka_offset": -1 if letter.offset is None else letter.offset,
        "reason": letter.reason[:1000],
        "original_bytes": len(original),
        "original_hash": hashlib.sha256(original).hexdigest(),
    }
