"""``nlumon experiment ...``: start, watch, stop and conclude a session A/B experiment.

    nlumon experiment start checkout-v2 --challenger models/retail-v2 --share 0.5 --max-days 14
    nlumon experiment status                 # any time, as often as you like: the test stays valid
    nlumon experiment stop --reason "..."    # workers fall back to the champion within experiments.poll_s
    nlumon experiment conclude --promote     # final report; promote the challenger if it won and its gate passed

The running experiment is the file ``experiments.path`` (default: ``experiment.json`` beside
``model.package_path``, i.e. in the registry folder); every worker polls it and serves each session with its
arm's package. Each command also writes the experiment's row to ClickHouse (``experiments``) and ``status`` /
``conclude`` store the look (``experiment_results``). docs/experiments.md explains the test and the report.

Exit codes: 0 done; 1 refused or failed (an experiment is already running, none to stop, a package does not
load, ClickHouse cannot be reached, the promotion is refused); 2 invalid settings or arguments.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from experiments.definition import Experiment
    from experiments.report import ExperimentReport
    from nlumon.settings import Settings

log = logging.getLogger(__name__)

experiment_app = typer.Typer(
    help="Session A/B experiments: sticky split of sessions between the champion and a challenger, per-arm outcome "
    "rates, an always-valid sequential test (mSPRT), sample-ratio and guardrail checks, promotion of a winner.",
    epilog="Exit codes: 0 done; 1 refused or failed (see the message); 2 invalid settings or arguments. "
    "docs/experiments.md walks through an experiment.",
    no_args_is_help=True,
)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Settings file (TOML or YAML); default $NLUMON_CONFIG, then built-ins.", dir_okay=False)]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
NameArgument = Annotated[str | None, typer.Argument(
    help="Experiment name; default: the one in the experiment file (experiments.path).", show_default=False)]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings(config: Path | None, verbose: bool) -> Settings:
    from nlumon.logs import setup_logging
    from nlumon.settings import ConfigFileError, load_settings

    try:
        settings = load_settings(config)
    except (ConfigFileError, ValueError) as error:
        _fail(str(error), 2)
    setup_logging(settings.log_format, verbose=verbose)
    return settings


def _file(settings: Settings) -> Path:
    return settings.experiments.resolved_path(settings.model.package_path)


def _current(settings: Settings) -> Experiment | None:
    from experiments.definition import ExperimentFileError, load_experiment

    try:
        return load_experiment(_file(settings))
    except ExperimentFileError as error:
        _fail(f"{error}; move the file away or fix it")


def _client(settings: Settings) -> Any:
    """A ClickHouse client that has answered once (a clear error now, not a traceback later)."""
    from nlumon.schema import connect

    client = connect(settings.clickhouse)
    try:
        client.execute("SELECT 1")
    except Exception as error:
        _fail(f"ClickHouse at {settings.clickhouse.host}:{settings.clickhouse.port} does not answer: {error}")
    return client


def _package_version(path: Path) -> str:
    from model_runtime.package import load_package

    try:
        return load_package(path).version
    except Exception as error:  # missing, incomplete, changed file, bad version
        _fail(f"package {path} does not load: {error}")


def _experiment_and_versions(settings: Settings, client: Any, name: str | None) -> tuple[Experiment, list[str]]:
    """The named experiment (default: the file's) and its arms' model versions as stored at the start."""
    from experiments.report import stored_experiment

    current = _current(settings)
    if name is None and current is None:
        _fail(f"no experiment in {_file(settings)}; name one, or start one with `nlumon experiment start`")
    stored = stored_experiment(client, name or current.name)  # type: ignore[union-attr]
    if current is not None and name in (None, current.name):
        return current, stored[1] if stored else []
    if stored is None:
        _fail(f"no experiment named {name!r} in {settings.clickhouse.database}.experiments")
    return stored


@experiment_app.command("start")
def start_command(
    name: Annotated[str, typer.Argument(help="Experiment name: 1-64 letters, digits, '_', '.', '-'; never reused.")],
    challenger: Annotated[Path, typer.Option(help="The challenger's model package folder.")],
    control: Annotated[Path | None, typer.Option(
        help="The control's package; default model.package_path (the registry's `current`).")] = None,
    share: Annotated[float, typer.Option(min=0.01, max=0.99, help="Share of sessions the challenger serves.")] = 0.5,
    metric: Annotated[str, typer.Option(
        help="Primary metric the test decides on: task_completed, converted, escalated, abandoned, rephrased or "
        "satisfaction (for escalated, abandoned and rephrased lower is better).")] = "task_completed",
    alpha: Annotated[float, typer.Option(min=0.001, max=0.3, help="Error rate of the sequential test.")] = 0.05,
    max_sessions: Annotated[int | None, typer.Option(min=1, help="Stop without a difference after this many "
                                                     "sessions over all arms (default: no limit).")] = None,
    max_days: Annotated[float | None, typer.Option(min=0.001, help="Stop without a difference after this many "
                                                   "days (default: no limit).")] = None,
    min_sessions: Annotated[int, typer.Option(min=1, help="Sessions per arm before the test may decide.")] = 200,
    effect: Annotated[float | None, typer.Option(min=1e-6, help="Difference of the primary metric the test is tuned "
                                                 "for (mSPRT tau); default 0.03 for a rate, 0.15 for satisfaction.")
                      ] = None,
    salt: Annotated[str, typer.Option(help="Assignment hash salt; default the experiment name.")] = "",
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Start an experiment: check both packages load, write the experiment file the workers poll, record it.

    Refuses while another experiment is running and when the name was used before (its looks would mix).
    """
    from pydantic import ValidationError

    from experiments.definition import Arm, Experiment, StopRule, save_experiment
    from experiments.report import store_experiment, stored_experiment

    settings = _settings(config, verbose)
    path = _file(settings)
    running = _current(settings)
    if running is not None and running.running:
        _fail(f"experiment {running.name!r} is running since {running.started_at:%Y-%m-%d %H:%M} UTC ({path}); "
              "stop or conclude it first")
    control = control or settings.model.package_path
    versions = [_package_version(control), _package_version(challenger)]
    typer.echo(f"control     {versions[0]:<40} {control}")
    typer.echo(f"challenger  {versions[1]:<40} {challenger}")
    try:
        experiment = Experiment(
            name=name, salt=salt, primary_metric=metric,
            arms=[Arm(name="control", package_path=control.absolute(), share=round(1 - share, 6)),
                  Arm(name="challenger", package_path=challenger.absolute(), share=share)],
            stop=StopRule(alpha=alpha, max_sessions=max_sessions, max_days=max_days, min_sessions=min_sessions,
                          effect=effect))
    except ValidationError as error:
        _fail(f"invalid experiment: {error}", 2)
    client = _client(settings)
    try:
        earlier = stored_experiment(client, name)
        if earlier is not None:
            _fail(f"an experiment named {name!r} exists already (status {earlier[0].status}); choose another name")
        previous_text = path.read_text(encoding="utf-8") if path.is_file() else None
        save_experiment(path, experiment)
        try:
            store_experiment(client, experiment, versions)
        except Exception as error:
            _restore(path, previous_text)
            _fail(f"cannot record the experiment in ClickHouse ({error}); the experiment file was restored")
    finally:
        client.disconnect()
    log.info("started experiment %s (%s vs %s) in %s", name, versions[0], versions[1], path)
    typer.echo(f"started {name}: {share:.0%} of sessions to the challenger, primary metric {metric}; workers pick "
               f"it up within {settings.experiments.poll_s:g} s ({path})")


def _restore(path: Path, text: str | None) -> None:
    """Put back the experiment file as it was before a failed start."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text, encoding="utf-8")


@experiment_app.command("status")
def status_command(
    name: NameArgument = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    include_all: Annotated[bool, typer.Option(
        "--all", help="Also count sessions active within monitor.outcome_delay_s (outcomes may not have arrived); "
        "a preview: such a look is not stored.")] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show the experiment now: per-arm rates with intervals, always-valid p-values, SRM, guardrails, decision.

    Look as often as you like: the p-values and confidence sequences stay valid under continuous monitoring.
    Each look (without --all) is stored in experiment_results.
    """
    from experiments.report import build_report, format_table, store_look

    settings = _settings(config, verbose)
    client = _client(settings)
    try:
        experiment, _versions = _experiment_and_versions(settings, client, name)
        report = build_report(client, experiment, outcome_delay_s=settings.monitor.outcome_delay_s,
                              include_all=include_all)
        if not include_all:
            store_look(client, report)
    finally:
        client.disconnect()
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_table(report))


