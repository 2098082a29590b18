"""Webhook bodies: the standard JSON envelope, or a Slack-compatible message (a receiver option).

The standard body follows the Standard Webhooks payload convention ``{"type", "timestamp", "data"}``;
``data`` is the whole alert with its evidence (thresholds, links, example utterances — already
scrubbed upstream). Bodies are rendered with sorted keys so every retry sends the same bytes.

    >>> from datetime import datetime, timezone
    >>> from alerts.events import AlertEvent
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> event = AlertEvent("e1", "ood-rate-high", "ood-rate-high|shopper", "firing", "warning", "ood_rate", ">",
    ...                    0.15, 0.31, "shopper", "per_assistant", t, t, "i1", t,
    ...                    evidence={"examples": ["where is my parcel"]})
    >>> json.loads(render(event.to_dict(), "standard"))["type"]
    'alert.firing'
    >>> json.loads(render(event.to_dict(), "slack"))["text"]
    ':warning: [WARNING] ood-rate-high firing for shopper: ood_rate = 0.31 (> 0.15)'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FORMATS = ("standard", "slack")
_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
MAX_SLACK_EXAMPLES = 5


def render(event: Mapping[str, Any], fmt: str) -> bytes:
    """The body bytes of ``event`` (an ``AlertEvent.to_dict()``) in format ``standard`` or ``slack``."""
    if fmt == "standard":
        body: dict[str, Any] = {
            "type": f"alert.{event['status']}",
            "timestamp": event["window_end"],
            "data": dict(event),
        }
    elif fmt == "slack":
        body = _slack(event)
    else:
        raise ValueError(f"unknown webhook format {fmt!r}; use one of {', '.join(FORMATS)}")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def headline(event: Mapping[str, Any]) -> str:
    """One line that says what happened, for chat and logs."""
    icon = ":white_check_mark:" if event["status"] == "resolved" else _ICONS.get(event["severity"], "")
    where = f" for {event['assistant']}" if event.get("assistant") else ""
    return (
        f"{icon} [{event['severity'].upper()}] {event['rule']} {event['status']}{where}: "
        f"{event['metric']} = {event['value']:.4g} ({event['condition']} {event['threshold']:.4g})"
    ).strip()


def _slack(event: Mapping[str, Any]) -> dict[str, Any]:
    evidence = event.get("evidence") or {}
    lines = [f"*{headline(event)}*"]
    if event.get("description"):
        lines.append(event["description"])
    lines.append(f"window {event['window_start']} → {event['window_end']}, incident since {event['incident_started']}")
    examples = list(evidence.get("examples", []))[:MAX_SLACK_EXAMPLES]
    if examples:
        lines.append("examples:\n" + "\n".join(f"• `{text}`" for text in examples))
    links = {k: v for k, v in evidence.items() if isinstance(v, str) and v.startswith(("http://", "https://"))}
    if links:
        lines.append(" | ".join(f"<{url}|{name}>" for name, url in sorted(links.items())))
    return {
        "text": headline(event),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }
