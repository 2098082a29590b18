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
    ':warning: [WARNING] ood-rate-high firing for shopper: ood_rate = 0.31 (&gt; 0.15)'

Slack reads ``&``, ``<`` and ``>`` as markup (``<!channel>`` mentions, ``<http://x|masked links>``), so
every piece of alert text is escaped with :func:`slack_escape` before it goes into a Slack message, and
every text is cut to Slack's limits (:data:`SLACK_TEXT_LIMIT`, :data:`SLACK_SECTION_LIMIT`,
:data:`SLACK_MAX_BLOCKS`) with an ellipsis, never inside an ``&amp;``-style entity or one of our links:

    >>> slack_escape("<!channel> & <http://evil|click>")
    '&lt;!channel&gt; &amp; &lt;http://evil|click&gt;'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

FORMATS = ("standard", "slack")
_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
MAX_SLACK_EXAMPLES = 5
# Slack's limits (https://api.slack.com/reference/block-kit/blocks): a message's top-level ``text`` is cut
# at 40,000 characters, a section's text may hold 3,000, a message 50 blocks. Lengths are counted in UTF-16
# code units here (an emoji counts 2), which is never less than Slack's count.
SLACK_TEXT_LIMIT = 40_000
SLACK_SECTION_LIMIT = 3_000
SLACK_MAX_BLOCKS = 50
SLACK_EXAMPLE_LIMIT = 500  # one example utterance, so that several fit in one section
ELLIPSIS = "…"
_SPACES = re.compile(r"\s+")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # RFC 3986 reserved + '%' (keeps existing escapes); the rest is %-encoded


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
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate in some field (JSON input allows them): escape it, same bytes
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def headline(event: Mapping[str, Any], escape: Callable[[str], str] = str) -> str:
    """One line that says what happened, for chat and logs; ``escape`` is applied to every field's text.

    >>> headline({"status": "firing", "severity": "warning", "rule": "low-conv", "assistant": "shopper",
    ...           "subject": "track_order", "metric": "conversion_drop", "condition": ">=", "value": 0.42,
    ...           "threshold": 0.15})
    ':warning: [WARNING] low-conv firing for shopper on track_order: conversion_drop = 0.42 (>= 0.15)'
    """
    icon = ":white_check_mark:" if event["status"] == "resolved" else _ICONS.get(event["severity"], "")
    where = f" for {escape(str(event['assistant']))}" if event.get("assistant") else ""
    if event.get("subject"):  # per-subject metrics (conversion_drop): which intent, or ood
        where += f" on {escape(str(event['subject']))}"
    rule, status, metric, condition = (escape(str(event[k])) for k in ("rule", "status", "metric", "condition"))
    return (
        f"{icon} [{escape(str(event['severity']).upper())}] {rule} {status}{where}: "
        f"{metric} = {event['value']:.4g} ({condition} {event['threshold']:.4g})"
    ).strip()


def slack_escape(text: object) -> str:
    """``text`` safe inside Slack ``mrkdwn``: ``&``, ``<``, ``>`` as entities (no mentions, no links), lone
    surrogates replaced."""
    return _valid_unicode(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, ending with :data:`ELLIPSIS` when cut; the cut never
    splits an ``&...;`` entity or a ``<...>`` link written by this module."""
    if _units(text) <= limit:
        return text
    budget, used, end = limit - _units(ELLIPSIS), 0, 0
    for end, char in enumerate(text):  # noqa: B007 - `end` is the cut position after the loop
        used += _units(char)
        if used > budget:
            break
    cut = text[:end]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        cut = cut[:opened]
    return cut + ELLIPSIS


def _units(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _valid_unicode(text: str) -> str:
    """Lone surrogates (possible in JSON input) become U+FFFD; valid text is unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _slack_link(url: str, name: object) -> str:
    """``<url|name>`` with the URL %-encoded (no ``<``, ``>``, ``|`` or spaces left) and the name escaped."""
    safe_url = quote(_valid_unicode(url), safe=_URL_SAFE).replace("&", "&amp;")
    return f"<{safe_url}|{slack_escape(name)}>"


def _example_line(text: object) -> str:
    """One example utterance as a one-line inline code span: backticks cannot close it early."""
    one_line = _SPACES.sub(" ", _valid_unicode(str(text))).strip().replace("`", "'")
    return f"• `{slack_escape(slack_fit(one_line, SLACK_EXAMPLE_LIMIT))}`"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": slack_fit(text, SLACK_SECTION_LIMIT)}}


def _slack(event: Mapping[str, Any]) -> dict[str, Any]:
    evidence = event.get("evidence") or {}
    evidence = evidence if isinstance(evidence, Mapping) else {}
    title = headline(event, escape=slack_escape)
    summary = [f"*{title}*"]
    if event.get("description"):
        summary.append(slack_escape(event["description"]))
    summary.append(
        slack_escape(
            f"window {event['window_start']} → {event['window_end']}, incident since {event['incident_started']}"
        )
    )
    blocks = [_section("\n".join(summary))]
    raw_examples = evidence.get("examples")
    if isinstance(raw_examples, str):
        raw_examples = [raw_examples]
    examples = list(raw_examples)[:MAX_SLACK_EXAMPLES] if isinstance(raw_examples, list | tuple) else []
    if examples:
        blocks.append(_section("examples:\n" + "\n".join(_example_line(text) for text in examples)))
    links = {str(k): v for k, v in evidence.items() if isinstance(v, str) and v.startswith(("http://", "https://"))}
    if links:
        blocks.append(_section(" | ".join(_slack_link(url, name) for name, url in sorted(links.items()))))
    return {"text": slack_fit(title, SLACK_TEXT_LIMIT), "blocks": blocks[:SLACK_MAX_BLOCKS]}
