"""Local Kafka and ClickHouse, started by the project: ``nlumon services up|down|status``.

The same functions back the CLI and the integration-test fixtures, so tests run against exactly
what a developer starts by hand.
"""

from __future__ import annotations

import logging

from nlumon.services.clickhouse import ClickHouseServer
from nlumon.services.kafka import KafkaBroker, ensure_topics
from nlumon.services.process import ServiceError
from nlumon.settings import Settings

__all__ = ["ServiceError", "services_down", "services_status", "services_up"]

log = logging.getLogger(__name__)


def services_up(settings: Settings) -> dict[str, object]:
    """Start whatever is not running (idempotent), create topics and schema; say what happened."""
    kafka = KafkaBroker(settings)
    clickhouse = ClickHouseServer(settings)
    kafka_started = kafka.start()
    topics = ensure_topics(settings)
    clickhouse_started = clickhouse.start()
    return {
        "kafka": "started" if kafka_started else "already running",
        "clickhouse": "started" if clickhouse_started else "already running",
        "topics": topics,
    }


def services_down(settings: Settings) -> dict[str, bool]:
    """Stop the processes that ``services_up`` started (by pid file), and nothing else."""
    return {
        "kafka": KafkaBroker(settings).stop(),
        "clickhouse": ClickHouseServer(settings).stop(),
    }


def services_status(settings: Settings) -> list[dict[str, object]]:
    return [KafkaBroker(settings).status(), ClickHouseServer(settings).status()]
