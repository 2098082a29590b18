"""Alert lifecycle: ok → firing → (repeats suppressed during cooldown) → resolved.

Points are grouped by rule + scope (``rule|assistant`` or ``rule|*`` for global rules) and by window:
a burst of points for the same group inside one window is one observation (the worst value), so one
incident makes one alert. A point with a ``subject`` (an intent, for per-subject metrics such as
``conversion_drop``) adds it to the group (``rule|assistant|subject``), so two intents that stop converting
are two alerts; points without one keep the keys above, so stored state stays valid.

A rule judges only the points it :meth:`~alerts.rules.Rule.admits` (a ``low_conversion`` rule: the top
subjects by traffic). A point it does not admit is skipped, unless its group already has state: then it
counts as a window that does not breach (a firing subject that left the top traffic resolves; a streak
breaks), so no alert stays firing because its points stopped qualifying.

``for_windows`` consecutive breaching windows fire; while firing, a reminder (``repeat``) goes out at most
once per cooldown, measured in window time so that a replay behaves like the live run; the first window
that no longer breaches resolves. State, stored events and the outbox rows for the rule's receivers are
written in one SQLite transaction, so a crash loses or duplicates nothing, and state survives a restart.

    >>> import os, tempfile
    >>> from datetime import datetime, timedelta, timezone
    >>> from alerts.rules import Rule
    >>> from alerts.store import AlertStore
    >>> rule = Rule("ood", "ood_rate", ">", 0.1, for_windows=2, receivers=("oncall",))
    >>> engine = AlertEngine([rule], AlertStore(os.path.join(tempfile.mkdtemp(), "a.db")))
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> def window(i, value):
    ...     start = t0 + timedelta(minutes=5 * i)
    ...     return MetricPoint("ood_rate", value, start, start + timedelta(minutes=5), "shopper")
    >>> engine.evaluate([window(0, 0.3)]), [e.status for e in engine.evaluate([window(1, 0.4)])]
    ([], ['firing'])
    >>> [e.status for e in engine.evaluate([window(2, 0.5), window(3, 0.01)])]
    ['resolved']
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.events import AlertEvent, AlertStatus, MetricPoint
from alerts.outbox import insert_messages
from alerts.rules import Rule
from alerts.store import AlertStore

log = logging.getLogger(__name__)


@dataclass
class GroupState:
    """What the engine remembers about one group between calls (persisted as JSON)."""

    status: str = "ok"  # ok | firing
    streak: int = 0
    streak_start: str | None = None
    last_window_start: str | None = None
    last_window_end: str | None = None
    last_breached: bool = False
    incident_id: str | None = None
    incident_started: str | None = None
    last_notified_end: str | None = None
    suppressed: int = 0


@dataclass
class _Observation:
    """The worst point of one group in one window."""

    rule: Rule
    group_key: str
    point: MetricPoint
    points: int = field(default=1)
    admitted: bool = True  # False: the rule does not judge this point (see Rule.admits)


class AlertEngine:
    """Evaluates metric points against rules; see the module docstring."""

    def __init__(self, rules: Sequence[Rule], state_store: AlertStore, *, clock: Callable[[], float] = time.time):
        self.rules = list(rules)
        self.store = state_store
        self.clock = clock
        self._by_metric: dict[str, list[Rule]] = {}
        for rule in self.rules:
            self._by_metric.setdefault(rule.metric, []).append(rule)

    def evaluate(self, points: Iterable[MetricPoint]) -> list[AlertEvent]:
        """Update the alert groups with ``points``; return (and store, and enqueue) the new events."""
        observations = self._observations(points)
        events: list[AlertEvent] = []
        now = self.clock()
        with self.store.transaction() as conn:
            states = _load_states(conn, {obs.group_key for obs in observations})
            for obs in observations:
                if not obs.admitted and obs.group_key not in states:
                    continue  # a subject this rule does not watch, and never did
                state = states.setdefault(obs.group_key, GroupState())
                event = _step(obs, state)
                if event is not None:
                    events.append(event)
            for key, state in states.items():
                conn.execute(
                    "INSERT OR REPLACE INTO alert_state (group_key, rule, state_json, updated_at) VALUES (?, ?, ?, ?)",
                    (key, key.split("|", 1)[0], json.dumps(state.__dict__), now),
                )
            for event in events:
                conn.execute(
                    "INSERT OR IGNORE INTO alert_events"
                    " (id, rule, group_key, status, window_end, event_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event.id, event.rule, event.group_key, event.status, event.window_end.isoformat(),
                     event.to_json(), now),
                )
                insert_messages(conn, event, now)
        for event in events:
            log.info("alert %s %s (%s=%.4g, group %s)", event.rule, event.status, event.metric, event.value,
                     event.group_key)
        return events

    def state(self, group_key: str) -> GroupState | None:
        """The stored state of one group (``rule|assistant``, ``rule|*``, + ``|subject``), or None if never seen."""
        with self.store.transaction() as conn:
            return _load_states(conn, {group_key}).get(group_key)

    def _observations(self, points: Iterable[MetricPoint]) -> list[_Observation]:
        merged: dict[tuple[str, datetime, datetime], _Observation] = {}
        for point in points:
            if not isinstance(point.value, int | float) or math.isnan(point.value):
                log.warning("ignoring a non-numeric or NaN value for metric %s", point.metric)
                continue
            for rule in self._by_metric.get(point.metric, ()):
                key = group_key(rule, point)
                admitted = rule.admits(point)
                slot = (key, point.window_start, point.window_end)
                seen = merged.get(slot)
                if seen is None:
                    merged[slot] = _Observation(rule, key, point, admitted=admitted)
                    continue
                seen.points += 1
                # an admitted point wins over one the rule does not judge; among equals, the worse value
                worse = rule.worse(seen.point.value, point.value) != seen.point.value
                if (admitted and not seen.admitted) or (admitted == seen.admitted and worse):
                    seen.point, seen.admitted = point, admitted
        return sorted(merged.values(), key=lambda o: (o.point.window_end, o.point.window_start, o.group_key))


def group_key(rule: Rule, point: MetricPoint) -> str:
    """The alert group of ``point`` under ``rule``: ``rule|assistant`` (``rule|*`` for a global rule or the
    whole traffic), then ``|subject`` when the point has one.

    >>> from datetime import datetime
    >>> t = datetime(2026, 1, 1)
    >>> rule = Rule("r", "conversion_drop", ">=", 0.15)
    >>> group_key(rule, MetricPoint("conversion_drop", 0.3, t, t, "shopper", subject="track_order"))
    'r|shopper|track_order'
    >>> group_key(rule, MetricPoint("conversion_drop", 0.3, t, t, None))
    'r|*'
    """
    scope = (point.assistant or "*") if rule.scope == "per_assistant" else "*"
    key = f"{rule.name}|{scope}"
    return key if point.subject is None else f"{key}|{point.subject}"


def _load_states(conn: sqlite3.Connection, keys: set[str]) -> dict[str, GroupState]:
    states: dict[str, GroupState] = {}
    for key in keys:
        row = conn.execute("SELECT state_json FROM alert_state WHERE group_key = ?", (key,)).fetchone()
        if row is not None:
            states[key] = GroupState(**json.loads(row[0]))
    return states


def _step(obs: _Observation, state: GroupState) -> AlertEvent | None:
    """Advance one group by one window observation; return the event to send, if any."""
    point, rule = obs.point, obs.rule
    start, end = point.window_start.isoformat(), point.window_end.isoformat()
    breached = obs.admitted and rule.breached(point.value)
    if state.last_window_end is not None:
        last_end = datetime.fromisoformat(state.last_window_end)
        if point.window_end < last_end:
            log.debug("late window for %s ignored (ends %s, state at %s)", obs.group_key, end, state.last_window_end)
            return None
        if point.window_end == last_end:
            # The same window again (a burst split across calls): only a first breach counts, and a
            # window seen as fine then breaching starts a new streak (its earlier "fine" already reset it).
            if not breached or state.last_breached:
                if state.status == "firing" and breached:
                    state.suppressed += 1
                return None
        elif point.window_start > last_end:
            state.streak = 0  # a gap with no data: the windows are not consecutive
    state.last_window_start, state.last_window_end, state.last_breached = start, end, breached
    if not breached:
        state.streak = 0
        if state.status == "firing":
            event = _event(obs, state, "resolved")
            state.status, state.incident_id, state.incident_started, state.suppressed = "ok", None, None, 0
            return event
        return None
    state.streak += 1
    if state.streak == 1:
        state.streak_start = start
    if state.status == "ok":
        if state.streak < rule.for_windows:
            return None
        state.status = "firing"
        state.incident_id = _digest(obs.group_key, "incident", end)
        state.incident_started = state.streak_start
        return _notify(obs, state, "firing")
    last = datetime.fromisoformat(state.last_notified_end) if state.last_notified_end else None
    if last is not None and (point.window_end - last).total_seconds() < rule.cooldown_s:
        state.suppressed += 1
        return None
    return _notify(obs, state, "repeat")


def _notify(obs: _Observation, state: GroupState, status: AlertStatus) -> AlertEvent:
    event = _event(obs, state, status)
    state.last_notified_end = obs.point.window_end.isoformat()
    state.suppressed = 0
    return event


def _event(obs: _Observation, state: GroupState, status: AlertStatus) -> AlertEvent:
    point, rule = obs.point, obs.rule
    end = point.window_end.isoformat()
    evidence = dict(point.evidence)
    evidence.setdefault("points_in_window", obs.points)
    return AlertEvent(
        id=_digest(obs.group_key, status, end),
        rule=rule.name,
        group_key=obs.group_key,
        status=status,
        severity=rule.severity,
        metric=rule.metric,
        condition=rule.condition,
        threshold=rule.threshold,
        value=float(point.value),
        assistant=point.assistant if rule.scope == "per_assistant" else None,
        scope=rule.scope,
        window_start=point.window_start,
        window_end=point.window_end,
        incident_id=state.incident_id or _digest(obs.group_key, "incident", end),
        incident_started=(
            datetime.fromisoformat(state.incident_started) if state.incident_started else point.window_start
        ),
        suppressed_repeats=state.suppressed,
        evidence=evidence,
        receivers=rule.receivers,
        description=rule.description,
        subject=point.subject,
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
