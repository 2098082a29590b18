"""``nlumon demo``: the whole flow on one machine, with a summary read back from ClickHouse.

Steps: start Kafka and ClickHouse (idempotent) → make sure a model package is in service (trains
a small one the first time) → start a stream worker as a child process → replay the ``demo``
scenario (stable traffic, then a new product line, then an out-of-scope burst, with malformed
records mixed in) → wait until every record is accounted for in ClickHouse → print what flowed
where, window by window → stop the worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nlumon.schema import connect
from nlumon.services import services_down, services_up
from nlumon.settings import Settings
from streams.replay import format_timeline, produce, save_truth
from streams.scenarios import scenario_events, timeline_document

Echo = Callable[[str], None]
DEMO_WINDOWS = 10  # the replay's simulated time spans this many monitoring windows


def start_worker_process(
    settings: Settings, log_path: Path, worker_id: str = "demo-worker", *, verbose: bool = False,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """A worker as a child process with the same settings (passed through the environment).

    ``extra_env`` overrides single settings (e.g. ``NLUMON_STREAM__METRICS_PORT``) for this worker.
    """
    env = {**os.environ, **settings_env(settings), **(extra_env or {})}
    command = [sys.executable, "-m", "nlumon.cli", "worker", "--worker-id", worker_id]
    if verbose:
        command.append("--verbose")
    with open(log_path, "ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


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


def ensure_model(settings: Settings, echo: Echo) -> Path:
    """The package in service; trains the quick demo model and promotes it when there is none."""
    configured = Path(settings.model.package_path)
    if configured.exists():
        return configured.resolve()
    from model_runtime.pipeline import TrainRequest, train_to_package
    from model_runtime.registry import CURRENT, promote

    registry = configured.parent if configured.name == CURRENT else None
    out = (registry or configured.parent) / "quick"
    echo(f"    no model at {configured}: training the quick demo model into {out} (a few minutes on 2 cores) ...")
    package = train_to_package(TrainRequest(corpus="retail", quick=True, device="auto"), out)
    if registry is not None:
        promote(package.path, registry)
        echo(f"    promoted {package.version} as {configured}")
    else:
        out.rename(configured)
    return configured.resolve()


def replay_start(settings: Settings, wanted: datetime) -> datetime:
    """``wanted``, or later: a replay must not share monitoring windows with an earlier demo's events."""
    client = connect(settings.clickhouse)
    try:
        latest = client.execute("SELECT max(ts) FROM predictions")[0][0]
    finally:
        client.disconnect()
    window = settings.monitor.window_s
    if latest is None or latest.year < 1971:
        return wanted
    free_from = datetime.fromtimestamp((int(latest.replace(tzinfo=UTC).timestamp()) // window + 1) * window, UTC)
    return max(wanted, free_from)


def wait_for_rows(settings: Settings, since: datetime, expected: int, timeout_s: float, worker) -> tuple[int, int]:
    """Poll ClickHouse until predicted + dead-lettered rows since ``since`` reach ``expected``."""
    client = connect(settings.clickhouse)
    deadline = time.monotonic() + timeout_s
    accepted = dead = 0
    params = {"since": since.replace(tzinfo=None), "topic": settings.topics.utterances}
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            accepted = client.execute(
                "SELECT uniqExact(id) FROM predictions WHERE ingested_at >= %(since)s", params)[0][0]
            dead = client.execute("SELECT count() FROM dead_letters FINAL WHERE ts >= %(since)s "
                                  "AND source_topic = %(topic)s", params)[0][0]
            if accepted + dead >= expected:
                break
            time.sleep(1)
    finally:
        client.disconnect()
    return accepted, dead


def run_demo(
    settings: Settings, *, count: int, keep_services: bool, echo: Echo,
    malformed_share: float = 0.02, seed: int | None = None, scenario: str = "demo",
) -> dict[str, int]:
    """Run the demo; returns the counts it printed (sent, accepted, dead)."""
    echo("1/5 starting Kafka and ClickHouse (real services, 127.0.0.1) ...")
    outcome = services_up(settings)
    echo(f"    kafka {outcome['kafka']} at {settings.kafka.bootstrap_servers}; "
         f"clickhouse {outcome['clickhouse']} at {settings.clickhouse.host}:{settings.clickhouse.port}")
    echo("2/5 model package ...")
    echo(f"    serving {ensure_model(settings, echo)}")
    log_dir = settings.services.run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = log_dir / "demo-worker.log"
    echo(f"3/5 starting a stream worker (log: {worker_log}) ...")
    worker = start_worker_process(settings, worker_log)
    since = datetime.now(UTC).replace(microsecond=0)
    spacing_ms = settings.monitor.window_s * 1000 * DEMO_WINDOWS / count
    start = replay_start(settings, since - timedelta(milliseconds=spacing_ms * count))
    seed = int(time.time()) if seed is None else seed
    timeline = timeline_document(scenario, count, seed, start, spacing_ms)
    try:
        echo(f"4/5 replaying {count} events into '{settings.topics.utterances}' "
             f"({malformed_share:.0%} malformed mixed in):")
        echo(format_timeline(timeline))
        events = scenario_events(scenario, count, seed=seed, start=start, spacing_ms=spacing_ms,
                                 malformed_share=malformed_share)
        truth_dir = settings.services.run_dir / "replays" / f"demo-{since:%Y%m%dT%H%M%S}"
        sent = produce(settings, save_truth(truth_dir, timeline, events), progress=True, total=count)
        echo("5/5 waiting until ClickHouse holds a row for every record ...")
        accepted, dead = wait_for_rows(settings, since, sent, timeout_s=300, worker=worker)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see {worker_log}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    print_summary(settings, since, sent, accepted, dead, echo)
    echo(f"timeline and per-event truth: {truth_dir}")
    replay_end = start + timedelta(milliseconds=spacing_ms * count)
    run_monitor(settings, start, replay_end, echo)
    report = write_report(settings, start, replay_end + timedelta(minutes=1))
    echo(f"report: {report} (open it in a browser)")
    if not keep_services:
        services_down(settings)
        echo("services stopped")
    if accepted + dead < sent:
        raise RuntimeError(f"only {accepted + dead} of {sent} records reached ClickHouse; see {worker_log}")
    return {"sent": sent, "accepted": accepted, "dead": dead}


DEMO_RECEIVERS = """\
# Written by `nlumon demo`: both receivers of the default rules point at the demo's local receiver.
receivers:
  - name: oncall
    url: {url}
    secret_env: NLUMON_DEMO_WEBHOOK_SECRET
  - name: ml-team
    url: {url}
    secret_env: NLUMON_DEMO_WEBHOOK_SECRET
"""


def run_monitor(settings: Settings, start: datetime, end: datetime, echo: Echo) -> None:
    """Score the replay's windows (as the leader's timer does), deliver the alerts, show the labeling queue.

    A local HTTP receiver on 127.0.0.1 stands in for the on-call endpoint and verifies every
    webhook's signature, so the demo shows alerts really arriving, signed.
    """
    import base64
    import secrets
    import warnings

    from alerts.testing import LocalReceiver
    from monitor.service import build_monitor

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    os.environ["NLUMON_DEMO_WEBHOOK_SECRET"] = secret
    echo("")
    echo("monitor: scoring every closed window against the model package's held-out reference ...")
    with LocalReceiver(secret=secret) as receiver, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns in tiny groups
        receivers = settings.services.run_dir / "demo-receivers.yaml"
        receivers.write_text(DEMO_RECEIVERS.format(url=receiver.url))
        monitored = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={
            "receivers_path": receivers, "store_path": settings.services.run_dir / f"demo-alerts-{start:%H%M%S}.db"})})
        monitor = build_monitor(monitored)
        try:
            closing = end + timedelta(seconds=settings.monitor.window_s + settings.monitor.grace_s)
            outcomes = monitor.run_once(now=closing, since=start)
            if monitor.delivery is not None:
                monitor.delivery.deliver_once()
        finally:
            monitor.close()
        delivered, requests_seen = len(receiver.accepted), len(receiver.requests)
    echo("  window start (UTC)     rows  drifted  OOD rate  est. accuracy  drifted features")
    for outcome in sorted(outcomes, key=lambda o: o.window_start):
        features = sorted({r.feature for r in outcome.report.results if r.drifted})
        ood_rate = outcome.report.ood_rate.get("overall", next(iter(outcome.report.ood_rate.values()), 0.0))
        accuracy = outcome.report.accuracy.get("ood_aware_atc")
        estimate = f"{accuracy.value:13.1%}" if accuracy is not None else f"{'-':>13}"
        echo(f"  {outcome.window_start:%Y-%m-%d %H:%M}  {outcome.rows:6}  {'yes' if outcome.drifted else 'no':>7}"
             f"  {ood_rate:8.1%}  {estimate}  {', '.join(features)[:60]}")
    print_alerts_and_queue(settings, start, echo)
    echo(f"webhooks: {delivered} signed alerts delivered to the local receiver and verified "
         f"({requests_seen} requests)")


