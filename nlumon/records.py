"""Wire records: what travels on the Kafka topics, validated where it enters.

The utterance event is the contract with the assistants (see docs/architecture.md). Anything that
does not parse into an :class:`UtteranceEvent` becomes a :class:`DeadLetter` with the original bytes
and the reason, so nothing is dropped silently.

    >>> event = parse_utterance(b'{"id": "u1", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper",'
    ...                         b' "session_id": "s1", "text": "add milk to my cart"}')
    >>> event.assistant, event.channel
    ('shopper', 'text')
    >>> parse_utterance(b'{"id": "u1"}')
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: missing field 'ts'; missing field 'assistant'; ...
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1
ASSISTANTS = ("shopper", "associate")
DEFAULT_MAX_TEXT_CHARS = 512
TS_MIN = datetime(1971, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2105, 12, 31, tzinfo=UTC)
# Unicode category Cc (C0, DEL, C1) except the tab.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class InvalidRecord(ValueError):
    """A record broke the wire contract; the message is the reason stored in the dead letter."""


class UtteranceEvent(BaseModel):
    """One utterance from an assistant (topic ``utterances``, key ``session_id``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=128, description="idempotency key")
    ts: datetime = Field(description="RFC 3339 event time")
    assistant: Literal["shopper", "associate"]
    session_id: str = Field(min_length=1, max_length=128)
    text: str
    locale: str = "en-US"
    channel: Literal["voice", "text"] = "text"
    asr_confidence: float | None = Field(None, ge=0.0, le=1.0)
    version: int = SCHEMA_VERSION

    @field_validator("ts")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must carry a time zone (RFC 3339)")
        value = value.astimezone(UTC)
        # ClickHouse DateTime holds 1970-01-01 .. 2106-02-07; a row outside it could never be stored.
        if not TS_MIN <= value <= TS_MAX:
            raise ValueError(f"ts {value.isoformat()} is outside {TS_MIN.year}..{TS_MAX.year}")
        return value

    @field_validator("text")
    @classmethod
    def _clean_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        if _CONTROL.search(value):
            raise ValueError("text contains control characters")
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class DeadLetter(BaseModel):
    """A record that could not be processed (topic ``dead-letter``)."""

    model_config = ConfigDict(frozen=True)

    reason: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    original_b64: str = Field(description="the original bytes, base64, exactly as received")
    failed_at: datetime

    @classmethod
    def for_bytes(
        cls,
        original: bytes | None,
        reason: str,
        *,
        source_topic: str,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | str | None = None,
    ) -> DeadLetter:
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        return cls(
            reason=reason,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key_text,
            original_b64=base64.b64encode(original or b"").decode("ascii"),
            failed_at=datetime.now(UTC),
        )

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def parse_utterance(raw: bytes | str, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> UtteranceEvent:
    """Validate one raw record against the wire contract.

    Raises :class:`InvalidRecord` with a short, human-readable reason.
    """
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRecord(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(payload).__name__}")
    try:
        event = UtteranceEvent.model_validate(payload)
    except ValidationError as error:
        raise InvalidRecord(_reason(error)) from None
    if len(event.text) > max_text_chars:
        raise InvalidRecord(f"text is {len(event.text)} characters, more than {max_text_chars}")
    return event


def _reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "record"
        if item["type"] == "missing":
            parts.append(f"missing field '{field}'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"field '{field}': {message}")
    return "; ".join(parts)
