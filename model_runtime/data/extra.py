"""Extra labelled examples for retraining: a strict JSONL reader and an atomic writer.

The annotation loop (weak supervision, Label Studio imports) hands its examples to ``nlumon model train
--extra FILE`` as JSONL, one example per line::

    {"tokens": ["is", "ana", "in", "tomorrow"], "tags": ["O", "B-person", "O", "B-date_time"],
     "intent": "check_shift", "assistant": "associate", "heads": {}, "source": "auto:weak-supervision",
     "weight": 0.5}

``source`` says where the label came from (``auto:...`` for a label model, ``human:label-studio:3`` for an
annotator; it is counted per source in the model package's manifest), ``weight`` (> 0, default 1) multiplies
the example's loss weight, ``heads`` (optional) the labels of extra heads, ``id`` (optional) a reference back
to the queue item.

Everything is checked where it enters, with the file and line in the message: the JSON itself (bad JSON,
deep nesting and huge numbers are refused, not crashed on), aligned tokens and valid BIO tags, and that every
intent, slot type, assistant and head label is one the base corpus knows (:class:`Vocabulary`): a model
cannot learn a label that has no output, and a typo found at line 3,000 after an hour of training helps no
one. Files and lines are bounded (:data:`MAX_FILE_BYTES`, :data:`MAX_LINES`, :data:`MAX_LINE_BYTES`).

>>> row = {"tokens": ["is", "ana", "in"], "tags": ["O", "B-person", "O"], "intent": "check_shift",
...        "assistant": "associate", "source": "human:label-studio:3"}
>>> parse_row(row, Vocabulary.retail()).weight, parse_row(row, Vocabulary.retail()).example.spans()
(1.0, [('person', 1, 2)])
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.data.bio import is_valid_bio
from model_runtime.data.example import Example

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_LINES = 200_000
MAX_LINE_BYTES = 16 * 1024
MAX_TOKENS = 128
MAX_TOKEN_CHARS = 64
MAX_WEIGHT = 100.0  # one example may count as 100 ordinary ones, not as the whole corpus
FIELDS = frozenset({"tokens", "tags", "intent", "assistant", "heads", "source", "weight", "id"})
REQUIRED = ("tokens", "tags", "intent", "assistant", "source")
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}")


class ExtraExamplesError(ValueError):
    """An extra-examples file or row is not acceptable; the message names the file and line."""


@dataclass(frozen=True)
class Vocabulary:
    """The labels a base corpus knows: extra examples may use these and nothing else.

    ``intent_assistants`` maps an intent to the assistants it occurs with (a shift swap said to the shopper
    assistant is a labelling mistake, not a new fact); ``heads`` maps a head key to its labels.
    """

    intents: frozenset[str]
    slot_types: frozenset[str]
    assistants: frozenset[str]
    intent_assistants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    heads: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def retail(cls) -> Vocabulary:
        """The generated retail corpus's trained intents, slot types, assistants and frustration labels."""
        from model_runtime.data.retail import (
            ASSISTANTS,
            FRUSTRATION_LABELS,
            SLOT_TYPES,
            TRAINED_INTENTS,
            intent_assistant,
        )

        return cls(
            intents=frozenset(TRAINED_INTENTS),
            slot_types=frozenset(SLOT_TYPES),
            assistants=frozenset(ASSISTANTS),
            intent_assistants={i: frozenset({intent_assistant(i)}) for i in TRAINED_INTENTS},
            heads={"frustration": frozenset(FRUSTRATION_LABELS)},
        )

    @classmethod
    def from_examples(cls, examples: Iterable[Example]) -> Vocabulary:
        """What a loaded corpus (its train split) uses; for corpora other than retail.

        >>> v = Vocabulary.from_examples([Example(("hi", "ana"), ("O", "B-person"), "greet", "snips")])
        >>> sorted(v.slot_types), sorted(v.intent_assistants["greet"])
        (['person'], ['snips'])
        """
        intents: dict[str, set[str]] = {}
        slot_types: set[str] = set()
        heads: dict[str, set[str]] = {}
        for example in examples:
            intents.setdefault(example.intent, set()).add(example.assistant)
            slot_types.update(tag[2:] for tag in example.tags if tag != "O")
            for key, label in example.heads.items():
                heads.setdefault(key, set()).add(label)
        return cls(
            intents=frozenset(intents),
            slot_types=frozenset(slot_types),
            assistants=frozenset().union(*intents.values()) if intents else frozenset(),
            intent_assistants={k: frozenset(v) for k, v in intents.items()},
            heads={k: frozenset(v) for k, v in heads.items()},
        )


