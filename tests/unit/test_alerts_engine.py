"""Alert lifecycle: for_windows, cooldown, grouping under bursts, resolution, and state across restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import AlertEngine
from alerts.events import AlertEvent, MetricPoint
from alerts.outbox import Outbox
from alerts.rules import Rule
from alerts.store import AlertStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def point(i: int, value: float, assistant: str | None = "shopper", metric: str = "ood_rate", **evidence):
    start = T0 + i * WINDOW
    return MetricPoint(metric, value, start, start + WINDOW, assistant, evidence)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "alerts.db"


def engine_for(db, *rules: Rule) -> AlertEngine:
    return AlertEngine(list(rules), AlertStore(db))


OOD = Rule("ood-high", "ood_rate", ">", 0.1, for_windows=2, cooldown_s=1800, receivers=("oncall", "chat"))


def test_fires_only_after_for_windows_consecutive_breaches_and_a_gap_resets_the_streak(db):
    engine = engine_for(db, OOD)
    assert engine.evaluate([point(0, 0.5)]) == []
    assert engine.evaluate([point(1, 0.05)]) == []  # streak broken
    assert engine.evaluate([point(2, 0.5)]) == []
    assert engine.evaluate([point(4, 0.5)]) == []  # window 3 missing: not consecutive
    (event,) = engine.evaluate([point(5, 0.5)])
    assert (event.status, event.window_start, event.incident_started) == ("firing", T0 + 5 * WINDOW, T0 + 4 * WINDOW)


def test_burst_of_200_points_gives_one_alert_per_cooldown_and_reports_the_worst_value(db):
    engine = engine_for(db, OOD)
    # 200 breaching points over 20 five-minute windows (10 per window), sent in 4 calls of 50.
    points = [point(i // 10, 0.2 + 0.01 * (i % 10)) for i in range(200)]
    events = [e for chunk in range(4) for e in engine.evaluate(points[chunk * 50:(chunk + 1) * 50])]
    # Fires at the end of window 1 (for_windows=2); cooldown 30 min = 6 windows → reminders at windows 7, 13, 19.
    assert [(e.status, e.window_start) for e in events] == [
        ("firing", T0 + 1 * WINDOW), ("repeat", T0 + 7 * WINDOW), ("repeat", T0 + 13 * WINDOW),
        ("repeat", T0 + 19 * WINDOW),
    ]
    assert all(e.value == pytest.approx(0.29) for e in events)  # the worst of each window's 10 points
    assert events[1].suppressed_repeats == 5  # windows 2..6 were suppressed
    assert len({e.incident_id for e in events}) == 1
    outbox_rows = Outbox(engine.store).counts()
    assert outbox_rows == {"oncall": {"pending": 4}, "chat": {"pending": 4}}


def test_groups_are_per_assistant_or_global_per_rule(db):
    global_rule = Rule("lag", "consumer_lag", ">", 100, scope="global", receivers=("oncall",))
    engine = engine_for(db, Rule("ood-now", "ood_rate", ">", 0.1), global_rule)
    events = engine.evaluate([
        point(0, 0.5, "shopper"), point(0, 0.6, "associate"), point(0, 0.01, "shopper"),
        point(0, 500, "shopper", "consumer_lag"), point(0, 900, "associate", "consumer_lag"),
        point(0, 5.0, "shopper", "unrelated_metric"),
    ])
    assert sorted((e.group_key, e.value) for e in events) == [
        ("lag|*", 900.0), ("ood-now|associate", 0.6), ("ood-now|shopper", 0.5),
    ]
    assert next(e for e in events if e.rule == "lag").assistant is None


def test_resolves_on_the_first_good_window_and_a_new_breach_is_a_new_incident(db):
    rule = Rule("ood-now", "ood_rate", ">", 0.1, cooldown_s=3600, receivers=("oncall",))
    engine = engine_for(db, rule)
    (fired,) = engine.evaluate([point(0, 0.5)])
    assert engine.evaluate([point(1, 0.5)]) == []
    (resolved,) = engine.evaluate([point(2, 0.05)])
    assert resolved.status == "resolved" and resolved.incident_id == fired.incident_id
    assert resolved.suppressed_repeats == 1
    (again,) = engine.evaluate([point(3, 0.5)])
    assert again.status == "firing" and again.incident_id != fired.incident_id


def test_state_survives_a_restart_and_replayed_points_do_not_duplicate(db):
    engine = engine_for(db, OOD)
    engine.evaluate([point(0, 0.5)])
    engine.store.close()
    restarted = engine_for(db, OOD)  # a new process on the same file
    assert restarted.state("ood-high|shopper").streak == 1
    (event,) = restarted.evaluate([point(1, 0.5)])
    assert event.status == "firing"
    assert restarted.evaluate([point(1, 0.9), point(0, 0.9)]) == []  # same and late windows: nothing new
    with restarted.store.transaction() as conn:
        stored = [json.loads(row[0]) for row in conn.execute("SELECT event_json FROM alert_events")]
    assert [AlertEvent.from_dict(d) for d in stored] == [event]


def test_event_ids_are_deterministic_so_a_replay_into_a_fresh_store_gives_the_same_webhook_ids(tmp_path):
    points = [point(0, 0.5), point(1, 0.5), point(2, 0.0)]
    first = engine_for(tmp_path / "a.db", OOD).evaluate(points)
    second = engine_for(tmp_path / "b.db", OOD).evaluate(points)
    assert [e.id for e in first] == [e.id for e in second] and len(first) == 2
    assert len({e.id for e in first}) == 2


def test_nan_values_are_ignored_and_evidence_is_carried(db):
    engine = engine_for(db, Rule("ood-now", "ood_rate", ">", 0.1))
    assert engine.evaluate([point(0, float("nan"))]) == []
    (event,) = engine.evaluate([point(1, 0.4, examples=["wheres my order"], report="https://grafana/x")])
    assert event.evidence["examples"] == ["wheres my order"] and event.evidence["points_in_window"] == 1
