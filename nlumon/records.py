"""Wire records: what travels on the Kafka topics, validated where it enters.

Two contracts with the assistants (see docs/architecture.md and docs/streams.md): the utterance event
(topic ``utterances``) and the outcome event (topic ``outcomes``: what happened after the model's decision).
Anything that does not parse into an :class:`UtteranceEvent` or an :class:`OutcomeEvent` becomes a
:class:`DeadLetter` with the original bytes (or, for a record too large to resend, a bounded prefix, its size
and SHA-256) and a one-line reason, so nothing is dropped silently.

    >>> event = parse_utterance(b'{"id": "u1", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper",'
    ...                         b' "session_id": "s1", "text": "add milk to my cart", "channel": "voice"}')
    >>> event.assistant, event.channel
    ('shopper', 'voice')
    >>> parse_utterance(b'{"id": "u1"}')
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: missing field 'ts'; missing field 'assistant'; ...
    >>> parse_utterance(b'{"id": "u1", "ts": 1790000000, "assistant": "shopper", "session_id": "s1",'
    ...                 b' "text": "add milk", "channel": "text", "asr_confidence": true}')
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: field 'ts': Input should be a valid datetime; field 'asr_confidence': ...

The wire is read strictly, the same way for both contracts (:func:`parse_record`; docs/streams.md,
"Failure model: bad input"): the record must be at most :func:`record_limit` bytes of UTF-8 JSON, nested
at most :data:`MAX_NESTING` levels, with no number literal longer than :data:`MAX_NUMBER_CHARS`
characters; every field has its JSON type (no coercion: a number is not a time, a string is not a
number, ``true`` is not 1.0), ``ts`` is an RFC 3339 date-time with a zone, ``channel`` is required,
and no stored string holds a lone surrogate or (``text`` aside, which may hold tabs) a control character.

    >>> parse_outcome(b'{"id": "o1", "ts": "2026-11-23T10:01:00Z", "session_id": "s1", "utterance_id": "u1",'
    ...               b' "kind": "task_completed", "satisfaction": 5}').kind
    'task_completed'
    >>> parse_outcome(b'{"id": "o1", "ts": "2026-11-23T10:01:00Z", "session_id": "s1", "kind": "Done!"}')
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: field 'kind': kind must be one of task_completed, abandoned, ...
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

SCHEMA_VERSION = 1
ASSISTANTS = ("shopper", "associate")
ROUTES = ("fulfil", "clarify", "confirm", "escalate")
"""The route decisions a prediction on the ``predictions`` topic carries (streams/routing.py decides them)."""
CHANNELS = ("voice", "text")
DEFAULT_MAX_TEXT_CHARS = 512
TS_MIN = datetime(1971, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2105, 12, 31, tzinfo=UTC)

# -- limits of the wire parser ------------------------------------------------------------------------
MAX_RECORD_BYTES = 64 * 1024
"""Least size limit of one utterance record (bytes), checked before parsing. A valid record is a few
hundred bytes; :func:`record_limit` raises the bound when ``max_text_chars`` needs more."""
MAX_NESTING = 32
"""Deepest JSON nesting accepted (the contract is flat: 1). orjson alone stops at 1024, deep enough
for Python code that recurses over the value (``repr``, error messages) to hit RecursionError."""
MAX_NUMBER_CHARS = 32
"""Longest number literal accepted. No field needs more (``asr_confidence`` is 0..1, ``version`` a
small int); orjson turns integers past 64 bits into floats and longer ones into an error."""
ID_MAX_CHARS = 128
LOCALE_MAX_CHARS = 64

# -- limits of a dead letter --------------------------------------------------------------------------
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
"""``topics.max_message_bytes``'s default: the largest message the producers send and the topics take."""
DEAD_LETTER_MARGIN_BYTES = 4096
"""A dead letter (JSON value + Kafka key) stays this far under ``max_bytes`` (record-batch framing)."""
REASON_MAX_CHARS = 500
KEY_MAX_CHARS = 256
INTERNAL_ERROR_MAX_CHARS = 300

