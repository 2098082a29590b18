"""``nlumon model ...``: train, eval, export, check, gate, promote. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train, evaluate, export, gate and promote the joint intent + slot model.", no_args_is_help=True)

PackageArg = Annotated[Path, typer.Argument(help="model package folder", exists=True, file_okay=False)]
BackendOpt = Annotated[str, typer.Option(help="runtime backend: onnx-cpu | onnx-int8 | onnx-cuda | torch-cuda")]


def _setup_logging(verbose: bool) -> None:
    # only our loggers go to INFO: onnxruntime.quantization logs a line per tensor at INFO on the root logger
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("model_runtime").setLevel(logging.INFO if verbose else logging.WARNING)


def _corpus_args(package: Path, corpus: str | None, size: int | None, seed: int | None) -> tuple[str, int, int]:
    """Corpus, size and seed for evaluation: the options given, else those the package was trained with,
    so that a generated corpus is regenerated with exactly the same test split."""
    from model_runtime.package import load_package

    request = load_package(package, verify=False).manifest.get("training", {}).get("request", {})
    return (
        corpus or request.get("corpus", "retail"),
        size if size is not None else request.get("size", 20000),
        seed if seed is not None else request.get("seed", 13),
    )


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="folder of the finished model package (replaced atomically)")],
    corpus: Annotated[str, typer.Option(help="training corpus: retail (generated), retail-next (retail plus the emerging product line's "
                                      "intents: a challenger for experiments), snips or clinc150")] = "retail",
    size: Annotated[
        int, typer.Option(help="retail: examples to generate; snips: cap on train examples (0 = all)")
    ] = 20000,
    epochs: Annotated[float, typer.Option(help="training epochs (fractions allowed)")] = 3.0,
    quick: Annotated[
        bool, typer.Option(help="small fast demo profile: 3000 train examples, length 32, 2 epochs, batch 16")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed for data generation, splits, init and batch order")] = 13,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoint next to --out")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    max_length: Annotated[int, typer.Option(help="max wordpieces per utterance")] = 64,
    batch_size: Annotated[int, typer.Option(help="training batch size")] = 32,
    learning_rate: Annotated[float, typer.Option(help="encoder learning rate (heads use 1e-3)")] = 5e-5,
    loss_weighting: Annotated[str, typer.Option(help="static | uncertainty (Kendall et al.)")] = "static",
    domain_balance: Annotated[
        bool | None,
        typer.Option(
            "--domain-balance/--no-domain-balance",
            help="weight examples so each assistant counts equally; default: off, and with --extra the base "
            "corpus's assistant shares are kept (the extras cannot shift them)",
            show_default=False,
        ),
    ] = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option(
            "--extra",
            help="JSONL of extra labelled examples for the train split (repeatable; weight × loss; see "
            "model_runtime/data/extra.py)",
            dir_okay=False,
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = default)")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML/JSON with `model:` and `train:` sections (overrides)")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="log progress details")] = True,
) -> None:
    """Train, export (fp32 + int8), evaluate and package in one go.

    With --extra (and neither --domain-balance nor --no-domain-balance), each assistant keeps its share of the
    base corpus's weight: the annotation loop's auto-labelled store-associate logs cannot tilt the model toward
    the associate assistant, and the shopper assistant keeps the weight it was trained with.
    """
    from model_runtime.config import configs_from_file
    from model_runtime.data.extra import ExtraExamplesError
    from model_runtime.pipeline import TrainRequest, train_to_package

    _setup_logging(verbose)
    request = TrainRequest(
        corpus=corpus,
        size=size,
        epochs=epochs,
        quick=quick,
        seed=seed,
        device=device,
        max_length=max_length,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss_weighting=loss_weighting,
        domain_balance=domain_balance,
        threads=threads,
        extra=tuple(str(path) for path in extra or ()),
    )
    model_config, train_config = configs_from_file(config) if config else (None, None)
    try:
        package = train_to_package(request, out, model_config=model_config, train_config=train_config, resume=resume)
    except ExtraExamplesError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    metrics = package.metrics.get("onnx-cpu", {})
    typer.echo(f"package {package.version} written to {package.path}")
    extra_section = package.manifest["training"].get("extra")
    if extra_section:
        total = extra_section["total"]
        typer.echo(f"extra examples: {total['n']} {total['per_assistant']} (domain balance on: "
                   f"{package.manifest['training']['domain_balance']})")
    typer.echo(
        f"test intent acc {metrics.get('intent_accuracy', float('nan')):.4f}  "
        f"slot F1 {metrics.get('slots', {}).get('f1', float('nan')):.4f}  "
        f"train {package.manifest['training']['train_seconds']} s"
    )


@app.command("eval")
def eval_(
    package: PackageArg,
    corpus: Annotated[
        str | None, typer.Option(help="retail | snips | clinc150 (default: the package's training corpus)")
    ] = None,
    split: Annotated[str, typer.Option(help="train | dev | test")] = "test",
    size: Annotated[int | None, typer.Option(help="retail examples before the split (default: the package's)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the corpus and split (default: the package's)")] = None,
    backend: BackendOpt = "onnx-cpu",
    json_out: Annotated[Path | None, typer.Option(help="also write the report as JSON here")] = None,
) -> None:
    """Evaluate a package on a corpus split: prints metrics.evaluate's table and JSON."""
    from model_runtime.evaluation import evaluate_runtime
    from model_runtime.pipeline import load_corpus
    from model_runtime.runtime import load_runtime

    splits = load_corpus(*_corpus_args(package, corpus, size, seed))
    examples = dict(zip(("train", "dev", "test"), splits, strict=True))[split]
    runtime = load_runtime(package, backend)
    report, result = evaluate_runtime(runtime, examples)
    typer.echo(report.to_table())
    text = json.dumps(result, indent=2, default=float)
    if json_out:
        json_out.write_text(text)
    typer.echo(text if not json_out else f"JSON written to {json_out}")


