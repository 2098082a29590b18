"""The golden regression set: hand-written retail queries a model version must get right.

Each case of ``golden.jsonl`` names the expected top intent, the expected slots as
(type, text) pairs and the allowed range of the top-intent confidence. The promotion gate runs
:func:`check_golden` on a candidate model; any failure says which case failed and why.

>>> cases = load_golden()
>>> perfect = lambda texts: [(c.intent, 0.9, list(c.slots)) for c in cases]
>>> check_golden(perfect, cases).ok
True
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

GOLDEN_PATH = Path(__file__).resolve().parent / "golden.jsonl"

SlotPairs = Sequence[tuple[str, str]]
#: ``predict_fn(texts) -> [(intent, confidence, [(slot type, slot text), ...]), ...]``, one per text.
PredictFn = Callable[[list[str]], Sequence[tuple[str, float, SlotPairs]]]


class GoldenSetError(ValueError):
    """The golden file is malformed, or a predict_fn answered with the wrong number of results."""


@dataclass(frozen=True)
class GoldenCase:
    """One query with what a good model must answer."""

    id: str
    assistant: str
    text: str
    intent: str
    slots: tuple[tuple[str, str], ...]
    min_confidence: float
    max_confidence: float
    note: str = ""


@dataclass(frozen=True)
class GoldenOutcome:
    """How one case went: ``reasons`` is empty when it passed."""

    case: GoldenCase
    predicted_intent: str
    confidence: float
    predicted_slots: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class GoldenResult:
    """All outcomes of one run over the golden set."""

    outcomes: tuple[GoldenOutcome, ...]

    @property
    def passed(self) -> tuple[GoldenOutcome, ...]:
        return tuple(o for o in self.outcomes if o.passed)

    @property
    def failed(self) -> tuple[GoldenOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.passed)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def pass_rate(self) -> float:
        return len(self.passed) / len(self.outcomes) if self.outcomes else 0.0

    def summary(self) -> str:
        """One line with the count, then one line per failed case with its reasons."""
        lines = [f"golden set: {len(self.passed)}/{len(self.outcomes)} passed"]
        for outcome in self.failed:
            lines.append(f"FAIL {outcome.case.id} {outcome.case.text!r}: {'; '.join(outcome.reasons)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "passed": len(self.passed),
            "total": len(self.outcomes),
            "failures": [{"id": o.case.id, "text": o.case.text, "reasons": list(o.reasons)} for o in self.failed],
        }


def _case_from_json(line_number: int, record: dict) -> GoldenCase:
    try:
        case = GoldenCase(
            id=str(record["id"]),
            assistant=str(record["assistant"]),
            text=str(record["text"]),
            intent=str(record["intent"]),
            slots=tuple((str(kind), str(value)) for kind, value in record["slots"]),
            min_confidence=float(record["min_confidence"]),
            max_confidence=float(record["max_confidence"]),
            note=str(record.get("note", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise GoldenSetError(f"golden line {line_number}: {error!r}") from error
    if not 0.0 <= case.min_confidence <= case.max_confidence <= 1.0:
        raise GoldenSetError(f"golden line {line_number}: bad confidence range")
    for kind, value in case.slots:
        if value not in case.text:
            raise GoldenSetError(f"golden line {line_number}: slot {kind}={value!r} is not in the text")
    return case


def load_golden(path: str | os.PathLike[str] | None = None) -> list[GoldenCase]:
    """Read the golden cases (default: ``model_runtime/golden.jsonl``)."""
    source = Path(path) if path is not None else GOLDEN_PATH
    cases = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise GoldenSetError(f"{source} line {number}: {error}") from error
            cases.append(_case_from_json(number, record))
    if len({case.id for case in cases}) != len(cases):
        raise GoldenSetError(f"{source}: duplicate case ids")
    return cases


def _reasons(case: GoldenCase, intent: str, confidence: float, slots: tuple[tuple[str, str], ...]) -> list[str]:
    reasons = []
    if intent != case.intent:
        reasons.append(f"intent: expected {case.intent}, got {intent}")
    if not case.min_confidence <= confidence <= case.max_confidence:
        reasons.append(
            f"confidence {confidence:.3f} outside [{case.min_confidence:.2f}, {case.max_confidence:.2f}]"
        )
    expected, got = Counter(case.slots), Counter(slots)
    if expected != got:
        missing = sorted((expected - got).elements())
        unexpected = sorted((got - expected).elements())
        reasons.append(f"slots: missing {missing}, unexpected {unexpected}")
    return reasons


def check_golden(predict_fn: PredictFn, cases: Sequence[GoldenCase] | None = None) -> GoldenResult:
    """Run ``predict_fn`` once over all case texts and judge every answer.

    Slots are compared as a multiset of (type, text): order does not matter, duplicates do.
    """
    cases = list(cases) if cases is not None else load_golden()
    predictions = list(predict_fn([case.text for case in cases]))
    if len(predictions) != len(cases):
        raise GoldenSetError(f"predict_fn returned {len(predictions)} results for {len(cases)} texts")
    outcomes = []
    for case, (intent, confidence, slots) in zip(cases, predictions, strict=True):
        slot_pairs = tuple((str(kind), str(value)) for kind, value in slots)
        reasons = _reasons(case, intent, float(confidence), slot_pairs)
        outcomes.append(GoldenOutcome(case, intent, float(confidence), slot_pairs, tuple(reasons)))
    return GoldenResult(tuple(outcomes))
