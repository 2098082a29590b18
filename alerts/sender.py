"""The sender loop of the outbox: deliver signed webhooks with retries until a horizon, then give up loudly.

Outcomes of one attempt:

- 2xx: delivered.
- timeout, connection error, 408, 429, 5xx (and 3xx: redirects are not followed): retried with
  exponential backoff and full jitter (``uniform(0, min(cap, base * 2**(attempt-1)))``; a
  ``Retry-After`` in seconds or as an HTTP date is honoured up to the cap, an odd one ignored, see
  :func:`parse_retry_after`) until ``horizon_s`` after the alert was queued, then dead.
- any other 4xx: dead at once — the receiver said the request itself is wrong.

Every outcome is counted in Prometheus counters of the registry passed in. Logs name the receiver,
never its URL (a Slack URL is a credential) or its secret; stored errors are a status code or an
exception class name, never an exception message (which may contain the URL).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

import requests
from prometheus_client import CollectorRegistry, Counter

from alerts.outbox import Outbox, OutboxMessage
from alerts.payloads import render
from alerts.receivers import Receiver
from alerts.webhooks import signed_headers

log = logging.getLogger(__name__)
_RETRYABLE_4XX = (408, 429)
MAX_RETRY_AFTER_DIGITS = 10  # delay-seconds up to ~317 years; longer is treated as an odd value (ignored)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff and give-up settings; all in seconds (tests use milliseconds, e.g. ``base_s=0.005``).

    >>> policy = RetryPolicy(base_s=1.0, cap_s=8.0)
    >>> rng = random.Random(0)
    >>> all(0 <= policy.backoff(n, rng) <= min(8.0, 2 ** (n - 1)) for n in range(1, 10))
    True
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    horizon_s: float = 24 * 3600.0
    lease_s: float = 60.0
    batch: int = 20

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter delay before retry number ``attempt`` (1 = after the first failure)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0)))


@dataclass
class SendReport:
    """What one :meth:`WebhookSender.run_once` did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (webhook_id, receiver, outcome)

    @property
    def claimed(self) -> int:
        return self.delivered + self.retried + self.dead


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "nlumon_webhook_attempts", "Webhook delivery attempts by receiver and result",
            ["receiver", "result"], registry=registry,
        )
        self.delivered = Counter(
            "nlumon_webhook_delivered", "Webhooks delivered", ["receiver"], registry=registry
        )
        self.dead = Counter(
            "nlumon_webhook_dead", "Webhooks given up (client error or retry horizon passed)",
            ["receiver", "reason"], registry=registry,
        )


