"""Detectors against the truth of synthetic windows: false alarms on stable traffic, delay on shifts.

Scenarios (all windows of ``--window`` rows from ``detectors.synthetic``): ``stable`` (no change),
``sudden`` (from window ``--onset`` on, ``--share`` of traffic is an unseen intent) and ``gradual`` (the
unseen share rises linearly from 0 to ``--share`` over ``--ramp`` windows after the onset). Every detector of
the suite (overall group) is scored, plus Evidently's Wasserstein drift on ``confidence`` with its default
threshold (0.1) and with a calibrated one, side by side in the same run. Also times one 10,000-row window.

    nice -n 10 .venv/bin/python benchmarks/detection.py --help
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import numpy as np

from detectors.drift import EvidentlyValueDriftDetector
from detectors.suite import MonitorSuite
from detectors.synthetic import make_rows

RESULTS = Path(__file__).parent / "results" / "detection.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-rows", type=int, default=6000, help="rows in the reference")
    parser.add_argument("--window", type=int, default=500, help="rows per window")
    parser.add_argument("--stable-windows", type=int, default=100, help="clean windows for the false-alarm rate")
    parser.add_argument("--shift-windows", type=int, default=40, help="windows per shift scenario")
    parser.add_argument("--onset", type=int, default=10, help="first shifted window of a shift scenario")
    parser.add_argument("--ramp", type=int, default=20, help="windows the gradual shift takes to reach --share")
    parser.add_argument("--share", type=float, default=0.2, help="share of unseen-intent traffic after the shift")
    parser.add_argument("--fpr", type=float, default=0.01, help="target false-alarm rate per detector and window")
    parser.add_argument("--calibration-windows", type=int, default=100, help="clean windows per threshold")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON result goes")
    return parser.parse_args(argv)


def scenario_shares(name: str, args: argparse.Namespace) -> list[float]:
    if name == "stable":
        return [0.0] * args.stable_windows
    shares = []
    for index in range(args.shift_windows):
        after = index - args.onset
        if after < 0:
            shares.append(0.0)
        elif name == "sudden":
            shares.append(args.share)
        else:
            shares.append(args.share * min(1.0, (after + 1) / args.ramp))
    return shares


def alarms_per_window(suite: MonitorSuite, evidently: dict, shares: list[float], args: argparse.Namespace, base: int):
    """``{detector: [fired per window]}`` for one scenario."""
    fired: dict[str, list[bool]] = defaultdict(list)
    for index, share in enumerate(shares):
        window = make_rows(args.window, seed=base + index, new_intent_share=share)
        report = suite.score(window)
        any_fired = False
        for result in report.results:
            if result.details["group"] == "overall":
                name = f"{result.method}:{result.feature}"
                fired[name].append(result.drifted)
                any_fired |= result.drifted
        fired["suite:any_overall"].append(any_fired)
        for name, (detector, default_threshold) in evidently.items():
            result = detector.score(window)
            fired[f"{name}(calibrated)"].append(result.drifted)
            fired[f"{name}(default {default_threshold})"].append(result.score > default_threshold)
    return fired


def delay(fired: list[bool], onset: int) -> int | None:
    """Windows from the onset to the first alarm at or after it (None: never detected)."""
    hits = [index for index, flag in enumerate(fired) if flag and index >= onset]
    return hits[0] - onset if hits else None


def time_large_window(suite: MonitorSuite, seed: int, repeats: int = 5) -> list[float]:
    window = make_rows(10_000, seed=seed, new_intent_share=0.1)
    suite.score(window)  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        suite.score(window)
        timings.append(time.perf_counter() - start)
    return timings


def machine() -> dict:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    reference = make_rows(args.reference_rows, seed=args.seed)
    start = time.perf_counter()
    suite = MonitorSuite.from_reference(
        reference, window_size=args.window, fpr=args.fpr, n_windows=args.calibration_windows, seed=args.seed
    )
    evidently_detector = EvidentlyValueDriftDetector("confidence", "wasserstein").infer_threshold(
        reference, args.fpr, args.window, min(args.calibration_windows, 50), args.seed
    )
    calibration_s = time.perf_counter() - start
    evidently = {"evidently_wasserstein:confidence": (evidently_detector, 0.1)}
    rows = {}
    for offset, scenario in enumerate(("stable", "sudden", "gradual")):
        shares = scenario_shares(scenario, args)
        fired = alarms_per_window(suite, evidently, shares, args, base=10_000 * (offset + 1) + args.seed)
        for name, flags in fired.items():
            entry = rows.setdefault(name, {})
            if scenario == "stable":
                entry["false_alarms_per_100_windows"] = 100.0 * float(np.mean(flags))
            else:
                entry[f"{scenario}_delay_windows"] = delay(flags, args.onset)
                entry[f"{scenario}_alarms_before_onset"] = int(sum(flags[: args.onset]))
    timings = time_large_window(suite, seed=args.seed + 99)
    print(f"{'detector':48s} {'FA/100':>7s} {'sudden':>7s} {'gradual':>8s}")
    for name, entry in sorted(rows.items()):
        print(
            f"{name:48s} {entry['false_alarms_per_100_windows']:7.1f} "
            f"{entry['sudden_delay_windows']!s:>7s} {entry['gradual_delay_windows']!s:>8s}"
        )
    print(f"10,000-row window, all detectors: median {np.median(timings):.3f} s (min {min(timings):.3f} s)")
    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {name: version(name) for name in ("numpy", "scipy", "pandas", "scikit-learn", "evidently")},
        "parameters": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "units": {
            "false_alarms_per_100_windows": "alarms per 100 stable windows",
            "delay_windows": "windows after onset (0 = first shifted window; null = never)",
            "seconds": "s",
        },
        "detectors": rows,
        "calibration_seconds": calibration_s,
        "score_10k_window_seconds": {"median": float(np.median(timings)), "all": timings},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