# Unicode category Cc (C0, DEL, C1) except the tab.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Cc including the tab: identifiers and the locale hold none.
_CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# RFC 3339 section 5.6 date-time ("T" and "Z" may be lower case); at most nanosecond digits.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
# A number-like run longer than MAX_NUMBER_CHARS anywhere (cheap), and the same outside JSON strings.
_LONG_RUN = re.compile(rb"[-+.eE0-9]{%d,}" % (MAX_NUMBER_CHARS + 1))
_LONG_NUMBER = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"|[-0-9][-+.eE0-9]{%d,}' % MAX_NUMBER_CHARS, re.DOTALL
)


class InvalidRecord(ValueError):
    """A record broke the wire contract; the message is the reason stored in the dead letter."""


def record_limit(max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> int:
    """Size limit (bytes) of one record for a text limit of ``max_text_chars`` characters.

    Room for the text with every character written as an escaped surrogate pair (12 bytes), plus
    8 KiB for the other fields; never less than :data:`MAX_RECORD_BYTES`.

    >>> record_limit(512), record_limit(10_000)
    (65536, 128192)
    """
    return max(MAX_RECORD_BYTES, 12 * max_text_chars + 8192)


def _strict_rfc3339(value: Any) -> Any:
    """A string must be an RFC 3339 date-time with a zone; other types go on to the datetime check."""
    if not isinstance(value, str):
        return value
    if len(value) > 40 or not _RFC3339.fullmatch(value):
        raise ValueError("ts must be an RFC 3339 date-time with a time zone, like 2026-11-23T10:00:00Z")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as error:
        raise ValueError(f"ts is not a valid date-time ({error})") from None


def _storable_time(value: datetime) -> datetime:
    """Aware, in UTC, and inside what a ClickHouse ``DateTime`` holds (1970-01-01 .. 2106-02-07)."""
    if value.tzinfo is None:
        raise ValueError("ts must carry a time zone (RFC 3339)")
    value = value.astimezone(UTC)
    if not TS_MIN <= value <= TS_MAX:  # a row outside it could never be stored
        raise ValueError(f"ts {value.isoformat()} is outside {TS_MIN.year}..{TS_MAX.year}")
    return value


def _storable(value: str, name: str, *, controls: re.Pattern[str] = _CONTROL_ANY) -> str:
    if _SURROGATE.search(value):
        raise ValueError(f"{name} contains a lone surrogate (not storable as UTF-8)")
    if controls.search(value):
        raise ValueError(f"{name} contains control characters")
    return value


def _storable_field(value: str, info: ValidationInfo) -> str:
    return _storable(value, info.field_name or "value")


EventTime = Annotated[datetime, BeforeValidator(_strict_rfc3339), AfterValidator(_storable_time)]
"""An event time: RFC 3339 with a zone on the wire (a ``datetime`` in Python), normalised to UTC, storable."""
EventId = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_CHARS), AfterValidator(_storable_field)]
"""An id of an event or a session, stored as is: 1 to :data:`ID_MAX_CHARS` characters, no lone surrogate, no
control character (the tab included)."""
Locale = Annotated[str, StringConstraints(max_length=LOCALE_MAX_CHARS), AfterValidator(_storable_field)]


