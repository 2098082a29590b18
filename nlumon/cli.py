"""The ``nlumon`` command line. Every command has ``--help``.

Heavy imports (faust, torch, onnxruntime, evidently) happen inside the commands, so ``--help``
stays fast and a command only loads what it uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nlumon.logs import setup_logging
from nlumon.settings import ConfigFileError, Settings, load_settings

app = typer.Typer(
    name="nlumon",
    help="Watch a joint intent + slot NLU model in production: Kafka workers, ClickHouse, drift/OOD, alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(help="Start, stop and inspect the local Kafka broker and ClickHouse server.",
                           no_args_is_help=True)
app.add_typer(services_app, name="services")
outcomes_app = typer.Typer(help="Outcome events (what users did after the model's decision): simulate or send them.",
                           no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")


def _mount_package_commands() -> None:
    """Command groups that live with the package they drive (each module imports only typer at the top)."""
    from alerts.cli import app as alerts_app
    from dashboards.cli import app as dashboards_app
    from dashboards.cli import report_command
    from experiments.cli import experiment_app
    from labeling.cli import labeling_app
    from model_runtime.cli import app as model_app
    from monitor.cli import app as monitor_app
    from monitor.loop import loop_app
    from streams.routing_cli import routing_app

    app.add_typer(model_app, name="model")
    app.add_typer(monitor_app, name="monitor")
    app.add_typer(dashboards_app, name="dashboards")
    app.command("report")(report_command)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(labeling_app, name="labeling")
    app.add_typer(loop_app, name="loop")
    app.add_typer(experiment_app, name="experiment")
    app.add_typer(routing_app, name="routing")


_mount_package_commands()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="settings file (TOML or YAML); default: $NLUMON_CONFIG, then built-ins",
                 dir_okay=False),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def _settings(config: Path | None, verbose: bool = False) -> Settings:
    """Load the settings, then set up logging as they say (``log_format``)."""
    try:
        settings = load_settings(config)
    except ConfigFileError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_format, verbose=verbose)
    return settings


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _require_secrets(settings: Settings, program: str) -> None:
    """Start-up check of a worker or the monitor: no built-in or short ``stream.pii_hash_key`` (exit 2)."""
    from nlumon.settings import InsecureSettingsError, check_secrets

    try:
        check_secrets(settings, program)
    except InsecureSettingsError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


# -- services -----------------------------------------------------------------------------------
@services_app.command("up")
def services_up_command(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Start Kafka and ClickHouse (if not running), create the topics and the schema. Idempotent."""
    from nlumon.services import ServiceError, services_up

    settings = _settings(config, verbose)
    try:
        outcome = services_up(settings)
    except ServiceError as error:
        raise _fail(error) from None
    typer.echo(f"kafka      {outcome['kafka']:16} {settings.kafka.bootstrap_servers}")
    typer.echo(f"clickhouse {outcome['clickhouse']:16} {settings.clickhouse.host}:{settings.clickhouse.port}"
               f" database {settings.clickhouse.database}")
    for topic, partitions in sorted(outcome["topics"].items()):
        typer.echo(f"topic      {topic:40} {partitions} partition(s)")


