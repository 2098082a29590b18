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

from nlumon.pii import deidentify_copy, deidentify_row, load_word_lists, text_hash
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
from streams.routing import RoutingPolicy, load_policy
from streams.serving import Serving

if TYPE_CHECKING:
    from streams.model_service import LoadedModel

log = logging.getLogger(__name__)

UTTERANCE_LOG_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "channel", "asr_confidence",
    "text_chars", "text_hash", "kafka_partition", "kafka_offset", "row_version",
)
DEAD_LETTER_COLUMNS = (
    "ts", "source_topic", "kafka_partition", "kafka_offset", "reason", "original_bytes", "original_hash",
    "experiment", "arm",
)
SHADOW_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "role", "model_version", "champion_version", "intent",
    "confidence", "ood_score", "is_ood", "route", "slot_types", "slot_values", "champion_intent", "champion_route",
    "champion_slot_types", "intent_agrees", "slots_agree", "route_agrees", "inference_ms", "row_version",
)
# String columns nlumon.pii.deidentify_row leaves as they are (identifiers, hashes, enums); it scrubs the rest.
UTTERANCE_LOG_KEEP = ("id", "text_hash", "assistant", "channel")
# a topic name is configuration, never user text; experiment and arm names are checked by experiments.definition
DEAD_LETTER_KEEP = ("original_hash", "source_topic", "experiment", "arm")
# identifiers, versions, the label vocabulary, routes; slot_values come scrubbed from the feature row and are
# scrubbed once more by shadow_row (deidentify_copy, with their slot types), so no row can carry a name
SHADOW_KEEP = ("id", "assistant", "role", "model_version", "champion_version", "intent", "route", "slot_types",
               "slot_values", "champion_intent", "champion_route", "champion_slot_types")


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
    shadow_s: float = 0.0  # time the shadow challenger took (model and features)
    shadow_error: str = ""  # why the shadow challenger did not score this batch ('' = it did, or none is set)
    serving: Serving | None = None  # what served the batch, when, and the rows' version (the shadow step reads them)
    now: datetime | None = None
    row_version: int = 0

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

    def __init__(self, settings: Settings, policy: RoutingPolicy | None = None) -> None:
        self.settings = settings
        self.max_message_bytes = settings.topics.max_message_bytes
        self.pii = PiiPolicy(settings.stream.pii_name_gazetteer, settings.stream.pii_keep_slot_confidence)
        if policy is None and settings.routing.policy_path is not None:
            policy = load_policy(settings.routing.policy_path)  # a bad policy file stops the worker at start
        self.policy = policy
        load_word_lists()  # read the name and word lists now, not inside the first batch

    def process(self, records: Sequence[RawRecord], model: Serving | LoadedModel | None = None, *,
                shadow: bool = True) -> BatchResult:
        """``model``: what serves this batch (a :class:`~streams.serving.Serving`, or just the champion).

        With ``shadow`` the shadow challenger (if any) scores the batch too; the worker passes False and calls
        :meth:`shadow` after publishing the decisions, so the challenger never delays them."""
        serving = Serving(model) if model is not None and not isinstance(model, Serving) else model
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
                self._dead_letter(result, record, str(error), *key_arm(serving, record.key))
                continue
            except Exception as error:  # parse_utterance raises only InvalidRecord; never crash
                self._dead_letter(result, record, f"internal error while parsing: {describe_error(error)}",
                                  *key_arm(serving, record.key))
                continue
            accepted.append((record, event))
        predicted: list[dict | None] = [None] * len(accepted)
        if serving is not None and accepted:
            accepted, predicted = self._serve(result, accepted, serving, now, row_version)
        for (record, event), prediction_row in zip(accepted, predicted, strict=True):
            try:
                log_row = self._log_row(record, event, prediction_row, now, row_version)
            except Exception as error:  # one record's failure stays with that record
                self._dead_letter(result, record, f"internal error while logging: {describe_error(error)}",
                                  *key_arm(serving, record.key))
                continue
            result.events.append(event)
            result.add_row("utterance_log", log_row)
            if prediction_row is not None:
                result.add_row("predictions", prediction_row)
        result.serving, result.now, result.row_version = serving, now, row_version
        if shadow:
            self.shadow(result)
        return result

    def _serve(
        self, result: BatchResult, accepted: list[tuple[RawRecord, UtteranceEvent]], serving: Serving,
        now: datetime, row_version: int,
    ) -> tuple[list[tuple[RawRecord, UtteranceEvent]], list[dict | None]]:
        """Each experiment arm's records through its model (outside an experiment: all through the champion);
        the records kept and their rows, in the batch's order."""
        by_arm: dict[str, list[int]] = {}
        for index, (_, event) in enumerate(accepted):
            by_arm.setdefault(serving.arm_of(event.session_id), []).append(index)
        experiment = serving.experiment.name if serving.experiment is not None else ""
        rows_at: dict[int, dict] = {}
        for arm, indices in by_arm.items():
            kept, rows, inference_s = self._predict(result, [(i, *accepted[i]) for i in indices],
                                                    serving.model_of_arm(arm), now, row_version,
                                                    experiment=experiment, arm=arm)
            result.inference_s += inference_s
            rows_at.update(zip(kept, rows, strict=True))
        result.model_version = serving.champion.version
        order = sorted(rows_at)
        return [accepted[i] for i in order], [rows_at[i] for i in order]

    def shadow(self, result: BatchResult) -> BatchResult:
        """Add the shadow challenger's answers for the batch's shadowed sessions, beside the served ones (rows of
        ``shadow_predictions``). Its failure costs only its own rows (logged and kept in ``shadow_error``)."""
        serving = result.serving
        shadow = serving.lineup.shadow if serving is not None else None
        if shadow is None or not result.rows.get("predictions"):
            return result
        served = {row["id"]: row for row in result.rows["predictions"]}
        chosen = [(RawRecord(None, None, row["kafka_partition"], row["kafka_offset"], ""), event)
                  for event in result.events
                  if (row := served.get(event.id)) is not None and serving.shadowed(event.session_id)
                  and row["model_version"] != shadow.version]  # an experiment arm the challenger itself served
        if not chosen:
            return result
        started = time.perf_counter()
        try:
            predictions = _checked(shadow.runtime.predict([event.text for _, event in chosen]), len(chosen))
            inference_ms = (time.perf_counter() - started) * 1000
            rows = self._feature_rows(chosen, predictions, model=shadow, now=result.now,
                                      row_version=result.row_version, inference_ms=inference_ms)
            for row in rows:
                result.add_row("shadow_predictions", shadow_row(row, served[row["id"]], inference_ms))
        except Exception as error:  # the challenger's failure never touches what was served
            result.shadow_error = describe_error(error)
            log.warning("shadow challenger %s failed on a batch of %d: %s", shadow.version, len(chosen),
                        result.shadow_error)
        result.shadow_s = time.perf_counter() - started
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

    def _dead_letter(self, result: BatchResult, record: RawRecord, reason: str, experiment: str = "",
                     arm: str = "") -> None:
        """A dead letter for ``record``; during an experiment its row names the arm (so each arm's dead-letter
        rate can be compared)."""
        letter = DeadLetter.for_bytes(
            record.value, reason, source_topic=record.topic,
            partition=record.partition, offset=record.offset, key=record.key,
            max_bytes=self.max_message_bytes,
        )
        result.dead_letters.append(letter)
        result.add_row("dead_letters", dead_letter_row(letter, experiment=experiment, arm=arm))

    def _predict(
        self, result: BatchResult, accepted: list[tuple[int, RawRecord, UtteranceEvent]], model: LoadedModel,
        now: datetime, row_version: int, *, experiment: str = "", arm: str = "",
    ) -> tuple[list[int], list[dict], float]:
        """Run the model once for ``accepted`` (index, record, event) and compute the feature rows; if the batch
        fails, find and dead-letter the records that fail alone. Returns the indices kept, their rows and the
        model's time (s)."""
        started = time.perf_counter()
        texts = [event.text for _, _, event in accepted]
        try:
            predictions = _checked(model.runtime.predict(texts), len(texts))
        except Exception as error:
            log.error("model failed on a batch of %d (%s); retrying one by one", len(texts), describe_error(error))
            predictions, kept = [], []
            for item in accepted:
                try:
                    predictions += _checked(model.runtime.predict([item[2].text]), 1)
                    kept.append(item)
                except Exception as single_error:
                    self._dead_letter(result, item[1], f"model error: {_message(single_error)}", experiment, arm)
            accepted = kept
        inference_s = time.perf_counter() - started
        if not accepted:
            return [], [], inference_s
        batch = dict(model=model, now=now, row_version=row_version, inference_ms=inference_s * 1000,
                     experiment=experiment, arm=arm)
        pairs = [(record, event) for _, record, event in accepted]
        try:
            return [index for index, _, _ in accepted], self._feature_rows(pairs, predictions, **batch), inference_s
        except Exception as error:
            log.error("features failed on a batch of %d (%s); computing them one by one", len(accepted),
                      describe_error(error))
        kept, rows = [], []
        for (index, record, event), prediction in zip(accepted, predictions, strict=True):
            try:
                (row,) = self._feature_rows([(record, event)], [prediction], **batch)
            except Exception as single_error:
                self._dead_letter(result, record, f"feature error: {describe_error(single_error)}", experiment,
                                  arm)
                continue
            row["batch_size"] = min(len(accepted), 65535)
            kept.append(index)
            rows.append(row)
        return kept, rows, inference_s

    def _feature_rows(
        self, accepted: list[tuple[RawRecord, UtteranceEvent]], predictions: list, *, model: LoadedModel,
        now: datetime, row_version: int, inference_ms: float, experiment: str = "", arm: str = "",
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
            policy=self.policy,
            head_labels=model.head_labels if self.policy is not None else None,
            experiment=experiment,
            arm=arm,
        )
        return _checked(rows, len(accepted))


