"""The README's main job, end to end on real services: replay → Kafka → worker → ClickHouse / dead-letter."""

import json
import uuid

import pytest
from kafka import KafkaConsumer

from nlumon.records import DeadLetter
from streams.demo import run_demo

pytestmark = pytest.mark.e2e


def test_every_record_ends_in_clickhouse_or_the_dead_letter_topic(services, quick_model):
    settings = services.model_copy(update={"model": services.model.model_copy(update={"package_path": quick_model})})
    lines: list[str] = []
    counts = run_demo(settings, count=400, keep_services=True, echo=lines.append, malformed_share=0.1, seed=7)
    assert counts["sent"] == 400
    assert counts["accepted"] + counts["dead"] == 400
    assert 15 <= counts["dead"] <= 70  # ~10 % malformed, seeded
    assert any("what flowed where" in line for line in lines)
    report = next(line for line in lines if line.startswith("report: ")).split()[1]
    page = open(report, encoding="utf-8").read()
    assert "Live traffic" in page and "<svg" in page

    consumer = KafkaConsumer(
        services.topics.dead_letter, bootstrap_servers=services.kafka.bootstrap_servers,
        group_id=f"dlq-check-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest", consumer_timeout_ms=5000,
    )
    letters = [DeadLetter.model_validate_json(message.value) for message in consumer]
    consumer.close()
    reasons = " | ".join(letter.reason for letter in letters)
    for expected in ("not JSON", "missing field 'ts'", "text is empty", "control characters", "field 'assistant'",
                     "more than"):
        assert expected in reasons
    originals = [letter.original() for letter in letters]
    assert any(raw.startswith(b'{"id": "bad-') for raw in originals)  # the bytes as sent, not a re-encoding
    assert all(letter.source_topic == services.topics.utterances for letter in letters)
    json.dumps([letter.model_dump(mode="json") for letter in letters])  # the dead letters are plain JSON