@app.command()
def export(
    package: PackageArg,
    out: Annotated[Path, typer.Option(help="folder for the re-exported package")],
    optimize: Annotated[bool, typer.Option(help="fuse attention/layer-norm ops (ORT transformer optimizer)")] = True,
) -> None:
    """Re-export a package's torch weights to ONNX (fp32 + int8) with a parity check, into a new package."""
    import shutil

    from model_runtime.export import export_all
    from model_runtime.gate import GATE_REPORT
    from model_runtime.package import load_package, write_manifest
    from model_runtime.runtime import load_runtime
    from model_runtime.runtime_torch import load_torch_model

    source = load_package(package)
    shutil.copytree(source.path, out)
    (out / GATE_REPORT).unlink(missing_ok=True)  # a gate report judged the source package, not this one
    model = load_torch_model(source)
    texts = ["add two jordan sneakers to my cart", "is jordan on shift tomorrow", "hello"]
    export_section = export_all(model, out, [load_runtime(source.path, "onnx-cpu").encode(texts)], optimize=optimize)
    write_manifest(out, {**source.manifest, "export": export_section})
    parity = export_section["parity"]
    typer.echo(f"exported to {out}: max |torch - onnx| = {parity['max_abs_diff']:.2e}")


@app.command()
def seal(package: PackageArg) -> None:
    """Give a legacy package (manifest format 1) the manifest digest that later loads verify.

    Its files must still match the manifest's hashes; the manifest's values (temperature, thresholds) are
    taken as they are now, so check them first. A format-2 package with a wrong digest is refused, not sealed.
    """
    from model_runtime.gate import GATE_REPORT
    from model_runtime.package import load_package, write_manifest

    source = load_package(package)
    if source.verified_manifest:
        typer.echo(f"{source.path}: manifest digest already verified; nothing to do")
        return
    if (source.path / GATE_REPORT).is_file():  # sealing changes the manifest digest the report names
        (source.path / GATE_REPORT).unlink()
        typer.echo(f"removed {source.path / GATE_REPORT}: it names the unsealed manifest; gate the package again")
    write_manifest(source.path, dict(source.manifest))
    sealed = load_package(source.path, allow_legacy=False)
    typer.echo(f"{sealed.path}: sealed package {sealed.version} (manifest format {sealed.manifest['format']})")


