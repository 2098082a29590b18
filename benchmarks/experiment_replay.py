"""The live parts of ``benchmarks/experiment.py --replay``: shadow throughput, and an experiment on replayed traffic.

1. Shadow on vs off: the sustained pipeline rate of one ``nlumon worker`` draining the same backlog, without and
   with a shadow challenger scoring every session, side by side in one run (the ratio is the cost of shadowing).
2. A replay where the challenger is better on a new product line: the champion (trained on the retail intents)
   serves the control arm, the challenger (``--corpus retail-next``: the retail intents plus the emerging product
   line's) the treatment arm and shadows the whole traffic; the ``sudden-shift`` scenario brings the new product
   line; the outcome simulator (``streams.outcome_sim``) answers every prediction from the truth, so a right answer
   completes more often; then the experiment's report (``experiments.report``) must pick the challenger, and the
   shadow disagreement must point to the new product line's intents.

Runs on the test services (started if needed). The challenger is trained once into ``.run/bench/models/next``
(``nlumon model train --quick --corpus retail-next``, ~5 minutes on 2 cores) unless ``--challenger`` names one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream import events, pipeline_rate, retag  # noqa: E402

from nlumon.schema import connect  # noqa: E402
from nlumon.services import services_up  # noqa: E402
from tests.conftest import make_test_settings  # noqa: E402
from tests.integration.workers import isolated  # noqa: E402

DEFAULT_CHAMPION = ROOT / ".run" / "test" / "models" / "quick"
DEFAULT_CHALLENGER = ROOT / ".run" / "bench" / "models" / "next"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/experiment.py --replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--champion", type=Path, default=DEFAULT_CHAMPION, help="package of the control arm")
    parser.add_argument("--challenger", type=Path, default=DEFAULT_CHALLENGER,
                        help="package of the treatment arm and the shadow (trained, retail-next, if absent)")
    parser.add_argument("--backlog", type=int, default=3000, help="events per throughput run (shadow off, on)")
    parser.add_argument("--count", type=int, default=6000, help="events of the replayed experiment")
    parser.add_argument("--shift-at", type=float, default=0.2, help="where the new product line starts (0..1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--metric", default="rephrased",
                        help="primary metric of the experiment (session level; with 5 utterances a session nearly "
                             "every session completes something, so rephrasing tells the arms apart)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-experiment", action="store_true")
    return parser.parse_args(argv)


def ensure_challenger(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    from model_runtime.pipeline import TrainRequest, train_to_package

    print(f"training the challenger into {path} (retail-next, quick profile; several minutes) ...", flush=True)
    return train_to_package(TrainRequest(corpus="retail-next", quick=True, device="cpu"), path).path


def shadow_throughput(base, champion: Path, challenger: Path, count: int, log_dir: Path) -> dict:
    """Pipeline rate without and with the shadow challenger, the same backlog, one after the other."""
    run = uuid.uuid4().hex[:8]
    rates = {}
    for name, shadow in (("off", None), ("on", challenger)):
        settings = isolated(base, f"shadow-{name}-{run}", model={"package_path": champion},
                            shadow={"package_path": shadow, "share": 1.0})
        backlog = retag(events(name, count, 11), f"s{name}{run}-")
        rates[name], rss_kb = pipeline_rate(settings, backlog, f"s{name}{run}-", log_dir)
        print(f"shadow {name:3}  {rates[name]:7.1f} utt/s  (worker peak RSS {rss_kb / 1024:.0f} MiB)", flush=True)
        rates[f"rss_{name}_mib"] = round(rss_kb / 1024, 1)
    ratio = rates["on"] / rates["off"]
    print(f"shadow on / off: {ratio:.2f} of the throughput", flush=True)
    return {"pipeline_utt_per_s_shadow_off": round(rates["off"], 1),
            "pipeline_utt_per_s_shadow_on": round(rates["on"], 1), "shadow_throughput_ratio": round(ratio, 3),
            "worker_peak_rss_mib": {"off": rates["rss_off_mib"], "on": rates["rss_on_mib"]}, "backlog": count}


def replayed_experiment(base, champion: Path, challenger: Path, args: argparse.Namespace, log_dir: Path) -> dict:
    """Champion vs challenger on a replay that brings a new product line; outcomes from the simulator."""
    from datetime import UTC, datetime, timedelta

    from experiments.definition import Arm, Experiment, save_experiment
    from experiments.report import build_report, format_table, store_experiment, store_look
    from model_runtime.data.retail import EMERGING_INTENTS
    from model_runtime.package import load_package
    from streams.outcome_sim import load_truth, prediction_offsets, simulate
    from streams.replay import produce, save_truth
    from streams.scenarios import scenario_events, timeline_document
    from tests.integration.workers import Worker, full_log, wait_until

    run = uuid.uuid4().hex[:8]
    path = log_dir / f"experiment-{run}.json"
    settings = isolated(base, f"exp-{run}", model={"package_path": champion},
                        shadow={"package_path": challenger, "share": 1.0},
                        experiments={"path": path, "poll_s": 1.0})
    versions = {name: load_package(p, verify=False).version for name, p in (("control", champion),
                                                                            ("treatment", challenger))}
    experiment = Experiment(name=f"next-line-{run}", primary_metric=args.metric, arms=[
        Arm(name="control", package_path=champion, share=0.5), Arm(name="treatment", package_path=challenger,
                                                                   share=0.5)])
    save_experiment(path, experiment)
    client = connect(settings.clickhouse)
    store_experiment(client, experiment, list(versions.values()))
    worker = Worker(settings, f"bench-experiment-{run}", log_dir)
    try:
        wait_until(lambda: f"experiment {experiment.name} running" in full_log(worker), 300, "the experiment",
                   (worker,))
        offsets = prediction_offsets(settings)
        truth_dir = log_dir / f"replay-{run}"
        # simulated event times end now, so every session is over (its outcomes counted) when the report is read
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(milliseconds=100.0 * args.count)
        scenario = scenario_events("sudden-shift", args.count, seed=args.seed, start=start, spacing_ms=100.0,
                                   shift_at=args.shift_at)
        timeline = timeline_document("sudden-shift", args.count, args.seed, start, 100.0, args.shift_at)
        started, sent_from = time.perf_counter(), datetime.now(UTC).replace(microsecond=0)
        produce(settings, save_truth(truth_dir, timeline, scenario))
        simulated = simulate(settings, truth_dir / "truth.jsonl", seed=args.seed, timeout_s=1800, idle_s=180,
                             start_offsets=offsets, progress=True)
        print(f"replay: {simulated.summary()} in {time.perf_counter() - started:.0f} s", flush=True)
        ids = list(load_truth(truth_dir / "truth.jsonl"))
        wait_until(lambda: stored(client, "outcomes", "utterance_id", ids) >= simulated.matched, 300,
                   "the outcomes in ClickHouse", (worker,))
    finally:
        worker.stop()
    report = build_report(client, experiment, outcome_delay_s=0, final=True)
    store_look(client, report)
    print(format_table(report), flush=True)
    shadow = shadow_disagreement(client, versions["control"], truth_dir / "truth.jsonl", set(EMERGING_INTENTS),
                                 since=sent_from)
    client.disconnect()
    return {"scenario": "sudden-shift", "count": args.count, "shift_at": args.shift_at, "seed": args.seed,
            "primary_metric": args.metric, "versions": versions, "utterances_answered": simulated.matched,
            "outcomes_sent": dict(simulated.outcomes),
            "report": report.to_dict(), "decision": report.decision.outcome, "winner": report.decision.arm,
            "shadow": shadow}


def stored(client, table: str, column: str, ids: list[str]) -> int:
    return client.execute(f"SELECT uniqExact({column}) FROM {table} WHERE {column} IN %(ids)s",
                          {"ids": tuple(ids)})[0][0]


def shadow_disagreement(client, champion_version: str, truth_path: Path, emerging: set[str], since) -> dict:
    """Where the shadow challenger disagreed with the champion's served answer, against the replay's truth: the
    intents it said instead (top by count), and the disagreement rate on the new product line vs the rest (rows of
    this replay only: stored from ``since`` on; a replay with the same seed sends the same ids)."""
    truth = {json.loads(line)["id"]: json.loads(line) for line in truth_path.read_text().splitlines()
             if "id" in json.loads(line)}
    rows = client.execute(
        "SELECT id, intent, champion_intent, intent_agrees FROM shadow_predictions FINAL "
        "WHERE champion_version = %(v)s AND id IN %(ids)s AND ingested_at >= %(since)s",
        {"v": champion_version, "ids": tuple(truth), "since": since.replace(tzinfo=None)})
    by_kind: dict[str, list[int]] = {}
    said = Counter()
    for event_id, intent, _champion_intent, agrees in rows:
        by_kind.setdefault(truth[event_id]["kind"], []).append(1 - agrees)
        if not agrees:
            said[intent] += 1
    disagreeing = sum(said.values())
    top = said.most_common(8)
    new_line = sum(count for intent, count in said.items() if intent in emerging)
    rates = {kind: round(sum(v) / len(v), 4) for kind, v in by_kind.items()}
    print(f"shadow: {len(rows)} utterances compared, {disagreeing} disagreements; rate by kind {rates}; "
          f"challenger said {top[:5]}", flush=True)
    return {"compared": len(rows), "disagreements": disagreeing, "disagreement_rate_by_truth_kind": rates,
            "challenger_intents_top": top, "share_of_disagreements_on_new_line_intents":
            round(new_line / disagreeing, 4) if disagreeing else None, "new_line_intents": sorted(emerging)}


def main(argv: list[str]) -> dict:
    args = parse(argv)
    base = make_test_settings(stream={"metrics_port": 0})
    services_up(base)
    log_dir = ROOT / ".run" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    champion = args.champion.resolve()
    challenger = ensure_challenger(args.challenger).resolve()
    result: dict = {"champion": str(args.champion), "challenger": str(args.challenger)}
    if not args.skip_throughput:
        result["shadow"] = shadow_throughput(base, champion, challenger, args.backlog, log_dir)
    if not args.skip_experiment:
        result["experiment"] = replayed_experiment(base, champion, challenger, args, log_dir)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
