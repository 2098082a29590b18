"""Shadow challenger disagreement per window (monitor.shadow): rates, the jump against the median, evidence,
the stored rows, the alert rule proposed for it, and the labeling reasons it feeds. No services."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import monitor.job as job_module
from alerts.engine import AlertEngine
from alerts.events import MetricPoint
from alerts.rules import parse_rules
from alerts.store import AlertStore
from dashboards.testing import table_columns
from detectors.suite import MonitorSuite
from detectors.synthetic import make_rows
from labeling.flags import FlagContext, candidates, flag
from labeling.items import Reason
from monitor.alerting import metric_points
from monitor.job import MonitorJob
from monitor.labeling_sink import shadow_ids
from monitor.reference import Reference
from monitor.shadow import (
    MIN_JUMP_ROWS,
    SHADOW_WINDOW_COLUMNS,
    DisagreeingRow,
    Disagreement,
    Jump,
    ShadowCount,
    disagreement_jump,
    example_rows,
    read_history,
    shadow_metrics,
    shadow_window_rows,
    summarise_counts,
    with_examples,
    with_jumps,
)
from monitor.storage import ObservedWindow, WindowFacts
from tests.conftest import make_test_settings

T0 = datetime(2026, 3, 1, 12, 0)
# The rule the lead adds to alerts/default_rules.yaml (see docs/monitoring.md, "Shadow challenger").
RULE_YAML = """
rules:
  - name: shadow-disagreement-jump
    description: The shadow challenger disagrees with the champion's intent far more often than in the previous hour.
    metric: shadow_disagreement_jump
    condition: ">"
    threshold: 0.08
    for_windows: 2
    scope: per_assistant
    severity: warning
    cooldown: 6h
    receivers: [ml-team]