def print_alerts_and_queue(settings: Settings, start: datetime, echo: Echo) -> None:
    params = {"start": start.replace(tzinfo=None)}
    client = connect(settings.clickhouse)
    try:
        alerts = client.execute(
            "SELECT window_start, rule, state, severity, assistant FROM alert_events FINAL "
            "WHERE window_start >= %(start)s ORDER BY window_start, rule, assistant", params)
        queued = client.execute(
            "SELECT reason, count() FROM labeling_queue FINAL ARRAY JOIN reasons AS reason "
            "WHERE window_start >= %(start)s GROUP BY reason ORDER BY reason", params)
    finally:
        client.disconnect()
    echo("alerts:" if alerts else "alerts: none fired")
    for window_start, rule, state, severity, assistant in alerts:
        echo(f"  {window_start:%H:%M}  {severity:8} {rule:28} {state:9} {assistant or 'all'}")
    echo("labeling queue: " + (", ".join(f"{reason} {count}" for reason, count in queued) or "empty"))


def write_report(settings: Settings, start: datetime, end: datetime) -> Path:
    """The local HTML report over the replay's (simulated) time range."""
    from dashboards.report import build_report
    from dashboards.report.data import clickhouse_executor

    out = settings.services.run_dir / "reports" / "demo-report.html"
    client = connect(settings.clickhouse)
    try:
        build_report(clickhouse_executor(client), out, start=start, end=end, environment=settings.environment)
    finally:
        client.disconnect()
    return out


