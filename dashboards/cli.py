"""``nlumon dashboards generate|push`` and ``nlumon report``.

The lead mounts :data:`app` as ``nlumon dashboards`` and :func:`report_command` as ``nlumon report``.
Heavy imports (clickhouse_driver, grafana_api) happen inside the commands.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Grafana dashboards as code: write the provisioning files, push to a Grafana.",
                  no_args_is_help=True)

DEFAULT_JSON_DIR = Path("deploy/grafana/provisioning/dashboards/json")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` as a timedelta.

    >>> parse_duration("1h"), parse_duration("90s")
    (datetime.timedelta(seconds=3600), datetime.timedelta(seconds=90))
    """
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 15m, 1h, 2d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the dashboard JSON files (Grafana's provider path).",
                                      file_okay=False)] = DEFAULT_JSON_DIR,
    datasource_uid: Annotated[str, typer.Option("--datasource-uid", help="uid of the ClickHouse datasource.")]
    = "nlumon-clickhouse",
) -> None:
    """Write every dashboard as <uid>.json (validated first); safe to run again."""
    from dashboards.provisioning import write_dashboards
    from dashboards.validate import InvalidDashboardError

    try:
        paths = write_dashboards(out, datasource_uid)
    except InvalidDashboardError as error:
        raise _fail(str(error)) from None
    for path in paths:
        typer.echo(f"wrote {path}")


@app.command("push")
def push_command(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://localhost:3000.")],
    token: Annotated[str, typer.Option("--token", envvar="GRAFANA_TOKEN",
                                       help="Service-account token, or user:password for basic auth "
                                            "(env GRAFANA_TOKEN).")],
    datasource_url: Annotated[str | None, typer.Option(
        "--datasource-url", help="ClickHouse as Grafana reaches it: host:port (native) or http://host:8123. "
                                 "Leave out to keep the datasource as it is.")] = None,
    database: Annotated[str, typer.Option("--database", help="ClickHouse database of the datasource.")] = "nlumon",
    ch_user: Annotated[str, typer.Option("--clickhouse-user", help="ClickHouse user of the datasource.")] = "default",
    ch_password: Annotated[str, typer.Option("--clickhouse-password", envvar="NLUMON_GRAFANA_CH_PASSWORD",
                                             help="ClickHouse password (env NLUMON_GRAFANA_CH_PASSWORD).")] = "",
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="HTTP timeout per request, seconds.")] = 10.0,
) -> None:
    """Create or update the datasource, the 'nlumon' folder and every dashboard (same uid: a new version)."""
    from dashboards.provisioning import datasource_config
    from dashboards.push import PushError, grafana_client, parse_datasource_url, push

    try:
        datasource = None
        if datasource_url is not None:
            protocol, host, port = parse_datasource_url(datasource_url)
            datasource = datasource_config(host, port, protocol=protocol, database=database, user=ch_user,
                                           password=ch_password)
        client = grafana_client(url, token, timeout_s)
        result = push(client, datasource, on_dashboard=lambda uid, v: typer.echo(f"dashboard {uid}: version {v}"))
    except PushError as error:
        raise _fail(str(error)) from None
    typer.echo(f"datasource {result.datasource}, folder {result.folder}, {len(result.dashboards)} dashboards pushed")


def report_command(
    since: Annotated[str, typer.Option("--since", help="How far back from now: 15m, 1h, 6h, 2d.")] = "1h",
    out: Annotated[Path, typer.Option("-o", "--out", help="HTML file to write.", dir_okay=False)] = Path("report.html"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="settings file (TOML or YAML); default: "
                                                "$NLUMON_CONFIG, then built-ins", dir_okay=False)] = None,
    database: Annotated[str | None, typer.Option("--database", help="ClickHouse database (default: settings).")]
    = None,
) -> None:
    """Write one self-contained HTML page with the dashboards' views of the last --since (open it in a browser)."""
    from dashboards.report import build_report
    from dashboards.report.data import clickhouse_executor
    from nlumon.schema import connect
    from nlumon.settings import ConfigFileError, load_settings

    window = parse_duration(since)
    try:
        settings = load_settings(config)
    except ConfigFileError as error:
        raise _fail(str(error), 2) from None
    client = connect(settings.clickhouse, database=database)
    counter = {"n": 0}

    def progress(board, panel, data) -> None:
        counter["n"] += 1
        state = f"error: {data.error}" if data.error else f"{len(data.rows)} rows"
        typer.echo(f"[{counter['n']:2}] {board.title} · {panel.title}: {state}", err=True)

    typer.echo(f"querying ClickHouse {settings.clickhouse.host}:{settings.clickhouse.port}/"
               f"{database or settings.clickhouse.database} for the last {since}", err=True)
    try:
        summary = build_report(clickhouse_executor(client), out, since=window, environment=settings.environment,
                               on_panel=progress)
    except OSError as error:
        raise _fail(f"cannot reach ClickHouse or write {out}: {error}") from None
    finally:
        client.disconnect()
    typer.echo(f"wrote {summary.path}: {summary.with_data}/{summary.panels} panels with data, "
               f"{len(summary.failed)} failed, buckets of {summary.interval_s} s")
    if summary.failed and summary.with_data == 0:
        sys.exit(1)