@services_app.command("init")
def services_init_command(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Create the topics and the ClickHouse schema on services someone else runs (compose, a cluster)."""
    from nlumon.schema import ensure_schema
    from nlumon.services import ServiceError
    from nlumon.services.kafka import ensure_topics

    settings = _settings(config, verbose)
    try:
        topics = ensure_topics(settings)
        tables = ensure_schema(settings.clickhouse)
    except (ServiceError, OSError) as error:
        raise _fail(error) from None
    typer.echo(f"topics: {', '.join(f'{name} ({count})' for name, count in sorted(topics.items()))}")
    typer.echo(f"tables in {settings.clickhouse.database}: {', '.join(tables)}")


@services_app.command("down")
def services_down_command(config: ConfigOption = None) -> None:
    """Stop the Kafka and ClickHouse processes that `services up` started (by pid file); nothing else."""
    from nlumon.services import services_down

    for service, stopped in services_down(_settings(config)).items():
        typer.echo(f"{service:10} {'stopped' if stopped else 'was not running'}")


@services_app.command("status")
def services_status_command(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show whether our Kafka and ClickHouse run and answer. Exit 1 if one does not."""
    from nlumon.services import services_status

    rows = services_status(_settings(config))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = "answers" if row["answers"] else ("running, not answering" if row["pid"] else "stopped")
            typer.echo(f"{row['service']:10} {state:24} pid={row['pid'] or '-':<8} {row['address']}  log: {row['log']}")
    if not all(row["answers"] for row in rows):
        raise typer.Exit(1)


# -- stream worker and replay --------------------------------------------------------------------
@app.command()
def worker(
    config: ConfigOption = None,
    verbose: VerboseOption = False,
    worker_id: Annotated[str | None, typer.Option(help="name of this worker in logs and metrics")] = None,
) -> None:
    """Run a long-lived stream worker: consume `utterances`, store rows in ClickHouse, dead-letter bad records."""
    settings = _settings(config, verbose)
    _require_secrets(settings, "the worker")
    from streams.worker import run_worker

    run_worker(settings, worker_id=worker_id, verbose=verbose)


@app.command()
def replay(
    config: ConfigOption = None,
    scenario: Annotated[str, typer.Option(help="stable, sudden-shift, gradual-shift, ood-burst, asr-degradation, "
                                               "new-names, malformed or demo (see docs/streams.md)")] = "stable",
    source: Annotated[Path | None, typer.Option(help="send the lines of this JSONL file instead of a scenario",
                                                 dir_okay=False)] = None,
    count: Annotated[int, typer.Option(min=1, help="events to send")] = 1000,
    rate: Annotated[float, typer.Option(min=0, help="events per second (wall clock); 0 = as fast as possible")] = 0.0,
    spacing_ms: Annotated[float, typer.Option(min=0, help="simulated time between events (the events' ts)")] = 100.0,
    shift_at: Annotated[float, typer.Option(min=0, max=1, help="where the scenario's change starts (0..1)")] = 0.5,
    malformed: Annotated[float, typer.Option(min=0, max=1, help="share of malformed records mixed in")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same events)")] = 0,
    cleared: Annotated[float, typer.Option(min=0, max=1, help="share of events marked cleared_for_analysis "
                                           "(readable by the annotator)")] = 0.0,
    out: Annotated[Path | None, typer.Option(help="folder for timeline.json and truth.jsonl "
                                                  "(default .run/replays/<scenario>-<time>)")] = None,
    outcomes: Annotated[bool, typer.Option(help="then play the assistant: send an outcome event for every "
                                                "predicted utterance of this replay, likelier good when the model "
                                                "was right (`nlumon outcomes simulate`)")] = False,
    outcomes_timeout_s: Annotated[float, typer.Option(min=1, help="with --outcomes: stop waiting for predictions "
                                                      "after this long")] = 300.0,
) -> None:
    """Produce utterance events to the `utterances` topic: a named scenario over time, or a JSONL file."""
    from datetime import UTC, datetime, timedelta

    from streams.replay import events_from_jsonl, format_timeline, save_truth, send_records
    from streams.scenarios import SCENARIOS, scenario_events, timeline_document

    settings = _settings(config)
    if outcomes and source is not None:
        raise _fail(ValueError("--outcomes needs a scenario (its truth says when the model was right), not --source"))
    if source is not None:
        if not source.is_file():
            raise _fail(FileNotFoundError(f"{source} does not exist"))
        outcome = send_records(settings, events_from_jsonl(source), rate=rate, progress=True)
        typer.echo(f"{outcome.summary()}: records from {source} to {settings.topics.utterances}")
        if not outcome.ok:
            raise _fail(RuntimeError(f"{outcome.failed} of {outcome.sent} records were not confirmed by the broker"))
        return
    if scenario not in SCENARIOS:
        raise _fail(ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}"))
    start = datetime.now(UTC) - timedelta(milliseconds=spacing_ms * count)
    timeline = timeline_document(scenario, count, seed, start, spacing_ms, shift_at)
    out = out or settings.services.run_dir / "replays" / f"{scenario}-{start:%Y%m%dT%H%M%S}"
    typer.echo(format_timeline(timeline))
    events = scenario_events(scenario, count, seed=seed, start=start, spacing_ms=spacing_ms, shift_at=shift_at,
                             malformed_share=malformed, cleared_share=cleared)
    offsets = _prediction_offsets(settings) if outcomes else None  # before sending: only this replay's predictions
    outcome = send_records(settings, save_truth(out, timeline, events), rate=rate, progress=True, total=count)
    typer.echo(f"{outcome.summary()}: events to {settings.topics.utterances}; timeline and truth saved in {out}")
    if not outcome.ok:
        raise _fail(RuntimeError(f"{outcome.failed} of {outcome.sent} events were not confirmed by the broker"))
    if outcomes:
        _simulate_outcomes(settings, out / "truth.jsonl", seed=seed, timeout_s=outcomes_timeout_s, idle_s=None,
                           start_offsets=offsets)


def _prediction_offsets(settings: Settings) -> dict[int, int]:
    from streams.outcome_sim import prediction_offsets

    try:
        return prediction_offsets(settings)
    except Exception as error:  # broker unreachable, topic missing
        raise _fail(error) from None


def _simulate_outcomes(settings: Settings, truth: Path, **options) -> None:
    """Run the outcome simulator, print its summary, exit 1 when an outcome was not confirmed or none was sent."""
    from streams.outcome_sim import simulate

    try:
        report = simulate(settings, truth, progress=True, **options)
    except Exception as error:  # an unreadable truth file, the broker unreachable
        raise _fail(error) from None
    typer.echo(f"outcomes to {settings.topics.outcomes}: {report.summary()}")
    if not report.ok or not report.matched:
        raise _fail(RuntimeError("outcomes incomplete: " + ("no prediction of the truth's utterances was read"
                                                            if not report.matched else report.sent.summary())))


@outcomes_app.command("simulate")
def outcomes_simulate_command(
    truth: Annotated[Path, typer.Option(help="a replay's truth.jsonl (`nlumon replay` saves it)", exists=True,
                                        dir_okay=False)],
    config: ConfigOption = None,
    verbose: VerboseOption = False,
    seed: Annotated[int, typer.Option(help="seed of the outcome draws (same seed, same outcomes)")] = 0,
    timeout_s: Annotated[float, typer.Option(min=1, help="stop after this long in all")] = 300.0,
    idle_s: Annotated[float, typer.Option(min=1, help="stop after this long without a prediction")] = 60.0,
    max_predictions: Annotated[int | None, typer.Option(min=1, help="stop after reading this many predictions")] = None,
    group_id: Annotated[str | None, typer.Option(help="consumer group on the predictions topic (default "
                                                      "<kafka.consumer_group>-outcome-sim); it resumes where the "
                                                      "last run of the same group stopped")] = None,
) -> None:
    """Play the assistant: read `predictions`, send what the user then did to `outcomes`.

    Each predicted utterance of the truth file gets an outcome (task_completed, rephrased, escalated, abandoned,
    and for some completed shopper purchases converted), likelier good when the model's intent was right; see
    docs/streams.md, "Outcome events". Stops when every utterance of the truth got its outcome, or on a limit."""
    settings = _settings(config, verbose)
    _simulate_outcomes(settings, truth, seed=seed, timeout_s=timeout_s, idle_s=idle_s,
                       max_predictions=max_predictions, group_id=group_id)


@outcomes_app.command("send")
def outcomes_send_command(
    source: Annotated[Path, typer.Argument(help="JSONL file: one outcome event per line (sent as is)", exists=True,
                                           dir_okay=False)],
    config: ConfigOption = None,
    rate: Annotated[float, typer.Option(min=0, help="events per second; 0 = as fast as possible")] = 0.0,
) -> None:
    """Send outcome events from a file to the `outcomes` topic (key = session_id), each confirmed by the broker.

    Lines are sent as they are: a worker stores the valid ones and dead-letters the others with their reason."""
    from streams.replay import events_from_jsonl, send_records

    settings = _settings(config)
    outcome = send_records(settings, events_from_jsonl(source), rate=rate, progress=True,
                           topic=settings.topics.outcomes)
    typer.echo(f"{outcome.summary()}: records from {source} to {settings.topics.outcomes}")
    if not outcome.ok:
        raise _fail(RuntimeError(f"{outcome.failed} of {outcome.sent} records were not confirmed by the broker"))


@app.command()
def retention(
    config: ConfigOption = None,
    days: Annotated[int | None, typer.Option(min=1, help="days to keep (default: stream.retention_days)")] = None,
    dry_run: Annotated[bool, typer.Option(help="only list what would be deleted")] = False,
) -> None:
    """Delete what is older than the retention period: ClickHouse rows, reports, alert-store entries.

    Day-partitioned tables lose whole days; the labeling queue and alert deliveries lose old rows; HTML reports
    under the run dir and the alert store's old events and finished deliveries go too. Kafka topics expire
    records themselves (topics.retention_ms, set by `services up` / `services init`). Run it daily (cron, a
    systemd timer, a Kubernetes CronJob); docs/security.md, Retention.
    """
    from streams.retention import apply_retention, plan_retention

    settings = _settings(config)
    keep = days or settings.stream.retention_days
    try:
        plan = plan_retention(settings, keep)
        for item in plan:
            typer.echo(f"{'would delete' if dry_run else 'delete'} {item.describe()}")
        if not plan:
            typer.echo(f"nothing older than {keep} days")
        elif not dry_run:
            done = apply_retention(settings, keep, plan)
            typer.echo("deleted: " + ", ".join(f"{count} {what}" for what, count in done.items()))
    except Exception as error:  # ClickHouse unreachable, a file that cannot be deleted, a slow mutation
        raise _fail(error) from None
    typer.echo(f"kafka: {settings.topics.utterances} and {settings.topics.dead_letter} keep records "
               f"{settings.topics.retention_ms / 3_600_000:g} h, the other topics "
               f"{settings.topics.other_retention_ms / 3_600_000:g} h (topics.retention_ms, topics.other_retention_ms)")


@app.command()
def demo(
    config: ConfigOption = None,
    count: Annotated[int, typer.Option(min=10, help="events to replay")] = 2000,
    keep_services: Annotated[bool, typer.Option(help="leave Kafka and ClickHouse running afterwards")] = True,
) -> None:
    """The whole flow on this machine: start services, run a worker, replay traffic, print what flowed where."""
    from streams.demo import run_demo

    settings = _settings(config)
    if "environment" not in settings.model_fields_set:  # generated traffic: the built-in text-hash key will do
        settings = settings.model_copy(update={"environment": "demo"})
    _require_secrets(settings, "the demo's worker")
    try:
        run_demo(settings, count=count, keep_services=keep_services, echo=typer.echo)
    except Exception as error:
        raise _fail(error) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
