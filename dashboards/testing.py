"""Rows for the monitor's tables and issue 16's tables, derived from stored predictions, for tests and demos of
the dashboards.

The monitor job (``monitor/job.py``) did not exist when the dashboards were written, so the
dashboard tests fill ``monitor_windows``, ``drift_results``, ``ood_clusters``, ``alert_events``,
``alert_deliveries``, ``labeling_queue`` and ``slot_value_windows`` with values computed from the real predictions
of a replay (slot values "unseen" when the group's first window did not have them):
per-window means, a two-sample KS statistic against the first window with its 5 % critical value, a
linear-kernel MMD on the embedding sketch, OOD utterances grouped by predicted intent, and the
labeling reasons of :mod:`labeling.flags` in simplified form. Not a detector: just realistic rows.

The same way, :func:`outcome_rows` gives the tables of routes, outcomes, the shadow challenger, conversion and a
session A/B experiment (issue 16) from the same predictions: the route the worker stored (or one derived from
confidence and OOD, as the default policy would), one outcome per utterance from seeded draws whose odds depend on
whether the model was "right" (not OOD and not among the least confident), a challenger that changes some of the
least confident answers, sessions split into two arms by a hash of the session id, and the windows and looks the
monitor and ``nlumon experiment status`` would compute from those rows.

    >>> ks_statistic([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    0.0
    >>> ks_statistic([0.0, 0.1], [0.9, 1.0])
    1.0
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from experiments.definition import Arm, Experiment
from nlumon.schema import TABLES

NUMERIC = ("confidence", "margin", "entropy", "energy", "token_count", "unk_rate")
MONITOR_TABLES = ("monitor_windows", "drift_results", "ood_clusters", "alert_events", "alert_deliveries",
                  "labeling_queue", "slot_value_windows")
REASON_WEIGHTS = {"ood": 3.0, "low_confidence": 2.0, "small_margin": 1.0}
PREDICTION_FIELDS = ("id", "ts", "assistant", "model_version", "text_scrubbed", "text_hash", "intent", "confidence",
                     "margin", "entropy", "energy", "token_count", "unk_rate", "is_ood", "slot_types", "slot_values",
                     "embedding_sketch")


def table_columns(table: str) -> tuple[str, ...]:
    """Column names of ``table``, read from the schema's DDL (the contract)."""
    ddl = TABLES[table]
    body = ddl[ddl.index("(") + 1:ddl.index(") ENGINE")]
    return tuple(m.group(1) for m in re.finditer(r"^\s+(\w+)\s+\w", body, flags=re.MULTILINE))


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs)."""
    x, y = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([x, y])
    gap = np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y))
    return round(float(gap.max()), 6)


def _window_of(ts: datetime, window_s: int) -> datetime:
    epoch = int(ts.replace(tzinfo=UTC).timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, tz=UTC).replace(tzinfo=None)


def _mmd(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2)) if len(a) and len(b) else 0.0


def _drift_rows(start: datetime, end: datetime, assistant: str, rows: list[dict], reference: list[dict],
                version: int) -> list[dict]:
    out = []
    n, m = len(rows), len(reference)
    critical = 1.36 * math.sqrt((n + m) / (n * m))  # KS at alpha = 0.05
    for feature in NUMERIC:
        score = ks_statistic([r[feature] for r in rows], [r[feature] for r in reference])
        out.append({"feature": feature, "method": "ks", "score": score, "threshold": round(critical, 6)})
    live = np.array([r["embedding_sketch"] for r in rows if r["embedding_sketch"]], float)
    ref = np.array([r["embedding_sketch"] for r in reference if r["embedding_sketch"]], float)
    half = len(ref) // 2
    noise = _mmd(ref[:half], ref[half:]) if half else 0.0
    out.append({"feature": "embedding_sketch", "method": "mmd", "score": round(_mmd(live, ref), 6),
                "threshold": round(max(3 * noise, 1e-4), 6)})
    for row in out:
        row.update({"window_start": start, "window_end": end, "assistant": assistant,
                    "drifted": int(row["score"] > row["threshold"]), "details": "{}", "scored_at": end,
                    "row_version": version})
    return out


def _reasons(row: dict) -> list[str]:
    reasons = []
    if row["is_ood"]:
        reasons.append("ood")
    if row["confidence"] < 0.5:
        reasons.append("low_confidence")
    if row["margin"] < 0.1:
        reasons.append("small_margin")
    return reasons


def monitor_rows(predictions: list[dict], window_s: int = 60, *, version: int = 1) -> dict[str, list[dict]]:
    """Rows for every monitor table from ``predictions`` (dicts with :data:`PREDICTION_FIELDS`)."""
    windows: dict[datetime, list[dict]] = defaultdict(list)
    for row in predictions:
        windows[_window_of(row["ts"], window_s)].append(row)
    tables: dict[str, list[dict]] = {name: [] for name in MONITOR_TABLES}
    reference: dict[str, list[dict]] = {}
    seen_values: dict[str, set[tuple[str, str]]] = {}
    cluster_sizes: dict[str, int] = {}
    first_seen: dict[str, datetime] = {}
    for start in sorted(windows):
        end = start + timedelta(seconds=window_s)
        groups = {"all": windows[start]}
        for name in ("shopper", "associate"):
            groups[name] = [r for r in windows[start] if str(r["assistant"]) == name]
        for assistant, rows in groups.items():
            if len(rows) < 5:
                continue
            reference.setdefault(assistant, rows)
            drift = _drift_rows(start, end, assistant, rows, reference[assistant], version)
            tables["drift_results"] += drift
            tables["monitor_windows"].append(_window_row(start, end, assistant, rows, drift, version))
            tables["slot_value_windows"] += _slot_value_rows(start, end, assistant, rows, seen_values, version)
        clusters = _cluster_rows(start, windows[start], cluster_sizes, first_seen, version)
        tables["ood_clusters"] += clusters
        _alert_rows(tables, start, end, tables["monitor_windows"][-1] if tables["monitor_windows"] else None, version)
        tables["labeling_queue"] += [_queue_row(r, start, version) for r in windows[start] if _reasons(r)]
    return tables


def _slot_value_rows(start: datetime, end: datetime, assistant: str, rows: list[dict],
                     seen: dict[str, set[tuple[str, str]]], version: int) -> list[dict]:
    """Per slot type: values, unseen (not in the group's first window), placeholders, and the unseen values
    of at least 2 rows as the window's new values."""
    values: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for kind, value in zip(row["slot_types"], row["slot_values"], strict=False):
            values[kind].append(value.casefold())
    first = assistant not in seen
    known = seen.setdefault(assistant, {(k, v) for k, vs in values.items() for v in vs})
    out = []
    for kind, found in sorted(values.items()):
        judged_values = [v for v in found if not (v.startswith("<") and v.endswith(">"))]  # placeholders: scrubbed
        scrubbed = len(found) - len(judged_values)
        unseen = [v for v in judged_values if (kind, v) not in known]
        counts: dict[str, int] = defaultdict(int)
        for value in unseen:
            counts[value] += 1
        judged = len(judged_values)
        out.append({"window_start": start, "window_end": end, "model_version": rows[0]["model_version"],
                    "assistant": assistant, "slot_type": kind, "values": len(found), "unseen": len(unseen),
                    "unseen_rate": len(unseen) / judged if judged else float("nan"),
                    "reference_rate": 0.0 if first else 0.05, "scrubbed": scrubbed,
                    "new_values": sorted(v for v, n in counts.items() if n >= 2)[:50], "status": "scored",
                    "reason": "", "scored_at": end, "row_version": version})
    return out


def _window_row(start: datetime, end: datetime, assistant: str, rows: list[dict], drift: list[dict],
                version: int) -> dict:
    confidence = float(np.mean([r["confidence"] for r in rows]))
    ood_rate = float(np.mean([r["is_ood"] for r in rows]))
    accuracy = confidence * (1 - ood_rate)  # OOD-aware: confidently wrong on unseen intents
    half_width = 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 1e-6) / len(rows))
    drifted = [d["feature"] for d in drift if d["drifted"]]
    return {"window_start": start, "window_end": end, "assistant": assistant, "model_version": rows[0]["model_version"],
            "rows": len(rows), "mean_confidence": confidence, "ood_rate": ood_rate, "accuracy_estimate": accuracy,
            "accuracy_low": max(accuracy - half_width, 0.0), "accuracy_high": min(accuracy + half_width, 1.0),
            "dead_letters": 0, "drifted": int(bool(drifted)), "drifted_features": drifted,
            "report_path": f"reports/{start:%Y%m%dT%H%M%S}-{assistant}.html", "scored_at": end,
            "row_version": version, "status": "scored", "reason": "", "attempts": 0}


