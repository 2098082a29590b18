"""Rows for the monitor's tables, derived from stored predictions, for tests and demos of the dashboards.

The monitor job (``monitor/job.py``) did not exist when the dashboards were written, so the
dashboard tests fill ``monitor_windows``, ``drift_results``, ``ood_clusters``, ``alert_events``,
``alert_deliveries``, ``labeling_queue`` and ``slot_value_windows`` with values computed from the real predictions
of a replay (slot values "unseen" when the group's first window did not have them):
per-window means, a two-sample KS statistic against the first window with its 5 % critical value, a
linear-kernel MMD on the embedding sketch, OOD utterances grouped by predicted intent, and the
labeling reasons of :mod:`labeling.flags` in simplified form. Not a detector: just realistic rows.

    >>> ks_statistic([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    0.0
    >>> ks_statistic([0.0, 0.1], [0.9, 1.0])
    1.0
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

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


def write_monitor_rows(client_factory: Any, start: datetime, end: datetime, window_s: int = 60) -> dict[str, int]:
    """Read the predictions of [start, end] and write the derived monitor rows; return rows per table."""
    from streams.sink import ClickHouseSink

    client = client_factory()
    try:
        found = client.execute(
            f"SELECT {', '.join(PREDICTION_FIELDS)} FROM predictions FINAL WHERE ts >= %(start)s AND ts <= %(end)s",
            {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)})
    finally:
        client.disconnect()
    predictions = [dict(zip(PREDICTION_FIELDS, row, strict=True)) for row in found]
    tables = monitor_rows(predictions, window_s)
    sink = ClickHouseSink(client_factory, columns={t: table_columns(t) for t in MONITOR_TABLES}, batch_rows=10_000)
    for table, rows in tables.items():
        for row in rows:
            sink.add(table, row)
    sink.close()
    return {table: len(rows) for table, rows in tables.items()}
