"""Detectors scored against the truth: false alarms on stable traffic, delay on shifts, OOD AUROC and the error
of the label-free accuracy estimate.

``--source replay`` (the default) runs ``nlumon replay``'s scenarios offline through the same code as the live
system: events from ``streams.scenarios`` → ``streams.pipeline.BatchPipeline`` (validation, the model package,
features, PII scrubbing: the rows the worker would store) → windows of ``--window`` rows → the monitor's
``MonitorSuite`` (built by ``monitor.reference.fit_suite``, as the monitor job builds it). The
generator knows every utterance's true intent and kind, so each window has a true accuracy and each row an
OOD truth (``oos`` queries and emerging intents are out of distribution). Scenarios: ``stable`` (for the
false-alarm rate), ``sudden-shift``, ``gradual-shift``, ``ood-burst``, ``asr-degradation`` and ``new-names``
(shift from window ``--onset`` on). Two references side by side: ``rolling`` (earlier stable traffic of the
same model, as the monitor's rolling reference reads it from ClickHouse) and ``package`` (the package's
held-out reference rows).

``--source synthetic`` runs the same scoring on ``detectors.synthetic`` rows (no model needed, ~2 min).

    nice -n 10 python benchmarks/detection.py --package models/current      # replay, ~16 min on 2 cores
    python benchmarks/detection.py --source synthetic
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, header, parameters, save

SHIFTS = ("sudden-shift", "gradual-shift", "ood-burst", "asr-degradation", "new-names")
LIBRARIES = ("numpy", "scipy", "pandas", "scikit-learn", "evidently", "onnxruntime")
ESTIMATORS = ("atc", "ood_aware_atc", "average_confidence")
WINDOW_ZERO = datetime(2026, 1, 5)  # naive UTC, as the monitor's windows; alert cooldowns run in window time
WINDOW_LENGTH = timedelta(minutes=5)
OOD_SCORES = {  # name -> (column, sign): higher must mean "more out of distribution"
    "msp": ("confidence", -1.0),
    "energy": ("energy", 1.0),
    "entropy": ("entropy", 1.0),
    "mahalanobis": ("ood_score", 1.0),
}


@dataclass
class Scenario:
    """Windows of rows (features plus truth columns ``true_intent``, ``kind``, ``correct``) and the onset."""

    name: str
    windows: list[pd.DataFrame]
    onset: int | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("replay", "synthetic"), default="replay",
                        help="replay scenarios through the model package, or synthetic feature rows")
    parser.add_argument("--package", type=Path, default=None,
                        help="model package (default: the configured settings.model.package_path)")
    parser.add_argument("--config", type=Path, default=None, help="nlumon settings file (TOML/YAML)")
    parser.add_argument("--reference-rows", type=int, default=5000, help="rows of the rolling reference")
    parser.add_argument("--window", type=int, default=500, help="rows per window")
    parser.add_argument("--stable-windows", type=int, default=100, help="clean windows for the false-alarm rate")
    parser.add_argument("--shift-windows", type=int, default=30, help="windows per shift scenario")
    parser.add_argument("--onset", type=int, default=10, help="first shifted window of a shift scenario")
    parser.add_argument("--scenarios", default=",".join(SHIFTS), help="comma-separated shift scenarios to run")
    parser.add_argument("--references", default="rolling,package",
                        help="replay: references to compare (rolling, package)")
    parser.add_argument("--fpr", type=float, default=None,
                        help="target false-alarm rate per detector and window (default: the monitor's setting)")
    parser.add_argument("--calibration-windows", type=int, default=100, help="clean windows per threshold")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything")
    parser.add_argument("--output", type=Path, default=RESULTS / "detection.json", help="where the JSON goes")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- replay source


class ReplaySource:
    """Scenario events → the worker's pipeline and model → feature rows joined with the truth."""

    def __init__(self, args: argparse.Namespace) -> None:
        from nlumon.settings import load_settings
        from streams.model_service import ModelService
        from streams.pipeline import BatchPipeline

        settings = load_settings(args.config)
        if args.package is not None:
            settings = settings.model_copy(
                update={"model": settings.model.model_copy(update={"package_path": args.package})})
        self.settings = settings
        self.model = ModelService(settings.model, ood_fpr=settings.monitor.ood_in_distribution_fpr).start()
        self.pipeline = BatchPipeline(settings)
        self.batch = settings.stream.max_batch

    def rows(self, name: str, count: int, seed: int, shift_at: float = 0.5, burst_len: float = 0.2) -> pd.DataFrame:
        from tqdm import tqdm

        from streams.pipeline import RawRecord
        from streams.scenarios import scenario_events

        events = list(scenario_events(name, count, seed=seed, spacing_ms=100, shift_at=shift_at, burst_len=burst_len))
        truth = pd.DataFrame([e.truth for e in events if e.truth.get("kind") != "malformed"])
        rows: list[dict] = []
        for start in tqdm(range(0, len(events), self.batch), desc=f"{name} ({count} events)", unit="batch",
                          leave=False):
            chunk = events[start : start + self.batch]
            records = [RawRecord(e.value, e.key, 0, start + i, self.settings.topics.utterances)
                       for i, e in enumerate(chunk)]
            rows.extend(self.pipeline.process(records, self.model).rows.get("predictions", []))
        frame = pd.DataFrame(rows)
        frame["embedding_sketch"] = [np.asarray(v, dtype=np.float32) for v in frame["embedding_sketch"]]
        frame["asr_confidence"] = pd.to_numeric(frame["asr_confidence"], errors="coerce").astype(float)
        frame = frame.merge(truth[["id", "index", "kind", "intent"]].rename(columns={"intent": "true_intent"}),
                            on="id", validate="one_to_one")
        frame["correct"] = frame["intent"] == frame["true_intent"]
        return frame.sort_values("index").reset_index(drop=True)

    def scenario(self, name: str, n_windows: int, window: int, onset: int | None, seed: int) -> Scenario:
        shift_at = (onset or 0) / n_windows
        burst_len = min(1.0 - shift_at, 6 / n_windows)  # a burst of 6 windows, then recovery
        frame = self.rows(name, n_windows * window, seed, shift_at, burst_len)
        windows = [frame[(frame["index"] >= i * window) & (frame["index"] < (i + 1) * window)]
                   for i in range(n_windows)]
        return Scenario(name, windows, onset)

    def references(self, kinds: list[str], rows: int, seed: int) -> dict[str, tuple[pd.DataFrame, dict]]:
        from monitor.reference import package_rows, package_stats

        package = self.model.runtime.package
        stats = package_stats(package, self.model.reference, self.settings.monitor.ood_in_distribution_fpr)
        found = {}
        for kind in kinds:
            if kind == "rolling":
                found[kind] = (self.rows("stable", rows, seed).drop(columns=["correct"]), stats)
            elif kind == "package":
                found[kind] = (package_rows(package, self.model.reference, seed), stats)
            else:
                raise SystemExit(f"unknown reference {kind!r}: use rolling or package")
        return found


