"""Conversion per intent on real ClickHouse: a week of baseline predictions and outcomes, then three windows in
which one high-traffic intent stops converting. The scorer (wired by ``monitor.service.build_monitor`` with the
default rules) writes ``conversion_windows``, raises one alert for that intent only — in ClickHouse
``alert_events`` and in the alert store's outbox — and scores nothing twice without a reason.

Every test uses its own random day between 2060 and 2100, so reruns and other tests' rows never mix with it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from alerts.rules import DEFAULT_RULES_PATH
from monitor.conversion import OOD, count_conversions
from monitor.service import MonitorRuntime, build_monitor
from nlumon.schema import connect
from tests.conftest import make_test_settings

pytestmark = pytest.mark.integration
WINDOW_S, DELAY_S, GRACE_S = 300, 300, 60
RULE = "high-traffic-low-conversion"
# (assistant, subject, baseline utterances, baseline rate, utterances per target window, rate in the windows);
# subject OOD = rows the model flagged out of distribution
TRAFFIC = [
    ("shopper", "track_order", 1200, 0.6, 80, 0.05),  # high traffic, stops converting: the one alert
    ("shopper", "add_to_cart", 800, 0.6, 60, 0.6),
    ("shopper", "rare_intent", 100, 0.6, 10, 0.0),  # stops converting too, but too little traffic to judge
    ("associate", "check_shift", 800, 0.5, 60, 0.5),
    ("shopper", OOD, 300, 0.3, 20, 0.3),
    ("associate", OOD, 300, 0.3, 20, 0.3),
]


def random_day() -> datetime:
    return datetime(2060, 1, 8) + timedelta(days=random.SystemRandom().randrange(14000))


def real_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass
class Rows:
    """Predictions and outcomes to insert (naive UTC times, as ClickHouse takes them)."""

    predictions: list[tuple]
    outcomes: list[tuple]

    def add(self, assistant: str, subject: str, ts: datetime, converted: bool, index: int) -> None:
        """One utterance in its own session; its outcome says whether it converted, in one of the ways the
        definition allows (utterance-linked or session-level), and a converting outcome after the horizon never
        counts."""
        uid, session = f"u-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
        is_ood = int(subject == OOD)
        self.predictions.append((uid, ts, assistant, session, "find_store" if is_ood else subject, is_ood))
        if converted:
            linked = index % 2 == 0
            self.outcome(session, uid if linked else "", "task_completed" if linked else "converted",
                         ts + timedelta(seconds=30))
        else:
            self.outcome(session, uid if index % 2 else "", "abandoned" if index % 2 else "escalated",
                         ts + timedelta(seconds=40))
            horizon = window_start_of(ts) + timedelta(seconds=WINDOW_S + DELAY_S)
            self.outcome(session, "", "converted", horizon + timedelta(seconds=5))  # too late: not counted

    def outcome(self, session: str, utterance: str, kind: str, ts: datetime) -> None:
        self.outcomes.append((f"o-{uuid.uuid4().hex}", ts, session, utterance, kind))

    def insert(self, settings, ingested_at: datetime) -> None:
        client = connect(settings.clickhouse)
        try:
            client.execute("INSERT INTO predictions (id, ts, assistant, session_id, intent, is_ood, ingested_at)"
                           " VALUES", [(*row, ingested_at) for row in self.predictions])
            if self.outcomes:
                client.execute("INSERT INTO outcomes (id, ts, session_id, utterance_id, kind, ingested_at) VALUES",
                               [(*row, ingested_at) for row in self.outcomes])
        finally:
            client.disconnect()


def window_start_of(ts: datetime) -> datetime:
    epoch = datetime(1970, 1, 1)
    return epoch + timedelta(seconds=int((ts - epoch).total_seconds()) // WINDOW_S * WINDOW_S)


def window_end(start: datetime) -> datetime:
    return start + timedelta(seconds=WINDOW_S)


def spread(count: int, start: datetime, span_s: float) -> list[datetime]:
    return [start + timedelta(seconds=span_s * i / count) for i in range(count)]


@pytest.fixture
def week(services, tmp_path) -> Iterator[dict]:
    """A week of baseline traffic and three 5-minute windows where track_order stops converting."""
    first = random_day() + timedelta(hours=12)
    windows = [first + timedelta(seconds=WINDOW_S * i) for i in range(3)]
    rows = Rows([], [])
    for assistant, subject, baseline_n, baseline_rate, window_n, window_rate in TRAFFIC:
        for index, ts in enumerate(spread(baseline_n, first - timedelta(days=6), 5 * 86400)):
            rows.add(assistant, subject, ts, index < round(baseline_rate * baseline_n), index)
        for start in windows:
            for index, ts in enumerate(spread(window_n, start, WINDOW_S - 10)):
                rows.add(assistant, subject, ts, index < round(window_rate * window_n), index)
    settings = make_test_settings(
        monitor={"window_s": WINDOW_S, "grace_s": GRACE_S, "outcome_delay_s": DELAY_S,
                 "conversion_baseline_days": 7},
        alerts={"rules_path": DEFAULT_RULES_PATH, "store_path": tmp_path / "alerts.db"},
    )
    rows.insert(settings, real_now())
    runtime = build_monitor(settings, labeling=False, kafka=False)
    yield {"settings": settings, "runtime": runtime, "windows": windows, "rows": rows}
    runtime.close()


def query(settings, sql: str, params: dict) -> list[tuple]:
    client = connect(settings.clickhouse)
    try:
        return client.execute(sql, params)
    finally:
        client.disconnect()


def test_one_alert_for_the_intent_that_stops_converting_and_nothing_twice(week) -> None:
    settings, runtime, windows = week["settings"], week["runtime"], week["windows"]
    wait = timedelta(seconds=DELAY_S + GRACE_S)
    since = windows[0]

    # not before the outcomes are in
    too_early = window_end(windows[0]) + wait - timedelta(seconds=1)
    assert runtime.score_conversion(now=too_early, since=since).windows == ()
    first = runtime.score_conversion(now=window_end(windows[0]) + wait, since=since)
    assert [w.start for w in first.windows] == [windows[0]] and first.events == ()  # 3 windows in a row fire

    stored = {(a, kind, subject): rest for a, kind, subject, *rest in query(settings, (
        "SELECT assistant, subject_kind, subject, traffic, converted, rate, baseline_rate, baseline_traffic"
        " FROM conversion_windows FINAL WHERE window_start = %(w)s"), {"w": windows[0]})}
    track = stored[("shopper", "intent", "track_order")]
    assert track[:2] == [80, 4] and track[2] == pytest.approx(0.05) and track[3] == pytest.approx(0.6)
    assert track[4] == 1200
    assert stored[("all", "intent", "track_order")][:2] == [80, 4]
    assert stored[("associate", "intent", "check_shift")][:2] == [60, 30]
    assert stored[("all", "ood", "ood")][:2] == [40, 12] and stored[("all", "ood", "ood")][4] == 600
    assert stored[("shopper", "intent", "rare_intent")][:2] == [10, 0]
    assert len(stored) == 6 + 5  # every subject of each assistant, and of all (ood of both assistants is one)

    now = window_end(windows[2]) + wait
    later = runtime.score_conversion(now=now, since=since)
    assert [w.start for w in later.windows] == windows[1:]
    (event,) = later.events
    assert (event.rule, event.status, event.assistant, event.subject) == (RULE, "firing", "shopper", "track_order")
    # the last window's baseline holds the week and the first two windows: (720 + 4 + 4) / (1200 + 80 + 80)
    assert event.value == pytest.approx(728 / 1360 - 0.05)
    assert event.evidence["traffic"] == 80 and event.evidence["rank"] == 1

    mirrored = query(settings, "SELECT rule, assistant, state, window_start, summary FROM alert_events"
                               " WHERE rule = %(rule)s AND window_start >= %(a)s AND window_start <= %(b)s",
                     {"rule": RULE, "a": windows[0], "b": windows[2]})
    assert len(mirrored) == 1
    assert mirrored[0][:4] == (RULE, "shopper", "firing", windows[2]) and "on track_order" in mirrored[0][4]
    engine = runtime.alerts.engine
    with engine.store.transaction() as conn:
        assert conn.execute("SELECT group_key, status FROM alert_events").fetchall() == [
            (f"{RULE}|shopper|track_order", "firing")]
        assert conn.execute("SELECT receiver FROM outbox").fetchall() == [("ml-team",)]
    assert engine.state(f"{RULE}|shopper|rare_intent") is None  # too little traffic: never judged
    assert engine.state(f"{RULE}|shopper|add_to_cart").status == "ok"
    assert engine.state(f"{RULE}|*|track_order") is None  # one assistant serves it: no second alert

    # again: nothing to score, no new event, no duplicate row
    again = runtime.score_conversion(now=now, since=since)
    assert again.windows == () and again.events == ()
    # a late outcome inside the last window's horizon: that window is scored once more, with it, and alerts stay
    time.sleep(1.1)  # ingested after the score, in whole seconds
    late = Rows([], [])
    (uid, ts, _, session, _, _) = [row for row in week["rows"].predictions  # the last one: not converted
                                   if row[2] == "shopper" and row[4] == "track_order" and row[1] >= windows[2]][-1]
    late.outcome(session, uid, "converted", ts + timedelta(seconds=200))
    late.insert(settings, real_now())
    rescored = runtime.score_conversion(now=now, since=since)
    assert [w.start for w in rescored.windows] == [windows[2]] and rescored.events == ()
    (track_last,) = [s for s in rescored.windows[0].subjects if (s.assistant, s.subject) == ("shopper", "track_order")]
    assert (track_last.traffic, track_last.converted) == (80, 5)
    assert runtime.score_conversion(now=now, since=since).windows == ()
    assert query(settings, "SELECT count() FROM alert_events WHERE rule = %(rule)s AND window_start >= %(a)s"
                           " AND window_start <= %(b)s", {"rule": RULE, "a": windows[0], "b": windows[2]}) == [(1,)]
    assert query(settings, "SELECT converted FROM conversion_windows FINAL WHERE window_start = %(w)s"
                           " AND assistant = 'shopper' AND subject = 'track_order'", {"w": windows[2]}) == [(5,)]


def test_converted_follows_the_definition(services) -> None:
    """Utterance-linked or session-level converting outcomes, before the horizon, at or after the utterance."""
    settings = make_test_settings()
    start = random_day()
    at = lambda seconds: start + timedelta(seconds=seconds)  # noqa: E731
    rows = Rows([
        ("a1", at(10), "shopper", "s1", "buy", 0),  # session s1 converts at 25 s: a1 and a2 converted ...
        ("a2", at(20), "shopper", "s1", "buy", 0),
        ("a3", at(30), "shopper", "s1", "buy", 0),  # ... a3 came after that outcome: not
        ("b1", at(40), "shopper", "s2", "buy", 0),  # its own task_completed
        ("c1", at(50), "associate", "s3", "shift", 0),  # abandoned only
        ("d1", at(60), "associate", "s4", "shift", 1),  # OOD row: counted under ood, converted
        ("e1", at(290), "shopper", "s5", "buy", 0),  # converted 10 s after the horizon (end + delay): not
        ("f1", at(100), "shopper", "s6", "buy", 0),  # a converting outcome for another utterance of its session
    ], [])
    rows.outcome("s1", "", "converted", at(25))
    rows.outcome("s2", "b1", "task_completed", at(45))
    rows.outcome("s3", "c1", "abandoned", at(55))
    rows.outcome("s4", "d1", "converted", at(70))
    rows.outcome("s5", "", "converted", at(WINDOW_S + DELAY_S + 10))
    rows.outcome("s6", "other-utterance", "converted", at(120))
    rows.insert(settings, real_now())
    client = connect(settings.clickhouse)
    try:
        counts = count_conversions(client, start, at(WINDOW_S), window_s=WINDOW_S, delay_s=DELAY_S)
    finally:
        client.disconnect()
    assert sorted((c.assistant, c.subject_kind, c.subject, c.traffic, c.converted) for c in counts) == [
        ("associate", "intent", "shift", 1, 0),
        ("associate", "ood", "ood", 1, 1),
        ("shopper", "intent", "buy", 6, 3),
    ]


def test_a_failing_scorer_never_stops_window_scoring(services, tmp_path) -> None:
    settings = make_test_settings(alerts={"store_path": tmp_path / "alerts.db"})
    broken = make_test_settings(clickhouse={"port": 1})  # nothing listens there
    working = build_monitor(settings, labeling=False, kafka=False, alerts=False)
    unreachable = build_monitor(broken, labeling=False, kafka=False, alerts=False, metrics=working.metrics)
    runtime = MonitorRuntime(working.job, None, None, None, unreachable.conversion)
    start = random_day()
    before = runtime.metrics.registry.get_sample_value("nlumon_monitor_run_errors_total",
                                                       {"where": "conversion"}) or 0.0
    assert runtime.run_once(now=start + timedelta(hours=1), since=start) == []  # the job ran (no windows there)
    after = runtime.metrics.registry.get_sample_value("nlumon_monitor_run_errors_total", {"where": "conversion"})
    assert after == before + 1
