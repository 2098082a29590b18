"""The annotator and one full loop, measured: labeling functions, aggregators, agreement, and a retrain.

Part 1 (seconds): every labeling function alone, majority vote, the weighted vote and the label model (both
fitted on ``labeling.annotation.slice.fit_set``) on slices the annotator never sees while fitting:

- ``store-logs``: store-associate logs from ``slice.eval_slice`` (names outside the training lexicon and disjoint
  from the fit set's, names that are also brands, ASR-style text, store abbreviations);
- ``snips``: SNIPS test sentences with artist → person and timeRange → time spans;
- ``generator``: store-associate utterances of the retail generator with its held-out names (other phrasings
  than the slice's; the weak supervision was not tuned on them).

Per slice and method: exact-span precision/recall/F1 for person and time, brand-as-person and person-as-brand
rates; Krippendorff's alpha among the functions and of each aggregate against gold; low-agreement functions.

Part 2 (``--loop``, minutes): one loop on the ``new-names`` scenario. The champion (``--package``) annotates
cleared new-names traffic; a challenger is trained with the same profile plus the auto-labelled examples; both
are measured on held-out new-names traffic (person/time span F1) and on the production holdout (intent accuracy
and slot F1 per assistant).

    python benchmarks/annotation.py --package .run/test/models/quick                  # part 1, ~1 min
    python benchmarks/annotation.py --package .run/test/models/quick --loop           # + the loop, ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _meta import RESULTS, header, parameters, save  # noqa: E402

os.environ.setdefault("DO_NOT_TRACK", "1")
TYPES = ("person", "time")


def generator_slice(n: int, seed: int) -> list:
    """Associate utterances of the retail generator with held-out names, gold from their tags."""
    from labeling.annotation.annotator import gold_labels
    from labeling.annotation.slice import GoldUtterance
    from model_runtime.data.retail import GeneratorConfig, iter_examples

    out = []
    for index, example in enumerate(iter_examples(GeneratorConfig(n=n * 6, seed=seed, unseen_names=True))):
        if example.assistant == "associate":
            out.append(GoldUtterance(f"gen-{index}", example.tokens, gold_labels(example.tags), "associate",
                                     "generator"))
        if len(out) >= n:
            break
    return out


def measure_methods(annotator_factory, functions, slices: dict) -> dict:
    from labeling.annotation.aggregate import confusion_rates, span_scores
    from labeling.annotation.agreement import agreement_report

    results: dict = {"slices": {}, "agreement": {}}
    fitted = {name: annotator_factory(name) for name in ("majority", "weighted", "label-model")}
    for slice_name, gold_set in slices.items():
        texts = [" ".join(g.tokens) for g in gold_set]
        gold = [list(g.labels) for g in gold_set]
        base = fitted["weighted"]
        utterances, _ = base.utterances(texts, [g.assistant for g in gold_set])
        votes = [base.votes(u) for u in utterances]
        rows = {}
        for index, function in enumerate(functions):
            pred = [[v.label if v else "O" for v in vs[index]] for vs in votes]
            rows[function.name] = {**span_scores(pred, gold, TYPES), **confusion_rates(pred, gold)}
        predictions = {}
        for name, annotator in fitted.items():
            pred = [[d.label for d in annotator.aggregator.predict(vs)] for vs in votes]
            predictions[name] = pred
            rows[name] = {**span_scores(pred, gold, TYPES), **confusion_rates(pred, gold)}
        results["slices"][slice_name] = {"n": len(gold_set), "methods": rows}
        report = agreement_report(votes_as_labels(votes), [f.name for f in functions],
                                  reference=predictions["weighted"], gold=gold)
        results["agreement"][slice_name] = {
            **report.to_dict(),
            "aggregates_against_gold": {name: alpha(pred, gold) for name, pred in predictions.items()},
        }
    return results


def votes_as_labels(votes: list) -> list:
    return [[[v.label if v else None for v in per_function] for per_function in utterance] for utterance in votes]


def alpha(pred: list, gold: list) -> dict:
    from labeling.annotation.agreement import alpha_against_gold

    return alpha_against_gold(pred, gold, TYPES)


def print_methods(results: dict) -> None:
    for slice_name, block in results["slices"].items():
        print(f"\n{slice_name} (n={block['n']})")
        print(f"{'method':18} {'person P/R/F1':>22} {'time P/R/F1':>22} {'brand→person':>13} {'person→brand':>13}")
        for name, row in block["methods"].items():
            cells = [f"{row[t]['precision']:.3f}/{row[t]['recall']:.3f}/{row[t]['f1']:.3f}" for t in TYPES]
            bp, pb = row.get("brand_as_person"), row.get("person_as_brand")
            print(f"{name:18} {cells[0]:>22} {cells[1]:>22} {_rate(bp):>13} {_rate(pb):>13}")
        agreement = results["agreement"][slice_name]
        print(f"  alpha among functions: {_fmt(agreement['among_functions'])}; weighted vs gold: "
              f"{_fmt(agreement['aggregates_against_gold']['weighted'])}; low agreement: "
              f"{', '.join(agreement.get('low_agreement') or []) or 'none'}")


def _rate(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _fmt(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} -" for k, v in values.items())


def targets(results: dict) -> dict:
    """The issue's targets on the store-logs + SNIPS slice (weighted vote)."""
    out = {}
    for slice_name in ("store-logs", "snips", "all"):
        methods = results["slices"].get(slice_name, {}).get("methods")
        if not methods:
            continue
        singles = {k: v for k, v in methods.items() if k not in ("majority", "weighted", "label-model")}
        for kind in TYPES:
            best_name = max(singles, key=lambda k: singles[k][kind]["f1"])
            weighted = methods["weighted"][kind]["f1"]
            out[f"{slice_name}.{kind}"] = {
                "weighted_f1": weighted, "best_single": best_name, "best_single_f1": singles[best_name][kind]["f1"],
                "majority_f1": methods["majority"][kind]["f1"], "label_model_f1": methods["label-model"][kind]["f1"],
                "f1_at_least_0.90": weighted >= 0.90,
                "five_points_above_best_single": weighted >= singles[best_name][kind]["f1"] + 0.05,
                "above_majority": weighted > methods["majority"][kind]["f1"],
            }
        bp = methods["weighted"].get("brand_as_person")
        out[f"{slice_name}.brand_as_person"] = {"rate": bp, "at_most_2_percent": bp is not None and bp <= 0.02}
    return out