# ----------------------------------------------------------------------------------------------- scoring


def score_window(suite, window: pd.DataFrame, index: int, extras: dict, reference_kind: str):
    """Score one window as the monitor job does (``monitor.job.build_outcome``) on a timeline of 5-minute
    windows. Returns ``{detector: fired}`` for the suite's overall group (plus ``any detector``) and the
    ``extras``, ``{estimator: estimated accuracy}`` and the outcome (for the alert rules)."""
    from monitor.job import build_outcome
    from monitor.storage import ObservedWindow, WindowFacts

    start = WINDOW_ZERO + index * WINDOW_LENGTH
    end = start + WINDOW_LENGTH
    version = str(window["model_version"].iloc[0]) if "model_version" in window.columns else "synthetic"
    facts = WindowFacts(rows_by_assistant=window["assistant"].value_counts().to_dict(), dead_letters=0,
                        latency_p95_ms=None, latency_source="", rows_week_before=0)
    outcome = build_outcome(ObservedWindow(start, end, len(window), end, version), window, facts, suite,
                            reference_kind, scored_at=end)
    report = outcome.report
    fired = {f"{r.method}:{r.feature}": bool(r.drifted) for r in report.results if r.details["group"] == "overall"}
    fired["any detector"] = any(fired.values())
    for name, (detector, default_threshold) in extras.items():
        result = detector.score(window)
        fired[f"{name} (calibrated)"] = bool(result.drifted)
        fired[f"{name} (default {default_threshold})"] = bool(result.score > default_threshold)
    return fired, {name: float(estimate.value) for name, estimate in report.accuracy.items()}, outcome