@experiment_app.command("stop")
def stop_command(
    reason: Annotated[str, typer.Option(help="Why it stops (kept in the experiment file and row).")
                      ] = "stopped by hand",
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Stop the running experiment: workers serve every session with the champion again (within poll_s).

    The data stay; `status` and `conclude` still report on it.
    """
    from experiments.report import store_experiment

    settings = _settings(config, verbose)
    current = _current(settings)
    if current is None or not current.running:
        _fail(f"no running experiment in {_file(settings)}")
    client = _client(settings)
    try:
        _experiment, versions = _experiment_and_versions(settings, client, None)
        stopped = _mark(settings, current, "stopped", reason)
        store_experiment(client, stopped, versions)
    finally:
        client.disconnect()
    typer.echo(f"stopped {stopped.name}: {reason}")


def _mark(settings: Settings, experiment: Experiment, status: str, reason: str) -> Experiment:
    """``experiment`` with a new status; saved to the experiment file when it is the file's experiment."""
    from experiments.definition import save_experiment

    now = datetime.now(UTC).replace(microsecond=0)
    update: dict[str, Any] = {"status": status}
    if experiment.stopped_at is None:
        update.update(stopped_at=now, stop_reason=reason)
    changed = experiment.model_copy(update=update)
    current = _current(settings)
    if current is not None and current.name == experiment.name:
        save_experiment(_file(settings), changed)
    return changed


@experiment_app.command("conclude")
def conclude_command(
    name: NameArgument = None,
    promote: Annotated[bool, typer.Option(
        "--promote", help="Promote the winning challenger (decision challenger_wins, no failed guardrail) through "
        "the gate: it needs a passed gate report against the registry's current package.")] = False,
    force_reason: Annotated[str | None, typer.Option(
        "--force-reason", help="With --promote: promote even without a passed gate report; the reason is recorded "
        "in promotions.jsonl. Does not override the experiment's decision or its guardrails.")] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """End the experiment, write its final report, and with --promote promote a winning challenger.

    Stops the experiment if it still runs, takes a last look (without a decision of the test the outcome is
    stopped_no_difference) and writes it as report.json and report.md to <run_dir>/experiments/<name>/. Run it
    at least monitor.outcome_delay_s after the last sessions, so their outcomes count. Exit 1 when --promote is
    refused (the report is written all the same).
    """
    from experiments.report import build_report, format_table, markdown, store_experiment, store_look

    settings = _settings(config, verbose)
    client = _client(settings)
    try:
        experiment, versions = _experiment_and_versions(settings, client, name)
        experiment = _mark(settings, experiment, "concluded", "concluded")
        store_experiment(client, experiment, versions)
        report = build_report(client, experiment, outcome_delay_s=settings.monitor.outcome_delay_s, final=True)
        store_look(client, report)
    finally:
        client.disconnect()
    typer.echo(format_table(report))
    result = report.to_dict()
    refusal = None
    if promote:
        result["promotion"], refusal = _promote(settings, report, force_reason)
    folder = settings.services.run_dir / "experiments" / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(markdown(report) + _promotion_markdown(result.get("promotion")),
                                      encoding="utf-8")
    typer.echo(f"concluded {experiment.name}: {report.decision.outcome}; report in {folder}")
    if refusal:
        _fail(refusal)


def _promote(settings: Settings, report: ExperimentReport, force_reason: str | None) -> tuple[dict, str | None]:
    """Promote the winning challenger behind the gate; ``(what happened, refusal message or None)``."""
    from model_runtime.registry import PromotionRefusedError, RegistryError, promote_gated

    decision = report.decision
    if decision.outcome != "challenger_wins":
        return ({"promoted": False, "reason": f"decision is {decision.outcome}"},
                f"not promoting: the decision is {decision.outcome}, not challenger_wins ({decision.reason})")
    failed = [f"{check.arm} {check.name} {check.value:.4g} > {check.limit:.4g}"
              for check in report.guardrails_failed if check.arm == decision.arm]
    if failed:
        return ({"promoted": False, "reason": "guardrails failed: " + "; ".join(failed)},
                "not promoting: guardrails failed: " + "; ".join(failed))
    package = report.experiment.arm(decision.arm).package_path
    registry = settings.model.package_path.parent
    try:
        promoted = promote_gated(package, registry, force_reason=force_reason)
    except (PromotionRefusedError, RegistryError) as error:
        return {"promoted": False, "reason": str(error)}, f"not promoting: {error}"
    typer.echo(f"promoted {promoted.version} to {registry / 'current'}")
    return {"promoted": True, "version": promoted.version, "registry": str(registry),
            "forced": force_reason is not None}, None


def _promotion_markdown(promotion: dict | None) -> str:
    if promotion is None:
        return ""
    if promotion["promoted"]:
        return f"\nPromoted **{promotion['version']}** to `{promotion['registry']}/current`.\n"
    return f"\nNot promoted: {promotion['reason']}\n"