def shadow_row(challenger: dict, served: dict, inference_ms: float) -> dict:
    """The ``shadow_predictions`` row: the challenger's answer (its feature row) beside the served one."""
    slots = list(zip(challenger["slot_types"], challenger["slot_values"], strict=True))
    served_slots = list(zip(served["slot_types"], served["slot_values"], strict=True))
    return deidentify_row({
        "id": challenger["id"],
        "ts": challenger["ts"],
        "ingested_at": challenger["ingested_at"],
        "assistant": challenger["assistant"],
        "session_id": challenger["session_id"],
        "role": "shadow",
        "model_version": challenger["model_version"],
        "champion_version": served["model_version"],
        "intent": challenger["intent"],
        "confidence": challenger["confidence"],
        "ood_score": challenger["ood_score"],
        "is_ood": challenger["is_ood"],
        "route": challenger["route"],
        "slot_types": challenger["slot_types"],
        "slot_values": deidentify_copy("", challenger["slot_values"], challenger["slot_types"])[1],
        "champion_intent": served["intent"],
        "champion_route": served["route"],
        "champion_slot_types": served["slot_types"],
        "intent_agrees": int(challenger["intent"] == served["intent"]),
        "slots_agree": int(slots == served_slots),
        "route_agrees": int(challenger["route"] == served["route"]),
        "inference_ms": round(inference_ms, 3),
        "row_version": challenger["row_version"],
    }, keep=SHADOW_KEEP)


def key_arm(serving: Serving | None, key: bytes | str | None) -> tuple[str, str]:
    """(experiment, arm) of a record's Kafka key (the session id, by contract) while an experiment runs, else
    ('', ''): a record that could not be read still counts against the arm its session belongs to."""
    experiment = serving.experiment if serving is not None else None
    if experiment is None or not key:
        return "", ""
    session = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return experiment.name, experiment.arm_of(session)


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


def dead_letter_row(letter: DeadLetter, *, experiment: str = "", arm: str = "") -> dict:
    """The ``dead_letters`` row: size and SHA-256 of the whole original, even when the letter keeps a prefix;
    ``experiment``/``arm`` name the experiment arm of the record's session, if one was running."""
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
        "experiment": experiment,
        "arm": arm,
    }, keep=DEAD_LETTER_KEEP)