class AlertTimeline:
    """The default alert rules (``alerts/default_rules.yaml``, with their ``for_windows`` and cooldowns) run
    by the real :class:`alerts.engine.AlertEngine` on the monitor's metric points
    (``monitor.alerting.metric_points``) of one scenario's windows: which rules start firing when."""

    def __init__(self, state_dir: Path) -> None:
        from alerts.engine import AlertEngine
        from alerts.rules import load_rules
        from alerts.store import AlertStore

        self.engine = AlertEngine(load_rules(), AlertStore(state_dir / "alerts.sqlite"))
        self.firing: dict[str, list[bool]] = defaultdict(list)

    def add(self, outcome) -> None:
        from monitor.alerting import metric_points

        started = {event.rule for event in self.engine.evaluate(metric_points(outcome)) if event.status == "firing"}
        for rule in {r.name for r in self.engine.rules}:
            self.firing[rule].append(rule in started)
        self.firing["any rule"].append(bool(started))


def evidently_extras(rows: pd.DataFrame, fpr: float, window: int, seed: int) -> dict:
    """Evidently's Wasserstein drift on ``confidence``: its default threshold (0.1) beside a calibrated one."""
    from detectors.drift import EvidentlyValueDriftDetector

    detector = EvidentlyValueDriftDetector("confidence", "wasserstein").infer_threshold(rows, fpr, window, 50, seed)
    return {"evidently_wasserstein:confidence": (detector, 0.1)}


def delay(fired: list[bool], onset: int) -> int | None:
    """Windows from the onset to the first alarm at or after it (None: never detected)."""
    hits = [index for index, flag in enumerate(fired) if flag and index >= onset]
    return hits[0] - onset if hits else None


def score_scenarios(suite, scenarios: list[Scenario], extras: dict, reference_kind: str, seed: int) -> dict:
    """Per detector: false alarms per 100 windows (stable) and delay per shift; the same for the alert rules
    (a window counts when an alert starts firing in it); accuracy-estimate errors against the truth."""
    import tempfile

    from detectors.clusters import ClusterTracker

    detectors: dict[str, dict] = defaultdict(dict)
    alerts: dict[str, dict] = defaultdict(dict)
    accuracy: dict[str, dict] = {}
    for scenario in scenarios:
        fired: dict[str, list[bool]] = defaultdict(list)
        errors: dict[tuple[str, bool], list[float]] = defaultdict(list)
        suite.tracker = ClusterTracker(seed=seed)  # each scenario is its own history
        with tempfile.TemporaryDirectory() as state_dir:
            timeline = AlertTimeline(Path(state_dir))
            for index, window in enumerate(scenario.windows):
                flags, estimates, outcome = score_window(suite, window, index, extras, reference_kind)
                timeline.add(outcome)
                for name, flag in flags.items():
                    fired[name].append(flag)
                if "correct" in window.columns:
                    truth = float(window["correct"].mean())
                    shifted = scenario.onset is not None and index >= scenario.onset
                    for name, value in estimates.items():
                        errors[(name, shifted)].append(abs(value - truth))
        for table, flags_by_name in ((detectors, fired), (alerts, timeline.firing)):
            for name, flags in flags_by_name.items():
                if scenario.onset is None:
                    table[name]["false_alarms_per_100_windows"] = 100.0 * float(np.mean(flags))
                else:
                    table[name][f"{scenario.name}_delay_windows"] = delay(flags, scenario.onset)
                    table[name][f"{scenario.name}_alarms_before_onset"] = int(sum(flags[: scenario.onset]))
        accuracy[scenario.name] = _merge_accuracy(errors)
    return {"detectors": dict(detectors), "alert_rules": dict(alerts), "accuracy_estimate": accuracy}


