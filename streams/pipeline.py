"""What the worker does with one micro-batch of raw Kafka records, without Faust in the way.

``BatchPipeline.process`` validates each record, routes the bad ones to the dead-letter list with
their reason, and turns the good ones into ClickHouse rows. It is plain Python so unit tests can
drive it directly; ``streams.agents`` connects it to Faust.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from nlumon.records import DeadLetter, InvalidRecord, UtteranceEvent, parse_utterance
from nlumon.settings import Settings
from streams.features import PiiPolicy, prediction_rows
from nlumon.pii import given_names, surnames, text_hash

if TYPE_CHECKING:
    from streams.model_service import LoadedModel

log = logging.getLogger(__name__)

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
    timestamp: float | None = None  # Kafka append time, seconds since the epoch


@dataclass
class BatchResult:
    """Rows per ClickHouse table and the dead letters of one batch."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: list[UtteranceEvent] = field(default_factory=list)
    inference_s: float = 0.0
    model_version: str | None = None

    def add_row(self, table: str, row: dict) -> None:
        self.rows.setdefault(table, []).append(row)


class BatchPipeline:
    """Validate → dead-letter or rows; run the model once per batch when one is given.

    One instance per worker; stateless between batches (the model is passed per call, so a hot
    reload between two batches is all it takes to switch versions).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pii = PiiPolicy(settings.stream.pii_name_gazetteer, settings.stream.pii_keep_slot_confidence)
        if self.pii.gazetteer:  # read the name lists now, not inside the first batch
            given_names(), surnames()

    def process(self, records: Sequence[RawRecord], model: LoadedModel | None = None) -> BatchResult:
        result = BatchResult()
        now = datetime.now(UTC)
        row_version = time.time_ns() // 1000
        accepted: list[tuple[RawRecord, UtteranceEvent]] = []
        for record in records:
            try:
                if record.value is None:
                    raise InvalidRecord("empty record (no value)")
                event = parse_utterance(record.value, max_text_chars=self.settings.stream.max_text_chars)
            except InvalidRecord as error:
                self._dead_letter(result, record, str(error))
                continue
            accepted.append((record, event))
        if model is not None and accepted:
            accepted = self._predict(result, accepted, model, now, row_version)
        predicted = result.rows.get("predictions", [])  # aligned with ``accepted`` when the model ran
        for index, (record, event) in enumerate(accepted):
            digest = (predicted[index]["text_hash"] if len(predicted) == len(accepted)
                      else text_hash(self.settings.stream.pii_hash_key, event.text))
            result.events.append(event)
            result.add_row("utterance_log", {
                "id": event.id,
                "ts": event.ts.replace(tzinfo=None),
                "ingested_at": now.replace(tzinfo=None, microsecond=0),
                "assistant": event.assistant,
                "session_id": event.session_id,
                "channel": event.channel,
                "asr_confidence": event.asr_confidence,
                "text_chars": min(len(event.text), 65535),
                "text_hash": digest,
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
                "row_version": row_version,
            })
        return result

    def _dead_letter(self, result: BatchResult, record: RawRecord, reason: str) -> None:
        letter = DeadLetter.for_bytes(
            record.value, reason, source_topic=record.topic,
            partition=record.partition, offset=record.offset, key=record.key,
        )
        result.dead_letters.append(letter)
        result.add_row("dead_letters", dead_letter_row(letter))

    def _predict(
        self, result: BatchResult, accepted: list[tuple[RawRecord, UtteranceEvent]], model: LoadedModel,
        now: datetime, row_version: int,
    ) -> list[tuple[RawRecord, UtteranceEvent]]:
        """Run the model once for the batch; if the batch fails, find and dead-letter the records that fail alone."""
        started = time.perf_counter()
        texts = [event.text for _, event in accepted]
        try:
            predictions = model.runtime.predict(texts)
        except Exception as error:
            log.error("model failed on a batch of %d (%s); retrying one by one", len(texts), error)
            predictions, kept = [], []
            for record, event in accepted:
                try:
                    predictions += model.runtime.predict([event.text])
                    kept.append((record, event))
                except Exception as single_error:
                    self._dead_letter(result, record, f"model error: {single_error}"[:500])
            accepted = kept
        result.inference_s = time.perf_counter() - started
        result.model_version = model.version
        if not accepted:
            return accepted
        embeddings = np.stack([p.embedding for p in predictions])
        result.rows["predictions"] = prediction_rows(
            [event for _, event in accepted],
            [(record.partition, record.offset, record.timestamp) for record, _ in accepted],
            predictions,
            sketches=model.sketches(embeddings),
            ood_scores=model.ood_scores(embeddings),
            ood_threshold=model.ood_threshold,
            model_version=model.version,
            hash_key=self.settings.stream.pii_hash_key,
            inference_ms=result.inference_s * 1000,
            now=now,
            row_version=row_version,
            pii=self.pii,
        )
        return accepted


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
