"""The ``nlumon`` command line. Every command has ``--help``.

Heavy imports (faust, torch, onnxruntime, evidently) happen inside the commands, so ``--help``
stays fast and a command only loads what it uses.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

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


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="settings file (TOML or YAML); default: $NLUMON_CONFIG, then built-ins",
                 dir_okay=False),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def _settings(config: Path | None, verbose: bool = False) -> Settings:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "aiokafka", "clickhouse_driver"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        return load_settings(config)
    except ConfigFileError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


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
    from streams.worker import run_worker

    run_worker(_settings(config, verbose), worker_id=worker_id, loglevel="debug" if verbose else "info")


@app.command()
def replay(
    config: ConfigOption = None,
    source: Annotated[str, typer.Option(help="'sample' (built-in retail sample) or a JSONL file of events")] = "sample",
    count: Annotated[int, typer.Option(min=1, help="events to send (sample source)")] = 1000,
    rate: Annotated[float, typer.Option(min=0, help="events per second; 0 = as fast as possible")] = 0.0,
    malformed: Annotated[float, typer.Option(min=0, max=1, help="share of malformed records mixed in")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Produce utterance events to the `utterances` topic at a given rate."""
    from streams.replay import events_from_jsonl, produce, sample_events

    settings = _settings(config)
    if source == "sample":
        records = sample_events(count, seed=seed, malformed_share=malformed)
    else:
        path = Path(source)
        if not path.is_file():
            raise _fail(FileNotFoundError(f"{path} does not exist (use --source sample or a JSONL file)"))
        records = events_from_jsonl(path)
    sent = produce(settings, records, rate=rate, progress=True)
    typer.echo(f"sent {sent} records to {settings.topics.utterances} at {settings.kafka.bootstrap_servers}")


@app.command()
def demo(
    config: ConfigOption = None,
    count: Annotated[int, typer.Option(min=10, help="events to replay")] = 2000,
    keep_services: Annotated[bool, typer.Option(help="leave Kafka and ClickHouse running afterwards")] = True,
) -> None:
    """The whole flow on this machine: start services, run a worker, replay traffic, print what flowed where."""
    from streams.demo import run_demo

    settings = _settings(config)
    try:
        run_demo(settings, count=count, keep_services=keep_services, echo=typer.echo)
    except Exception as error:
        raise _fail(error) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
