"""From a scored window to metric points, result-table rows and alert events (no services)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.rules import parse_rules
from alerts.store import AlertStore
from detectors.suite import MonitorSuite
from detectors.synthetic import make_rows
from monitor.alerting import metric_points
from monitor.job import (
    WindowOutcome,
    drift_result_rows,
    growing_cluster_texts,
    monitor_window_rows,
    summarise_groups,
)
from monitor.labeling_sink import queue_row, queue_text_hash
from monitor.storage import WindowFacts

START = datetime(2026, 3, 1, 12, 0)


@pytest.fixture(scope="module")
def suite() -> MonitorSuite:
    return MonitorSuite.from_reference(make_rows(3000, seed=1), window_size=400, fpr=0.02, n_windows=20,
                                       max_sample=200)


def outcome_for(suite: MonitorSuite, rows, minute: int = 0, dead_letters: int = 0) -> WindowOutcome:
    rows = rows.assign(text_scrubbed=[f"utterance {i % 350}" for i in range(len(rows))])
    start = START + timedelta(minutes=minute)
    facts = WindowFacts(rows["assistant"].value_counts().to_dict(), dead_letters, 42.0, "e2e_ms", 0)
    report = suite.score(rows, texts=list(rows["text_scrubbed"]), window_id=start.isoformat())
    return WindowOutcome(
        start, start + timedelta(minutes=5), "m1", "package", len(rows), facts, report,
        summarise_groups(rows, report, suite, facts), suite.ood_threshold, start + timedelta(minutes=6),
        growing_cluster_texts=growing_cluster_texts(report),
    )


@pytest.fixture(scope="module")
def clean(suite: MonitorSuite) -> WindowOutcome:
    return outcome_for(suite, make_rows(400, seed=21))


@pytest.fixture(scope="module")
def shifted(suite: MonitorSuite) -> WindowOutcome:
    return outcome_for(suite, make_rows(400, seed=22, new_intent_share=0.35), minute=5, dead_letters=8)


def test_groups_cover_all_traffic_and_each_assistant(clean: WindowOutcome) -> None:
    assert set(clean.groups) == {"all", "shopper", "associate"}
    assert clean.groups["all"].rows == 400
    assert clean.groups["shopper"].rows + clean.groups["associate"].rows == 400
    low, high = clean.groups["all"].accuracy_low, clean.groups["all"].accuracy_high
    assert low <= clean.groups["all"].accuracy <= high


def test_metric_points_carry_names_values_and_evidence(shifted: WindowOutcome) -> None:
    points = metric_points(shifted, report_base_url="https://example.test/reports", dashboard_url="https://grafana")
    by_key = {(p.metric, p.assistant): p for p in points}
    overall_ood = by_key[("ood_rate", None)]
    assert overall_ood.value == pytest.approx(shifted.groups["all"].ood_rate)
    assert overall_ood.evidence["ood_score_threshold"] == shifted.ood_threshold
    assert overall_ood.evidence["examples"] and overall_ood.evidence["dashboard"] == "https://grafana"
    assert ("ood_rate", "shopper") in by_key and ("accuracy_estimate", "associate") in by_key
    drift = [p for p in points if p.metric.startswith("drift.")]
    assert len(drift) == len(shifted.report.results)
    assert {p.value for p in drift} <= {0.0, 1.0}
    assert by_key[("drift.embedding_sketch", None)].value == 1.0  # 35 % unseen intents move the embeddings
    assert by_key[("dlq_rate", None)].value == pytest.approx(8 / 408)
    assert by_key[("latency_p95_ms", None)].value == 42.0
    assert ("throughput_drop", None) not in by_key  # no history a week earlier: no value, not zero
    assert all(p.window_start.tzinfo is not None and p.window_end - p.window_start == timedelta(minutes=5)
               for p in points)


def test_a_default_style_rule_fires_on_the_shifted_window_only(
    tmp_path: Path, clean: WindowOutcome, shifted: WindowOutcome
) -> None:
    rules = parse_rules(
        "rules:\n"
        "  - {name: embedding-drift, metric: drift.embedding_sketch, condition: '>=', threshold: 1,"
        " scope: global, receivers: [oncall]}\n"
    )
    engine = AlertEngine(rules, AlertStore(tmp_path / "alerts.db"))
    assert engine.evaluate(metric_points(clean)) == []
    events = engine.evaluate(metric_points(shifted))
    assert [(e.rule, e.status) for e in events] == [("embedding-drift", "firing")]
    assert events[0].evidence["window_start"].startswith("2026-03-01T12:05")


def test_result_rows_match_the_report(shifted: WindowOutcome) -> None:
    window_rows = monitor_window_rows(shifted)
    assert {row["assistant"] for row in window_rows} == {"all", "shopper", "associate"}
    overall = next(row for row in window_rows if row["assistant"] == "all")
    assert overall["rows"] == 400 and overall["dead_letters"] == 8
    assert overall["drifted"] == 1 and "embedding_sketch" in overall["drifted_features"]
    drift_rows = drift_result_rows(shifted, row_version=1)
    assert len(drift_rows) == len(shifted.report.results)
    assert {row["assistant"] for row in drift_rows} <= {"all", "shopper", "associate"}
    assert sum(row["drifted"] for row in drift_rows) == len(shifted.report.drifted)


def test_queue_rows_deduplicate_on_normalised_scrubbed_text(shifted: WindowOutcome) -> None:
    from labeling.flags import FlagContext, candidates

    assert queue_text_hash("Add two <PERSON> shirts!") == queue_text_hash("add two <person>   shirts")
    assert queue_text_hash("add two shirts") != queue_text_hash("add three shirts")
    row = {"id": "p1", "assistant": "shopper", "model_version": "m1", "text_scrubbed": "add jordan sneakers",
           "intent": "add_to_cart", "confidence": 0.3, "margin": 0.05, "ood_score": 0.0, "is_ood": 0,
           "slot_types": ["brand"], "slot_values": ["jordan"]}
    items = candidates([row, {**row, "id": "p2", "text_scrubbed": "Add Jordan sneakers!"}], FlagContext(),
                       (shifted.window_start, shifted.window_end))
    assert len(items) == 1
    stored = queue_row(items[0], row, shifted.scored_at, 7)
    assert stored["text_hash"] == queue_text_hash("add jordan sneakers")
    assert stored["reasons"] == ["low_confidence", "small_margin"] and stored["slot_values"] == ["jordan"]
