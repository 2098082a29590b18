"""``nlumon labeling ...``: export queued items to Label Studio, import annotations as training examples.

Export reads a local JSONL of :class:`labeling.items.LabelingItem` dicts, or (``--from-clickhouse``) the
``labeling_queue`` table the monitor fills; import reads Label Studio's JSON export and writes JSONL examples.
An example line is ``{"tokens": [...], "tags": [...], "intent": ..., "assistant": ..., "heads": {}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labeling.items import LabelingItem
from labeling.label_studio import LabelStudioFormatError, export_label_studio, import_label_studio

labeling_app = typer.Typer(help="Labeling queue: Label Studio export and import.", no_args_is_help=True)


@labeling_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the Label Studio tasks (JSON list).")],
    input_path: Annotated[Path | None, typer.Option("--input", help="JSONL file of labeling items.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format; only label-studio for now.")] = "label-studio",
    from_clickhouse: Annotated[bool, typer.Option(
        "--from-clickhouse", help="Read the items from the ClickHouse labeling_queue instead of --input.")] = False,
    since: Annotated[str, typer.Option(
        "--since", help="With --from-clickhouse: items flagged within this long, e.g. 1d, 12h, 30m.")] = "1d",
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="With --from-clickhouse: settings file (TOML or YAML); default $NLUMON_CONFIG.")] = None,
) -> None:
    """Write pre-annotated Label Studio tasks for the items in --input or in the ClickHouse queue."""
    if fmt != "label-studio":
        _fail(f"unknown format {fmt!r}; supported: label-studio")
    if from_clickhouse == (input_path is not None):
        _fail("give exactly one of --input FILE or --from-clickhouse")
    items = _items_from_clickhouse(config, since) if from_clickhouse else _items_from_file(input_path)
    try:
        tasks = export_label_studio(items)
    except LabelStudioFormatError as error:
        _fail(str(error))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1))
    typer.echo(f"{len(tasks)} task(s) written to {out}")


@labeling_app.command("import")
def import_command(
    input_path: Annotated[Path, typer.Option("--input", help="Label Studio JSON export with annotations.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the training examples (JSONL).")],
) -> None:
    """Turn annotated Label Studio tasks into training examples (whitespace tokens, BIO tags)."""
    try:
        tasks = json.loads(input_path.read_text())
    except (OSError, ValueError) as error:
        _fail(f"cannot read {input_path}: {error}")
    if not isinstance(tasks, list):
        _fail(f"{input_path}: expected a JSON list of tasks")
    try:
        examples = import_label_studio(tasks)
    except LabelStudioFormatError as error:
        _fail(f"{input_path}: {error}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for ex in examples:
            record = {"tokens": list(ex.tokens), "tags": list(ex.tags), "intent": ex.intent,
                      "assistant": ex.assistant, "heads": dict(ex.heads)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    typer.echo(f"{len(examples)} example(s) from {len(tasks)} task(s) written to {out}")


def _items_from_file(input_path: Path) -> list[LabelingItem]:
    items = []
    for number, record in _read_jsonl(input_path):
        try:
            items.append(LabelingItem.from_dict(record))
        except (KeyError, TypeError, ValueError) as error:
            _fail(f"{input_path}:{number}: not a labeling item: {error!r}")
    return items


def _items_from_clickhouse(config: Path | None, since: str) -> list[LabelingItem]:
    """Queued items flagged within ``since`` (the monitor writes them; see monitor.labeling_sink)."""
    from datetime import UTC, datetime, timedelta

    from alerts.rules import parse_duration
    from monitor.labeling_sink import queued_items
    from nlumon.schema import connect
    from nlumon.settings import ConfigFileError, load_settings

    try:
        window = timedelta(seconds=parse_duration(since))
        settings = load_settings(config)
    except (ValueError, ConfigFileError) as error:
        _fail(str(error))
    client = connect(settings.clickhouse)
    try:
        return queued_items(client, datetime.now(UTC) - window, settings.monitor.window_s)
    finally:
        client.disconnect()


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        _fail(f"cannot read {path}: {error.strerror or error}")
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except ValueError as error:
                _fail(f"{path}:{number}: not JSON: {error}")
    return records


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(1)
