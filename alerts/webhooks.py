"""Standard Webhooks signing and verification — standard library only, so receiving teams can copy it.

Follows https://www.standardwebhooks.com (spec v1): headers ``webhook-id``, ``webhook-timestamp``
(integer unix seconds) and ``webhook-signature``, a space-separated list of ``v1,<base64>`` where the
base64 is HMAC-SHA256 over ``f"{id}.{timestamp}.{body}"``. A secret is ``whsec_`` + base64 of the key
bytes; the key is the decoded part (the prefix is optional, as in the reference libraries). Retries
keep the ``webhook-id`` and get a fresh timestamp and signature.

The spec's published test vector:

    >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    >>> sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    >>> headers = signed_headers(secret, "msg_1", b"{}", timestamp=1700000000)
    >>> verify(secret, headers, b"{}", now=1700000100)
    >>> verify(secret, headers, b"{}", now=1700001000)
    Traceback (most recent call last):
    ...
    alerts.webhooks.StaleTimestamp: webhook-timestamp 1700000000 is 1000 s away from now (tolerance 300 s)

Header values are untrusted text: :func:`parse_timestamp` takes ASCII digits only (``int()`` would also
accept ``"٣"``, ``"３"``, ``"+3"``, ``" 3 "`` or ``"3_0"``), and every odd value makes :func:`verify`
raise :class:`InvalidSignature` with a reason, never anything else.

    >>> parse_timestamp("1700000000"), parse_timestamp("١٧٠٠٠٠٠٠٠٠"), parse_timestamp("-1"), parse_timestamp("")
    (1700000000, None, None, None)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
# Unix seconds have 10 digits until 2286; 12 digits (year ~33,000) is plenty and keeps int() cheap.
MAX_TIMESTAMP_DIGITS = 12
_HTTP_OWS = " \t"  # the only whitespace HTTP allows around a field value


class WebhookVerificationError(Exception):
    """Base class: the webhook must be rejected."""


class InvalidSignature(WebhookVerificationError):
    """No ``v1`` signature in ``webhook-signature`` matches the body, or headers are missing/malformed."""


class StaleTimestamp(WebhookVerificationError):
    """``webhook-timestamp`` is further from now than the tolerance (replay protection)."""


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after ``whsec_`` (raw bytes pass through)."""
    if isinstance(secret, bytes):
        return secret
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not whsec_<base64>") from None


def generate_secret(n_bytes: int = 32) -> str:
    """A fresh random secret in the ``whsec_<base64>`` form (the spec asks for 24 to 64 bytes)."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(n_bytes)).decode("ascii")


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature of one message."""
    payload = body.encode("utf-8") if isinstance(body, str) else body
    content = f"{webhook_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secret: str | bytes, webhook_id: str, body: bytes | str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers plus ``content-type`` for one delivery attempt."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
        "content-type": "application/json",
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook; return None when valid, raise otherwise.

    ``headers`` may use any letter case. Raises :class:`InvalidSignature` for missing headers or
    no matching ``v1`` signature, :class:`StaleTimestamp` when the timestamp is more than
    ``tolerance_s`` seconds in the past or the future. The timestamp is checked only after the
    signature, so a forged request never learns about the clock.
    """
    lower = {str(k).lower(): _text(v) for k, v in headers.items()}
    missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lower.get(h)]
    if missing:
        raise InvalidSignature(f"missing or unreadable header(s): {', '.join(missing)}")
    webhook_id, ts_text, offered_text = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    timestamp = parse_timestamp(ts_text)
    if timestamp is None:
        raise InvalidSignature(f"webhook-timestamp is not integer unix seconds: {ts_text[:40]!r}")
    if not _utf8(webhook_id) or (isinstance(body, str) and not _utf8(body)):
        raise InvalidSignature("webhook-id or body is not valid UTF-8 text")
    expected = sign(secret, webhook_id, timestamp, body).split(",", 1)[1].encode()
    offered = [part.split(",", 1) for part in offered_text.split()]
    if not any(
        len(p) == 2 and p[0] == "v1" and p[1].isascii() and hmac.compare_digest(p[1].encode(), expected)
        for p in offered
    ):
        raise InvalidSignature("no v1 signature matches the body")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise StaleTimestamp(
            f"webhook-timestamp {timestamp} is {abs(current - timestamp):.0f} s away from now "
            f"(tolerance {tolerance_s:.0f} s)"
        )


def parse_timestamp(value: object) -> int | None:
    """Integer unix seconds from a ``webhook-timestamp`` header value, or None when it is anything else.

    Accepted: 1 to :data:`MAX_TIMESTAMP_DIGITS` ASCII digits, with optional spaces or tabs around them.
    Signs, inner spaces, underscores, decimals, non-ASCII digits and non-text values give None; this never raises.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip(_HTTP_OWS)
    if not (0 < len(text) <= MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _text(value: object) -> str | None:
    """A header value as text: str as is, bytes as latin-1 (what HTTP libraries do); anything else None."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
