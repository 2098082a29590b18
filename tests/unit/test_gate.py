"""Promotion gate decisions on constructed evidence: each criterion passes and fails on its own; the CLI's report."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from model_runtime.gate import (
    Evidence,
    GateReportError,
    GateThresholds,
    build_report,
    decide,
    evidence_from_eval,
    read_report,
    write_report,
)

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


SPANS = {"person": 0.90, "date_time": 0.85, "brand": 0.80}
WATCHED = replace(CHAMPION, slot_f1_by_type=SPANS, per_assistant_slot_f1={"shopper": 0.95, "associate": 0.94})


def test_span_f1_of_person_and_date_time_is_watched_and_other_types_are_not():
    assert failed(WATCHED, WATCHED) == []
    assert len(decide(WATCHED, WATCHED).criteria) == 10  # + span F1 (person), span F1 (date_time)
    assert failed(replace(WATCHED, slot_f1_by_type={**SPANS, "person": 0.888}), WATCHED) == ["span F1 (person)"]
    assert failed(replace(WATCHED, slot_f1_by_type={**SPANS, "date_time": 0.845}), WATCHED) == []  # 0.5: small
    assert failed(replace(WATCHED, slot_f1_by_type={**SPANS, "brand": 0.5}), WATCHED) == []  # not a watched type
    assert failed(replace(WATCHED, slot_f1_by_type={**SPANS, "person": 0.888}), WATCHED, span_f1_drop_points=2.0) == []
    missing = replace(WATCHED, slot_f1_by_type={"date_time": 0.85})
    assert failed(missing, WATCHED) == ["span F1 (person)"]  # the champion was measured on person: so must it be
    assert failed(replace(WATCHED, slot_f1_by_type={**SPANS, "person": 0.1}), None) == []  # no champion: no drop rule


def test_per_assistant_intent_drop_is_its_own_threshold():
    worse = replace(CHAMPION, per_assistant={"shopper": 0.975, "associate": 0.9460})  # associate 0.4 points down
    assert failed(worse) == ["intent accuracy (associate)"]
    assert failed(worse, assistant_intent_drop_points=0.5) == []
    assert failed(worse, intent_drop_points=0.5) == ["intent accuracy (associate)"]  # overall tolerance is another


def test_evidence_carries_slot_f1_per_assistant_and_span_f1_per_type():
    evaluation = {
        "intent_accuracy": 0.9,
        "slots": {"f1": 0.91},
        "per_assistant": {"shopper": {"intent_accuracy": 0.92, "slot_f1": 0.93}},
        "per_slot_type": {"person": {"f1": 0.7, "n_gold": 12}, "size": {"f1": 0.0, "n_gold": 0}},
    }
    evidence = evidence_from_eval(evaluation)
    assert evidence.per_assistant_slot_f1 == {"shopper": 0.93}
    assert evidence.slot_f1_by_type == {"person": 0.7}  # predicted-only types have no F1 worth judging


def test_a_report_names_both_packages_and_refuses_edits(tmp_path):
    decision = decide(WATCHED, WATCHED)
    challenger = {"version": "new", "manifest_sha256": "a" * 64}
    champion = {"version": "old", "manifest_sha256": "b" * 64}
    holdout = {"kind": "holdout", "name": "production-v1", "sha256": "c" * 64, "n": 600}
    report = build_report(decision, challenger, champion, holdout, [WATCHED, WATCHED], GateThresholds(), backend="x")
    assert report["decision"] == "promote" and report["champion"] == champion and report["evaluation_set"] == holdout
    assert report["thresholds"]["assistant_intent_drop_points"] == 0.3 and report["decided_at"]
    write_report(tmp_path / "r.json", report)
    assert read_report(tmp_path / "r.json") == report
    edited = {**report, "decision": "promote", "promote": True, "criteria": []}
    (tmp_path / "r.json").write_text(json.dumps(edited))
    with pytest.raises(GateReportError, match="edited"):
        read_report(tmp_path / "r.json")
    with pytest.raises(GateReportError, match="no gate report"):
        read_report(tmp_path / "missing.json")


@pytest.fixture
def tiny(tmp_path):
    from model_runtime.testing import cached_tiny_package

    target = tmp_path / "tiny"
    shutil.copytree(cached_tiny_package(), target)  # the gate writes its report into the challenger
    return target


def test_gate_command_judges_on_the_holdout_by_default_and_leaves_a_report(tiny, tmp_path):
    from model_runtime.cli import app
    from model_runtime.data.holdout import read_holdout
    from model_runtime.package import load_package

    out = tmp_path / "gate.json"
    result = CliRunner().invoke(app, ["gate", str(tiny), "--champion", str(tiny), "--json-out", str(out)])
    report = json.loads(out.read_text())
    # the tiny package is barely trained: its slot F1 is far below the 88-point floor, so it must not be promoted
    assert result.exit_code == 1, result.output
    assert not report["promote"] and report["decision"] == "reject"
    assert {"name": "slot F1", "passed": False}.items() <= next(
        c for c in report["criteria"] if c["name"] == "slot F1"
    ).items()
    holdout = read_holdout("production-v1")
    assert report["evaluation_set"]["kind"] == "holdout" and report["evaluation_set"]["sha256"] == holdout.sha256
    assert report["evaluation_set"]["per_assistant"] == {"associate": 300, "shopper": 300}
    names = {c["name"] for c in report["criteria"]}
    assert {"intent accuracy (shopper)", "intent accuracy (associate)", "span F1 (person)"} <= names
    evidence = report["evidence"]["challenger"]
    assert set(evidence["per_assistant"]) == set(evidence["per_assistant_slot_f1"]) == {"shopper", "associate"}
    package = load_package(tiny)
    assert report["champion"] == {"version": package.version, "manifest_sha256": package.manifest["manifest_sha256"]}
    assert read_report(tiny / "gate-report.json") == report  # always a copy inside the challenger
    assert "holdout production-v1" in result.output and "slot F1 (associate)" in result.output


def test_gate_command_with_an_explicit_corpus_keeps_the_test_split(tiny):
    from model_runtime.cli import app

    result = CliRunner().invoke(app, ["gate", str(tiny), "--corpus", "retail"])
    report = read_report(tiny / "gate-report.json")
    assert result.exit_code == 1, result.output
    assert report["evaluation_set"]["kind"] == "corpus" and report["champion"] is None
    assert report["evaluation_set"]["n"] == load_n_test(tiny)
    refused = CliRunner().invoke(app, ["gate", str(tiny), "--corpus", "retail", "--holdout", "production-v1"])
    assert refused.exit_code == 2


def load_n_test(package_dir):
    from model_runtime.package import load_package

    return load_package(package_dir).manifest["training_data"]["n_test"]
