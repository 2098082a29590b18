"""Session A/B experiments, simulated: is the sequential test valid under continuous monitoring, and how fast?

Each simulated experiment sends sessions to a control and a challenger arm (``--share`` to the challenger) and
looks at the result every ``--look-every`` sessions until ``--max-sessions``, as someone refreshing
``nlumon experiment status`` would. A session completes its task with the arm's probability. At each look the
mSPRT of ``experiments.stats`` gives the always-valid p-value; the experiment stops at the first look where both
arms have ``--min-sessions`` and the p-value is at most ``--alpha`` (``experiments.stats.first_decision``, the
vectorised twin of ``decide``).

1. A/A (both arms at ``--base``): the false positive rate of the sequential test over ``--runs`` experiments
   (must be <= alpha), next to a fixed-horizon z-test peeked at every look (what a dashboard without a
   sequential test invites) and the same z-test looked at once, at the end; also the satisfaction mean (1-5).
2. A/B with true completion lifts (``--lifts``, absolute points over ``--base``): power (the share of runs where
   the challenger wins), the runs' counts, and the median sessions to a decision; a fixed-horizon z-test at
   ``--max-sessions`` for comparison, the sessions a fixed test needs for 80 % power, and the share of
   sequential runs that had already decided by then.
3. The mixing scale tau: the same figures for several values (``--taus``), to show the choice.

Counts are drawn per look (binomial, multinomial), so 200 runs x 500 looks take well under a second.

    python benchmarks/experiment.py                  # the figures in docs/experiments.md (seconds)
    python benchmarks/experiment.py --replay ...     # + benchmarks/experiment_replay.py (live traffic), if present
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _meta import RESULTS, header, parameters, save  # noqa: E402

from experiments.stats import (  # noqa: E402
    DEFAULT_EFFECT,
    compare_means,
    compare_proportions,
    first_decision,
)

# A 1-5 satisfaction rating: the distribution of both arms in the A/A simulation of the mean metric.
RATINGS = np.array([1, 2, 3, 4, 5], float)
RATING_SHARES = np.array([0.08, 0.07, 0.15, 0.35, 0.35])


def simulate_rates(rng: np.random.Generator, runs: int, looks: int, every: int, share: float,
                   p_control: float, p_challenger: float) -> dict[str, np.ndarray]:
    """Cumulative sessions and completions per arm at each look, shape ``(runs, looks)``."""
    n_t = rng.binomial(every, share, (runs, looks))
    n_c = every - n_t
    x_c, x_t = rng.binomial(n_c, p_control), rng.binomial(n_t, p_challenger)
    return {name: np.cumsum(value, axis=1) for name, value in
            {"n_c": n_c, "n_t": n_t, "x_c": x_c, "x_t": x_t}.items()}


def z_statistic(data: dict[str, np.ndarray]) -> np.ndarray:
    """The fixed-horizon two-proportion z statistic (pooled variance) at every look."""
    n_c, n_t = data["n_c"], data["n_t"]
    pooled = (data["x_c"] + data["x_t"]) / (n_c + n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (data["x_t"] / n_t - data["x_c"] / n_c) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    return np.nan_to_num(z)


def sequential(data: dict[str, np.ndarray], tau: float, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The look each run stops at (-1: never) and the sign of its estimate there."""
    test = compare_proportions(data["x_c"], data["n_c"], data["x_t"], data["n_t"], tau=tau, alpha=args.alpha)
    stop = first_decision(test.p_value, data["n_c"], data["n_t"], min_sessions=args.min_sessions, alpha=args.alpha)
    at = np.maximum(stop, 0)
    sign = np.sign(np.take_along_axis(np.asarray(test.estimate), at[:, None], axis=1)[:, 0])
    return {"stop": stop, "sign": np.where(stop >= 0, sign, 0)}


