"""SNIPS joint intent + slot benchmark of the MiniLM-L6 joint model against published anchors.

Trains on SNIPS train, keeps the best epoch on dev (sentence accuracy), evaluates the exported ONNX
package on test, and compares with JointBERT (98.6 / 97.0 / 92.8) and DistilBERT (98.0 / 96.1 / 91.0)
(intent accuracy / slot F1 / sentence accuracy, %). Saves ``benchmarks/results/snips.json``.

    nice -n 10 python benchmarks/snips.py --epochs 5 --out-package models/snips
    python benchmarks/snips.py --subset 1000 --epochs 1     # time one small run to estimate a full one
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, add_training_arguments, cpu_model, train_request

ANCHORS = {
    "JointBERT (Chen et al. 2019)": {"intent_accuracy": 98.6, "slot_f1": 97.0, "sentence_accuracy": 92.8},
    "DistilBERT": {"intent_accuracy": 98.0, "slot_f1": 96.1, "sentence_accuracy": 91.0},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser, epochs=5.0, max_length=48,  # SNIPS max is ~40 wordpieces
                           subset_help="use only the first N train examples (0 = all)")
    parser.add_argument("--out-package", type=Path, default=Path("models/snips"), help="package folder to write")
    parser.add_argument("--out", type=Path, default=RESULTS / "snips.json", help="where to save the JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("model_runtime").setLevel(logging.INFO)

    from model_runtime.pipeline import library_versions, train_to_package

    started = time.perf_counter()
    package = train_to_package(train_request(args, "snips"), args.out_package)
    total_s = time.perf_counter() - started
    test = package.metrics["onnx-cpu"]
    ours = {
        "intent_accuracy": 100 * test["intent_accuracy"],
        "slot_f1": 100 * test["slots"]["f1"],
        "sentence_accuracy": 100 * test["sentence_accuracy"],
    }
    int8 = package.metrics["onnx-int8"]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "load_average_at_end": os.getloadavg(),
        },
        "versions": library_versions(),
        "units": {"*_accuracy, slot_f1": "percent on SNIPS test (700 utterances)", "*_s": "seconds"},
        "request": vars(args) | {"out_package": str(args.out_package), "out": str(args.out)},
        "package_version": package.version,
        "n_train": package.manifest["training_data"]["n_train"],
        "train_s": package.manifest["training"]["train_seconds"],
        "total_s": total_s,
        "dev_history": [h for h in package.manifest["training"]["history"] if "epoch" in h],
        "test_onnx_fp32": ours,
        "test_onnx_int8": {
            "intent_accuracy": 100 * int8["intent_accuracy"],
            "slot_f1": 100 * int8["slots"]["f1"],
            "sentence_accuracy": 100 * int8["sentence_accuracy"],
        },
        "calibration": package.manifest["calibration"],
        "anchors": ANCHORS,
        "vs_distilbert_points": {k: ours[k] - ANCHORS["DistilBERT"][k] for k in ours},
    }
    print(f"{'model':<30}{'intent':>8}{'slot F1':>9}{'sentence':>10}")
    for name, row in [
        ("MiniLM-L6 joint (ours, fp32)", ours),
        ("  ... int8", result["test_onnx_int8"]),
        *ANCHORS.items(),
    ]:
        print(f"{name:<30}{row['intent_accuracy']:>8.2f}{row['slot_f1']:>9.2f}{row['sentence_accuracy']:>10.2f}")
    print(f"train {result['train_s']:.0f} s on {result['n_train']} examples; total {total_s:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
