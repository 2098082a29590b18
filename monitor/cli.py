"""``nlumon monitor ...``: score closed windows once (batch, backfill) or keep scoring (with webhook delivery).

The lead mounts :data:`app` as ``monitor``. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Score monitoring windows: drift, OOD, accuracy estimate, conversion per intent, alerts, "
                       "labeling queue.",
                  no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="settings file (TOML or YAML); default: $NLUMON_CONFIG")]
NoAlertsOption = Annotated[bool, typer.Option("--no-alerts", help="score and store only: no rules, no webhooks")]
NoLabelingOption = Annotated[bool, typer.Option("--no-labeling", help="do not fill the labeling queue")]
NoConversionOption = Annotated[bool, typer.Option(
    "--no-conversion", help="do not score conversion per intent (conversion_windows, low-conversion alerts)")]


def _parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.secho(f"error: {option} must be an ISO 8601 time such as 2026-11-23T10:00:00Z", fg="red", err=True)
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _runtime(config: Path | None, no_alerts: bool, no_labeling: bool, no_conversion: bool = False):
    from monitor.service import build_monitor
    from nlumon.settings import ConfigFileError, InsecureSettingsError, check_secrets, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    from nlumon.logs import TextFormatter

    for handler in logging.getLogger().handlers:  # no personal data in any log line (docs/security.md)
        if not isinstance(handler.formatter, TextFormatter):
            handler.setFormatter(TextFormatter())
    for noisy in ("kafka", "clickhouse_driver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings(config)
        check_secrets(settings, "the monitor")
    except (ConfigFileError, InsecureSettingsError) as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    return build_monitor(settings, alerts=not no_alerts, labeling=not no_labeling, conversion=not no_conversion)


@app.command("run-once")
def run_once_command(
    config: ConfigOption = None,
    now: Annotated[str | None, typer.Option(help="score as if it were this time (ISO 8601); default: now")] = None,
    since: Annotated[str | None, typer.Option(help="oldest window start to consider (ISO 8601); "
                                                   "default: 24 h before --now")] = None,
    no_alerts: NoAlertsOption = False,
    no_labeling: NoLabelingOption = False,
    no_conversion: NoConversionOption = False,
    deliver_timeout_s: Annotated[float, typer.Option(help="how long to try pending webhooks before exiting")] = 10.0,
) -> None:
    """Score every closed window not scored yet (or changed by late rows), evaluate alert rules, fill the
    labeling queue, score conversion per intent of the windows whose outcomes are in (monitor.outcome_delay_s
    after their end), and try pending webhooks once."""
    runtime = _runtime(config, no_alerts, no_labeling, no_conversion)
    try:
        outcomes = runtime.run_once(now=_parse_time(now, "--now"), since=_parse_time(since, "--since"))
        for outcome in outcomes:
            drifted = sorted({f"{r.details.get('group')}/{r.feature}" for r in outcome.report.drifted})
            overall = outcome.groups.get("all")
            typer.echo(f"{outcome.window_start:%Y-%m-%d %H:%M:%S}  rows {outcome.rows:>7}  "
                       f"ood {overall.ood_rate if overall else float('nan'):6.3f}  "
                       f"acc~ {overall.accuracy if overall else float('nan'):5.3f}  "
                       f"drifted: {', '.join(drifted) or '-'}  {outcome.report_path}")
        _echo_unscored(runtime.job.last_run)
        typer.echo(f"{len(outcomes)} window(s) scored")
        if runtime.conversion is not None:
            _echo_conversion(runtime.conversion.last_run)
        if runtime.delivery is not None:
            deadline = time.monotonic() + deliver_timeout_s
            attempts = runtime.delivery.deliver_once()
            while time.monotonic() < deadline and _pending(runtime):
                time.sleep(0.5)
                attempts += runtime.delivery.deliver_once()
            typer.echo(f"{attempts} webhook delivery attempt(s); outbox: {runtime.delivery.sender.outbox.counts()}")
    finally:
        runtime.close()


def _echo_unscored(report) -> None:
    """One line per window stored as not scored or failed, with its reason."""
    for result in report.results:
        if result.status != "scored":
            typer.echo(f"{result.window.start:%Y-%m-%d %H:%M:%S}  rows {result.window.rows:>7}  {result.status} "
                       f"(attempt {result.attempts}): {result.reason}")


def _echo_conversion(run) -> None:
    """One line per conversion window scored or failed, then the count and the alert events it raised."""
    for window in run.windows:
        rate = window.converted / window.traffic if window.traffic else float("nan")
        typer.echo(f"{window.start:%Y-%m-%d %H:%M:%S}  conversion  traffic {window.traffic:>7}  rate {rate:5.3f}  "
                   f"subjects {sum(s.assistant == 'all' for s in window.subjects)}")
    for start, reason in run.failed:
        typer.echo(f"{start:%Y-%m-%d %H:%M:%S}  conversion failed: {reason}")
    for event in run.events:
        typer.echo(f"alert {event.rule} {event.status}: {event.assistant or 'all'} / {event.subject} "
                   f"drop {event.value:.3f}")
    typer.echo(f"{len(run.windows)} conversion window(s) scored")


def _pending(runtime) -> bool:
    return any(c.get("pending", 0) for c in runtime.delivery.sender.outbox.counts().values())


@app.command("run")
def run_command(
    config: ConfigOption = None,
    interval_s: Annotated[float | None, typer.Option(help="seconds between runs; default: a fifth of a window, "
                                                          "5-60 s")] = None,
    no_alerts: NoAlertsOption = False,
    no_labeling: NoLabelingOption = False,
    no_conversion: NoConversionOption = False,
    metrics_port: Annotated[int, typer.Option(help="serve the monitor's Prometheus metrics (nlumon_monitor_*) on "
                                                   "this port of 127.0.0.1; 0 = off")] = 0,
) -> None:
    """Keep scoring closed windows (and, after each run, conversion per intent) until SIGTERM/Ctrl-C, with webhook
    delivery in a background thread."""
    from monitor.service import timer_interval_s

    runtime = _runtime(config, no_alerts, no_labeling, no_conversion)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=runtime.metrics.registry)
    interval = interval_s or timer_interval_s(runtime.job.window_s)
    stopping = {"flag": False}

    def stop(*_: object) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if runtime.delivery is not None:
        runtime.delivery.start()
    try:
        while not stopping["flag"]:
            try:
                runtime.run_once()
            except Exception:  # a failed run is retried; its windows stay due
                runtime.metrics.run_errors.labels(where="run_loop").inc()
                logging.getLogger(__name__).exception("monitor run failed; retried in %.0f s", interval)
            deadline = time.monotonic() + interval
            while not stopping["flag"] and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        runtime.close()
    typer.echo("monitor stopped")