class _WireRecord(BaseModel):
    """What both contracts share: frozen, unknown fields ignored, strings kept as sent, JSON out."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class UtteranceEvent(_WireRecord):
    """One utterance from an assistant (topic ``utterances``, key ``session_id``).

    Built in Python, the model is lenient where that is harmless (``ts`` may be a ``datetime``,
    ``channel`` defaults to ``text``); :func:`parse_utterance` reads the wire strictly.
    """

    id: EventId = Field(description="idempotency key")
    ts: EventTime = Field(description="RFC 3339 event time")
    assistant: Literal["shopper", "associate"]
    session_id: EventId
    text: str
    locale: Locale = "en-US"
    channel: Literal["voice", "text"] = "text"
    asr_confidence: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    cleared_for_analysis: bool = Field(
        False, description="the user agreed that this utterance may be read for model improvement (annotation)")
    version: int = SCHEMA_VERSION

    @field_validator("text")
    @classmethod
    def _clean_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        return _storable(value, "text", controls=_CONTROL)


REQUIRED_ON_THE_WIRE = ("channel",)
"""Fields of an utterance with a default for Python construction that a record on the wire must carry."""

OUTCOME_KINDS = ("task_completed", "abandoned", "escalated", "converted", "rephrased")
"""The outcome kinds nlumon reads (completion, conversion, escalation and rephrase rates). The vocabulary is
open: an assistant may send any other lowercase name (:data:`OUTCOME_KIND_PATTERN`); it is stored and counted
like the others, and a typo such as ``Completed`` or ``task-completed`` is refused, not stored as a new kind."""
OUTCOME_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")


class OutcomeEvent(_WireRecord):
    """What happened after the model's decision (topic ``outcomes``, key ``session_id``).

    Joined to predictions by ``session_id`` and, when the assistant knows which utterance led to it,
    ``utterance_id`` (the utterance event's ``id``). ``satisfaction`` is a 1..5 rating when the user gave
    one; ``value`` a finite amount (the order value of a ``converted`` outcome, for instance).
    """

    id: EventId = Field(description="idempotency key")
    ts: EventTime = Field(description="RFC 3339 time of the outcome")
    session_id: EventId
    utterance_id: EventId | None = Field(None, description="the id of the utterance event it follows")
    kind: str = Field(description="task_completed, abandoned, escalated, converted, rephrased, or another "
                                  "lowercase name")
    satisfaction: int | None = Field(None, ge=1, le=5)
    value: float | None = Field(None, allow_inf_nan=False)
    version: int = SCHEMA_VERSION

    @field_validator("kind")
    @classmethod
    def _known_or_lowercase_name(cls, value: str) -> str:
        if not OUTCOME_KIND_PATTERN.fullmatch(value):
            raise ValueError(f"kind must be one of {', '.join(OUTCOME_KINDS)} or another lowercase name "
                             "[a-z][a-z0-9_]{0,31}")
        return value


def parse_utterance(
    raw: bytes | bytearray | memoryview | str | None,
    *,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_record_bytes: int | None = None,
) -> UtteranceEvent:
    """Validate one raw utterance record against the wire contract (:func:`parse_record`).

    Raises :class:`InvalidRecord` with a short, one-line, human-readable reason, and nothing else
    for any input. ``max_record_bytes`` defaults to :func:`record_limit` of ``max_text_chars``.
    """

    def text_within_limit(event: UtteranceEvent) -> None:
        if len(event.text) > max_text_chars:
            raise InvalidRecord(f"text is {len(event.text)} characters, more than {max_text_chars}")

    limit = record_limit(max_text_chars) if max_record_bytes is None else max_record_bytes
    return parse_record(raw, UtteranceEvent, max_record_bytes=limit, required=REQUIRED_ON_THE_WIRE,
                        check=text_within_limit)


def parse_outcome(
    raw: bytes | bytearray | memoryview | str | None, *, max_record_bytes: int = MAX_RECORD_BYTES,
) -> OutcomeEvent:
    """Validate one raw outcome record against the wire contract (:func:`parse_record`).

    Raises :class:`InvalidRecord` with a short, one-line, human-readable reason, and nothing else for any input.

    >>> parse_outcome(b'{"id": "o1", "ts": "2026-11-23T10:01:00Z", "session_id": "s1", "kind": "converted",'
    ...               b' "value": "12.5"}')
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: field 'value': Input should be a valid number
    """
    return parse_record(raw, OutcomeEvent, max_record_bytes=max_record_bytes)


Record = TypeVar("Record", bound=BaseModel)


def parse_record(
    raw: bytes | bytearray | memoryview | str | None,
    model: type[Record],
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
    required: Sequence[str] = (),
    check: Callable[[Record], None] | None = None,
) -> Record:
    """The hardened wire parser both contracts share: ``raw`` read strictly into ``model``.

    Bounded before parsing (size), while parsing (nesting, number length) and after (strict types, no
    coercion). ``required`` names fields with a Python default that the wire must carry; ``check`` refuses a
    record the model accepts (a limit from the settings) by raising :class:`InvalidRecord`. Raises
    :class:`InvalidRecord` with a one-line reason, and nothing else, for any input.

    >>> parse_record(b'[{"id": "u1"}]', OutcomeEvent)
    Traceback (most recent call last):
    ...
    nlumon.records.InvalidRecord: expected a JSON object, got array
    """
    try:
        payload = _json_object(raw, max_record_bytes)
        missing = [name for name in required if name not in payload]
        try:
            record = model.model_validate(payload, strict=True)
        except ValidationError as error:
            raise InvalidRecord(_reason(model, error, missing)) from None
        if missing:
            raise InvalidRecord(_reason(model, None, missing))
        if check is not None:
            check(record)
        return record
    except InvalidRecord:
        raise
    except Exception as error:  # any other failure is a bad record, never a crash
        raise InvalidRecord(f"internal error while parsing: {describe_error(error)}") from None


def _json_object(raw: Any, max_record_bytes: int) -> dict:
    """``raw`` as a JSON object: UTF-8, at most ``max_record_bytes``, no long number, at most MAX_NESTING deep."""
    if raw is None:
        raise InvalidRecord("empty record (no value)")
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidRecord(f"not JSON: not valid UTF-8 ({error.reason} at character {error.start})") from None
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    if len(raw) > max_record_bytes:
        raise InvalidRecord(f"record too large: {len(raw)} bytes, more than {max_record_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidRecord(f"not JSON: not valid UTF-8 ({bad.reason} at byte {bad.start})") from None
        if "number" in str(error):  # orjson: "number is infinity when parsed as double" for 310+ digits
            _refuse_long_numbers(raw)
        if "depth limit" in str(error):  # orjson stops at 1024 levels
            raise InvalidRecord(f"too deeply nested: JSON nested more than {MAX_NESTING} levels") from None
        raise InvalidRecord(f"not JSON: {error}") from None
    _refuse_long_numbers(raw)
    if not isinstance(payload, dict):
        raise InvalidRecord(f"expected a JSON object, got {_json_type(payload)}")
    if _nesting(payload, MAX_NESTING) > MAX_NESTING:
        raise InvalidRecord(f"too deeply nested: JSON nested more than {MAX_NESTING} levels")
    return payload


def _refuse_long_numbers(raw: bytes) -> None:
    if not _LONG_RUN.search(raw):  # the usual case: no long run of number characters at all
        return
    for match in _LONG_NUMBER.finditer(raw):
        literal = match.group()
        if not literal.startswith(b'"'):
            raise InvalidRecord(
                f"number too long: a number literal of {len(literal)} characters, more than {MAX_NUMBER_CHARS}"
            )


def _nesting(value: Any, limit: int) -> int:
    """Depth of nested arrays/objects (1 for a flat object), counted without recursion, up to ``limit`` + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__)


