"""Promotion gate decisions on constructed evidence: each criterion passes and fails on its own."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from model_runtime.gate import Evidence, GateThresholds, decide, evidence_from_eval

CHAMPION = Evidence(
    intent_accuracy=0.970,
    slot_f1=0.950,
    per_assistant={"shopper": 0.975, "associate": 0.950},
    frustration_recall=0.80,
    golden_failures=0,
    golden_total=32,
    latency_p95_ms=120.0,
    ece=0.02,
)


def failed(challenger: Evidence, champion: Evidence | None = CHAMPION, **thresholds) -> list[str]:
    return [c.name for c in decide(challenger, champion, GateThresholds(**thresholds)).criteria if not c.passed]


def test_equal_challenger_is_promoted():
    decision = decide(CHAMPION, CHAMPION)
    assert decision.promote and len(decision.criteria) == 8
    assert "PROMOTE" in decision.to_table()


@pytest.mark.parametrize(
    ("change", "expected_failure"),
    [
        ({"intent_accuracy": 0.9660}, "intent accuracy"),  # 0.4 points worse
        ({"per_assistant": {"shopper": 0.975, "associate": 0.9460}}, "intent accuracy (associate)"),
        ({"slot_f1": 0.9440}, "slot F1"),  # 0.6 points worse
        ({"frustration_recall": 0.55}, "frustration recall"),
        ({"golden_failures": 1}, "golden set"),
        ({"latency_p95_ms": 260.0}, "p95 latency (ms)"),
        ({"ece": 0.08}, "ECE"),
    ],
)
def test_each_criterion_fails_alone(change, expected_failure):
    assert failed(replace(CHAMPION, **change)) == [expected_failure]


@pytest.mark.parametrize(
    "change",
    [
        {"intent_accuracy": 0.9675},  # 0.25 points worse: inside the 0.3 tolerance
        {"per_assistant": {"shopper": 0.9725, "associate": 0.9475}},
        {"slot_f1": 0.9460},  # 0.4 points worse: inside 0.5
        {"frustration_recall": 0.60},  # exactly at the floor
        {"latency_p95_ms": 250.0},
        {"ece": 0.05},
    ],
)
def test_each_criterion_passes_within_its_tolerance(change):
    assert failed(replace(CHAMPION, **change)) == []


def test_slot_floor_applies_even_when_the_champion_is_worse():
    weak_champion = replace(CHAMPION, slot_f1=0.85)
    assert failed(replace(CHAMPION, slot_f1=0.87), weak_champion) == ["slot F1"]
    assert failed(replace(CHAMPION, slot_f1=0.87), weak_champion, slot_f1_floor=85.0) == []


def test_first_model_is_judged_on_floors_and_budgets_only():
    assert decide(replace(CHAMPION, intent_accuracy=0.5), None).promote
    assert failed(replace(CHAMPION, slot_f1=0.80), None) == ["slot F1"]


def test_challenger_missing_an_assistant_fails():
    assert failed(replace(CHAMPION, per_assistant={"shopper": 0.99})) == ["intent accuracy (associate)"]


def test_optional_criteria_are_skipped_when_not_measured():
    bare = Evidence(intent_accuracy=0.97, slot_f1=0.95)
    names = [c.name for c in decide(bare, None).criteria]
    assert names == ["intent accuracy", "slot F1"]


def test_evidence_from_an_evaluation_dict():
    evaluation = {
        "intent_accuracy": 0.9,
        "slots": {"f1": 0.91},
        "per_assistant": {"shopper": {"intent_accuracy": 0.92}},
        "heads": {"frustration": {"recall": 0.7}},
        "ece": 0.03,
    }
    golden = {"passed": 30, "total": 32, "failures": [{}, {}]}
    evidence = evidence_from_eval(evaluation, golden, {"p95_ms": 99.0})
    assert evidence == Evidence(0.9, 0.91, {"shopper": 0.92}, 0.7, 2, 32, 99.0, 0.03)


def test_gate_command_exit_code_and_json(tmp_path):
    from model_runtime.cli import app
    from model_runtime.testing import cached_tiny_package

    package = cached_tiny_package()
    out = tmp_path / "gate.json"
    result = CliRunner().invoke(app, ["gate", str(package), "--champion", str(package), "--json-out", str(out)])
    decision = json.loads(out.read_text())
    # the tiny package is barely trained: its slot F1 is far below the 88-point floor, so it must not be promoted
    assert result.exit_code == 1, result.output
    assert not decision["promote"]
    assert {"name": "slot F1", "passed": False}.items() <= next(
        c for c in decision["criteria"] if c["name"] == "slot F1"
    ).items()
