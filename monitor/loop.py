"""``nlumon loop ...``: from live store logs and human labels to a promoted model.

``nlumon loop annotate`` runs the annotator over the ``utterances`` topic (:mod:`monitor.annotate`) and proposes
the person names it auto-labelled in at least ``--min-sessions`` sessions to the name dictionary
(``labeling.names``; a human accepts them with ``nlumon labeling names accept``, and accepted names feed the
gazetteer labeling function from the next run on).

``nlumon loop run`` is the whole loop in one command, each step printed as it starts:

1. annotate (as above), unless ``--skip-annotate``;
2. gather the examples: the annotator's files of this run plus ``--human`` files (``nlumon labeling pull`` writes
   them from Label Studio);
3. train a challenger with them (``nlumon model train --extra``, domain balance on);
4. gate it against the registry's current package on the fixed production holdout;
5. promote it when the gate passed (workers hot-reload ``current``); otherwise exit 1 and keep the champion.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)

loop_app = typer.Typer(help="Close the loop: annotate store logs, retrain, gate and promote.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Settings file (TOML or YAML); default $NLUMON_CONFIG.")]
PackageOption = Annotated[Path | None, typer.Option(
    help="The champion package the annotator runs (default: model.package_path).")]
OutOption = Annotated[Path | None, typer.Option(
    help="Folder for the auto-labelled examples (default: <state dir>/annotation).")]
AssistantsOption = Annotated[str, typer.Option(help="Comma-separated assistants whose cleared events are annotated.")]
AggregatorOption = Annotated[str, typer.Option(help="weighted (default) | label-model | majority")]
MaxEventsOption = Annotated[int | None, typer.Option(min=1, help="Stop after this many records (default: all).")]
IdleOption = Annotated[float, typer.Option(min=0.5, help="Stop after this many seconds without a new record.")]
MinSessionsOption = Annotated[int, typer.Option(
    min=1, help="Propose a person name seen in at least this many sessions to the name dictionary.")]
NamesOption = Annotated[Path | None, typer.Option(
    "--names", help="Name dictionary (default: labeling.names_path, else <state dir>/names.json).")]


def _settings(config: Path | None) -> Any:
    from nlumon.settings import load_settings

    return load_settings(config)


def annotate_step(
    settings: Any, *, package: Path | None, out: Path | None, assistants: str, aggregator: str,
    max_events: int | None, idle_timeout_s: float, names_path: Path | None, min_sessions: int,
    seed: int | None = None,
) -> Any:
    """Run the annotator over the topic and propose frequent person names; returns its report."""
    from labeling.annotation.build import build_annotator
    from labeling.names import NameDictionary, default_names_path
    from monitor.annotate import annotate_topic

    names = NameDictionary.load(names_path or default_names_path(settings))
    roster = names.accepted("person")
    package = package or settings.model.package_path
    out = out or settings.services.run_dir / "annotation"
    typer.echo(f"  champion {package}; {len(roster)} accepted roster name(s); aggregator {aggregator}")
    annotator = build_annotator(package, roster=roster, aggregator=aggregator, seed=seed)
    report = annotate_topic(settings, annotator, out, assistants=tuple(a.strip() for a in assistants.split(",")),
                            max_events=max_events, idle_timeout_s=idle_timeout_s)
    frequent = {name: len(s) for name, s in report.person_sessions.items() if len(s) >= min_sessions}
    added = 0
    if frequent:
        result = names.propose(list(frequent), "person", frequent, proposed_by="annotator",
                               note=f"auto-labelled person in >= {min_sessions} sessions")
        added = len(result.added)
    report.person_sessions.clear()  # raw names: not kept past the proposal
    typer.echo(f"  {report.summary()}")
    typer.echo(f"  examples: {', '.join(str(p) for p in report.files) or 'none'}; {len(frequent)} name(s) seen in "
               f">= {min_sessions} sessions, {added} newly proposed in {names.path}")
    return report


@loop_app.command("annotate")
def annotate_command(
    config: ConfigOption = None,
    package: PackageOption = None,
    out: OutOption = None,
    assistants: AssistantsOption = "associate",
    aggregator: AggregatorOption = "weighted",
    max_events: MaxEventsOption = None,
    idle_timeout_s: IdleOption = 10.0,
    names_path: NamesOption = None,
    min_sessions: MinSessionsOption = 3,
) -> None:
    """Annotate the cleared events of the `utterances` topic: auto-labelled examples (surrogate names) to
    <out>/auto-YYYYMMDD.jsonl, ambiguous and audit items to the labeling queue, frequent names proposed."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    annotate_step(_settings(config), package=package, out=out, assistants=assistants, aggregator=aggregator,
                  max_events=max_events, idle_timeout_s=idle_timeout_s, names_path=names_path,
                  min_sessions=min_sessions)