class WebhookSender:
    """Claims due outbox rows, delivers them, and records the outcome.

    ``receivers`` maps names to :class:`Receiver`; a row for an unknown receiver is retried (the
    config may be fixed and the sender restarted) and dies at the horizon like any other failure.
    """

    def __init__(
        self,
        outbox: Outbox,
        receivers: Mapping[str, Receiver],
        *,
        policy: RetryPolicy | None = None,
        registry: CollectorRegistry | None = None,
        session: requests.Session | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.receivers = dict(receivers)
        self.policy = policy or RetryPolicy()
        self.metrics = _Metrics(registry if registry is not None else CollectorRegistry())
        self.session = session or requests.Session()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rng = rng or random.Random()
        slowest = max((r.timeout_s for r in self.receivers.values()), default=0.0)
        if self.policy.lease_s <= slowest:
            log.warning("lease %.1fs is not longer than the slowest receiver timeout %.1fs: a slow delivery may be "
                        "sent twice", self.policy.lease_s, slowest)

    @property
    def clock(self) -> Callable[[], float]:
        return self.outbox.clock

    def run_once(self, *, webhook_id: str | None = None) -> SendReport:
        """Claim one batch of due rows (only ``webhook_id``'s, if given) and try each once."""
        report = SendReport()
        claimed = self.outbox.claim(self.owner, limit=self.policy.batch, lease_s=self.policy.lease_s,
                                    webhook_id=webhook_id)
        for message in claimed:
            outcome = self._deliver(message)
            report.outcomes.append((message.webhook_id, message.receiver, outcome))
            setattr(report, outcome, getattr(report, outcome) + 1)
        return report

    def run_forever(self, stop: threading.Event, *, idle_s: float = 1.0) -> None:
        """Send until ``stop`` is set; sleeps ``idle_s`` when nothing was due."""
        while not stop.is_set():
            try:
                report = self.run_once()
            except Exception:
                log.exception("webhook sender iteration failed; retrying")
                report = SendReport()
            if report.claimed == 0:
                stop.wait(idle_s)

    def _deliver(self, message: OutboxMessage) -> str:
        receiver = self.receivers.get(message.receiver)
        if receiver is None:
            return self._failed(message, "receiver not configured", None, None)
        body = render(message.event, receiver.format)
        headers = (
            signed_headers(receiver.secret, message.webhook_id, body, timestamp=int(self.clock()))
            if receiver.secret
            else {"content-type": "application/json", "webhook-id": message.webhook_id}
        )
        try:
            response = self.session.post(
                receiver.url, data=body, headers=headers, timeout=receiver.timeout_s, allow_redirects=False
            )
        except requests.RequestException as error:
            # The class name only: requests' messages contain the URL.
            return self._failed(message, type(error).__name__, None, None)
        code = response.status_code
        response.close()
        if 200 <= code < 300:
            self.outbox.ack(message, status_code=code)
            self.metrics.attempts.labels(message.receiver, "delivered").inc()
            self.metrics.delivered.labels(message.receiver).inc()
            log.info("webhook %s delivered to %s (HTTP %d, attempt %d)", message.webhook_id, message.receiver, code,
                     message.attempts)
            return "delivered"
        if 400 <= code < 500 and code not in _RETRYABLE_4XX:
            self.outbox.mark_dead(message, f"HTTP {code}", status_code=code)
            self.metrics.attempts.labels(message.receiver, "client_error").inc()
            self.metrics.dead.labels(message.receiver, "client_error").inc()
            log.error("webhook %s to %s rejected with HTTP %d: dead, not retried", message.webhook_id,
                      message.receiver, code)
            return "dead"
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=time.time())
        return self._failed(message, f"HTTP {code}", code, retry_after)

    def _failed(self, message: OutboxMessage, error: str, code: int | None, retry_after: float | None) -> str:
        now = self.clock()
        self.metrics.attempts.labels(message.receiver, "retryable_error").inc()
        deadline = message.created_at + self.policy.horizon_s
        if now >= deadline:
            self.outbox.mark_dead(message, f"gave up after {message.attempts} attempts: {error}", status_code=code)
            self.metrics.dead.labels(message.receiver, "horizon").inc()
            log.error("webhook %s to %s dead after %d attempts over the %.0fs horizon (last: %s)",
                      message.webhook_id, message.receiver, message.attempts, self.policy.horizon_s, error)
            return "dead"
        delay = self.policy.backoff(message.attempts, self.rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.policy.cap_s))
        # The last try happens at the horizon rather than never.
        next_at = min(now + delay, deadline)
        self.outbox.reschedule(message, self.owner, next_at, error, status_code=code)
        log.warning("webhook %s to %s failed (%s), attempt %d; retry in %.3fs", message.webhook_id,
                    message.receiver, error, message.attempts, next_at - now)
        return "retried"


def parse_retry_after(value: object, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (RFC 9110 10.2.3), or None when absent or odd.

    ``delay-seconds`` must be ASCII digits (``int()`` would also take ``"٣"``, ``"３"``, ``"+3"``, ``"3_0"``); an
    HTTP date gives its distance from ``now`` (unix seconds), 0 when it is past. Anything else, including a value
    longer than :data:`MAX_RETRY_AFTER_DIGITS` digits or a date that does not parse, gives None; this never raises.

    >>> parse_retry_after("120", now=0), parse_retry_after("٣", now=0), parse_retry_after("-1", now=0)
    (120.0, None, None)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0)
    60.0
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if not text or len(text) > 64 or not text.isascii() or not text.isprintable():
        return None
    if text.isdigit():
        return float(text) if len(text) <= MAX_RETRY_AFTER_DIGITS else None
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        delay = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def wait_until_idle(sender: WebhookSender, *, timeout_s: float, poll_s: float = 0.01) -> SendReport:
    """Run the sender until nothing is pending (or ``timeout_s`` passes); returns the summed report."""
    total = SendReport()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = sender.run_once()
        total.delivered += report.delivered
        total.retried += report.retried
        total.dead += report.dead
        total.outcomes += report.outcomes
        pending = sum(c.get("pending", 0) for c in sender.outbox.counts().values())
        if pending == 0:
            break
        if report.claimed == 0:
            time.sleep(poll_s)
    return total
