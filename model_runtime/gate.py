"""The promotion gate: does a challenger package replace the champion? Pure decisions over measured evidence.

Accuracies are fractions (0–1) in the evidence and shown in points (percent) in the table; the
tolerances are in points, as the release policy states them.

Besides the headline figures, the gate looks at each assistant's intent accuracy (a model that gains on
the shopper assistant's many utterances can hide a loss on the associate's few) and at the span F1 of the
slot types the annotation loop works on (``person``, ``date_time``). A gate run leaves a report
(:func:`build_report`, ``gate-report.json`` inside the challenger package) that ``nlumon model promote``
requires: it names both packages by version and manifest digest, the evaluation set and its checksum,
the decision and the time, and carries its own digest so that an edited report is refused.

    >>> champ = Evidence(intent_accuracy=0.970, slot_f1=0.950, per_assistant={"shopper": 0.97})
    >>> chall = Evidence(intent_accuracy=0.968, slot_f1=0.951, per_assistant={"shopper": 0.96})
    >>> d = decide(chall, champ)
    >>> d.promote, [c.name for c in d.criteria if not c.passed]
    (False, ['intent accuracy (shopper)'])
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_runtime.package import GATE_REPORT  # noqa: F401  (re-exported: the report file's one name)

REPORT_FORMAT = 1
REPORT_DIGEST = "report_sha256"


class GateReportError(ValueError):
    """A gate report is missing, unreadable, edited (digest mismatch) or of another format."""


@dataclass(frozen=True)
class GateThresholds:
    intent_drop_points: float = 0.3  # challenger may be at most this many points below the champion
    slot_f1_floor: float = 88.0  # points
    slot_f1_drop_points: float = 0.5
    frustration_recall_floor: float = 60.0  # points; checked when the challenger has a frustration head
    latency_p95_budget_ms: float = 250.0  # at the serving batch size
    ece_budget: float = 0.05
    assistant_intent_drop_points: float = 0.3  # per assistant, vs the champion
    span_f1_drop_points: float = 1.0  # per watched slot type (span F1), vs the champion
    span_types: tuple[str, ...] = ("person", "date_time")
    # golden cases the challenger may fail beyond the champion's failures (beyond 0 for a first model)
    golden_regressions: int = 0


@dataclass(frozen=True)
class Evidence:
    """What was measured for one model on the gate's evaluation set."""

    intent_accuracy: float
    slot_f1: float
    per_assistant: Mapping[str, float] = field(default_factory=dict)  # intent accuracy per assistant
    frustration_recall: float | None = None
    golden_failures: int | None = None  # None = golden set not run
    golden_total: int = 0
    latency_p95_ms: float | None = None
    ece: float | None = None
    per_assistant_slot_f1: Mapping[str, float] = field(default_factory=dict)
    slot_f1_by_type: Mapping[str, float] = field(default_factory=dict)  # span F1 per slot type