def _cluster_rows(start: datetime, rows: list[dict], sizes: dict[str, int], first_seen: dict[str, datetime],
                  version: int) -> list[dict]:
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["is_ood"] or row["confidence"] < 0.4:
            by_intent[row["intent"]].append(row)
    out = []
    for intent, members in by_intent.items():
        cluster_id = f"ood-{intent}"
        first_seen.setdefault(cluster_id, start)
        growth = len(members) / sizes.get(cluster_id, len(members))
        sizes[cluster_id] = len(members)
        out.append({"window_start": start, "cluster_id": cluster_id, "assistant": str(members[0]["assistant"]),
                    "size": len(members), "growth": growth, "first_seen": first_seen[cluster_id],
                    "examples": [m["text_scrubbed"] for m in members[:3]], "row_version": version})
    return out


def _alert_rows(tables: dict[str, list[dict]], start: datetime, end: datetime, window: dict | None,
                version: int) -> None:
    if window is None or window["window_start"] != start:
        return
    checks = [("drift", "drifted_features", float(window["drifted"]), 0.5, "warning"),
              ("ood-rate", "ood_rate", window["ood_rate"], 0.2, "critical")]
    for rule, metric, value, threshold, severity in checks:
        if value <= threshold:
            continue
        event_id = f"{rule}-{start:%Y%m%dT%H%M%S}"
        tables["alert_events"].append({
            "event_id": event_id, "ts": end, "rule": rule, "metric": metric, "assistant": window["assistant"],
            "severity": severity, "state": "firing", "value": value, "threshold": threshold, "window_start": start,
            "window_end": end, "summary": f"{metric} {value:.3g} above {threshold}", "row_version": version})
        failed = len(tables["alert_deliveries"]) % 3 == 2
        tables["alert_deliveries"].append({
            "webhook_id": f"wh-{event_id}", "receiver": "ops-webhook", "event_id": event_id,
            "state": "retrying" if failed else "delivered", "attempts": 2 if failed else 1,
            "last_error": "HTTP 503 from receiver" if failed else "", "updated_at": end, "row_version": version})