# -- part 2: one loop -----------------------------------------------------------------------------------------

def loop(args: argparse.Namespace, functions) -> dict:
    from datetime import UTC, datetime

    from labeling.annotation.annotator import LogEvent
    from labeling.annotation.build import build_annotator
    from model_runtime.data.holdout import load_holdout
    from model_runtime.data.retail import GeneratorConfig, iter_examples
    from model_runtime.pipeline import TrainRequest, train_to_package
    from model_runtime.runtime import load_runtime
    from monitor.annotate import append_examples
    from streams.scenarios import scenario_events

    started = time.perf_counter()
    annotator = build_annotator(args.package, functions=functions, seed=args.seed)
    events = []
    assistants = set(args.assistants.split(","))
    for item in scenario_events("new-names", args.loop_events, seed=args.seed, shift_at=0.0, cleared_share=1.0):
        if item.truth["kind"] == "malformed":
            continue
        payload = json.loads(item.value)
        if payload["assistant"] not in assistants:
            continue
        events.append(LogEvent(payload["id"], payload["text"], payload["assistant"], payload["session_id"],
                               datetime.fromisoformat(payload["ts"]).astimezone(UTC)))
    batch = annotator.annotate(events)
    work = Path(tempfile.mkdtemp(prefix="nlumon-annotation-bench-"))
    extra = work / "auto.jsonl"
    append_examples(extra, batch.examples)
    annotate_s = time.perf_counter() - started
    print(f"\nannotated {len(events)} new-names events in {annotate_s:.0f} s: {dict(batch.counts)}")

    request = TrainRequest(corpus="retail", quick=args.quick, seed=args.train_seed, device="cpu",
                           extra=(str(extra),))
    challenger = train_to_package(request, work / "challenger")
    print(f"challenger {challenger.version} trained in {challenger.manifest['training']['train_seconds']} s")

    traffic = [e for e in iter_examples(GeneratorConfig(n=args.eval_events * 5, seed=args.seed + 1000,
                                                        unseen_names=True, unseen_products=True))
               if e.assistant == "associate"][: args.eval_events]
    holdout = load_holdout()
    figures = {}
    for role, path in (("champion", args.package), ("challenger", challenger.path)):
        runtime = load_runtime(Path(path), "onnx-cpu")
        figures[role] = {"new_names": model_scores(runtime, traffic), "holdout": model_scores(runtime, holdout)}
        runtime.close()
    delta = {
        "person_f1_points": 100 * (figures["challenger"]["new_names"]["span_f1"]["person"]
                                   - figures["champion"]["new_names"]["span_f1"]["person"]),
        "time_f1_points": 100 * (figures["challenger"]["new_names"]["span_f1"]["date_time"]
                                 - figures["champion"]["new_names"]["span_f1"]["date_time"]),
        "intent_accuracy_points": {
            a: 100 * (figures["challenger"]["holdout"]["intent_accuracy"][a]
                      - figures["champion"]["holdout"]["intent_accuracy"][a])
            for a in figures["champion"]["holdout"]["intent_accuracy"]},
    }
    return {"annotation": {"events": len(events), "counts": dict(batch.counts), "examples": len(batch.examples),
                           "seconds": round(annotate_s, 1)},
            "challenger": {"version": challenger.version, "train_seconds": challenger.manifest["training"][
                "train_seconds"], "extra": challenger.manifest["training"].get("extra")},
            "models": figures, "delta": delta,
            "targets": {"person_f1_up_10_points": delta["person_f1_points"] >= 10,
                        "intent_within_0.3_points": all(abs(v) <= 0.3 or v > 0
                                                        for v in delta["intent_accuracy_points"].values())}}