@dataclass(frozen=True)
class Criterion:
    name: str
    challenger: str
    champion: str
    rule: str
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    criteria: tuple[Criterion, ...]

    @property
    def promote(self) -> bool:
        return all(c.passed for c in self.criteria)

    def to_table(self) -> str:
        lines = [f"{'criterion':<30}{'challenger':>12}{'champion':>12}  {'rule':<34}result"]
        for c in self.criteria:
            lines.append(
                f"{c.name:<30}{c.challenger:>12}{c.champion:>12}  {c.rule:<34}{'PASS' if c.passed else 'FAIL'}"
            )
        lines.append(f"decision: {'PROMOTE' if self.promote else 'DO NOT PROMOTE'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "criteria": [c.__dict__ for c in self.criteria]}


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _no_worse(name: str, new: float, old: float | None, drop: float, floor: float | None = None) -> Criterion:
    """new ≥ old − drop points (and ≥ floor points when given); no champion → only the floor applies."""
    ok = old is None or 100 * new >= 100 * old - drop - 1e-9
    rule = f"≥ champion − {drop:g}" if old is not None else "no champion"
    if floor is not None:
        ok = ok and 100 * new >= floor
        rule = f"≥ {floor:g} and {rule}"
    return Criterion(name, _points(new), _points(old), rule, ok)


def _per_key(
    label: str, new: Mapping[str, float], old: Mapping[str, float] | None, keys: Sequence[str], drop: float
) -> list[Criterion]:
    """One no-worse criterion per key; a key the champion has and the challenger lacks fails."""
    criteria = []
    for key in keys:
        new_value = new.get(key)
        old_value = old.get(key) if old is not None else None
        if new_value is None:
            criteria.append(Criterion(f"{label} ({key})", "-", _points(old_value), "must be measured", False))
        else:
            criteria.append(_no_worse(f"{label} ({key})", new_value, old_value, drop))
    return criteria


def decide(challenger: Evidence, champion: Evidence | None, thresholds: GateThresholds | None = None) -> GateDecision:
    """Every criterion with both values; promote only when all pass."""
    t = thresholds or GateThresholds()
    old = champion
    criteria = [
        _no_worse("intent accuracy", challenger.intent_accuracy, old and old.intent_accuracy, t.intent_drop_points)
    ]
    assistants = sorted(set(challenger.per_assistant) | set(old.per_assistant if old else ()))
    criteria += _per_key(
        "intent accuracy", challenger.per_assistant, old and old.per_assistant, assistants,
        t.assistant_intent_drop_points,
    )
    criteria.append(
        _no_worse("slot F1", challenger.slot_f1, old and old.slot_f1, t.slot_f1_drop_points, t.slot_f1_floor)
    )
    measured = set(challenger.slot_f1_by_type) | set(old.slot_f1_by_type if old else ())
    span_types = [kind for kind in t.span_types if kind in measured]  # a set without the type cannot judge it
    criteria += _per_key(
        "span F1", challenger.slot_f1_by_type, old and old.slot_f1_by_type, span_types, t.span_f1_drop_points
    )
    if challenger.frustration_recall is not None:
        ok = 100 * challenger.frustration_recall >= t.frustration_recall_floor
        old_recall = old.frustration_recall if old else None
        criteria.append(
            Criterion(
                "frustration recall",
                _points(challenger.frustration_recall),
                _points(old_recall),
                f"≥ {t.frustration_recall_floor:g}",
                ok,
            )
        )
    if challenger.golden_failures is not None:
        passed = challenger.golden_total - challenger.golden_failures
        compared = old is not None and old.golden_failures is not None
        old_golden = f"{old.golden_total - old.golden_failures}/{old.golden_total}" if compared else "-"
        allowed = (old.golden_failures if compared else 0) + t.golden_regressions
        rule = "no more failures than the champion" if compared else "all cases pass"
        if t.golden_regressions:
            rule += f" (+{t.golden_regressions})"
        criteria.append(
            Criterion("golden set", f"{passed}/{challenger.golden_total}", old_golden, rule,
                      challenger.golden_failures <= allowed)
        )
    if challenger.latency_p95_ms is not None:
        old_latency = "-" if not old or old.latency_p95_ms is None else f"{old.latency_p95_ms:.1f}"
        criteria.append(
            Criterion(
                "p95 latency (ms)",
                f"{challenger.latency_p95_ms:.1f}",
                old_latency,
                f"≤ {t.latency_p95_budget_ms:g} ms",
                challenger.latency_p95_ms <= t.latency_p95_budget_ms,
            )
        )
    if challenger.ece is not None:
        old_ece = "-" if not old or old.ece is None else f"{old.ece:.4f}"
        criteria.append(
            Criterion("ECE", f"{challenger.ece:.4f}", old_ece, f"≤ {t.ece_budget:g}", challenger.ece <= t.ece_budget)
        )
    return GateDecision(tuple(criteria))


def evidence_from_eval(
    evaluation: Mapping[str, Any],
    golden: Mapping[str, Any] | None = None,
    latency: Mapping[str, float] | None = None,
) -> Evidence:
    """Build Evidence from :func:`model_runtime.evaluation.evaluate_runtime` output (+ golden dict, latency)."""
    frustration = evaluation.get("heads", {}).get("frustration", {})
    per_assistant = evaluation.get("per_assistant", {})
    return Evidence(
        intent_accuracy=evaluation["intent_accuracy"],
        slot_f1=evaluation["slots"]["f1"],
        per_assistant={k: v["intent_accuracy"] for k, v in per_assistant.items()},
        frustration_recall=frustration.get("recall"),
        golden_failures=None if golden is None else len(golden["failures"]),
        golden_total=0 if golden is None else golden["total"],
        latency_p95_ms=None if latency is None else latency["p95_ms"],
        ece=evaluation.get("ece"),
        per_assistant_slot_f1={k: v["slot_f1"] for k, v in per_assistant.items() if "slot_f1" in v},
        # a type only predicted, never in the gold labels, has no F1 worth comparing
        slot_f1_by_type={k: v["f1"] for k, v in evaluation.get("per_slot_type", {}).items() if v.get("n_gold")},
    )


def evidence_table(evidence: Sequence[Evidence], names: Sequence[str]) -> str:
    """Intent accuracy and slot F1 per assistant, and span F1 per slot type, side by side (points).

    >>> print(evidence_table([Evidence(0.9, 0.8, {"shopper": 0.9}, per_assistant_slot_f1={"shopper": 0.8})], ["new"]))
    figure                           new
    intent (shopper)               90.00
    slot F1 (shopper)              80.00
    """
    rows: dict[str, list[str]] = {}
    for column, item in enumerate(evidence):
        figures = [(f"intent ({k})", v) for k, v in sorted(item.per_assistant.items())]
        figures += [(f"slot F1 ({k})", v) for k, v in sorted(item.per_assistant_slot_f1.items())]
        figures += [(f"span F1 ({k})", v) for k, v in sorted(item.slot_f1_by_type.items())]
        for name, value in figures:
            rows.setdefault(name, ["-"] * len(evidence))[column] = _points(value)
    lines = [f"{'figure':<24}" + "".join(f"{n:>12}" for n in names)]
    lines += [f"{name:<24}" + "".join(f"{v:>12}" for v in values) for name, values in rows.items()]
    return "\n".join(lines)


def package_identity(package: Any) -> dict[str, str]:
    """Version and manifest digest of a loaded :class:`~model_runtime.package.ModelPackage`: what a report names."""
    from model_runtime.package import MANIFEST_DIGEST, manifest_digest

    digest = package.manifest.get(MANIFEST_DIGEST) or manifest_digest(package.manifest)  # legacy: computed
    return {"version": package.version, "manifest_sha256": str(digest)}


def report_digest(report: Mapping[str, Any]) -> str:
    """SHA-256 of the report's canonical JSON without its own digest field."""
    body = {k: v for k, v in report.items() if k != REPORT_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_report(
    decision: GateDecision,
    challenger: Mapping[str, str],
    champion: Mapping[str, str] | None,
    evaluation_set: Mapping[str, Any],
    evidence: Sequence[Evidence],
    thresholds: GateThresholds,
    *,
    backend: str,
    decided_at: datetime | None = None,
) -> dict[str, Any]:
    """The gate report: who was compared on what, every criterion, the decision, the time, and its digest."""
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "decision": "promote" if decision.promote else "reject",
        "promote": decision.promote,
        "decided_at": (decided_at or datetime.now(UTC)).isoformat(),
        "challenger": dict(challenger),
        "champion": dict(champion) if champion else None,
        "evaluation_set": dict(evaluation_set),
        "backend": backend,
        "thresholds": asdict(thresholds),
        "criteria": decision.to_dict()["criteria"],
        "evidence": {"challenger": asdict(evidence[0]), "champion": asdict(evidence[1]) if len(evidence) > 1 else None},
    }
    report = json.loads(json.dumps(report))  # the digest covers exactly what a reader parses back
    report[REPORT_DIGEST] = report_digest(report)
    return report


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write a report atomically (temporary file + rename), readable by other users."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_report(path: Path) -> dict[str, Any]:
    """Read a gate report and check its format and digest; :class:`GateReportError` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise GateReportError(f"{path}: no gate report (run `nlumon model gate` on this package first)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise GateReportError(f"{path}: unreadable gate report ({type(error).__name__})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise GateReportError(f"{path}: not a gate report of format {REPORT_FORMAT}")
    if report.get(REPORT_DIGEST) != report_digest(report):
        raise GateReportError(f"{path}: {REPORT_DIGEST} does not match the report (edited or corrupted)")
    return report
