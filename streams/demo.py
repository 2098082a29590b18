"""``nlumon demo``: the whole flow on one machine, with a summary read back from ClickHouse.

Steps: start Kafka and ClickHouse (idempotent) → start a stream worker as a child process →
replay generated retail traffic with malformed records mixed in → wait until every record is
accounted for in ClickHouse → print what flowed where → stop the worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nlumon.schema import connect
from nlumon.services import services_down, services_up
from nlumon.settings import Settings
from streams.replay import produce, sample_events

Echo = Callable[[str], None]


def start_worker_process(settings: Settings, log_path: str, worker_id: str = "demo-worker") -> subprocess.Popen:
    """A worker as a child process with the same settings (passed through the environment)."""
    env = {**os.environ, **settings_env(settings)}
    log_file = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "nlumon.cli", "worker", "--worker-id", worker_id],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as NLUMON_* variables, so a child process builds the same object."""
    env: dict[str, str] = {}
    for group_name, group in settings:
        if hasattr(group, "model_dump"):
            for key, value in group.model_dump().items():
                env[f"NLUMON_{group_name.upper()}__{key.upper()}"] = str(value)
        else:
            env[f"NLUMON_{group_name.upper()}"] = str(group)
    return env


def wait_for_rows(settings: Settings, since: datetime, expected: int, timeout_s: float) -> tuple[int, int]:
    """Poll ClickHouse until accepted + dead-lettered rows since ``since`` reach ``expected``."""
    client = connect(settings.clickhouse)
    deadline = time.monotonic() + timeout_s
    accepted = dead = 0
    try:
        while time.monotonic() < deadline:
            accepted = client.execute(
                "SELECT uniqExact(id) FROM utterance_log WHERE ingested_at >= %(since)s",
                {"since": since.replace(tzinfo=None)},
            )[0][0]
            dead = client.execute(
                "SELECT count() FROM dead_letters FINAL WHERE ts >= %(since)s", {"since": since.replace(tzinfo=None)},
            )[0][0]
            if accepted + dead >= expected:
                break
            time.sleep(1)
    finally:
        client.disconnect()
    return accepted, dead


def run_demo(
    settings: Settings, *, count: int, keep_services: bool, echo: Echo,
    malformed_share: float = 0.02, seed: int | None = None,
) -> dict[str, int]:
    """Run the demo; returns the counts it printed (sent, accepted, dead)."""
    echo("1/4 starting Kafka and ClickHouse (real services, 127.0.0.1) ...")
    outcome = services_up(settings)
    echo(f"    kafka {outcome['kafka']} at {settings.kafka.bootstrap_servers}; "
         f"clickhouse {outcome['clickhouse']} at {settings.clickhouse.host}:{settings.clickhouse.port}")
    log_dir = settings.services.run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = log_dir / "demo-worker.log"
    echo(f"2/4 starting a stream worker (log: {worker_log}) ...")
    worker = start_worker_process(settings, str(worker_log))
    since = datetime.now(UTC).replace(microsecond=0)
    try:
        echo(f"3/4 replaying {count} retail utterances ({malformed_share:.0%} malformed) "
             f"into topic '{settings.topics.utterances}' ...")
        records = sample_events(count, seed=int(time.time()) if seed is None else seed,
                                malformed_share=malformed_share)
        sent = produce(settings, records, progress=True, total=count)
        echo("4/4 waiting until ClickHouse holds a row for every record ...")
        accepted, dead = wait_for_rows(settings, since, sent, timeout_s=120)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see {worker_log}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    print_summary(settings, since, sent, accepted, dead, echo)
    if not keep_services:
        services_down(settings)
        echo("services stopped")
    if accepted + dead < sent:
        raise RuntimeError(f"only {accepted + dead} of {sent} records reached ClickHouse; see {worker_log}")
    return {"sent": sent, "accepted": accepted, "dead": dead}


def print_summary(settings: Settings, since: datetime, sent: int, accepted: int, dead: int, echo: Echo) -> None:
    client = connect(settings.clickhouse)
    try:
        by_assistant = client.execute(
            "SELECT assistant, uniqExact(id), avg(text_chars) FROM utterance_log "
            "WHERE ingested_at >= %(since)s GROUP BY assistant ORDER BY assistant",
            {"since": since.replace(tzinfo=None)},
        )
        reasons = client.execute(
            "SELECT reason, count() FROM dead_letters FINAL WHERE ts >= %(since)s GROUP BY reason ORDER BY reason",
            {"since": since.replace(tzinfo=None)},
        )
    finally:
        client.disconnect()
    echo("")
    echo("what flowed where")
    echo(f"  replay  -> kafka '{settings.topics.utterances}':        {sent} records")
    echo(f"  worker  -> clickhouse utterance_log:    {accepted} accepted utterances")
    echo(f"  worker  -> kafka '{settings.topics.dead_letter}' + dead_letters: {dead} malformed records")
    for assistant, rows, mean_chars in by_assistant:
        echo(f"    {assistant:10} {rows:6} utterances, mean length {mean_chars:.0f} characters")
    for reason, rows in reasons:
        echo(f"    dead letter x{rows}: {reason[:90]}")