def _merge_accuracy(errors: dict) -> dict:
    merged: dict[str, dict] = defaultdict(dict)
    for (name, shifted), values in errors.items():
        merged[name]["shifted_windows" if shifted else "clean_windows"] = {
            "mean_abs_error_points": 100 * float(np.mean(values)),
            "max_abs_error_points": 100 * float(np.max(values)),
            "windows": len(values),
        }
    return dict(merged)


def ood_separation(scenarios: list[Scenario]) -> dict:
    """AUROC and FPR at 95 % TPR of each per-utterance OOD score: ``oos`` (ood-burst) and emerging-intent rows
    (sudden-shift) against the in-domain rows of the same runs."""
    from detectors.ood import auroc, fpr_at_tpr

    found = {}
    for scenario in scenarios:
        rows = pd.concat(scenario.windows)
        positive = rows["kind"].isin(["ood", "emerging"]).to_numpy()
        negative = (rows["kind"] == "in-domain").to_numpy()
        if positive.sum() == 0:
            continue
        found[scenario.name] = {"n_ood": int(positive.sum()), "n_in_domain": int(negative.sum())}
        for name, (column, sign) in OOD_SCORES.items():
            values = sign * rows[column].to_numpy(float)
            found[scenario.name][name] = {
                "auroc": auroc(values[negative], values[positive]),
                "fpr_at_95_tpr": fpr_at_tpr(values[negative], values[positive]),
            }
    return found


# -------------------------------------------------------------------------------------------- synthetic source


def synthetic_scenarios(args: argparse.Namespace, names: list[str]) -> list[Scenario]:
    from detectors.synthetic import make_rows

    shares = {"stable": lambda i: 0.0}
    shares["sudden-shift"] = lambda i: 0.2 if i >= args.onset else 0.0
    shares["gradual-shift"] = lambda i: 0.2 * min(1.0, max(0, i - args.onset + 1) / 20)
    scenarios = []
    for offset, name in enumerate(["stable", *[n for n in names if n in shares]]):
        count = args.stable_windows if name == "stable" else args.shift_windows
        windows = [make_rows(args.window, seed=10_000 * (offset + 1) + args.seed + i, new_intent_share=shares[name](i))
                   for i in range(count)]
        for window in windows:
            window["kind"] = np.where(window["is_new_intent"], "emerging", "in-domain")
            window["text_scrubbed"] = ""
        scenarios.append(Scenario(name, windows, None if name == "stable" else args.onset))
    return scenarios


# ------------------------------------------------------------------------------------------------------ main


def time_large_window(suite, rows: pd.DataFrame, repeats: int = 5) -> list[float]:
    window = rows.sample(n=10_000, replace=len(rows) < 10_000, random_state=0).reset_index(drop=True)
    suite.score(window)  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        suite.score(window)
        timings.append(time.perf_counter() - start)
    return timings


