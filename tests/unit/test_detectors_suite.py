"""The whole suite on synthetic windows: quiet on clean traffic, loud on unseen intents, JSON-safe."""

from __future__ import annotations

import json

import pytest

from detectors.base import EmptyWindowError
from detectors.suite import MonitorSuite
from detectors.synthetic import make_rows


@pytest.fixture(scope="module")
def suite() -> MonitorSuite:
    reference = make_rows(4000, seed=1)
    return MonitorSuite.from_reference(reference, window_size=600, fpr=0.02, n_windows=25, max_sample=300)


def test_clean_window_raises_few_alarms(suite: MonitorSuite) -> None:
    report = suite.score(make_rows(600, seed=11), window_id="clean")
    # 36 calibrated results at 2 % each: a couple of false alarms can happen, a crowd cannot
    assert len(report.results) == 36 and len(report.drifted) <= 4
    assert report.ood_rate["overall"] == pytest.approx(0.05, abs=0.03)


def test_unseen_intents_raise_ood_embedding_and_accuracy_signals(suite: MonitorSuite) -> None:
    window = make_rows(600, seed=12, new_intent_share=0.3)
    report = suite.score(window, texts=[f"t{i}" for i in range(600)], window_id="shifted")
    drifted = {(r.details["group"], r.feature) for r in report.drifted}
    assert {("overall", "ood_rate"), ("overall", "embedding_sketch"), ("overall", "confidence")} <= drifted
    accuracy = report.accuracy["ood_aware_atc"]
    assert abs(accuracy.value - window["correct"].mean()) < abs(report.accuracy["atc"].value - window["correct"].mean())
    assert report.clusters and report.clusters[0].size >= 50 and report.clusters[0].examples


def test_report_is_json_safe_and_small_groups_are_skipped(suite: MonitorSuite) -> None:
    window = make_rows(600, seed=13)
    window = window[(window["assistant"] == "shopper") | (window.index < 10)]
    payload = json.loads(json.dumps(suite.score(window).to_dict(), allow_nan=False))
    assert "associate" in payload["skipped"]
    assert {r["details"]["group"] for r in payload["results"]} == {"overall", "shopper"}


def test_empty_window_is_a_named_error(suite: MonitorSuite) -> None:
    with pytest.raises(EmptyWindowError):
        suite.score(make_rows(10, seed=1).iloc[:0])
