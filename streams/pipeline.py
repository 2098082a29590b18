"""What the worker does with one micro-batch of raw Kafka records, without Faust in the way.

``BatchPipeline.process`` validates each record, routes the bad ones to the dead-letter list with
their reason, and turns the good ones into ClickHouse rows: every record becomes exactly one of the
two, whatever it holds (docs/streams.md, "Failure model: bad input"). It is plain Python so unit tests can
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

from nlumon.pii import deidentify_row, load_word_lists, text_hash
from nlumon.records import (
    INTERNAL_ERROR_MAX_CHARS,
    DeadLetter,
    InvalidRecord,
    UtteranceEvent,
    describe_error,
    one_line,
    parse_utterance,
)
from nlumon.settings import Settings
from streams.features import PiiPolicy, prediction_rows

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
# String columns nlumon.pii.deidentify_row leaves as they are (identifiers, hashes, enums); it scrubs the rest.
UTTERANCE_LOG_KEEP = ("id", "text_hash", "assistant", "channel")
DEAD_LETTER_KEEP = ("original_hash", "source_topic")  # a topic name is configuration, never user text


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

    Every record ends as exactly one outcome: its rows (``utterance_log``, plus ``predictions`` when
    the model ran) or one dead letter with a one-line reason. No exception about one record leaves
    ``process``: a batch-wide failure of the model or of the features (PII scrubbing included) is
    retried record by record, and only the records that fail alone are dead-lettered.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_message_bytes = settings.topics.max_message_bytes
        self.pii = PiiPolicy(settings.stream.pii_name_gazetteer, settings.stream.pii_keep_slot_confidence)
        load_word_lists()  # read the name and word lists now, not inside the first batch

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
            except Exception as error:  # parse_utterance raises only InvalidRecord; never crash
                self._dead_letter(result, record, f"internal error while parsing: {describe_error(error)}")
                continue
            accepted.append((record, event))
        predicted: list[dict | None] = [None] * len(accepted)
        if model is not None and accepted:
            accepted, predicted = self._predict(result, accepted, model, now, row_version)
        for (record, event), prediction_row in zip(accepted, predicted, strict=True):
            try:
                log_row = self._log_row(record, event, prediction_row, now, row_version)
            except Exception as error:  # one record's failure stays with that record
                self._dead_letter(result, record, f"internal error while logging: {describe_error(error)}")
                continue
            result.events.append(event)
            result.add_row("utterance_log", log_row)
            if prediction_row is not None:
                result.add_row("predictions", prediction_row)
        return result

    def _log_row(self, record: RawRecord, event: UtteranceEvent, prediction_row: dict | None, now: datetime,
                 row_version: int) -> dict:
        digest = (prediction_row["text_hash"] if prediction_row is not None
                  else text_hash(self.settings.stream.pii_hash_key, event.text))
        return deidentify_row({
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
        }, keep=UTTERANCE_LOG_KEEP)

    def _dead_letter(self, result: BatchResult, record: RawRecord, reason: str) -> None:
        letter = DeadLetter.for_bytes(
            record.value, reason, source_topic=record.topic,
            partition=record.partition, offset=record.offset, key=record.key,
            max_bytes=self.max_message_bytes,
        )
        result.dead_letters.append(letter)
        result.add_row("dead_letters", dead_letter_row(letter))

    def _predict(
        self, result: BatchResult, accepted: list[tuple[RawRecord, UtteranceEvent]], model: LoadedModel,
        now: datetime, row_version: int,
    ) -> tuple[list[tuple[RawRecord, UtteranceEvent]], list[dict | None]]:
        """Run the model once for the batch and compute the feature rows; if the batch fails, find and
        dead-letter the records that fail alone. Returns the records kept and their rows, aligned."""
        started = time.perf_counter()
        texts = [event.text for _, event in accepted]
        try:
            predictions = _checked(model.runtime.predict(texts), len(texts))
        except Exception as error:
            log.error("model failed on a batch of %d (%s); retrying one by one", len(texts), describe_error(error))
            predictions, kept = [], []
            for record, event in accepted:
                try:
                    predictions += _checked(model.runtime.predict([event.text]), 1)
                    kept.append((record, event))
                except Exception as single_error:
                    self._dead_letter(result, record, f"model error: {_message(single_error)}")
            accepted = kept
        result.inference_s = time.perf_counter() - started
        result.model_version = model.version
        if not accepted:
            return [], []
        batch = dict(model=model, now=now, row_version=row_version, inference_ms=result.inference_s * 1000)
        try:
            return accepted, self._feature_rows(accepted, predictions, **batch)
        except Exception as error:
            log.error("features failed on a batch of %d (%s); computing them one by one", len(accepted),
                      describe_error(error))
        kept, rows = [], []
        for (record, event), prediction in zip(accepted, predictions, strict=True):
            try:
                (row,) = self._feature_rows([(record, event)], [prediction], **batch)
            except Exception as single_error:
                self._dead_letter(result, record, f"feature error: {describe_error(single_error)}")
                continue
            row["batch_size"] = min(len(accepted), 65535)
            kept.append((record, event))
            rows.append(row)
        return kept, rows

    def _feature_rows(
        self, accepted: list[tuple[RawRecord, UtteranceEvent]], predictions: list, *, model: LoadedModel,
        now: datetime, row_version: int, inference_ms: float,
    ) -> list[dict]:
        embeddings = np.stack([p.embedding for p in predictions])
        rows = prediction_rows(
            [event for _, event in accepted],
            [(record.partition, record.offset, record.timestamp) for record, _ in accepted],
            predictions,
            sketches=model.sketches(embeddings),
            ood_scores=model.ood_scores(embeddings),
            ood_threshold=model.ood_threshold,
            model_version=model.version,
            hash_key=self.settings.stream.pii_hash_key,
            inference_ms=inference_ms,
            now=now,
            row_version=row_version,
            pii=self.pii,
        )
        return _checked(rows, len(accepted))


def _checked(items, count: int) -> list:
    """``items`` as a list, if there are exactly ``count`` of them."""
    items = list(items)
    if len(items) != count:
        raise ValueError(f"got {len(items)} results for {count} inputs")
    return items


def _message(error: BaseException) -> str:
    """The exception's message (its type when it has none), one line, bounded."""
    try:
        message = str(error)
    except Exception:
        message = ""
    return one_line(message, INTERNAL_ERROR_MAX_CHARS) if message.strip() else describe_error(error)


def dead_letter_row(letter: DeadLetter) -> dict:
    """The ``dead_letters`` row: size and SHA-256 of the whole original, even when the letter keeps a prefix."""
    if letter.original_size is None or letter.original_sha256 is None:  # a letter from before those fields
        original = letter.original()
        size, digest = len(original), hashlib.sha256(original).hexdigest()
    else:
        size, digest = letter.original_size, letter.original_sha256
    return deidentify_row({
        "ts": letter.failed_at.replace(tzinfo=None, microsecond=0),
        "source_topic": letter.source_topic,
        "kafka_partition": -1 if letter.partition is None else letter.partition,
        "kafka_offset": -1 if letter.offset is None else letter.offset,
        "reason": letter.reason[:1000],
        "original_bytes": size,
        "original_hash": digest,
    }, keep=DEAD_LETTER_KEEP)
