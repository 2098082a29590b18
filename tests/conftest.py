"""Shared fixtures.

Integration and e2e tests get real Kafka and ClickHouse from the session-scoped ``services``
fixture. They run on their own ports and data folder (``.run/test``), so a developer's
`nlumon services up` (demo data) is left alone. They are started through the same code as
`nlumon services up`, and stopped at the end only if this session started them (set
NLUMON_TEST_KEEP_SERVICES=1 to keep them for a faster next run).
"""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently: no telemetry
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest

from nlumon.services import services_down, services_up
from nlumon.settings import PROJECT_ROOT, Settings, load_settings

TEST_OVERRIDES = {
    "kafka": {"bootstrap_servers": "127.0.0.1:29092", "controller_port": 29093, "heap": "512m"},
    "clickhouse": {"port": 29000, "http_port": 28123, "database": "nlumon_test"},
    "services": {"run_dir": PROJECT_ROOT / ".run" / "test"},
    "stream": {"metrics_port": 0, "sink_flush_s": 0.3, "max_wait_s": 0.1},
}


def make_test_settings(**extra: dict) -> Settings:
    merged = {group: {**values, **extra.get(group, {})} for group, values in TEST_OVERRIDES.items()}
    merged.update({group: values for group, values in extra.items() if group not in merged})
    merged.setdefault("environment", "test")  # generated traffic: workers may use the built-in pii_hash_key
    return load_settings(None, **merged)


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    settings = make_test_settings()
    outcome = services_up(settings)
    yield settings
    started_here = "started" in (outcome["kafka"], outcome["clickhouse"])
    if started_here and os.environ.get("NLUMON_TEST_KEEP_SERVICES") != "1":
        services_down(settings)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, ids and group ids, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def quick_model() -> Path:
    """The quick demo model (trained once into .run/test/models/quick: ~4 minutes on 2 cores, then reused)."""
    from model_runtime.package import load_package
    from model_runtime.pipeline import TrainRequest, train_to_package

    out = PROJECT_ROOT / ".run" / "test" / "models" / "quick"
    try:
        return load_package(out).path
    except Exception:  # missing or stale: train it
        return train_to_package(TrainRequest(corpus="retail", quick=True, device="cpu"), out).path
