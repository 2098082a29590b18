"""The promotion gate: does a challenger package replace the champion? Pure decisions over measured evidence.

Accuracies are fractions (0–1) in the evidence and shown in points (percent) in the table; the
tolerances are in points, as the release policy states them.

    >>> champ = Evidence(intent_accuracy=0.970, slot_f1=0.950, per_assistant={"shopper": 0.97})
    >>> chall = Evidence(intent_accuracy=0.968, slot_f1=0.951, per_assistant={"shopper": 0.96})
    >>> d = decide(chall, champ)
    >>> d.promote, [c.name for c in d.criteria if not c.passed]
    (False, ['intent accuracy (shopper)'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateThresholds:
    intent_drop_points: float = 0.3  # challenger may be at most this many points below the champion
    slot_f1_floor: float = 88.0  # points
    slot_f1_drop_points: float = 0.5
    frustration_recall_floor: float = 60.0  # points; checked when the challenger has a frustration head
    latency_p95_budget_ms: float = 250.0  # at the serving batch size
    ece_budget: float = 0.05


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


def decide(challenger: Evidence, champion: Evidence | None, thresholds: GateThresholds | None = None) -> GateDecision:
    """Every criterion with both values; promote only when all pass."""
    t = thresholds or GateThresholds()
    old = champion
    criteria = [
        _no_worse("intent accuracy", challenger.intent_accuracy, old and old.intent_accuracy, t.intent_drop_points)
    ]
    for assistant in sorted(set(challenger.per_assistant) | set(old.per_assistant if old else ())):
        new_value = challenger.per_assistant.get(assistant)
        old_value = old.per_assistant.get(assistant) if old else None
        if new_value is None:
            criteria.append(
                Criterion(f"intent accuracy ({assistant})", "-", _points(old_value), "must be measured", False)
            )
            continue
        criteria.append(_no_worse(f"intent accuracy ({assistant})", new_value, old_value, t.intent_drop_points))
    criteria.append(
        _no_worse("slot F1", challenger.slot_f1, old and old.slot_f1, t.slot_f1_drop_points, t.slot_f1_floor)
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
        old_golden = (
            "-"
            if not old or old.golden_failures is None
            else f"{old.golden_total - old.golden_failures}/{old.golden_total}"
        )
        criteria.append(
            Criterion(
                "golden set",
                f"{passed}/{challenger.golden_total}",
                old_golden,
                "all cases pass",
                challenger.golden_failures == 0,
            )
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
    return Evidence(
        intent_accuracy=evaluation["intent_accuracy"],
        slot_f1=evaluation["slots"]["f1"],
        per_assistant={k: v["intent_accuracy"] for k, v in evaluation.get("per_assistant", {}).items()},
        frustration_recall=frustration.get("recall"),
        golden_failures=None if golden is None else len(golden["failures"]),
        golden_total=0 if golden is None else golden["total"],
        latency_p95_ms=None if latency is None else latency["p95_ms"],
        ece=evaluation.get("ece"),
    )
