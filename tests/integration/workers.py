"""Run real stream workers (``nlumon worker`` child processes) against the test services."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer

from nlumon.schema import connect
from nlumon.services.kafka import ensure_topics
from nlumon.settings import Settings
from streams.demo import start_worker_process


def isolated(settings: Settings, unique: str, **groups: dict) -> Settings:
    """``settings`` with this test's own topics and consumer group (created on the broker)."""
    topics = settings.topics.model_copy(update={
        "utterances": f"utt-{unique}", "predictions": f"pred-{unique}", "dead_letter": f"dlq-{unique}",
        "labeling_queue": f"label-{unique}", **groups.pop("topics", {}),
    })
    kafka = settings.kafka.model_copy(update={"consumer_group": f"g-{unique}"})
    update = {"topics": topics, "kafka": kafka}
    for name, values in groups.items():
        update[name] = getattr(settings, name).model_copy(update=values)
    isolated_settings = settings.model_copy(update=update)
    ensure_topics(isolated_settings)
    return isolated_settings


class Worker:
    """One ``nlumon worker`` process; its output goes to ``log``."""

    def __init__(self, settings: Settings, name: str, log_dir: Path, **env: str) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        verbose = bool(env.pop("VERBOSE", ""))
        self.process = start_worker_process(settings, self.log, name, verbose=verbose, extra_env=env)

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye (a crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, workers: tuple[Worker, ...] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            assert worker.alive(), f"worker {worker.name} died:\n{worker.output()}"
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}:\n{w.output()}" for w in workers)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


def stored_ids(settings: Settings, ids: list[str], table: str = "predictions") -> dict[str, int]:
    """id -> number of rows after FINAL, for the given ids (0 = missing)."""
    client = connect(settings.clickhouse)
    try:
        rows = client.execute(
            f"SELECT id, count() FROM {table} FINAL WHERE id IN %(ids)s GROUP BY id", {"ids": tuple(ids)})
    finally:
        client.disconnect()
    counts = dict.fromkeys(ids, 0)
    counts.update(dict(rows))
    return counts


def topic_messages(settings: Settings, topic: str, timeout_ms: int = 5000) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=timeout_ms)
    try:
        return list(consumer)
    finally:
        consumer.close()