def _reason(model: type[BaseModel], error: ValidationError | None, missing: Sequence[str] = ()) -> str:
    """One part per field, in the model's field order: ``missing field 'x'`` or ``field 'x': why``."""
    order = list(model.model_fields)
    parts = [(order.index(name), f"missing field '{name}'") for name in missing]
    for item in error.errors(include_url=False, include_input=False) if error is not None else ():
        field = ".".join(str(p) for p in item["loc"]) or "record"
        rank = order.index(field) if field in order else len(order)
        if item["type"] == "missing":
            parts.append((rank, f"missing field '{field}'"))
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append((rank, f"field '{field}': {message}"))
    return "; ".join(part for _, part in sorted(parts, key=lambda p: p[0]))


def describe_error(error: BaseException, limit: int = INTERNAL_ERROR_MAX_CHARS) -> str:
    """``Type: message`` on one line, at most ``limit`` characters, whatever the exception holds."""
    try:
        message = str(error)
    except Exception:  # an exception whose __str__ fails still gets a reason
        message = "(message unavailable)"
    return one_line(f"{type(error).__name__}: {message}" if message else type(error).__name__, limit)


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (control characters become spaces), storable as UTF-8, cut to ``limit`` characters.

    >>> one_line("bad\\nrecord \\ud800", 40)
    'bad record \\\\ud800'
    """
    text = _CONTROL_ANY.sub(" ", text[: limit + 1])
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DeadLetter(BaseModel):
    """A record that could not be processed (topic ``dead-letter``).

    ``original_b64`` holds the original bytes when the letter fits in ``max_bytes``; otherwise the
    first bytes that fit, with ``truncated`` set and a note in ``reason``. ``original_size`` and
    ``original_sha256`` always describe the whole original.
    """

    model_config = ConfigDict(frozen=True)

    reason: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    original_b64: str = Field(description="the original bytes (or their first bytes if truncated), base64")
    original_size: int | None = Field(None, description="length of the whole original record, bytes")
    original_sha256: str | None = Field(None, description="SHA-256 (hex) of the whole original record")
    truncated: bool = False
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
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> DeadLetter:
        """The dead letter of ``original``; its JSON plus its Kafka key (``key``) stay
        :data:`DEAD_LETTER_MARGIN_BYTES` under ``max_bytes`` (``topics.max_message_bytes``)."""
        data = original.encode("utf-8", "surrogatepass") if isinstance(original, str) else bytes(original or b"")
        key_text = key[: 4 * KEY_MAX_CHARS].decode("utf-8", "replace") if isinstance(key, bytes) else key
        fields = dict(
            source_topic=one_line(source_topic, 255),
            partition=partition,
            offset=offset,
            key=None if key_text is None else one_line(key_text, KEY_MAX_CHARS),
            original_size=len(data),
            original_sha256=hashlib.sha256(data).hexdigest(),
            failed_at=datetime.now(UTC),
        )
        reason = one_line(reason, REASON_MAX_CHARS)
        budget = max_bytes - DEAD_LETTER_MARGIN_BYTES
        if (len(data) + 2) // 3 * 4 < budget:  # the base64 alone would not fit otherwise
            letter = cls(reason=reason, original_b64=base64.b64encode(data).decode("ascii"), **fields)
            if letter.message_size() <= budget:
                return letter
        # Too large to resend whole: keep the first bytes that fit (base64 is 4 bytes per 3).

        def note(kept: int) -> str:
            return f"{reason} [dead letter truncated: keeps the first {kept} of {len(data)} bytes]"

        empty = cls(reason=note(len(data)), original_b64="", truncated=True, **fields)
        keep = max(0, (budget - empty.message_size()) // 4 * 3)
        while True:
            letter = cls(reason=note(keep), original_b64=base64.b64encode(data[:keep]).decode("ascii"),
                         truncated=True, **fields)
            if letter.message_size() <= budget or keep == 0:
                return letter
            keep = max(0, keep - 3 * 1024)

    def original(self) -> bytes:
        """The original bytes; only their first bytes when ``truncated``."""
        return base64.b64decode(self.original_b64)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def message_size(self) -> int:
        """Bytes of the Kafka message that carries this letter: its JSON and its key."""
        return len(self.to_json()) + len((self.key or "").encode("utf-8"))