@dataclass(frozen=True)
class WeightedExample:
    """One extra example with where its label came from and how much it counts in the loss."""

    example: Example
    source: str
    weight: float = 1.0
    id: str = ""

    def __post_init__(self) -> None:
        _check_source(self.source)
        _check_weight(self.weight)
        if self.id:
            _check_id(self.id)

    def to_dict(self) -> dict[str, Any]:
        """The JSONL row (``id`` only when set)."""
        e = self.example
        row: dict[str, Any] = {
            "tokens": list(e.tokens),
            "tags": list(e.tags),
            "intent": e.intent,
            "assistant": e.assistant,
            "heads": dict(e.heads),
            "source": self.source,
            "weight": self.weight,
        }
        if self.id:
            row["id"] = self.id
        return row


def _check_source(source: object) -> None:
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise ExtraExamplesError(
            f"source {source!r} must be 1-128 characters of letters, digits and _.:/@+- "
            "(e.g. 'auto:weak-supervision', 'human:label-studio:3')"
        )


def _check_id(value: object) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ExtraExamplesError(f"id {value!r} must be 1-128 characters of letters, digits and _.:/@+-")


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ExtraExamplesError(f"weight must be a number, got {weight!r}")
    if not math.isfinite(weight) or not 0.0 < weight <= MAX_WEIGHT:
        raise ExtraExamplesError(f"weight must be > 0 and <= {MAX_WEIGHT:g}, got {weight!r}")
    return float(weight)


def _check_token(token: object, index: int) -> str:
    if not isinstance(token, str) or not token:
        raise ExtraExamplesError(f"token {index} must be a non-empty string, got {token!r}")
    if len(token) > MAX_TOKEN_CHARS:
        raise ExtraExamplesError(f"token {index} has {len(token)} characters (at most {MAX_TOKEN_CHARS})")
    for char in token:
        # whitespace would re-split the token at serving time (misaligned tags); control and surrogate code
        # points cannot be stored or encoded downstream
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ExtraExamplesError(f"token {index} {token!r} holds whitespace or a control/unassigned character")
    return token


def _string_list(row: Mapping[str, Any], key: str) -> list[Any]:
    value = row[key]
    if not isinstance(value, list) or not value:
        raise ExtraExamplesError(f"{key!r} must be a non-empty list")
    if len(value) > MAX_TOKENS:
        raise ExtraExamplesError(f"{key!r} has {len(value)} entries (at most {MAX_TOKENS})")
    return value