"""


def count(assistant: str, intent: str, rows: int, intents: int = 0, slots: int = 0, routes: int = 0,
          versions: tuple[str, str] = ("m1", "c1")) -> ShadowCount:
    return ShadowCount(assistant, intent, *versions, Disagreement(rows, intents, slots, routes))


def row(row_id: str, assistant: str, champion: str, challenger: str, *, route_agrees: bool = True,
        slots_agree: bool = True) -> DisagreeingRow:
    return DisagreeingRow(row_id, assistant, champion, challenger, "fulfil", "fulfil" if route_agrees else "clarify",
                          champion == challenger, slots_agree, route_agrees)


COUNTS = [
    count("shopper", "track_order", 120, intents=60, slots=10, routes=12),
    count("shopper", "buy", 80, intents=4, slots=8),
    count("shopper", "rare", 5, intents=5),
    count("associate", "swap_shift", 100, intents=10, routes=5),
    count("associate", "swap_shift", 40, intents=40, versions=("m1", "c0")),  # an older challenger, mid-window
]


# -- rates -----------------------------------------------------------------------------------------------------
def test_rates_per_group_and_intent_for_the_main_version_pair() -> None:
    shadow = summarise_counts(COUNTS, min_intent_rows=30)
    assert (shadow.champion_version, shadow.shadow_version, shadow.other_rows) == ("m1", "c1", 40)
    assert shadow.groups == ["all", "associate", "shopper"]
    whole = shadow.whole("all")
    assert (whole.rows, whole.intent, whole.slots, whole.route) == (305, 79, 18, 17)
    assert whole.intent_rate == pytest.approx(79 / 305) and whole.route_rate == pytest.approx(17 / 305)
    assert shadow.whole("shopper").rows == 205 and shadow.whole("associate").intent_rate == pytest.approx(0.1)
    assert [intent for intent, _ in shadow.intents("shopper")] == ["buy", "track_order"]  # "rare": 5 rows < 30
    assert [intent for intent, _ in shadow.top_intents("all")] == ["track_order", "swap_shift", "buy"]
    assert summarise_counts([]) is None and summarise_counts([count("shopper", "buy", 0)]) is None


def test_intents_without_any_disagreement_are_not_top_intents() -> None:
    shadow = summarise_counts([count("shopper", "buy", 50), count("shopper", "track", 50, intents=1)])
    assert [intent for intent, _ in shadow.top_intents("shopper")] == ["track"]


# -- the jump --------------------------------------------------------------------------------------------------
def test_the_jump_is_the_rate_minus_the_median_of_the_last_twelve_windows() -> None:
    history = [0.10, 0.30, 0.12, 0.11, 0.09, 0.10, 0.13, 0.10, 0.12, 0.11, 0.10, 0.09, 0.90, 0.90, 0.90]
    jump = disagreement_jump(0.35, history)
    assert jump.windows == 12 and jump.baseline == pytest.approx(float(np.median(history[:12])))
    assert jump.value == pytest.approx(0.35 - 0.105)
    assert disagreement_jump(0.35, [0.1, 0.1]) == Jump(0.0, None, 2)
    assert disagreement_jump(0.35, [0.1, 0.2, 0.3]) == Jump(pytest.approx(0.15), pytest.approx(0.2), 3)
    assert disagreement_jump(0.05, [0.1, 0.1, 0.1]).value == pytest.approx(-0.05)  # a drop is negative


def test_jumps_only_for_groups_with_enough_rows() -> None:
    shadow = with_jumps(summarise_counts(COUNTS), {"all": [0.1, 0.1, 0.1], "shopper": [0.2] * 20}, min_jump_rows=150)
    assert set(shadow.jumps) == {"all", "shopper"}  # associate: 100 rows < 150
    assert shadow.jumps["all"].value == pytest.approx(79 / 305 - 0.1)
    assert shadow.jumps["shopper"].windows == 12
    assert with_jumps(summarise_counts(COUNTS), {}, min_jump_rows=150).jumps["all"] == Jump(0.0, None, 0)


class HistoryClient:
    def __init__(self, rows: list[tuple]) -> None:
        self.rows, self.queries = rows, []

    def execute(self, query: str, params: Any = None, **_: Any) -> list:
        self.queries.append((query, params))
        return self.rows


def test_the_history_keeps_windows_of_the_same_versions_length_and_size_newest_first() -> None:
    def stored(minutes_before: int, rate: float, *, group="all", versions=("m1", "c1"), rows=300, length=300):
        start = T0 - timedelta(minutes=minutes_before)
        return (start, start + timedelta(seconds=length), group, *versions, rows, rate)

    rows = [stored(5 * k, 0.01 * k) for k in range(1, 16)]
    rows.insert(2, stored(12, 0.9, versions=("m1", "c0")))  # another challenger
    rows.insert(4, stored(17, 0.9, rows=50))  # too small
    rows.insert(6, stored(22, 0.9, length=60))  # another window length
    rows.append(stored(5, 0.5, group="shopper"))
    client = HistoryClient(rows)
    history = read_history(client, T0, 300, "m1", "c1", min_rows=200)
    assert history["all"] == pytest.approx([0.01 * k for k in range(1, 13)]) and history["shopper"] == [0.5]
    query, params = client.queries[0]
    assert "FINAL" in query and params["start"] == T0 and params["since"] == T0 - timedelta(days=1)


# -- evidence and rows -----------------------------------------------------------------------------------------
DISAGREEMENTS = (
    row("s1", "shopper", "buy", "track_order"),
    row("s2", "shopper", "track_order", "cancel_order"),
    row("s3", "associate", "swap_shift", "check_schedule"),
    row("s4", "shopper", "track_order", "track_order", route_agrees=False),  # same intent, another route
    row("s5", "shopper", "track_order", "cancel_order"),
)


def test_examples_show_the_top_intents_first_and_only_rows_with_a_text() -> None:
    shadow = replace(summarise_counts(COUNTS), disagreements=DISAGREEMENTS)
    assert [r.id for r in example_rows(shadow, "shopper", 10)] == ["s2", "s5", "s1"]  # track_order is the top
    assert [r.id for r in example_rows(shadow, "associate", 10)] == ["s3"]
    shown = with_examples(shadow, {"s2": "where is parcel", "s1": "buy the red one", "s3": "swap my shift"}, n=2)
    assert shown.examples["shopper"] == ("where is parcel (champion track_order, challenger cancel_order)",
                                         "buy the red one (champion buy, challenger track_order)")
    assert shown.examples["all"][0].startswith("where is parcel")
    assert shadow.challenger_intents() == {"s1": "track_order", "s2": "cancel_order", "s3": "check_schedule",
                                           "s5": "cancel_order"}
    assert shadow.route_disagreement_ids() == frozenset({"s4"})


def scored_outcome(shadow) -> Any:
    rows = make_rows(200, seed=5).assign(text_scrubbed=[f"text {i}" for i in range(200)])
    suite = MonitorSuite.from_reference(make_rows(600, seed=1).drop(columns="embedding_sketch"), {"accuracy": 0.9},
                                        window_size=100, fpr=0.05, n_windows=10, max_sample=100,
                                        track_clusters=False)
    window = ObservedWindow(T0, T0 + timedelta(minutes=5), 200, T0 + timedelta(minutes=5), "m1")
    facts = WindowFacts(rows["assistant"].value_counts().to_dict(), 0, 40.0, "e2e_ms", 0)
    outcome = job_module.build_outcome(window, rows, facts, suite, "rolling", T0 + timedelta(minutes=6))
    return replace(outcome, shadow=shadow)


def test_shadow_window_rows_match_the_table() -> None:
    shadow = summarise_counts(COUNTS, min_intent_rows=30)
    rows = shadow_window_rows(scored_outcome(shadow), row_version=9)
    assert set(SHADOW_WINDOW_COLUMNS) == set(table_columns("shadow_windows"))
    assert all(set(r) == set(SHADOW_WINDOW_COLUMNS) for r in rows)
    keys = {(r["assistant"], r["intent"]): r for r in rows}
    assert set(keys) == {("all", ""), ("all", "track_order"), ("all", "buy"), ("all", "swap_shift"),
                         ("shopper", ""), ("shopper", "track_order"), ("shopper", "buy"), ("associate", ""),
                         ("associate", "swap_shift")}
    track = keys[("shopper", "track_order")]
    assert (track["rows"], track["intent_disagreement"], track["route_disagreement"]) == (120, 0.5, 0.1)
    assert {(r["champion_version"], r["shadow_version"], r["row_version"]) for r in rows} == {("m1", "c1", 9)}
    assert shadow_window_rows(scored_outcome(None), 9) == []


def test_points_carry_versions_top_intents_and_scrubbed_examples() -> None:
    shadow = with_jumps(summarise_counts(COUNTS), {"all": [0.1, 0.12, 0.11]}, min_jump_rows=200)
    shadow = replace(shadow, disagreements=DISAGREEMENTS)
    shadow = with_examples(shadow, {"s2": "call me at 415 555 0134 about the parcel", "s1": "buy the red one"})
    points = {(p.metric, p.assistant): p for p in metric_points(scored_outcome(shadow))}
    rate = points[("shadow_disagreement", None)]
    assert rate.value == pytest.approx(79 / 305)
    assert (rate.evidence["champion_version"], rate.evidence["shadow_version"]) == ("m1", "c1")
    assert rate.evidence["other_version_rows"] == 40 and rate.evidence["shadow_rows"] == 305
    assert rate.evidence["top_intents"][0] == {"intent": "track_order", "rows": 120, "intent_disagreement": 0.5}
    assert "415" not in " ".join(rate.evidence["examples"]) and "<PHONE>" in rate.evidence["examples"][0]
    jump = points[("shadow_disagreement_jump", None)]
    assert jump.value == pytest.approx(79 / 305 - 0.11)
    assert (jump.evidence["baseline_median"], jump.evidence["baseline_windows"]) == (pytest.approx(0.11), 3)
    assert ("shadow_disagreement", "associate") in points and ("shadow_disagreement_jump", "shopper") in points
    assert ("shadow_disagreement_jump", "associate") not in points  # 100 rows < 200
    assert shadow_metrics(scored_outcome(None)) == []


# -- the alert rule (threshold and for_windows from the binomial noise of the jump) ----------------------------
def jump_points(rates_and_rows: list[tuple[float, int]]) -> list[list[MetricPoint]]:
    """The points of consecutive windows whose disagreement rates are given (the job's jump arithmetic)."""
    history: list[float] = []
    windows = []
    for index, (rate, rows) in enumerate(rates_and_rows):
        start = (T0 + timedelta(minutes=5 * index)).replace(tzinfo=UTC)
        jump = disagreement_jump(rate, history)
        windows.append([MetricPoint("shadow_disagreement_jump", jump.value, start, start + timedelta(minutes=5),
                                    None, {"shadow_rows": rows})])
        history.insert(0, rate)
    return windows


def fired(rates_and_rows: list[tuple[float, int]], tmp_path, name: str) -> list[int]:
    engine = AlertEngine(parse_rules(RULE_YAML), AlertStore(str(tmp_path / f"{name}.db")))
    return [index for index, points in enumerate(jump_points(rates_and_rows))
            for event in engine.evaluate(points) if event.status == "firing"]


def test_the_rule_stays_quiet_on_binomial_noise_at_the_smallest_jump_window(tmp_path) -> None:
    # 2,000 windows of MIN_JUMP_ROWS rows at a 20 % disagreement rate (a pessimistic baseline: the rate's
    # binomial sd is 0.028, the jump's 0.030, so 0.08 is ~2.7 sd and two windows in a row ~1 in 20,000).
    rng = np.random.default_rng(16)
    noise = [(rng.binomial(MIN_JUMP_ROWS, 0.2) / MIN_JUMP_ROWS, MIN_JUMP_ROWS) for _ in range(2000)]
    assert fired(noise, tmp_path, "noise") == []


def test_the_rule_fires_on_the_second_window_of_a_jump(tmp_path) -> None:
    rng = np.random.default_rng(3)
    before = [(rng.binomial(500, 0.10) / 500, 500) for _ in range(12)]
    after = [(rng.binomial(500, 0.25) / 500, 500) for _ in range(3)]
    assert fired(before + after, tmp_path, "jump") == [13]  # the jump's windows are 12, 13, 14: firing at 13


# -- labeling --------------------------------------------------------------------------------------------------
PREDICTION = {"id": "s4", "assistant": "shopper", "model_version": "m1", "intent": "track_order",
              "text_scrubbed": "where is my parcel", "confidence": 0.97, "margin": 0.8, "ood_score": 0.1,
              "is_ood": 0, "slot_types": [], "slot_values": []}


def test_route_and_intent_disagreements_are_labeling_reasons() -> None:
    shadow = replace(summarise_counts(COUNTS), disagreements=DISAGREEMENTS)
    context = FlagContext(challenger_intents=shadow.challenger_intents(),
                          route_disagreements=shadow.route_disagreement_ids())
    assert flag(PREDICTION, context) == [Reason.ROUTE_DISAGREEMENT]
    assert flag({**PREDICTION, "id": "s2"}, context) == [Reason.CHAMPION_CHALLENGER]
    assert flag({**PREDICTION, "id": "other"}, context) == []
    both = FlagContext(challenger_intents={"s4": "cancel_order"}, route_disagreements=frozenset({"s4"}))
    (item,) = candidates([PREDICTION], both, (T0, T0 + timedelta(minutes=5)))
    assert item.reasons == (Reason.CHAMPION_CHALLENGER, Reason.ROUTE_DISAGREEMENT)
    assert item.priority == pytest.approx(2.5 + 1.5 + 0.03)


def test_the_sink_reads_intent_disagreements_first_and_a_bounded_number_of_ids() -> None:
    many = tuple(row(f"r{i}", "shopper", "buy", "buy", route_agrees=False) for i in range(5))
    shadow = replace(summarise_counts(COUNTS), disagreements=DISAGREEMENTS + many)
    outcome = SimpleNamespace(shadow=shadow)
    ids = shadow_ids(outcome)
    assert ids[:4] == ("s1", "s2", "s3", "s5") and set(ids[4:]) == {"s4", "r0", "r1", "r2", "r3", "r4"}
    assert len(shadow_ids(outcome, limit=3)) == 3
    assert shadow_ids(SimpleNamespace(shadow=None)) == ("",)  # IN () is not SQL


# -- the job ---------------------------------------------------------------------------------------------------
class ShadowClient:
    """Answers the shadow queries of one window; the route mix and the texts have no rows."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def execute(self, query: str, params: Any = None, **_: Any) -> list:
        if "FROM shadow_predictions" in query and "GROUP BY" in query:
            if self.fail:
                raise RuntimeError("Table nlumon.shadow_predictions doesn't exist")
            return [("shopper", "track_order", "m1", "c1", 250, 50, 5, 10)]
        if "FROM shadow_windows" in query:
            start = params["start"]
            return [(start - timedelta(minutes=5 * k), start - timedelta(minutes=5 * (k - 1)), "all", "m1", "c1",
                     250, 0.05) for k in range(1, 6)]
        if "FROM shadow_predictions" in query:
            return [("p1", "shopper", "track_order", "cancel_order", "fulfil", "fulfil", 0, 1, 1)]
        return []

    def disconnect(self) -> None:
        pass


def run_job(monkeypatch, client) -> tuple[list, dict]:
    inserted: dict[str, list[dict]] = {}
    rows = make_rows(200, seed=4).assign(text_scrubbed=[f"text {i}" for i in range(200)])
    reference_rows = make_rows(600, seed=1).drop(columns="embedding_sketch")
    suite = MonitorSuite.from_reference(reference_rows, {"accuracy": 0.9}, window_size=100, fpr=0.05, n_windows=10,
                                        max_sample=100, track_clusters=False)
    window = ObservedWindow(T0, T0 + timedelta(minutes=5), 200, T0 + timedelta(minutes=5), "m1")
    monkeypatch.setattr(job_module, "observed_windows", lambda c, w, since, until: [window])
    monkeypatch.setattr(job_module, "scored_windows", lambda c, w, since, until: {})
    monkeypatch.setattr(job_module, "read_predictions", lambda c, start, end, limit, *a, **k: rows)
    monkeypatch.setattr(job_module, "window_facts", lambda c, start, end: WindowFacts({"shopper": 200}, 0, 1.0,
                                                                                       "e2e_ms", 0))

    def insert(c, table, columns, new_rows):
        inserted.setdefault(table, []).extend(dict(r) for r in new_rows)
        return 0

    monkeypatch.setattr(job_module, "insert_rows", insert)
    monkeypatch.setattr(job_module, "save_evidently_report", lambda reference, current, path: None)
    references = SimpleNamespace(reference_for=lambda c, version, start: Reference(suite, reference_rows, "rolling",
                                                                                   100))
    job = MonitorJob(make_test_settings(), lambda: client, references=references, report_dir=None,
                     clock=lambda: (T0 + timedelta(hours=1) - datetime(1970, 1, 1)).total_seconds())
    return job.run_once(now=T0 + timedelta(hours=1), since=T0), inserted


def test_the_job_stores_shadow_windows_with_the_jump_against_stored_history(monkeypatch) -> None:
    (outcome,), inserted = run_job(monkeypatch, ShadowClient())
    assert outcome.shadow.whole("all").intent_rate == 0.2
    assert outcome.shadow.jumps["all"] == Jump(pytest.approx(0.15), pytest.approx(0.05), 5)
    assert outcome.shadow.challenger_intents() == {"p1": "cancel_order"}
    stored = {(r["assistant"], r["intent"]): r for r in inserted["shadow_windows"]}
    assert set(stored) == {("all", ""), ("all", "track_order"), ("shopper", ""), ("shopper", "track_order")}
    assert stored[("all", "")]["intent_disagreement"] == 0.2 and stored[("all", "")]["window_start"] == T0


def test_unreadable_shadow_rows_leave_the_window_scored(monkeypatch, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="monitor.job"):
        outcomes, inserted = run_job(monkeypatch, ShadowClient(fail=True))
    assert len(outcomes) == 1 and outcomes[0].shadow is None and inserted.get("shadow_windows", []) == []
    assert any("shadow disagreement of window" in r.getMessage() for r in caplog.records)