def _queue_row(row: dict, window_start: datetime, version: int) -> dict[str, Any]:
    reasons = _reasons(row)
    return {"item_id": row["id"], "text_hash": row["text_hash"], "flagged_at": row["ts"], "window_start": window_start,
            "assistant": str(row["assistant"]), "model_version": row["model_version"],
            "text_scrubbed": row["text_scrubbed"], "intent": row["intent"], "slot_types": list(row["slot_types"]),
            "slot_values": list(row["slot_values"]), "reasons": reasons,
            "priority": round(sum(REASON_WEIGHTS[r] for r in reasons) + 1 - row["confidence"], 6),
            "row_version": version}


# -- issue 16: routes, outcomes, shadow, conversion, experiment ----------------------------------------------------
OUTCOME_TABLES = ("predictions", "dead_letters", "outcomes", "shadow_predictions", "route_windows", "shadow_windows",
                  "conversion_windows", "experiments", "experiment_results")
# Odds of (task_completed, rephrased, escalated) after a right or a wrong answer, the rest abandoned; a clarify
# is rephrased and an escalate escalated most of the time; a completed shopper utterance converts at CONVERTED.
# The values of streams.outcome_sim.OutcomeModel, the replay's simulated assistant.
RIGHT_ODDS = (0.75, 0.10, 0.03)
WRONG_ODDS = (0.20, 0.45, 0.10)
CLARIFY_REPHRASED, ESCALATE_ESCALATED, CONVERTED, RATED = 0.6, 0.9, 0.35, 0.4
# The least confident share of a fill counts as wrong: ranks within the fill, so that a barely trained test model
# (all confidences alike) still gives a mix. The challenger arm is the better model: wrong less often.
WRONG_RANK = {"control": 0.3, "challenger": 0.2}
EXPERIMENT_METRICS = ("task_completed", "converted", "escalated", "rephrased", "satisfaction")
MIXTURE_VARIANCE = {"satisfaction": 0.25}  # mSPRT prior variance of the effect; 0.01 for rates
BOUNDS = {"satisfaction": (1.0, 5.0)}  # of an interval; (0, 1) for rates
NOT_STOPPED = datetime(1970, 1, 1)
OUTCOME_DELAY_S = 300  # monitor.outcome_delay_s: conversion windows are scored this long after they end


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) that depends only on ``parts``: the same rows always get the same draws.

    >>> draw("s1", "kind") == draw("s1", "kind") != draw("s2", "kind")
    True
    """
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def ranks(predictions: list[dict], column: str) -> dict[str, float]:
    """Each utterance's rank of ``column`` within ``predictions``: 0 for the lowest, 1 for the highest."""
    ordered = sorted(predictions, key=lambda row: (row[column], row["id"]))
    last = max(len(ordered) - 1, 1)
    return {row["id"]: index / last for index, row in enumerate(ordered)}


