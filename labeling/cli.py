"""``nlumon labeling ...``: queued items to Label Studio, annotations back as training examples.

``push``/``pull`` talk to a running Label Studio (``labeling.label_studio_client``; URL and token from
``NLUMON_LABEL_STUDIO_URL``/``NLUMON_LABEL_STUDIO_TOKEN`` or the ``label_studio`` settings); ``export``/``import``
do the same through files, for a server nlumon cannot reach. Items come from a local JSONL of
:class:`labeling.items.LabelingItem` dicts, or (``--from-clickhouse``) the ``labeling_queue`` table the monitor
fills. An example line is ``{"tokens": [...], "tags": [...], "intent": ..., "assistant": ..., "heads": {}}``, plus
``"source": "human:label-studio:<project id>"`` from ``pull``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labeling.items import LabelingItem
from labeling.label_studio import LabelStudioFormatError, example_record, export_label_studio, import_label_studio
from labeling.names_cli import names_app

if TYPE_CHECKING:
    from labeling.label_studio_client import LabelStudioClient
    from nlumon.settings import Settings

labeling_app = typer.Typer(help="Labeling queue: Label Studio push/pull (or export/import files), name dictionary.",
                           no_args_is_help=True)
labeling_app.add_typer(names_app, name="names")

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Settings file (TOML or YAML); default $NLUMON_CONFIG.")]
UrlOption = Annotated[str | None, typer.Option(
    "--url", help="Label Studio base URL; default label_studio.url ($NLUMON_LABEL_STUDIO_URL).")]
ProjectOption = Annotated[str | None, typer.Option(
    "--project", help="Project title; default label_studio.project ('nlumon').")]


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
    source: Annotated[str, typer.Option(
        "--source", help="The examples' source, as `nlumon model train --extra` records it.")
    ] = "human:label-studio-export",
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
    _write_examples(out, examples, source)
    typer.echo(f"{len(examples)} example(s) from {len(tasks)} task(s) written to {out}")


@labeling_app.command("push")
def push_command(
    input_path: Annotated[Path | None, typer.Option("--input", help="JSONL file of labeling items.")] = None,
    from_clickhouse: Annotated[bool, typer.Option(
        "--from-clickhouse", help="Read the items from the ClickHouse labeling_queue instead of --input.")] = False,
    since: Annotated[str, typer.Option(
        "--since", help="With --from-clickhouse: items flagged within this long, e.g. 1d, 12h, 30m.")] = "1d",
    project: ProjectOption = None,
    url: UrlOption = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model package whose intents and slot types the project offers annotators; default "
        "model.package_path when it exists, else only those the items use.")] = None,
    config: ConfigOption = None,
) -> None:
    """Send queued items to Label Studio as pre-annotated tasks (the model's answer, then every labeling function's
    votes); items already in the project are not sent twice. Creates the project when it does not exist."""
    from labeling.label_studio_client import LabelStudioError, push_items

    if from_clickhouse == (input_path is not None):
        _fail("give exactly one of --input FILE or --from-clickhouse")
    settings = _settings(config)
    items = _items_from_clickhouse(config, since) if from_clickhouse else _items_from_file(input_path)
    intents, slot_types = _model_labels(model, settings.model.package_path)
    title = project or settings.label_studio.project
    try:
        result = push_items(_client(settings, url), items, title, intents=intents, slot_types=slot_types)
    except (LabelStudioError, LabelStudioFormatError) as error:
        _fail(str(error))
    typer.echo(f"project {title!r} (id {result.project.id}, {result.project_action}): {result.pushed} task(s) "
               f"pushed, {result.already_pushed} already there, {result.repeated} repeated in the input")


@labeling_app.command("pull")
def pull_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the training examples (JSONL, with source).")],
    project: ProjectOption = None,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the project's annotated tasks as training examples for `nlumon model train --extra` (the latest
    submitted annotation of each task; tasks without one, or only skipped, are left out), each with its source:
    human:label-studio:PROJECT_ID. An annotation the trainer would refuse (no intent, an unknown label) is reported and
    left out."""
    from labeling.label_studio_client import LabelStudioError, pull_examples
    from model_runtime.data.extra import ExtraExamplesError, Vocabulary, parse_row, write_extra

    settings = _settings(config)
    title = project or settings.label_studio.project
    try:
        result = pull_examples(_client(settings, url), title)
    except LabelStudioError as error:
        _fail(str(error))
    vocabulary, rows, refused = Vocabulary.retail(), [], list(result.invalid)
    for example in result.examples:  # checked as the trainer will read them: one bad row would refuse the file
        try:
            rows.append(parse_row(example_record(example, result.source), vocabulary))
        except ExtraExamplesError as error:
            refused.append(f"{example.text!r}: {error}")
    write_extra(out, rows, vocabulary)
    typer.echo(f"project {title!r} (id {result.project.id}): {len(rows)} example(s) from {result.tasks} task(s) "
               f"written to {out}; {result.unannotated} without annotation, {result.cancelled} only skipped, "
               f"{len(refused)} unusable")
    for message in refused[:20]:
        typer.echo(f"  left out: {message}", err=True)


def _settings(config: Path | None) -> Settings:
    from nlumon.settings import ConfigFileError, load_settings

    try:
        return load_settings(config)
    except (ValueError, ConfigFileError) as error:
        _fail(str(error))


def _client(settings: Settings, url: str | None) -> LabelStudioClient:
    from labeling.label_studio_client import LabelStudioClient, LabelStudioError

    try:
        return LabelStudioClient(url or settings.label_studio.url, settings.label_studio.token,
                                 timeout_s=settings.label_studio.timeout_s)
    except LabelStudioError as error:
        _fail(str(error))


def _model_labels(model: Path | None, default_package: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Intents and slot types of a model package's config.json (none without a package)."""
    from model_runtime.config import ConfigError, ModelConfig
    from model_runtime.package import CONFIG

    path = (model if model is not None else default_package) / CONFIG
    if model is None and not path.is_file():
        return (), ()
    try:
        model_config = ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ConfigError, TypeError) as error:
        _fail(f"cannot read the model labels from {path}: {error}")
    slot_types = tuple(sorted({tag[2:] for tag in model_config.slot_tags if tag != "O"}))
    return model_config.intents, slot_types


def _write_examples(out: Path, examples: list, source: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example_record(example, source), ensure_ascii=False) + "\n")


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