def peeking(data: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    """Rejections of the fixed-horizon z-test: at any eligible look (peeking) and at the last look only."""
    z = np.abs(z_statistic(data))
    eligible = (data["n_c"] >= args.min_sessions) & (data["n_t"] >= args.min_sessions)
    critical = sps.norm.ppf(1 - args.alpha / 2)
    return {"peeked": float(np.mean(((z >= critical) & eligible).any(axis=1))),
            "end_only": float(np.mean(z[:, -1] >= critical))}


def aa_rates(rng: np.random.Generator, runs: int, tau: float, args: argparse.Namespace) -> dict:
    looks = args.max_sessions // args.look_every
    data = simulate_rates(rng, runs, looks, args.look_every, args.share, args.base, args.base)
    decided = sequential(data, tau, args)["stop"] >= 0
    naive = peeking(data, args)
    return {"runs": runs, "looks": looks, "false_positives": int(decided.sum()),
            "false_positive_rate": float(decided.mean()),
            "naive_peeking_false_positive_rate": naive["peeked"],
            "fixed_horizon_false_positive_rate": naive["end_only"]}


def aa_satisfaction(rng: np.random.Generator, runs: int, args: argparse.Namespace) -> dict:
    """A/A of the mean metric: the same mSPRT on session satisfaction (every simulated session rates)."""
    looks = args.max_sessions // args.look_every
    n_t = rng.binomial(args.look_every, args.share, (runs, looks))
    sums = {}
    for arm, n in (("c", args.look_every - n_t), ("t", n_t)):
        counts = rng.multinomial(n.ravel(), RATING_SHARES).reshape(runs, looks, len(RATINGS))
        sums[arm] = (np.cumsum(n, axis=1), np.cumsum(counts @ RATINGS, axis=1),
                     np.cumsum(counts @ RATINGS ** 2, axis=1))

    def moments(n, total, squares):
        mean = total / np.maximum(n, 1)  # an arm can be empty at the first looks; compare_means ignores n < 2
        return mean, (squares - n * mean ** 2) / np.maximum(n - 1, 1), n

    (mc, vc, nc), (mt, vt, nt) = moments(*sums["c"]), moments(*sums["t"])
    test = compare_means(mc, vc, nc, mt, vt, nt, tau=DEFAULT_EFFECT["mean"], alpha=args.alpha)
    decided = first_decision(test.p_value, nc, nt, min_sessions=args.min_sessions, alpha=args.alpha) >= 0
    return {"runs": runs, "looks": looks, "tau": DEFAULT_EFFECT["mean"], "false_positives": int(decided.sum()),
            "false_positive_rate": float(decided.mean())}


def ab_rates(rng: np.random.Generator, lift: float, tau: float, args: argparse.Namespace) -> dict:
    looks = args.max_sessions // args.look_every
    data = simulate_rates(rng, args.runs, looks, args.look_every, args.share, args.base, args.base + lift)
    outcome = sequential(data, tau, args)
    wins, losses = (outcome["sign"] > 0), (outcome["sign"] < 0)
    sessions = (outcome["stop"][wins] + 1) * args.look_every
    critical = sps.norm.ppf(1 - args.alpha / 2)
    fixed_n = fixed_sessions(args.base, lift, args.share, args.alpha)
    return {
        "lift": lift, "runs": args.runs, "challenger_wins": int(wins.sum()), "control_wins": int(losses.sum()),
        "undecided": int((outcome["stop"] < 0).sum()), "power": float(wins.mean()),
        "median_sessions_to_decision": float(np.median(sessions)) if sessions.size else None,
        "p25_sessions": float(np.percentile(sessions, 25)) if sessions.size else None,
        "p75_sessions": float(np.percentile(sessions, 75)) if sessions.size else None,
        "fixed_horizon_power_at_max": float(np.mean(z_statistic(data)[:, -1] >= critical)),
        "fixed_horizon_sessions_for_80_power": fixed_n,
        "power_within_fixed_n": float(np.mean(wins & ((outcome["stop"] + 1) * args.look_every <= fixed_n))),
    }


def fixed_sessions(base: float, lift: float, share: float, alpha: float, power: float = 0.8) -> int:
    """Total sessions a fixed-horizon two-sided z-test needs for ``power`` (unpooled normal approximation)."""
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    variance = base * (1 - base) / (1 - share) + (base + lift) * (1 - base - lift) / share
    return int(np.ceil(z * z * variance / lift ** 2))


def replay_hook(argv: list[str]) -> dict | None:
    """The live-traffic part (benchmarks/experiment_replay.py, the replay and shadow throughput), when present."""
    if importlib.util.find_spec("benchmarks.experiment_replay") is None:
        print("replay: skipped (benchmarks/experiment_replay.py does not exist)")
        return None
    from benchmarks import experiment_replay

    return experiment_replay.main(argv)


def print_results(result: dict) -> None:
    aa = result["aa"]
    print(f"A/A task completion ({aa['runs']} runs, a look every {result['parameters']['look_every']} sessions, "
          f"{aa['looks']} looks):")
    print(f"  mSPRT false positive rate            {aa['false_positive_rate']:.3f} ({aa['false_positives']} runs)")
    print(f"  fixed-horizon z-test, peeked          {aa['naive_peeking_false_positive_rate']:.3f}")
    print(f"  fixed-horizon z-test, end only        {aa['fixed_horizon_false_positive_rate']:.3f}")
    big = result["aa_many"]
    print(f"  mSPRT over {big['runs']} runs              {big['false_positive_rate']:.4f}")
    sat = result["aa_satisfaction"]
    many = result["aa_satisfaction_many"]
    print(f"A/A satisfaction mean: false positive rate {sat['false_positive_rate']:.3f} ({sat['runs']} runs), "
          f"{many['false_positive_rate']:.4f} ({many['runs']} runs)")
    print(f"A/B at base {result['parameters']['base']:.2f}:")
    print(f"  {'lift':>6} {'power':>6} {'wins':>5} {'losses':>6} {'none':>5} {'median sessions':>16} "
          f"{'fixed power@max':>16} {'fixed n@80%':>12} {'power by then':>14}")
    for row in result["ab"]:
        median = row["median_sessions_to_decision"]
        print(f"  {row['lift']:+6.3f} {row['power']:6.3f} {row['challenger_wins']:5d} {row['control_wins']:6d} "
              f"{row['undecided']:5d} {median if median is not None else '-':>16} "
              f"{row['fixed_horizon_power_at_max']:16.3f} {row['fixed_horizon_sessions_for_80_power']:12d} "
              f"{row['power_within_fixed_n']:14.3f}")
    print("tau sensitivity (A/A false positive rate; power and median sessions per lift):")
    for row in result["tau_sensitivity"]:
        parts = [f"lift {ab['lift']:+.2f}: {ab['power']:.2f} / {ab['median_sessions_to_decision']}"
                 for ab in row["ab"]]
        print(f"  tau {row['tau']:.3f}  FPR {row['aa_false_positive_rate']:.3f}  " + "  ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="simulated experiments per setting")
    parser.add_argument("--many-runs", type=int, default=5000, help="A/A runs for a tighter false-positive figure")
    parser.add_argument("--base", type=float, default=0.65, help="the control's task completion rate")
    parser.add_argument("--lifts", type=float, nargs="+", default=[0.02, 0.05], help="true lifts (absolute)")
    parser.add_argument("--share", type=float, default=0.5, help="the challenger's share of sessions")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-sessions", type=int, default=200, help="per arm before a decision")
    parser.add_argument("--max-sessions", type=int, default=60_000, help="sessions over both arms")
    parser.add_argument("--look-every", type=int, default=100, help="sessions between two looks")
    parser.add_argument("--tau", type=float, default=DEFAULT_EFFECT["rate"], help="mSPRT mixing scale of a rate")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.01, 0.02, 0.03, 0.05, 0.1])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--replay", action="store_true",
                        help="also run benchmarks/experiment_replay.py (live replay, shadow throughput) if present")
    parser.add_argument("--out", type=Path, default=RESULTS / "experiment.json")
    args, rest = parser.parse_known_args(argv)
    if rest and not args.replay:
        parser.error(f"unrecognized arguments: {' '.join(rest)} (only --replay passes arguments on)")

    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    result = {**header(argv, ["numpy", "scipy"]), "parameters": parameters(args)}
    result["aa"] = aa_rates(rng, args.runs, args.tau, args)
    result["aa_many"] = aa_rates(rng, args.many_runs, args.tau, args)
    result["aa_satisfaction"] = aa_satisfaction(rng, args.runs, args)
    result["aa_satisfaction_many"] = aa_satisfaction(rng, args.many_runs, args)
    result["ab"] = [ab_rates(rng, lift, args.tau, args) for lift in args.lifts]
    result["tau_sensitivity"] = [
        {"tau": tau, "aa_false_positive_rate": aa_rates(rng, args.runs, tau, args)["false_positive_rate"],
         "ab": [ab_rates(rng, lift, tau, args) for lift in args.lifts]} for tau in args.taus]
    result["targets"] = {"aa_false_positive_rate_at_most_alpha": result["aa"]["false_positive_rate"] <= args.alpha}
    result["seconds"] = round(time.perf_counter() - started, 2)
    print_results(result)
    if args.replay:
        result["replay"] = replay_hook(rest)
    save(result, args.out)
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