def route_of(row: dict, confidence_rank: float, frustration_rank: float) -> tuple[str, list[str], list[float]]:
    """The route the worker stored, or the default policy's in form (escalate when frustrated, clarify when OOD or
    unsure, confirm a slot heard on a poor line, else fulfil), on ranks within the fill instead of thresholds."""
    if row.get("route"):
        return row["route"], list(row.get("route_heads", ())), list(row.get("route_scores", ()))
    fired = []
    if frustration_rank > 0.95:
        fired.append(("frustration", float(row.get("frustration", 1.0))))
    if row["is_ood"]:
        fired.append(("is_ood", 1.0))
    if confidence_rank < 0.1:
        fired.append(("confidence", float(row["confidence"])))
    asr = row.get("asr_confidence")
    if asr is not None and asr < 0.8 and row["slot_types"]:
        fired.append(("asr_confidence", float(asr)))
    heads = [name for name, _ in fired]
    if "frustration" in heads:
        route = "escalate"
    elif "is_ood" in heads or "confidence" in heads:
        route = "clarify"
    elif "asr_confidence" in heads:
        route = "confirm"
    else:
        route = "fulfil"
    return route, heads, [score for _, score in fired]


def demo_experiment(name: str, started_at: datetime) -> Experiment:
    """A 50/50 experiment of the champion (control) against a challenger package."""
    return Experiment(name=name, started_at=started_at.replace(tzinfo=UTC),
                      arms=[Arm(name="control", package_path=Path("models/current"), share=0.5),
                            Arm(name="challenger", package_path=Path("models/challenger"), share=0.5)])


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _outcome_kind(row: dict, route: str, right: bool) -> str:
    """The utterance's outcome: the route's effect first, else the odds of a right or a wrong answer."""
    if route == "escalate" and draw(row["id"], "route") < ESCALATE_ESCALATED:
        return "escalated"
    if route == "clarify" and draw(row["id"], "route") < CLARIFY_REPHRASED:
        return "rephrased"
    roll = draw(row["id"], "kind")
    for kind, share in zip(("task_completed", "rephrased", "escalated"), RIGHT_ODDS if right else WRONG_ODDS,
                           strict=True):
        if roll < share:
            return kind
        roll -= share
    return "abandoned"


def _converts(row: dict, kind: str) -> bool:
    return kind == "task_completed" and str(row["assistant"]) == "shopper" and draw(row["id"], "converted") < CONVERTED


