"""Produce utterance events to Kafka (``nlumon replay``): scenarios (``streams.scenarios``) or a JSONL file.

Every send is confirmed: the replay waits for the broker's acknowledgement of each record (``acks=all``,
idempotent producer) and counts what was sent, confirmed and failed (:class:`ReplayOutcome`); a record
the producer or the broker refuses (too large for ``topics.max_message_bytes``, broker gone longer than
the delivery timeout, ...) is a failure, never silently lost.

Malformed records (:func:`malformed_record`) cover every way a producer can break the contract, from
bad JSON to bytes that are not UTF-8, JSON nested 5000 deep, a 5000-digit integer, a tombstone (null
value) and a record just under the topic's size limit:

    >>> sorted({type(malformed_record(i)).__name__ for i in range(len(MALFORMED_KINDS))})
    ['NoneType', 'bytes']
    >>> malformed_record(0, kind="missing_channel", event_id="b1").count(b'"channel"')
    0
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nlumon.settings import Settings

# Kinds of malformed record mixed into a replay, each a way real producers break the contract. The first six
# are the original ones; a replay cycles through all of them (``malformed_record(index)``).
MALFORMED_KINDS = (
    "bad_json", "missing_field", "empty_text", "control_chars", "wrong_assistant", "too_long",
    # wrong types, one field at a time (a lax parser coerces some of them: that is the bug they catch)
    "ts_number", "confidence_string", "confidence_true", "id_number", "text_number", "session_id_list",
    "locale_number", "channel_number", "version_string",
    "missing_channel",
    # parsers' limits
    "deep_nesting", "huge_integer",
    # text that is not Unicode
    "lone_surrogate", "invalid_utf8", "utf8_surrogate",
    "nan", "infinity",
    "raw_control_chars", "empty_string_text", "huge_text", "oversized",
    "null_value", "bom", "duplicate_keys",
)
NESTING_DEPTH = 5000
INTEGER_DIGITS = 5000
HUGE_TEXT_CHARS = 100_000
OVERSIZED_SHARE = 0.9  # of topics.max_message_bytes: the topic takes it, its base64 in a dead letter does not fit


def malformed_record(
    index: int, ts: datetime | None = None, *, kind: str | None = None, event_id: str | None = None,
    max_message_bytes: int = 1_000_000,
) -> bytes | None:
    """One record that breaks the wire contract, of ``kind`` (default: chosen by ``index``).

    Apart from its one defect the record is a valid event (``channel`` included), so the reason a worker
    gives names that defect. ``oversized`` is ``OVERSIZED_SHARE`` of ``max_message_bytes`` (the topic
    accepts it; the dead letter carrying its base64 must not carry it whole). ``null_value`` is ``None``
    (a tombstone). ``event_id`` defaults to ``bad-<index>``.
    """
    kind = kind or MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"unknown malformed kind {kind!r}")
    base: dict[str, Any] = {
        "id": event_id or f"bad-{index}", "ts": (ts or datetime.now(UTC)).isoformat(), "assistant": "shopper",
        "session_id": "s-bad", "text": "add milk to my cart", "locale": "en-US", "channel": "voice",
        "asr_confidence": 0.9, "version": 1,
    }

    def encoded(payload: dict) -> bytes:
        return json.dumps(payload).encode()

    def splice(field_name: str, raw: bytes) -> bytes:
        """The base record with ``field_name``'s value replaced by raw bytes (not valid JSON, or not UTF-8)."""
        marker = "\x00splice\x00"
        return encoded({**base, field_name: marker}).replace(json.dumps(marker).encode(), raw)

    if kind == "bad_json":
        return b'{"id": "%s", "text": ' % base["id"].encode()
    if kind == "null_value":
        return None
    if kind == "deep_nesting":
        return splice("text", b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH)
    if kind == "huge_integer":
        return splice("asr_confidence", b"9" * INTEGER_DIGITS)
    if kind == "lone_surrogate":
        return splice("locale", b'"\\ud800"')
    if kind == "invalid_utf8":
        return splice("text", b'"add \xff\xfe milk"')
    if kind == "utf8_surrogate":
        return splice("text", b'"add \xed\xa0\x80 milk"')
    if kind in ("nan", "infinity"):
        return splice("asr_confidence", b"NaN" if kind == "nan" else b"Infinity")
    if kind == "raw_control_chars":
        return splice("text", b'"add milk\x00\x07 to cart"')
    if kind == "bom":
        return b"\xef\xbb\xbf" + encoded(base)
    if kind == "duplicate_keys":  # the first "assistant" is valid, the last is not: no reading accepts it
        return encoded(base).replace(b'"assistant": "shopper"', b'"assistant": "shopper", "assistant": "cashier"')
    if kind == "oversized":
        room = int(max_message_bytes * OVERSIZED_SHARE) - len(encoded(base))
        base["text"] = ("milk " * (room // 5 + 1))[:room]
        return encoded(base)
    updates: dict[str, Any] = {
        "missing_field": {}, "missing_channel": {},
        "empty_text": {"text": "   "}, "empty_string_text": {"text": ""},
        "control_chars": {"text": "add milk\x00\x07 to cart"},
        "wrong_assistant": {"assistant": "cashier"},
        "too_long": {"text": "milk " * 400}, "huge_text": {"text": ("milk " * HUGE_TEXT_CHARS)[:HUGE_TEXT_CHARS]},
        "ts_number": {"ts": 1_764_000_000}, "confidence_string": {"asr_confidence": "0.9"},
        "confidence_true": {"asr_confidence": True}, "id_number": {"id": 12345},
        "text_number": {"text": 42}, "session_id_list": {"session_id": ["s-bad"]},
        "locale_number": {"locale": 1033}, "channel_number": {"channel": 1}, "version_string": {"version": "1"},
    }[kind]
    base.update(updates)
    if kind == "missing_field":
        del base["ts"]
    elif kind == "missing_channel":
        del base["channel"]
    return encoded(base)


def events_from_jsonl(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Each line is sent as is (bad lines too: the worker dead-letters them); key = session_id if present."""
    with open(path, "rb") as lines:
        for line in lines:
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                key = str(json.loads(line).get("session_id", "")).encode()
            except (ValueError, AttributeError, RecursionError):
                key = b""
            yield key, line


@dataclass
class ReplayOutcome:
    """What a replay sent and what the broker confirmed (``sent == confirmed + failed`` once it returned)."""

    sent: int = 0  # records handed to the producer
    confirmed: int = 0  # acknowledged by the broker (acks=all)
    failed: int = 0  # refused by the producer or the broker, or never acknowledged
    too_large: int = 0  # of the failed: refused for size (the producer's max_request_size or the topic's limit)
    errors: Counter = field(default_factory=Counter)  # error name -> count

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.confirmed == self.sent

    def summary(self) -> str:
        text = f"sent {self.sent}, confirmed {self.confirmed}, failed {self.failed}"
        if self.too_large:
            text += f" ({self.too_large} too large for the topic)"
        if self.errors:
            text += "; errors: " + ", ".join(f"{count} x {name}" for name, count in self.errors.most_common())
        return text


class NotAcknowledged(Exception):
    """A record whose acknowledgement had not come when the replay gave up waiting (``flush_timeout_s``)."""


class ReplayFailed(RuntimeError):
    """Some records of a replay were not confirmed by the broker."""

    def __init__(self, outcome: ReplayOutcome) -> None:
        super().__init__(f"replay incomplete: {outcome.summary()}")
        self.outcome = outcome


# on_result(index, metadata, error): metadata (topic, partition, offset) when the broker acknowledged the
# record, error when it was refused. Called from the producer's thread.
ResultCallback = Callable[[int, Any, BaseException | None], None]


def _error_name(error: BaseException) -> str:
    return type(error).__name__


def _is_too_large(error: BaseException) -> bool:
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(error, (MessageSizeTooLargeError, RecordListTooLargeError)) or "too large" in str(error).lower()


def replay_producer(settings: Settings, **overrides: Any):
    """The replay's producer: acks from all replicas, idempotent (a retry after a broker restart writes no
    duplicate), retries until ``delivery_timeout_ms``.

    Its ``max_request_size`` is the topic limit (``topics.max_message_bytes``, every topic's max.message.bytes):
    a record the topic would refuse is refused at ``send`` (counted as too large), never sent. Letting the broker
    refuse it instead would cost more than that record: kafka-python's idempotent producer then fails every later
    record of the same partition with the same error (seen with kafka-python 3.0.12)."""
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers, "acks": "all", "linger_ms": 5,
        "client_id": "nlumon-replay", "enable_idempotence": True, "delivery_timeout_ms": 120_000,
        "max_request_size": settings.topics.max_message_bytes,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def send_records(
    settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]], *, rate: float = 0.0,
    progress: bool = False, total: int | None = None, on_result: ResultCallback | None = None,
    flush_timeout_s: float = 180.0, producer_config: dict[str, Any] | None = None, topic: str | None = None,
) -> ReplayOutcome:
    """Send ``(key, value)`` records to ``topic`` (default: the utterances topic), paced at ``rate`` per second
    (0 = no pacing), and wait for the broker's acknowledgement of each. Never raises for a refused record: it
    is counted."""
    from kafka.errors import KafkaError
    from tqdm import tqdm

    outcome = ReplayOutcome()
    lock = threading.Lock()
    resolved: set[int] = set()

    def resolve(index: int, metadata: Any, error: BaseException | None) -> None:
        with lock:
            if index in resolved:
                return
            resolved.add(index)
            if error is None:
                outcome.confirmed += 1
            else:
                outcome.failed += 1
                outcome.errors[_error_name(error)] += 1
                outcome.too_large += _is_too_large(error)
        if on_result is not None:
            on_result(index, metadata, error)

    producer = replay_producer(settings, **(producer_config or {}))
    started = time.monotonic()
    bar = tqdm(total=total, unit="ev", disable=not progress, desc="replay")
    try:
        for index, (key, value) in enumerate(records):
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            with lock:
                outcome.sent += 1
            try:
                future = producer.send(topic or settings.topics.utterances, key=key or None, value=value)
            except KafkaError as error:  # refused before it left: too large, no metadata within max_block_ms
                resolve(index, None, error)
            else:
                future.add_callback(lambda metadata, i=index: resolve(i, metadata, None))
                future.add_errback(lambda error, i=index: resolve(i, None, error))
            bar.update()
        try:
            producer.flush(timeout=flush_timeout_s)
        except KafkaError:
            pass  # what is still unacknowledged is counted below
    finally:
        bar.close()
        try:
            producer.close(timeout=10)
        except KafkaError:
            pass  # records it could not flush are counted below
        with lock:
            unresolved = [i for i in range(outcome.sent) if i not in resolved]
        for index in unresolved:
            resolve(index, None, NotAcknowledged("no acknowledgement before the replay ended"))
    return outcome


def produce(
    settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]], *, rate: float = 0.0,
    progress: bool = False, total: int | None = None,
) -> int:
    """Send records to the utterances topic (see :func:`send_records`). Returns how many were sent, all of them
    confirmed by the broker; raises :class:`ReplayFailed` (with the counts) if any was not."""
    outcome = send_records(settings, records, rate=rate, progress=progress, total=total)
    if not outcome.ok:
        raise ReplayFailed(outcome)
    return outcome.sent


def save_truth(out_dir: Path, timeline: dict, events: Iterable) -> Iterator[tuple[bytes, bytes]]:
    """Write ``timeline.json`` now and ``truth.jsonl`` while the events pass through to the producer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "timeline.json").write_text(json.dumps(timeline, indent=2))
    with open(out_dir / "truth.jsonl", "w") as truth:
        for event in events:
            truth.write(json.dumps(event.truth) + "\n")
            yield event.key, event.value


def format_timeline(timeline: dict) -> str:
    lines = [f"scenario {timeline['scenario']}: {timeline['description']}",
             f"  {timeline['count']} events, simulated time {timeline['start']} .. {timeline['end']}"]
    for phase in timeline["phases"]:
        lines.append(f"  {phase['start']:>5.0%} .. {phase['end']:>5.0%}  {phase['name']:10} {phase['description']}")
    return "\n".join(lines)