def print_table(kind: str, scored: dict, names: list[str]) -> None:
    print(f"\nreference: {kind}")
    print(f"{'detector':34s}{'FA/100':>7s}" + "".join(f"{n[:12]:>13s}" for n in names))
    for detector, entry in sorted(scored["detectors"].items()):
        delays = "".join(f"{entry.get(f'{n}_delay_windows')!s:>13s}" for n in names)
        print(f"{detector:34s}{entry.get('false_alarms_per_100_windows', float('nan')):7.1f}{delays}")
    print("alert rules (alerts/default_rules.yaml through the alert engine):")
    for rule, entry in sorted(scored["alert_rules"].items()):
        delays = "".join(f"{entry.get(f'{n}_delay_windows')!s:>13s}" for n in names)
        print(f"  {rule:32s}{entry.get('false_alarms_per_100_windows', float('nan')):7.1f}{delays}")
    print("accuracy estimate, mean |error| in points on shifted windows (clean windows):")
    for name in names:
        parts = []
        for estimator, entry in scored["accuracy_estimate"].get(name, {}).items():
            shifted = entry.get("shifted_windows", {}).get("mean_abs_error_points", float("nan"))
            clean = entry.get("clean_windows", {}).get("mean_abs_error_points", float("nan"))
            parts.append(f"{estimator} {shifted:.1f} ({clean:.1f})")
        print(f"  {name:16s} " + ", ".join(parts))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from monitor.reference import fit_suite

    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SHIFTS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {SHIFTS}")
    started = time.perf_counter()
    if args.source == "replay":
        source = ReplaySource(args)
        fpr = args.fpr if args.fpr is not None else source.settings.monitor.drift_false_alarm_rate
        max_sample = source.settings.monitor.max_sample
        kinds = [k.strip() for k in args.references.split(",") if k.strip()]
        references = source.references(kinds, args.reference_rows, args.seed + 1_000)
        scenarios = [source.scenario("stable", args.stable_windows, args.window, None, args.seed)]
        scenarios += [source.scenario(name, args.shift_windows, args.window, args.onset, args.seed + 1 + i)
                      for i, name in enumerate(names)]
        package_version = source.model.version
    else:
        from detectors.synthetic import make_rows

        fpr, max_sample, package_version = args.fpr or 0.01, 1000, None
        references = {"synthetic": (make_rows(args.reference_rows, seed=args.seed), {})}
        scenarios = synthetic_scenarios(args, names)
    data_s = time.perf_counter() - started
    shift_names = [s.name for s in scenarios if s.onset is not None]
    results, calibration_s, timings = {}, {}, {}
    for kind, (rows, stats) in references.items():
        start = time.perf_counter()
        suite, _ = fit_suite(rows, stats, fpr=fpr, n_windows=args.calibration_windows, ood_fpr=0.05,
                             max_sample=max(max_sample, args.window), seed=args.seed)
        calibration_s[kind] = time.perf_counter() - start
        extras = evidently_extras(rows, fpr, min(args.window, len(rows) // 2), args.seed)
        results[kind] = score_scenarios(suite, scenarios, extras, kind, args.seed)
        timings[kind] = time_large_window(suite, pd.concat(scenarios[0].windows))
        print_table(kind, results[kind], shift_names)
    separation = ood_separation(scenarios)
    print("\nper-utterance OOD scores (AUROC / FPR at 95 % TPR):")
    for name, entry in separation.items():
        scores = ", ".join(f"{s} {entry[s]['auroc']:.3f}/{entry[s]['fpr_at_95_tpr']:.2f}" for s in OOD_SCORES)
        print(f"  {name:16s} ({entry['n_ood']} OOD rows) {scores}")
    for kind, values in timings.items():
        print(f"10,000-row window, all detectors ({kind} reference): median {np.median(values):.3f} s")
    result = {
        **header(argv, LIBRARIES),
        "parameters": parameters(args) | {"fpr_used": fpr},
        "package_version": package_version,
        "units": {
            "false_alarms_per_100_windows": "alarms per 100 stable windows",
            "delay_windows": "windows after onset (0 = first shifted window; null = never)",
            "mean_abs_error_points": "|estimated - true accuracy| in percentage points",
            "auroc": "area under ROC, OOD positive", "fpr_at_95_tpr": "share of in-domain rows flagged at 95 % TPR",
            "*_s, seconds": "s",
        },
        "windows": {s.name: {"windows": len(s.windows), "onset": s.onset,
                             "rows": int(sum(len(w) for w in s.windows)),
                             "true_accuracy": [round(float(w["correct"].mean()), 4) for w in s.windows]
                             if "correct" in s.windows[0].columns else None}
                    for s in scenarios},
        "references": results,
        "ood_separation": separation,
        "data_s": data_s,
        "calibration_s": calibration_s,
        "score_10k_window_seconds": {kind: {"median": float(np.median(v)), "all": v} for kind, v in timings.items()},
    }
    save(result, args.output)
    return result


if __name__ == "__main__":
    main()