def model_scores(runtime, examples) -> dict:
    """Intent accuracy and slot F1 per assistant, and person/date_time span F1 (exact spans)."""
    from model_runtime.data.bio import bio_spans

    predictions = runtime.predict([e.text for e in examples])
    correct, total = defaultdict(int), defaultdict(int)
    counts = defaultdict(lambda: [0, 0, 0])  # type or assistant -> tp, fp, fn
    for example, prediction in zip(examples, predictions, strict=True):
        for key in (example.assistant, "all"):
            total[key] += 1
            correct[key] += prediction.intent == example.intent
        gold, pred = set(example.spans()), set(bio_spans(prediction.tags))
        for kind in ("person", "date_time"):
            g, p = {s for s in gold if s[0] == kind}, {s for s in pred if s[0] == kind}
            counts[kind][0] += len(g & p)
            counts[kind][1] += len(p - g)
            counts[kind][2] += len(g - p)
        for key in (f"slots:{example.assistant}", "slots:all"):
            counts[key][0] += len(gold & pred)
            counts[key][1] += len(pred - gold)
            counts[key][2] += len(gold - pred)

    def f1(tp, fp, fn) -> float:
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    return {
        "n": len(examples),
        "intent_accuracy": {k: correct[k] / total[k] for k in sorted(total)},
        "slot_f1": {k.split(":")[1]: f1(*v) for k, v in counts.items() if k.startswith("slots:")},
        "span_f1": {k: f1(*counts[k]) for k in ("person", "date_time")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=None,
                        help="champion package (its slot predictions are one labeling function; needed for --loop)")
    parser.add_argument("--slice-size", type=int, default=2000, help="store-log utterances in the evaluation slice")
    parser.add_argument("--snips", type=int, default=300, help="SNIPS test sentences in the slice")
    parser.add_argument("--generator", type=int, default=500, help="generator associate utterances (3rd slice)")
    parser.add_argument("--fit-size", type=int, default=300, help="labelled holdout the aggregators are fitted on")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--loop", action="store_true", help="also run one full loop (trains a challenger)")
    parser.add_argument("--loop-events", type=int, default=6000,
                        help="new-names events of the scenario (those of --assistants are annotated)")
    parser.add_argument("--assistants", default="associate",
                        help="whose cleared events the loop annotates (as `nlumon loop run --assistants`)")
    parser.add_argument("--eval-events", type=int, default=600, help="held-out new-names associate utterances")
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=True,
                        help="train the challenger with the quick profile (as the quick champion was)")
    parser.add_argument("--train-seed", type=int, default=13, help="the champion's training seed")
    parser.add_argument("--out", type=Path, default=RESULTS / "annotation.json")
    args = parser.parse_args(argv)
    if args.loop and args.package is None:
        parser.error("--loop needs --package (the champion)")

    from labeling.annotation.build import all_functions, build_annotator
    from labeling.annotation.slice import eval_slice, fit_set

    started = time.perf_counter()
    functions = all_functions()
    fit = fit_set(args.fit_size)
    slice_all = eval_slice(args.slice_size, snips=args.snips)
    slices = {"store-logs": [g for g in slice_all if g.source == "store-logs"],
              "snips": [g for g in slice_all if g.source == "snips"], "all": slice_all,
              "generator": generator_slice(args.generator, args.seed)}
    champion_note = str(args.package) if args.package else "none (the champion function abstains)"

    def factory(name: str):
        return build_annotator(args.package, functions=functions, aggregator=name, fit_examples=fit, seed=0)

    results = measure_methods(factory, functions, slices)
    print(f"champion: {champion_note}")
    print_methods(results)
    result = {**header(argv, ["numpy", "snorkel", "krippendorff", "probablepeople", "python-crfsuite", "torch",
                              "onnxruntime"]),
              "parameters": parameters(args), "champion": champion_note,
              "functions": [f.name for f in functions], **results, "targets": targets(results)}
    print("\ntargets:")
    for key, value in result["targets"].items():
        print(f"  {key}: {value}")
    if args.loop:
        result["loop"] = loop(args, functions)
        print("\nloop:", result["loop"]["delta"], result["loop"]["targets"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    save(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