@app.command()
def check(
    package: PackageArg,
    backend: BackendOpt = "onnx-cpu",
    golden: Annotated[Path | None, typer.Option(help="golden JSONL (default: the bundled set)")] = None,
) -> None:
    """Run the golden set; exit code 1 when any case fails."""
    from model_runtime.evaluation import golden_check
    from model_runtime.golden import load_golden
    from model_runtime.runtime import load_runtime

    result = golden_check(load_runtime(package, backend), load_golden(golden))
    typer.echo(result.summary())
    raise typer.Exit(0 if result.ok else 1)


def run_gate(
    challenger: Path,
    champion: Path | None,
    *,
    holdout: str | None = None,
    corpus: str | None = None,
    size: int | None = None,
    seed: int | None = None,
    backend: str = "onnx-int8",
    serving_batch: int = 64,
    latency_budget_ms: float = 250.0,
    slot_f1_floor: float | None = None,
    frustration_recall_floor: float = 60.0,
    ece_budget: float | None = None,
    intent_drop: float = 0.3,
    assistant_intent_drop: float = 0.3,
    span_f1_drop: float = 1.0,
    slot_f1_drop: float = 0.5,
    golden_regressions: int = 0,
    json_out: Path | None = None,
    echo=print,
):
    """The gate as `nlumon model gate` runs it (also from `nlumon loop run`): evaluates, prints the tables with
    ``echo``, writes CHALLENGER/gate-report.json (and ``json_out``) and returns the decision."""
    from model_runtime.evaluation import corpus_set, gather_evidence, holdout_set
    from model_runtime.gate import (
        GATE_REPORT,
        GateThresholds,
        build_report,
        decide,
        evidence_table,
        package_identity,
        write_report,
    )
    from model_runtime.package import load_package

    challenger_package = load_package(challenger)
    champion_package = load_package(champion) if champion else None
    trained_on = challenger_package.manifest.get("training", {}).get("request", {}).get("corpus", "retail")
    if corpus or size is not None or seed is not None or (not holdout and trained_on != "retail"):
        evaluation_set = corpus_set(*_corpus_args(challenger, corpus, size, seed))  # the retail holdout fits retail
    else:
        from model_runtime.data.holdout import DEFAULT_HOLDOUT

        evaluation_set = holdout_set(holdout or DEFAULT_HOLDOUT)
    floors = evaluation_set.description.get("gate_floors") or {}
    thresholds = GateThresholds(
        intent_drop_points=intent_drop,
        slot_f1_floor=slot_f1_floor if slot_f1_floor is not None else floors.get("slot_f1", 88.0),
        frustration_recall_floor=frustration_recall_floor,
        latency_p95_budget_ms=latency_budget_ms,
        ece_budget=ece_budget if ece_budget is not None else floors.get("ece", 0.05),
        assistant_intent_drop_points=assistant_intent_drop,
        span_f1_drop_points=span_f1_drop,
        golden_regressions=golden_regressions,
        slot_f1_drop_points=slot_f1_drop,
    )
    packages = [challenger, *([champion] if champion else [])]
    evidence = gather_evidence(packages, evaluation_set, backend, serving_batch)
    decision = decide(evidence[0], evidence[1] if champion else None, thresholds)
    report = build_report(
        decision,
        package_identity(challenger_package),
        package_identity(champion_package) if champion_package else None,
        evaluation_set.description,
        evidence,
        thresholds,
        backend=backend,
    )
    described = evaluation_set.description
    echo(f"evaluated on {described['kind']} {described['name']} (n={described['n']}, "
         f"sha256 {described['sha256'][:12]})")
    echo(decision.to_table())
    echo("")
    echo(evidence_table(evidence, ["challenger", "champion"][: len(evidence)]))
    write_report(challenger_package.path / GATE_REPORT, report)
    if json_out:
        write_report(json_out, report)
    return decision


