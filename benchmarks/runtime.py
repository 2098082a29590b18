"""Runtime throughput and latency per backend x batch size x sequence length, measured in one run.

Model-only rows feed (batch, length) id tensors straight to each engine (torch fp32 CPU, ONNX Runtime
fp32, ONNX Runtime int8, and torch CUDA fp16 + CUDA graphs when a GPU exists); end-to-end rows time
``Runtime.predict`` on real retail utterances (tokenise + run + decode). Saves
``benchmarks/results/runtime.json``.

    python benchmarks/runtime.py --package models/quick --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, cpu_model


def time_calls(run, min_repeats: int, min_seconds: float, warmup: int = 2) -> list[float]:
    """Wall times (ms) of ``run()``: at least ``min_repeats`` calls and ``min_seconds`` in total."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    while len(times) < min_repeats or sum(times) < min_seconds * 1000:
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
        if len(times) >= 200:
            break
    return times


def summarise(times: list[float], batch: int) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(np.mean(times)),
        "utterances_per_s": float(batch * 1000 / np.mean(times)),
        "calls": len(times),
    }


def engines(package_dir: Path, threads: int, skip_torch: bool):
    """name -> callable(input_ids, attention_mask); plus notes on what was skipped and why."""
    from model_runtime.runtime import load_runtime

    found, notes = {}, []
    for backend in ("onnx-cpu", "onnx-int8"):
        runtime = load_runtime(package_dir, backend, intra_op_threads=threads)
        found[f"ort-{'fp32' if backend == 'onnx-cpu' else 'int8'}"] = runtime.engine.run
    if skip_torch:
        notes.append("torch rows skipped (--skip-torch)")
        return found, notes
    import torch

    from model_runtime.package import load_package
    from model_runtime.runtime_torch import TorchCudaBackend, load_torch_model

    if threads:
        torch.set_num_threads(threads)
    package = load_package(package_dir)
    model = load_torch_model(package, "cpu")

    def torch_cpu(ids, mask):
        with torch.inference_mode():
            return model(torch.from_numpy(ids), torch.from_numpy(mask))

    found["torch-fp32-cpu"] = torch_cpu
    if torch.cuda.is_available():
        found["torch-cuda-fp16-graphs"] = TorchCudaBackend(package).run
    else:
        notes.append("torch CUDA rows skipped: torch sees no CUDA device on this machine")
    return found, notes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=Path("models/quick"), help="model package folder")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for ORT and torch (0 = default)")
    parser.add_argument("--batches", default="1,8,32,128", help="comma-separated batch sizes")
    parser.add_argument("--lengths", default="16,32,64", help="comma-separated sequence lengths (wordpieces)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed seconds per cell")
    parser.add_argument("--min-repeats", type=int, default=5, help="minimum timed calls per cell")
    parser.add_argument("--skip-torch", action="store_true", help="only ONNX Runtime rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime.json", help="where to save the JSON")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    lengths = [int(n) for n in args.lengths.split(",")]
    found, notes = engines(args.package, args.threads, args.skip_torch)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'engine':<24}{'batch':>6}{'length':>7}{'p50 ms':>10}{'p95 ms':>10}{'utt/s':>10}")
    for length in lengths:
        for batch in batches:
            ids = rng.integers(1000, 29000, size=(batch, length)).astype(np.int64)
            ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
            mask = np.ones_like(ids)
            for name, run in found.items():
                stats = summarise(
                    time_calls(lambda r=run, i=ids, m=mask: r(i, m), args.min_repeats, args.min_seconds), batch
                )
                rows.append({"engine": name, "batch": batch, "length": length, **stats})
                print(
                    f"{name:<24}{batch:>6}{length:>7}{stats['p50_ms']:>10.1f}{stats['p95_ms']:>10.1f}"
                    f"{stats['utterances_per_s']:>10.0f}"
                )
    end_to_end = end_to_end_rows(args.package, args.threads)
    sub_batches = sub_batch_rows(args.package, args.threads)
    ratios = {}
    for row in rows:
        if row["engine"] == "ort-fp32":
            key = (row["batch"], row["length"])
            int8 = next(r for r in rows if r["engine"] == "ort-int8" and (r["batch"], r["length"]) == key)
            ratios[f"int8_speedup_b{key[0]}_l{key[1]}"] = row["mean_ms"] / int8["mean_ms"]
            same_cell = [r for r in rows if (r["batch"], r["length"]) == key]
            torch_row = next((r for r in same_cell if r["engine"] == "torch-fp32-cpu"), None)
            if torch_row:
                ratios[f"ort_fp32_vs_torch_b{key[0]}_l{key[1]}"] = torch_row["mean_ms"] / row["mean_ms"]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "versions": {name: _version(name) for name in ("onnxruntime", "torch", "numpy", "tokenizers")},
        "package": str(args.package),
        "threads": args.threads,
        "units": {
            "p50_ms": "milliseconds per call",
            "p95_ms": "milliseconds per call",
            "mean_ms": "milliseconds per call",
            "utterances_per_s": "utterances per second",
            "*_speedup_*": "ratio of mean times (higher = the second engine is faster)",
        },
        "notes": [
            *notes,
            "model-only rows: random ids, full attention mask; end_to_end rows: Runtime.predict on "
            "generated retail test utterances (tokenise + run + decode); sub_batches rows: Runtime.predict on "
            "micro-batches of 64 cut into length-sorted engine calls of sub_batch, padded to a multiple of "
            "pad_multiple (64 / 8 = one padded call; the CPU default is 32 / 1)",
        ],
        "model_only": rows,
        "end_to_end": end_to_end,
        "sub_batches": sub_batches,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(end_to_end, indent=1))
    print(json.dumps(ratios, indent=1))
    return result