def _outcome_events(row: dict, kind: str, right: bool, version: int) -> list[dict]:
    """The utterance's outcome event (rated for a share), and a conversion after a completed purchase."""
    ts = row["ts"] + timedelta(seconds=round(2 + 88 * draw(row["id"], "delay")))
    stamp = int(row["ts"].replace(tzinfo=UTC).timestamp())  # ids differ between fills of the same scenario
    satisfaction = None
    if draw(row["id"], "rated") < RATED:
        good = right and kind == "task_completed"
        satisfaction = (4 if good else 1) + int(draw(row["id"], "score") * (2 if good else 3))
    common = {"session_id": row["session_id"], "utterance_id": row["id"], "kafka_partition": 0, "kafka_offset": 0,
              "row_version": version}
    events = [{**common, "id": f"test-{row['id']}-{stamp}-outcome", "ts": ts, "ingested_at": ts + timedelta(seconds=1),
               "kind": kind, "satisfaction": satisfaction, "value": None}]
    if _converts(row, kind):
        later = ts + (ts - row["ts"])
        events.append({**common, "id": f"test-{row['id']}-{stamp}-converted", "ts": later,
                       "ingested_at": later + timedelta(seconds=1), "kind": "converted", "satisfaction": None,
                       "value": round(5 + 145 * draw(row["id"], "value"), 2)})
    return events


