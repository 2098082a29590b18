"""Evaluate a loaded runtime: quality on labelled examples, the golden set, latency. No torch.

Every figure of a package (its manifest metrics, the gate's inputs) comes from the runtime that
serves it, not from the torch model it was exported from. The gate evaluates on an
:class:`EvaluationSet`: by default a fixed production holdout (:func:`holdout_set`), else a corpus's
test split (:func:`corpus_set`); either way the set is named with a checksum in the gate report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_runtime.data.example import Example
from model_runtime.golden import GoldenCase, GoldenResult, check_golden
from model_runtime.metrics import EvalReport, evaluate
from model_runtime.runtime import Runtime


def evaluate_runtime(runtime: Runtime, examples: Sequence[Example]) -> tuple[EvalReport, dict[str, Any]]:
    """metrics.evaluate over the runtime's predictions, and the report as a dict with the extra heads' scores.

    ``heads`` holds each extra head's accuracy and, when the head names a positive label (frustration →
    frustrated), that label's recall.
    """
    predictions = runtime.predict([e.text for e in examples])
    report = evaluate(
        examples,
        [p.intent for p in predictions],
        [list(p.tags) for p in predictions],
        [p.confidence for p in predictions],
    )
    heads: dict[str, Any] = {}
    for head in runtime.package.config.heads:
        pairs = [(head.gold(e), p.heads[head.name][0]) for e, p in zip(examples, predictions, strict=True)]
        pairs = [(gold, predicted) for gold, predicted in pairs if gold]
        entry: dict[str, Any] = {"accuracy": float(np.mean([g == p for g, p in pairs])) if pairs else None}
        if head.positive_label:
            hits = [p == head.positive_label for g, p in pairs if g == head.positive_label]
            entry["positive_label"] = head.positive_label
            entry["recall"] = float(np.mean(hits)) if hits else None
        heads[head.name] = entry
    return report, {**report.to_dict(), "heads": heads}


def golden_check(runtime: Runtime, cases: Sequence[GoldenCase] | None = None) -> GoldenResult:
    """Run the golden set through the runtime (slots compared as (type, text) pairs)."""

    def predict_fn(texts: list[str]):
        return [(p.intent, p.confidence, [(s.type, s.text) for s in p.slots]) for p in runtime.predict(texts)]

    return check_golden(predict_fn, cases)


def measure_latency(
    runtime: Runtime, texts: Sequence[str], batch_size: int, repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """p50/p95 wall time (ms) of one ``predict`` call on ``batch_size`` texts (tokenize + run + decode)."""
    texts = list(texts)
    batches = [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)] for i in range(repeats + warmup)]
    times = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        runtime.predict(batch)
        if index >= warmup:
            times.append((time.perf_counter() - started) * 1000.0)
    return {
        "batch_size": batch_size,
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "utterances_per_s": float(batch_size * len(times) / (sum(times) / 1000.0)),
    }


@dataclass(frozen=True)
class EvaluationSet:
    """Labelled examples the gate judges on, with what identifies them in a report (kind, name, sha256, n)."""

    examples: tuple[Example, ...]
    description: Mapping[str, Any]
    golden: bool = True  # also run the retail golden set


def holdout_set(version: str) -> EvaluationSet:
    """A fixed production holdout, checksum verified (:func:`model_runtime.data.holdout.read_holdout`)."""
    from model_runtime.data.holdout import read_holdout

    holdout = read_holdout(version)
    return EvaluationSet(holdout.examples, holdout.describe(), golden=True)


def corpus_set(corpus: str, size: int, seed: int) -> EvaluationSet:
    """A corpus's test split (retail is regenerated from size and seed), fingerprinted like training data."""
    from model_runtime.pipeline import data_fingerprint, load_corpus

    _, _, test = load_corpus(corpus, size, seed)
    per_assistant: dict[str, int] = {}
    for example in test:
        per_assistant[example.assistant] = per_assistant.get(example.assistant, 0) + 1
    description = {
        "kind": "corpus",
        "name": f"{corpus}:test",
        "size": size,
        "seed": seed,
        "sha256": data_fingerprint(test),
        "n": len(test),
        "per_assistant": dict(sorted(per_assistant.items())),
    }
    return EvaluationSet(tuple(test), description, golden=corpus == "retail")


def gather_evidence(
    package_dirs: Sequence, evaluation_set: EvaluationSet | tuple[str, int, int], backend: str, serving_batch: int
) -> list:
    """Gate evidence for each package on the same examples: quality (overall, per assistant, per slot type),
    golden set (retail), p95 latency. A ``(corpus, size, seed)`` tuple means that corpus's test split."""
    from model_runtime.gate import evidence_from_eval
    from model_runtime.runtime import load_runtime

    if isinstance(evaluation_set, tuple):
        evaluation_set = corpus_set(*evaluation_set)
    examples = list(evaluation_set.examples)
    evidence = []
    for package_dir in package_dirs:
        runtime = load_runtime(package_dir, backend)
        _, evaluation = evaluate_runtime(runtime, examples)
        golden = golden_check(runtime).to_dict() if evaluation_set.golden else None
        latency = measure_latency(runtime, [e.text for e in examples], serving_batch)
        evidence.append(evidence_from_eval(evaluation, golden, latency))
        runtime.close()
    return evidence