def predict_stats(runtime, texts: list[str], batch: int, min_repeats: int, min_seconds: float) -> dict[str, float]:
    """Timing of ``runtime.predict`` over consecutive chunks of ``batch`` texts (cycled)."""
    chunks = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
    calls = itertools.cycle(chunks)
    return summarise(time_calls(lambda: runtime.predict(next(calls)), min_repeats, min_seconds), batch)


def end_to_end_rows(package_dir: Path, threads: int) -> list[dict]:
    from model_runtime.data.retail import GeneratorConfig, generate
    from model_runtime.runtime import load_runtime

    texts = [e.text for e in generate(GeneratorConfig(n=512, seed=99))]
    rows = []
    for backend in ("onnx-cpu", "onnx-int8"):
        runtime = load_runtime(package_dir, backend, intra_op_threads=threads)
        for batch in (1, 32, 64):
            rows.append({"backend": backend, "batch": batch, **predict_stats(runtime, texts, batch, 5, 1.0)})
    return rows


def sub_batch_rows(package_dir: Path, threads: int, batch: int = 64) -> list[dict]:
    """``Runtime.predict`` on micro-batches of ``batch`` retail utterances, cut into length-sorted engine calls of
    ``sub_batch`` and padded to a multiple of ``pad_multiple``: (batch, 8) is one padded call, as before."""
    from model_runtime.data.retail import GeneratorConfig, generate
    from model_runtime.runtime import load_runtime

    texts = [e.text for e in generate(GeneratorConfig(n=2048, seed=98))]
    rows = []
    for backend in ("onnx-cpu", "onnx-int8"):
        loaded = load_runtime(package_dir, backend, intra_op_threads=threads)
        for sub_batch, pad_multiple in ((batch, 8), (batch, 1), (32, 1), (16, 1)):
            runtime = dataclasses.replace(loaded, sub_batch=sub_batch, pad_multiple=pad_multiple)  # same engine
            stats = predict_stats(runtime, texts, batch, 10, 2.0)
            rows.append({"backend": backend, "batch": batch, "sub_batch": sub_batch, "pad_multiple": pad_multiple,
                         **stats})
            print(f"{backend:<10} batch {batch} as calls of {sub_batch:>2} padded to x{pad_multiple}: "
                  f"{stats['utterances_per_s']:7.0f} utt/s")
    return rows


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:  # a missing optional library is reported, not fatal
        return "not installed"


if __name__ == "__main__":
    main()