def _shadow_row(row: dict, route: str, confidence_rank: float, intents: list[str], version: int) -> dict:
    """The challenger's answer beside the champion's: half of the least confident answers change intent (and
    route), and a few lose their last slot."""
    flips = confidence_rank < 0.3 and draw(row["id"], "shadow") < 0.5
    others = [intent for intent in intents if intent != row["intent"]] or ["oos"]
    intent = others[int(draw(row["id"], "other") * len(others))] if flips else row["intent"]
    keep = len(row["slot_types"]) - (1 if row["slot_types"] and draw(row["id"], "slots") < 0.15 else 0)
    challenger_route = ("clarify" if route == "fulfil" else "fulfil") if flips else route
    return {"id": row["id"], "ts": row["ts"], "ingested_at": row["ts"] + timedelta(seconds=1),
            "assistant": str(row["assistant"]), "session_id": row["session_id"], "role": "challenger",
            "model_version": f"{row['model_version']}-challenger", "champion_version": row["model_version"],
            "intent": intent, "confidence": round(min(1.0, row["confidence"] * (0.8 if flips else 1.05)), 6),
            "ood_score": float(row.get("ood_score", 0.0)), "is_ood": row["is_ood"], "route": challenger_route,
            "slot_types": list(row["slot_types"][:keep]), "slot_values": list(row["slot_values"][:keep]),
            "champion_intent": row["intent"], "champion_route": route,
            "champion_slot_types": list(row["slot_types"]), "intent_agrees": int(intent == row["intent"]),
            "slots_agree": int(keep == len(row["slot_types"])), "route_agrees": int(challenger_route == route),
            "inference_ms": round(float(row.get("inference_ms", 3.0)) * 1.3, 3), "row_version": version}


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The whole traffic ('all') and each assistant with rows."""
    groups = {"all": rows}
    for name in ("shopper", "associate"):
        members = [row for row in rows if str(row["assistant"]) == name]
        if members:
            groups[name] = members
    return groups


def _route_window_rows(start: datetime, end: datetime, group: str, rows: list[dict], routes: dict[str, str],
                       version: int) -> list[dict]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[routes[row["id"]]] += 1
    return [{"window_start": start, "window_end": end, "assistant": group, "model_version": rows[0]["model_version"],
             "route": route, "rows": n, "share": n / len(rows), "scored_at": end, "row_version": version}
            for route, n in sorted(counts.items())]


def _shadow_window_rows(start: datetime, end: datetime, group: str, shadows: list[dict], version: int) -> list[dict]:
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for row in shadows:
        by_intent[""].append(row)
        by_intent[row["champion_intent"]].append(row)
    return [{"window_start": start, "window_end": end, "assistant": group, "intent": intent,
             "champion_version": members[0]["champion_version"], "shadow_version": members[0]["model_version"],
             "rows": len(members),
             "intent_disagreement": 1 - float(np.mean([m["intent_agrees"] for m in members])),
             "slot_disagreement": 1 - float(np.mean([m["slots_agree"] for m in members])),
             "route_disagreement": 1 - float(np.mean([m["route_agrees"] for m in members])),
             "scored_at": end, "row_version": version}
            for intent, members in sorted(by_intent.items())]


def _subjects(row: dict) -> list[tuple[str, str]]:
    """What a conversion window counts the utterance under: its intent, and its OOD cluster if it has one."""
    subjects = [("intent", row["intent"])]
    if row["is_ood"] or row["confidence"] < 0.4:  # the clusters of _cluster_rows
        subjects.append(("ood_cluster", f"ood-{row['intent']}"))
    return subjects


def _conversion_window_rows(start: datetime, end: datetime, group: str, rows: list[dict], converted: set[str],
                            baseline: dict[tuple[str, str, str], tuple[float, int]], version: int) -> list[dict]:
    """Traffic and conversions per subject; the baseline is what the subject converted at over the whole fill had
    the model been right on every utterance (the healthy days before)."""
    traffic: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        for subject in _subjects(row):
            traffic[subject].append(row["id"])
    out = []
    for (kind, subject), ids in sorted(traffic.items()):
        hits = sum(1 for utterance in ids if utterance in converted)
        rate, reference = baseline[(group, kind, subject)]
        out.append({"window_start": start, "window_end": end, "assistant": group, "subject_kind": kind,
                    "subject": subject, "traffic": len(ids), "converted": hits, "rate": hits / len(ids),
                    "baseline_rate": rate, "baseline_traffic": reference,
                    "scored_at": end + timedelta(seconds=OUTCOME_DELAY_S), "row_version": version})
    return out


def _baselines(rows: list[dict], routes: dict[str, str]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(group, subject kind, subject) -> (conversion rate had every answer been right, traffic) over ``rows``."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for group, members in _groups(rows).items():
        for row in members:
            would_convert = _converts(row, _outcome_kind(row, routes[row["id"]], right=True))
            for kind, subject in _subjects(row):
                counts[(group, kind, subject)][0] += int(would_convert)
                counts[(group, kind, subject)][1] += 1
    return {key: (hits / total, total) for key, (hits, total) in counts.items()}


def _msprt_p(difference: float, variance: float, mixture_variance: float) -> float:
    """The always-valid p-value of one look (mSPRT with a normal mixture, Johari et al. 2017): 1 / likelihood ratio."""
    if variance <= 0:
        return 1.0
    total = variance + mixture_variance
    exponent = min(difference ** 2 * mixture_variance / (2 * variance * total), 700.0)  # no overflow
    ratio = math.sqrt(variance / total) * math.exp(exponent)
    return min(1.0, 1.0 / ratio)


def _session_values(sessions: dict[str, list[dict]], metric: str, look: datetime) -> list[float]:
    """Per session, the metric over the outcomes known at ``look``: the share of its utterances with that kind,
    or the mean rating."""
    values = []
    for events in sessions.values():
        known = [e for e in events if e["ts"] <= look]
        if metric == "satisfaction":
            ratings = [e["satisfaction"] for e in known if e["satisfaction"] is not None]
            if ratings:
                values.append(float(np.mean(ratings)))
            continue
        outcomes = [e for e in known if e["kind"] != "converted"]
        if outcomes:
            kinds = {(e["utterance_id"], e["kind"]) for e in known}
            values.append(sum((e["utterance_id"], metric) in kinds for e in outcomes) / len(outcomes))
    return values


def _look_rows(experiment: Experiment, look: datetime, arms: dict[str, dict[str, list[dict]]],
               smallest_p: dict[tuple[str, str], float], version: int) -> list[dict]:
    """One look at the experiment: per arm and metric the session mean, its 95 % interval, the always-valid p-value
    against the control (never rising between looks), and the SRM p-value of the sessions per arm."""
    counts = {arm.name: len(arms[arm.name]) for arm in experiment.arms}
    total = sum(counts.values())
    chi2 = sum((counts[arm.name] - total * arm.share) ** 2 / (total * arm.share) for arm in experiment.arms)
    srm_p = math.erfc(math.sqrt(chi2 / 2))  # two arms: one degree of freedom
    stats: dict[tuple[str, str], tuple[float, float, int]] = {}
    for arm in experiment.arms:
        for metric in EXPERIMENT_METRICS:
            values = _session_values(arms[arm.name], metric, look)
            if len(values) >= 2:
                stats[(arm.name, metric)] = (float(np.mean(values)), float(np.var(values, ddof=1)), len(values))
    rows = []
    for (arm, metric), (mean, variance, n) in sorted(stats.items()):
        control = stats.get((experiment.control.name, metric))
        p_value = 1.0
        if arm != experiment.control.name and control is not None:
            difference, spread = mean - control[0], variance / n + control[1] / control[2]
            p_value = min(smallest_p.get((arm, metric), 1.0),
                          _msprt_p(difference, spread, MIXTURE_VARIANCE.get(metric, 0.01)))
            smallest_p[(arm, metric)] = p_value
        half, (lowest, highest) = 1.96 * math.sqrt(variance / n), BOUNDS.get(metric, (0.0, 1.0))
        rows.append({"experiment": experiment.name, "ts": look, "arm": arm, "metric": metric,
                     "sessions": counts[arm], "value": mean, "low": max(mean - half, lowest),
                     "high": min(mean + half, highest),
                     "p_value": p_value, "srm_p_value": srm_p, "decision": "", "row_version": version})
    primary = [r for r in rows if r["metric"] == experiment.primary_metric and r["arm"] != experiment.control.name]
    decided = next((r for r in primary if r["p_value"] < experiment.stop.alpha), None)
    if decided is None:
        decision = "continue"
    else:
        control_value = next((r["value"] for r in rows if r["metric"] == experiment.primary_metric
                              and r["arm"] == experiment.control.name), decided["value"])
        decision = f"{decided['arm'] if decided['value'] > control_value else experiment.control.name} wins"
    for row in rows:
        row["decision"] = decision
    return rows


def _experiment_rows(experiment: Experiment, versions: list[str], stopped_at: datetime, version: int) -> list[dict]:
    """The experiment as ``nlumon experiment start`` and then ``stop`` store it: two rows, the later one wins."""
    stopped = experiment.model_copy(update={"status": "stopped", "stopped_at": stopped_at.replace(tzinfo=UTC),
                                            "stop_reason": "test range ended"})
    rows = []
    for offset, state in enumerate((experiment, stopped)):
        rows.append({"name": state.name, "status": state.status, "arms": [arm.name for arm in state.arms],
                     "shares": [arm.share for arm in state.arms],
                     "model_versions": versions,
                     "started_at": _naive(state.started_at),
                     "stopped_at": _naive(state.stopped_at) if state.stopped_at else NOT_STOPPED,
                     "definition": state.model_dump_json(), "updated_at": _naive(state.stopped_at or state.started_at),
                     "row_version": version + offset})
    return rows


def _dead_letter_rows(sessions: dict[str, list[dict]], experiment: Experiment, version: int) -> list[dict]:
    """A dead letter for a tenth of the sessions, at its first utterance, with the session's arm."""
    rows = []
    for session, members in sorted(sessions.items()):
        first = min(members, key=lambda row: row["ts"])
        if draw(session, first["ts"], "dead letter") >= 0.1:
            continue
        digest = hashlib.sha256(f"{session}{first['ts']}".encode()).hexdigest()
        rows.append({"ts": first["ts"], "source_topic": f"utterances-{experiment.name}", "kafka_partition": 0,
                     "kafka_offset": len(rows), "reason": "invalid record: text must not be empty",
                     "original_bytes": 120, "original_hash": digest, "experiment": experiment.name,
                     "arm": experiment.arm_of(session)})
    return rows