def parse_row(row: object, vocabulary: Vocabulary) -> WeightedExample:
    """Validate one decoded JSON row against ``vocabulary``; :class:`ExtraExamplesError` says what is wrong."""
    if not isinstance(row, dict):
        raise ExtraExamplesError(f"a row must be a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise ExtraExamplesError(f"unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
    missing = [key for key in REQUIRED if key not in row]
    if missing:
        raise ExtraExamplesError(f"missing field(s) {missing}")
    tokens = [_check_token(t, i) for i, t in enumerate(_string_list(row, "tokens"))]
    tags = _string_list(row, "tags")
    if len(tags) != len(tokens):
        raise ExtraExamplesError(f"{len(tokens)} tokens but {len(tags)} tags")
    if not all(isinstance(t, str) for t in tags) or not is_valid_bio(tags):
        raise ExtraExamplesError(f"tags are not valid BIO (an I-x must follow B-x or I-x): {tags!r}")
    unknown_slots = sorted({t[2:] for t in tags if t != "O"} - vocabulary.slot_types)
    if unknown_slots:
        raise ExtraExamplesError(f"unknown slot type(s) {unknown_slots}; known: {sorted(vocabulary.slot_types)}")
    intent, assistant = row["intent"], row["assistant"]
    if not isinstance(assistant, str) or assistant not in vocabulary.assistants:
        raise ExtraExamplesError(f"unknown assistant {assistant!r}; known: {sorted(vocabulary.assistants)}")
    if not isinstance(intent, str) or intent not in vocabulary.intents:
        raise ExtraExamplesError(f"unknown intent {intent!r}; known: {sorted(vocabulary.intents)}")
    allowed = vocabulary.intent_assistants.get(intent)
    if allowed and assistant not in allowed:
        raise ExtraExamplesError(f"intent {intent!r} belongs to {sorted(allowed)}, not to {assistant!r}")
    heads = _check_heads(row.get("heads", {}), vocabulary)
    source = row["source"]
    _check_source(source)
    weight = _check_weight(row.get("weight", 1.0))
    example = Example(tuple(tokens), tuple(tags), intent, assistant, heads)
    return WeightedExample(example, source, weight, row.get("id", ""))


def _check_heads(heads: object, vocabulary: Vocabulary) -> dict[str, str]:
    if not isinstance(heads, dict):
        raise ExtraExamplesError(f"'heads' must be an object of head -> label, got {heads!r}")
    for key, label in heads.items():
        if key not in vocabulary.heads:
            raise ExtraExamplesError(f"unknown head {key!r}; known: {sorted(vocabulary.heads)}")
        if not isinstance(label, str) or label not in vocabulary.heads[key]:
            raise ExtraExamplesError(f"head {key!r}: unknown label {label!r}; known: {sorted(vocabulary.heads[key])}")
    return dict(heads)


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ExtraExamplesError(f"not UTF-8 ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ExtraExamplesError(f"bad JSON ({error.msg} at column {error.colno})") from None
    except (RecursionError, ValueError) as error:  # deep nesting; integer literals past Python's digit limit
        raise ExtraExamplesError(f"JSON the reader refuses ({type(error).__name__})") from None


def load_extra(path: str | os.PathLike[str], vocabulary: Vocabulary | None = None) -> list[WeightedExample]:
    """Read and validate every example of a JSONL file (blank lines are skipped); retail vocabulary by default.

    The first bad line raises :class:`ExtraExamplesError` with ``path:line``: a file with one bad row is
    refused whole, so what trains is exactly what was reviewed.
    """
    path = Path(path)
    vocabulary = vocabulary or Vocabulary.retail()
    if not path.is_file():
        raise ExtraExamplesError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ExtraExamplesError(f"{path}: {size} bytes; an extra-examples file may hold {MAX_FILE_BYTES}")
    rows: list[WeightedExample] = []
    with path.open("rb") as handle:
        for number in range(1, MAX_LINES + 2):
            raw = handle.readline(MAX_LINE_BYTES + 1)  # bounded: a huge line is never read whole
            if not raw:
                break
            if number > MAX_LINES:
                raise ExtraExamplesError(f"{path}: more than {MAX_LINES} lines")
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ExtraExamplesError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            if not raw.strip():
                continue
            try:
                rows.append(parse_row(_decode(raw), vocabulary))
            except ExtraExamplesError as error:
                raise ExtraExamplesError(f"{path}:{number}: {error}") from None
    return rows


def write_extra(
    path: str | os.PathLike[str], rows: Iterable[WeightedExample], vocabulary: Vocabulary | None = None
) -> int:
    """Write ``rows`` as JSONL atomically (temporary file + rename); returns the number written.

    Each row is validated exactly as :func:`load_extra` will read it, so a writer cannot produce a file the
    trainer refuses; an error names the row (1-based) and nothing is written.
    """
    path = Path(path)
    vocabulary = vocabulary or Vocabulary.retail()
    lines = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, WeightedExample):
            raise ExtraExamplesError(f"row {number}: expected a WeightedExample, got {type(row).__name__}")
        text = json.dumps(row.to_dict(), ensure_ascii=False, separators=(",", ":"))
        try:
            if len(text.encode("utf-8")) >= MAX_LINE_BYTES:
                raise ExtraExamplesError(f"line longer than {MAX_LINE_BYTES} bytes")
            parse_row(json.loads(text), vocabulary)
        except ExtraExamplesError as error:
            raise ExtraExamplesError(f"{path}: row {number}: {error}") from None
        lines.append(text + "\n")
    if len(lines) > MAX_LINES:
        raise ExtraExamplesError(f"{path}: {len(lines)} rows, more than {MAX_LINES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; training may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(lines)


def summarize(rows: Sequence[WeightedExample]) -> dict[str, Any]:
    """Counts per source and assistant, and the weights: what the model package's manifest records.

    >>> e = Example(("hi",), ("O",), "store_hours", "shopper")
    >>> summarize([WeightedExample(e, "auto:ws", 0.5), WeightedExample(e, "human:ls", 1.0)])["weight"]
    {'min': 0.5, 'max': 1.0, 'mean': 0.75, 'sum': 1.5}
    """
    per_source: dict[str, dict[str, Any]] = {}
    per_assistant: dict[str, int] = {}
    for row in rows:
        entry = per_source.setdefault(row.source, {"n": 0, "weight_sum": 0.0, "per_assistant": {}})
        entry["n"] += 1
        entry["weight_sum"] += row.weight
        entry["per_assistant"][row.example.assistant] = entry["per_assistant"].get(row.example.assistant, 0) + 1
        per_assistant[row.example.assistant] = per_assistant.get(row.example.assistant, 0) + 1
    weights = [row.weight for row in rows]
    return {
        "n": len(rows),
        "per_source": {k: {**v, "weight_sum": round(v["weight_sum"], 6)} for k, v in sorted(per_source.items())},
        "per_assistant": dict(sorted(per_assistant.items())),
        "weight": {
            "min": min(weights),
            "max": max(weights),
            "mean": round(sum(weights) / len(weights), 6),
            "sum": round(sum(weights), 6),
        }
        if weights
        else {},
    }