def print_summary(settings: Settings, since: datetime, sent: int, accepted: int, dead: int, echo: Echo) -> None:
    window = settings.monitor.window_s
    params = {"since": since.replace(tzinfo=None), "topic": settings.topics.utterances}
    client = connect(settings.clickhouse)
    try:
        windows = client.execute(
            f"SELECT toDateTime(intDiv(toUInt32(ts), {window}) * {window}) AS window_start, count(), "
            "avg(confidence), avg(is_ood), avg(entropy), any(model_version) "
            "FROM predictions FINAL WHERE ingested_at >= %(since)s GROUP BY window_start ORDER BY window_start",
            params,
        )
        reasons = client.execute(
            "SELECT reason, count() FROM dead_letters FINAL WHERE ts >= %(since)s AND source_topic = %(topic)s "
            "GROUP BY reason ORDER BY reason",
            params,
        )
    finally:
        client.disconnect()
    echo("")
    echo("what flowed where")
    echo(f"  replay -> kafka '{settings.topics.utterances}': {sent} records")
    echo(f"  worker -> clickhouse predictions + kafka '{settings.topics.predictions}': {accepted} utterances")
    echo(f"  worker -> kafka '{settings.topics.dead_letter}' + clickhouse dead_letters: {dead} malformed records")
    for reason, rows in reasons:
        echo(f"    {rows:4} x {reason[:90]}")
    echo("")
    echo(f"per {window // 60}-minute window (simulated event time):")
    echo("  window start (UTC)     rows  mean conf  OOD rate  entropy  model")
    for window_start, rows, confidence, ood_rate, entropy, version in windows:
        echo(f"  {window_start:%Y-%m-%d %H:%M}  {rows:6}  {confidence:9.3f}  {ood_rate:8.1%}  {entropy:7.3f}"
             f"  {version}")