@app.command()
def gate(
    challenger: PackageArg,
    champion: Annotated[Path | None, typer.Option(help="package in service (omit for the first model)")] = None,
    holdout: Annotated[
        str | None,
        typer.Option(help="fixed holdout version (default production-v1 for retail packages; see data/holdout/)"),
    ] = None,
    corpus: Annotated[
        str | None, typer.Option(help="judge on this corpus's test split instead of the holdout (today's behaviour)")
    ] = None,
    size: Annotated[int | None, typer.Option(help="retail examples with --corpus (default: the challenger's)")] = None,
    seed: Annotated[int | None, typer.Option(help="data seed with --corpus (default: the challenger's)")] = None,
    backend: BackendOpt = "onnx-int8",
    serving_batch: Annotated[int, typer.Option(help="batch size for the latency criterion")] = 64,
    latency_budget_ms: Annotated[float, typer.Option(help="p95 latency budget at the serving batch")] = 250.0,
    slot_f1_floor: Annotated[float | None, typer.Option(
        help="slot F1 floor in points (default: the holdout's gate_floors, else 88 on a corpus)")] = None,
    frustration_recall_floor: Annotated[float, typer.Option(help="frustration recall floor in points")] = 60.0,
    ece_budget: Annotated[float | None, typer.Option(
        help="maximum ECE of the challenger (default: the holdout's gate_floors, else 0.05 on a corpus)")] = None,
    intent_drop: Annotated[float, typer.Option(help="max drop of overall intent accuracy vs champion (points)")] = 0.3,
    assistant_intent_drop: Annotated[
        float, typer.Option(help="max drop of each assistant's intent accuracy vs champion (points)")
    ] = 0.3,
    span_f1_drop: Annotated[
        float, typer.Option(help="max drop of person and date_time span F1 vs champion (points)")
    ] = 1.0,
    slot_f1_drop: Annotated[float, typer.Option(help="max drop of slot F1 vs champion (points)")] = 0.5,
    golden_regressions: Annotated[int, typer.Option(
        min=0, help="golden cases the challenger may fail beyond the champion's failures")] = 0,
    json_out: Annotated[Path | None, typer.Option(help="also write the gate report here")] = None,
) -> None:
    """Compare challenger with champion on the same data; exit 0 = promote, 1 = do not.

    Always writes the report to CHALLENGER/gate-report.json as well: `nlumon model promote` needs it.
    """
    if holdout and (corpus or size is not None or seed is not None):
        typer.echo("error: --holdout and --corpus/--size/--seed exclude each other", err=True)
        raise typer.Exit(2)
    decision = run_gate(
        challenger, champion, holdout=holdout, corpus=corpus, size=size, seed=seed, backend=backend,
        serving_batch=serving_batch, latency_budget_ms=latency_budget_ms, slot_f1_floor=slot_f1_floor,
        frustration_recall_floor=frustration_recall_floor, ece_budget=ece_budget, intent_drop=intent_drop,
        assistant_intent_drop=assistant_intent_drop, span_f1_drop=span_f1_drop,
        slot_f1_drop=slot_f1_drop, golden_regressions=golden_regressions, json_out=json_out, echo=typer.echo,
    )
    raise typer.Exit(0 if decision.promote else 1)


@app.command()
def promote(
    package: PackageArg,
    registry: Annotated[Path, typer.Option(help="registry folder; its `current` link is what workers load")],
    force: Annotated[bool, typer.Option(help="promote without a passed gate report (needs --reason)")] = False,
    reason: Annotated[str | None, typer.Option(help="why --force; recorded in promotions.jsonl")] = None,
) -> None:
    """Place a verified package in the registry and point `current` at it atomically, behind the gate.

    Refused (exit 1) unless PACKAGE/gate-report.json is a passed gate of this package against the registry's
    current package (none for an empty registry). --force --reason overrides; the override is logged and
    recorded in REGISTRY/promotions.jsonl with the user.
    """
    from model_runtime.registry import PromotionRefusedError, promote_gated

    if force and not (reason and reason.strip()):
        typer.echo("error: --force needs --reason '...' (recorded in promotions.jsonl)", err=True)
        raise typer.Exit(2)
    if reason and not force:
        typer.echo("error: --reason goes with --force", err=True)
        raise typer.Exit(2)
    _setup_logging(verbose=False)  # the WARNING of a forced promotion reaches stderr
    try:
        promoted = promote_gated(package, registry, force_reason=reason if force else None)
    except PromotionRefusedError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{registry / 'current'} -> {promoted.version}")
