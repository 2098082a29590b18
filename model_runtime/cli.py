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
    corpus: Annotated[str, typer.Option(help="training corpus: retail (generated), snips or clinc150")] = "retail",
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
    domain_balance: Annotated[bool, typer.Option(help="weight examples so each assistant counts equally")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = default)")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML/JSON with `model:` and `train:` sections (overrides)")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="log progress details")] = True,
) -> None:
    """Train, export (fp32 + int8), evaluate and package in one go."""
    from model_runtime.config import configs_from_file
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
    )
    model_config, train_config = configs_from_file(config) if config else (None, None)
    package = train_to_package(request, out, model_config=model_config, train_config=train_config, resume=resume)
    metrics = package.metrics.get("onnx-cpu", {})
    typer.echo(f"package {package.version} written to {package.path}")
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
    from model_runtime.package import load_package, write_manifest
    from model_runtime.runtime import load_runtime
    from model_runtime.runtime_torch import load_torch_model

    source = load_package(package)
    shutil.copytree(source.path, out)
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
    from model_runtime.package import load_package, write_manifest

    source = load_package(package)
    if source.verified_manifest:
        typer.echo(f"{source.path}: manifest digest already verified; nothing to do")
        return
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


@app.command()
def gate(
    challenger: PackageArg,
    champion: Annotated[Path | None, typer.Option(help="package in service (omit for the first model)")] = None,
    corpus: Annotated[str | None, typer.Option(help="evaluation corpus (default: the challenger's)")] = None,
    size: Annotated[int | None, typer.Option(help="retail examples (default: the challenger's)")] = None,
    seed: Annotated[int | None, typer.Option(help="data seed (default: the challenger's)")] = None,
    backend: BackendOpt = "onnx-int8",
    serving_batch: Annotated[int, typer.Option(help="batch size for the latency criterion")] = 64,
    latency_budget_ms: Annotated[float, typer.Option(help="p95 latency budget at the serving batch")] = 250.0,
    slot_f1_floor: Annotated[float, typer.Option(help="slot F1 floor in points")] = 88.0,
    frustration_recall_floor: Annotated[float, typer.Option(help="frustration recall floor in points")] = 60.0,
    ece_budget: Annotated[float, typer.Option(help="maximum ECE of the challenger")] = 0.05,
    json_out: Annotated[Path | None, typer.Option(help="also write the decision as JSON here")] = None,
) -> None:
    """Compare challenger with champion on the same data; exit 0 = promote, 1 = do not."""
    from model_runtime.evaluation import gather_evidence
    from model_runtime.gate import GateThresholds, decide

    examples_args = _corpus_args(challenger, corpus, size, seed)
    thresholds = GateThresholds(
        slot_f1_floor=slot_f1_floor,
        frustration_recall_floor=frustration_recall_floor,
        latency_p95_budget_ms=latency_budget_ms,
        ece_budget=ece_budget,
    )
    evidence = gather_evidence([challenger, *([champion] if champion else [])], examples_args, backend, serving_batch)
    decision = decide(evidence[0], evidence[1] if champion else None, thresholds)
    typer.echo(decision.to_table())
    if json_out:
        json_out.write_text(json.dumps(decision.to_dict(), indent=2))
    raise typer.Exit(0 if decision.promote else 1)


@app.command()
def promote(
    package: PackageArg,
    registry: Annotated[Path, typer.Option(help="registry folder; its `current` link is what workers load")],
) -> None:
    """Copy (hard-link) a verified package into the registry and point `current` at it atomically."""
    from model_runtime.registry import promote as promote_package

    promoted = promote_package(package, registry)
    typer.echo(f"{registry / 'current'} -> {promoted.version}")