@loop_app.command("run")
def run_command(
    registry: Annotated[Path, typer.Option(help="Model registry; its `current` is the champion and is replaced "
                                                "by the challenger when the gate passes.")],
    config: ConfigOption = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder of the challenger package (default: <registry>/candidates/<time>).")] = None,
    human: Annotated[list[Path] | None, typer.Option(
        "--human", help="Human-labelled examples (JSONL from `nlumon labeling pull`); repeatable.")] = None,
    skip_annotate: Annotated[bool, typer.Option(help="Do not read the topic; train on --human/--extra only.")] = False,
    extra: Annotated[list[Path] | None, typer.Option(
        "--extra", help="More example files to train on (e.g. earlier annotation runs); repeatable.")] = None,
    assistants: AssistantsOption = "associate",
    aggregator: AggregatorOption = "weighted",
    max_events: MaxEventsOption = None,
    idle_timeout_s: IdleOption = 10.0,
    names_path: NamesOption = None,
    min_sessions: MinSessionsOption = 3,
    quick: Annotated[bool, typer.Option(help="Train with the quick profile (demo and tests).")] = False,
    size: Annotated[int, typer.Option(help="Retail examples generated as the base corpus.")] = 20000,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of data, training and annotation draws.")] = 13,
    latency_budget_ms: Annotated[float, typer.Option(
        help="The gate's p95 latency budget at the serving batch (set it for the machine that serves).")] = 250.0,
) -> None:
    """Annotate, train a challenger on the new examples, gate it against the champion, promote it if it passed."""
    from model_runtime.cli import run_gate
    from model_runtime.pipeline import TrainRequest, train_to_package
    from model_runtime.registry import PromotionRefusedError, promote_gated

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("model_runtime").setLevel(logging.INFO)
    settings = _settings(config)
    champion = registry / "current"
    if not champion.exists():
        _fail(f"{champion} does not exist: promote a first model into {registry} (nlumon model promote)")
    files: list[Path] = []
    typer.echo("[1/5] annotate: cleared events of the utterances topic")
    if skip_annotate:
        typer.echo("  skipped (--skip-annotate)")
    else:
        report = annotate_step(settings, package=champion, out=None, assistants=assistants, aggregator=aggregator,
                                  max_events=max_events, idle_timeout_s=idle_timeout_s, names_path=names_path,
                                  min_sessions=min_sessions, seed=seed)
        files += report.files
    typer.echo("[2/5] examples")
    files += list(human or []) + list(extra or [])
    for path in files:
        if not Path(path).is_file():
            _fail(f"{path} does not exist")
        typer.echo(f"  {path}: {sum(1 for line in Path(path).open(encoding='utf-8') if line.strip())} example(s)")
    if not files:
        _fail("no examples to train on: nothing was annotated and no --human/--extra file was given")
    out = out or registry / "candidates" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    typer.echo(f"[3/5] train the challenger into {out}")
    request = TrainRequest(corpus="retail", size=size, epochs=epochs, quick=quick, seed=seed, device="auto",
                           extra=tuple(str(p) for p in files))
    package = train_to_package(request, out)
    typer.echo(f"  package {package.version}")
    typer.echo(f"[4/5] gate {package.version} against {champion.resolve().name} on the production holdout")
    decision = run_gate(package.path, champion, latency_budget_ms=latency_budget_ms, echo=typer.echo)
    if not decision.promote:
        typer.echo("[5/5] not promoted: the gate refused the challenger (the champion stays in service)")
        raise typer.Exit(1)
    typer.echo("[5/5] promote")
    try:
        promoted = promote_gated(package.path, registry)
    except PromotionRefusedError as error:
        _fail(str(error))
    typer.echo(f"  {registry / 'current'} -> {promoted.version}; workers hot-reload it")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(loop_app())