def outcome_rows(predictions: list[dict], window_s: int = 60, *, version: int = 1) -> dict[str, list[dict]]:
    """Rows for every table of :data:`OUTCOME_TABLES` from ``predictions`` (dicts with the ``predictions`` columns;
    :data:`PREDICTION_FIELDS`, ``session_id`` and the optional route columns suffice except for ``predictions``,
    whose rows are the input stamped with the route, the experiment and the arm, one row_version higher)."""
    rows = [{**row, "ts": _naive(row["ts"])} for row in sorted(predictions, key=lambda r: (r["ts"], r["id"]))]
    confidence = ranks(rows, "confidence")
    frustration = ranks([{**r, "frustration": r.get("frustration", -1.0)} for r in rows], "frustration")
    routes_of = {r["id"]: route_of(r, confidence[r["id"]], frustration[r["id"]]) for r in rows}
    routes = {utterance: decision[0] for utterance, decision in routes_of.items()}
    first = _window_of(rows[0]["ts"], window_s)
    experiment = demo_experiment(f"dashboards-{first:%Y%m%dT%H%M%S}", first)
    intents = sorted({r["intent"] for r in rows})
    tables: dict[str, list[dict]] = {name: [] for name in OUTCOME_TABLES}
    sessions: dict[str, list[dict]] = defaultdict(list)
    arms: dict[str, dict[str, list[dict]]] = {arm.name: {} for arm in experiment.arms}
    converted: set[str] = set()
    for row in rows:
        arm = experiment.arm_of(row["session_id"])
        route, heads, scores = routes_of[row["id"]]
        tables["predictions"].append({**row, "route": route, "route_heads": heads, "route_scores": scores,
                                      "experiment": experiment.name, "arm": arm,
                                      "row_version": row.get("row_version", 0) + 1})
        right = not row["is_ood"] and confidence[row["id"]] >= WRONG_RANK[arm]
        events = _outcome_events(row, _outcome_kind(row, route, right), right, version)
        tables["outcomes"] += events
        converted.update(e["utterance_id"] for e in events if e["kind"] == "converted")
        arms[arm].setdefault(row["session_id"], []).extend(events)
        sessions[row["session_id"]].append(row)
        tables["shadow_predictions"].append(_shadow_row(row, route, confidence[row["id"]], intents, version))
    for offset, event in enumerate(tables["outcomes"]):
        event["kafka_offset"] = offset
    shadows = {row["id"]: row for row in tables["shadow_predictions"]}
    baseline = _baselines(rows, routes)
    windows: dict[datetime, list[dict]] = defaultdict(list)
    for row in rows:
        windows[_window_of(row["ts"], window_s)].append(row)
    smallest_p: dict[tuple[str, str], float] = {}
    for start in sorted(windows):
        end = start + timedelta(seconds=window_s)
        for group, members in _groups(windows[start]).items():
            tables["route_windows"] += _route_window_rows(start, end, group, members, routes, version)
            tables["shadow_windows"] += _shadow_window_rows(start, end, group, [shadows[m["id"]] for m in members],
                                                            version)
            tables["conversion_windows"] += _conversion_window_rows(start, end, group, members, converted, baseline,
                                                                    version)
        seen = {arm: {s: e for s, e in by_session.items() if min(r["ts"] for r in sessions[s]) < end}
                for arm, by_session in arms.items()}
        tables["experiment_results"] += _look_rows(experiment, end, seen, smallest_p, version)
    last_end = max(windows) + timedelta(seconds=window_s)
    champion = rows[0]["model_version"]
    tables["experiments"] = _experiment_rows(experiment, [champion, f"{champion}-challenger"], last_end, version)
    tables["dead_letters"] = _dead_letter_rows(sessions, experiment, version)
    return tables


def write_monitor_rows(client_factory: Any, start: datetime, end: datetime,
                       window_s: int = 60) -> dict[str, list[dict]]:
    """Read the predictions of [start, end], write the derived rows of :func:`monitor_rows` and :func:`outcome_rows`
    (the predictions again, stamped with route and arm); return the rows written per table."""
    from streams.sink import ClickHouseSink

    columns = table_columns("predictions")
    client = client_factory()
    try:
        found = client.execute(
            f"SELECT {', '.join(columns)} FROM predictions FINAL WHERE ts >= %(start)s AND ts <= %(end)s",
            {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)})
    finally:
        client.disconnect()
    predictions = [dict(zip(columns, row, strict=True)) for row in found]
    for row in predictions:
        row["assistant"] = str(row["assistant"])
    tables = {**monitor_rows(predictions, window_s), **outcome_rows(predictions, window_s)}
    sink = ClickHouseSink(client_factory, columns={t: table_columns(t) for t in tables}, batch_rows=10_000)
    for table, rows in tables.items():
        for row in rows:
            sink.add(table, row)
    sink.close()
    return tables
