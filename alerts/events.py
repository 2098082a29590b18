"""The two value types of the alerts package: what comes in (metric points) and what goes out (events).

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> point = MetricPoint("ood_rate", 0.2, t0, t0, "shopper", {"threshold": 0.1})
    >>> point.metric, point.assistant, point.subject
    ('ood_rate', 'shopper', None)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

AlertStatus = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True)
class MetricPoint:
    """One value of one metric for one monitoring window.

    ``assistant`` is ``None`` for a metric that is not per assistant (consumer lag, DLQ rate).
    ``evidence`` carries what a human needs to judge the alert: thresholds, links to the Evidently
    report or dashboard, example utterances (already scrubbed of PII upstream).
    ``subject`` is what inside the traffic the value is about (an intent, ``ood``) for metrics that come
    once per subject, such as ``conversion_drop``: each subject is then its own alert group, so an
    intent that stops converting is one alert of its own. ``None`` for every other metric.
    """

    metric: str
    value: float
    window_start: datetime
    window_end: datetime
    assistant: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One notification-worthy change of an alert group (rule + scope, + subject for per-subject metrics).

    ``id`` is deterministic (rule, group, status, window): evaluating the same points twice gives
    the same id, so the outbox and the receivers deduplicate replays.
    """

    id: str
    rule: str
    group_key: str
    status: AlertStatus
    severity: str
    metric: str
    condition: str
    threshold: float
    value: float
    assistant: str | None
    scope: str
    window_start: datetime
    window_end: datetime
    incident_id: str
    incident_started: datetime
    suppressed_repeats: int = 0
    evidence: Mapping[str, Any] = field(default_factory=dict)
    receivers: tuple[str, ...] = ()
    description: str = ""
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        data = asdict(self)
        for key in ("window_start", "window_end", "incident_started"):
            data[key] = getattr(self, key).isoformat()
        data["receivers"] = list(self.receivers)
        data["evidence"] = dict(self.evidence)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertEvent:
        values = dict(data)
        for key in ("window_start", "window_end", "incident_started"):
            values[key] = datetime.fromisoformat(values[key])
        values["receivers"] = tuple(values.get("receivers", ()))
        return cls(**values)
