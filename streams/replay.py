"""Produce utterance events to Kafka (``nlumon replay``) from the retail generator or a JSONL file."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nlumon.records import UtteranceEvent
from nlumon.settings import Settings

# Kinds of malformed record mixed into a replay, each a way real producers break the contract.
MALFORMED_KINDS = ("bad_json", "missing_field", "empty_text", "control_chars", "wrong_assistant", "too_long")


def sample_events(
    count: int, *, seed: int = 0, malformed_share: float = 0.0, start: datetime | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records: retail utterances from the generator, with malformed ones mixed in."""
    from model_runtime.data.retail import GeneratorConfig, iter_examples

    rng = random.Random(seed)
    start = start or datetime.now(UTC)
    examples = iter_examples(GeneratorConfig(n=count, seed=seed))
    for index, example in zip(range(count), examples, strict=False):
        session = f"s-{seed}-{index // 4}"
        if rng.random() < malformed_share:
            yield session.encode(), malformed_record(rng, index)
            continue
        event = UtteranceEvent(
            id=f"u-{seed}-{index}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
            ts=start + timedelta(milliseconds=index),
            assistant=example.assistant,
            session_id=session,
            text=example.text,
            channel="voice" if rng.random() < 0.7 else "text",
            asr_confidence=round(rng.uniform(0.6, 1.0), 3),
        )
        yield session.encode(), event.to_json()


def malformed_record(rng: random.Random, index: int) -> bytes:
    kind = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
    base = {"id": f"bad-{index}", "ts": datetime.now(UTC).isoformat(), "assistant": "shopper",
            "session_id": "s-bad", "text": "add milk to my cart"}
    if kind == "bad_json":
        return b'{"id": "bad-%d", "text": ' % index
    if kind == "missing_field":
        del base["ts"]
    elif kind == "empty_text":
        base["text"] = "   "
    elif kind == "control_chars":
        base["text"] = "add milk\x00\x07 to cart"
    elif kind == "wrong_assistant":
        base["assistant"] = "cashier"
    elif kind == "too_long":
        base["text"] = "milk " * 400
    return json.dumps(base).encode()


def events_from_jsonl(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Each line is sent as is (bad lines too: the worker dead-letters them); key = session_id if present."""
    with open(path, "rb") as lines:
        for line in lines:
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                key = str(json.loads(line).get("session_id", "")).encode()
            except (ValueError, AttributeError):
                key = b""
            yield key, line


def produce(
    settings: Settings, records: Iterable[tuple[bytes, bytes]], *, rate: float = 0.0, progress: bool = False,
    total: int | None = None,
) -> int:
    """Send records to the utterances topic, paced at ``rate`` per second (0 = no pacing). Returns the count."""
    from kafka import KafkaProducer
    from tqdm import tqdm

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5,
        client_id="nlumon-replay", retries=5,
    )
    sent = 0
    started = time.monotonic()
    bar = tqdm(total=total, unit="ev", disable=not progress, desc="replay")
    try:
        for key, value in records:
            if rate > 0:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(settings.topics.utterances, key=key or None, value=value)
            sent += 1
            bar.update()
        producer.flush(timeout=60)
    finally:
        bar.close()
        producer.close(timeout=10)
    return sent
