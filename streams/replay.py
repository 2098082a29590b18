"""Produce utterance events to Kafka (``nlumon replay``): scenarios (``streams.scenarios``) or a JSONL file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from nlumon.settings import Settings

# Kinds of malformed record mixed into a replay, each a way real producers break the contract.
MALFORMED_KINDS = ("bad_json", "missing_field", "empty_text", "control_chars", "wrong_assistant", "too_long")


def malformed_record(index: int, ts: datetime | None = None) -> bytes:
    """One record that breaks the wire contract, of a kind chosen by ``index``."""
    kind = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
    base = {"id": f"bad-{index}", "ts": (ts or datetime.now(UTC)).isoformat(), "assistant": "shopper",
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
