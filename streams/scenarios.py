"""Named traffic scenarios for ``nlumon replay``, with the truth saved beside them.

A scenario decides, event by event, what kind of utterance to send: ordinary retail traffic, an
emerging product line the model was never trained on, out-of-scope queries (CLINC150 ``oos``),
ASR-degraded speech, unseen brands and people, or malformed records. Event times are simulated
(``start + i * spacing``), so a replay sent in seconds spans many monitoring windows. Every event's
truth (phase, kind, true intent, session) is written next to the scenario's timeline, so the detectors
can be scored against it and the outcome simulator (``streams.outcome_sim``) knows when the model was right.

    >>> events = list(scenario_events("sudden-shift", 400, seed=3, spacing_ms=1000))
    >>> sorted({e.truth["phase"] for e in events})
    ['baseline', 'shift']
    >>> before = [e for e in events if e.truth["phase"] == "baseline"]
    >>> any(e.truth["kind"] == "emerging" for e in before)
    False
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from model_runtime.data.example import Example
from model_runtime.data.noise import add_asr_noise
from model_runtime.data.retail import EMERGING_INTENTS, GeneratorConfig, iter_examples
from nlumon.records import UtteranceEvent

SCENARIOS: dict[str, str] = {
    "stable": "ordinary retail traffic from start to end",
    "sudden-shift": "from shift_at on, 35% of traffic is a new product line (emerging intents, unseen products)",
    "gradual-shift": "from shift_at on, the new product line grows linearly to 35% of traffic",
    "ood-burst": "for burst_len of the run from shift_at, 30% of queries are out of scope (CLINC150 oos)",
    "asr-degradation": "from shift_at on, speech recognition degrades (35% of tokens dropped/misheard/filled)",
    "new-names": "from shift_at on, half of the traffic names brands, products and people never seen in training",
    "malformed": "5% malformed records throughout (bad JSON, missing fields, control characters, ...)",
    "demo": "stable, then a sudden shift at 40%, then an out-of-scope burst at 65-80%",
}


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # fraction of the run
    end: float
    description: str


@dataclass(frozen=True)
class ScenarioEvent:
    key: bytes
    value: bytes
    truth: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mix:
    """What share of traffic is of each unusual kind at one point of the run."""

    emerging: float = 0.0
    ood: float = 0.0
    noise_rate: float = 0.0
    new_names: float = 0.0
    malformed: float = 0.0


def phases(name: str, shift_at: float = 0.5, burst_len: float = 0.2) -> list[Phase]:
    """The scenario's timeline as phases over the run (fractions 0..1)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if name in ("stable", "malformed"):
        return [Phase("baseline", 0.0, 1.0, SCENARIOS[name])]
    if name == "ood-burst":
        end = min(1.0, shift_at + burst_len)
        timeline = [
            Phase("baseline", 0.0, shift_at, "ordinary traffic"),
            Phase("ood-burst", shift_at, end, SCENARIOS[name]),
        ]
        return timeline + ([Phase("recovery", end, 1.0, "ordinary traffic again")] if end < 1.0 else [])
    if name == "demo":
        return [
            Phase("baseline", 0.0, 0.4, "ordinary traffic"),
            Phase("shift", 0.4, 0.65, "a new product line: 30% emerging intents with unseen products"),
            Phase("ood-burst", 0.65, 0.8, "the new product line plus 30% out-of-scope queries"),
            Phase("shift", 0.8, 1.0, "the new product line, no more out-of-scope burst"),
        ]
    return [Phase("baseline", 0.0, shift_at, "ordinary traffic"), Phase("shift", shift_at, 1.0, SCENARIOS[name])]


def mix_at(name: str, fraction: float, shift_at: float = 0.5, burst_len: float = 0.2) -> Mix:
    """The traffic mix of scenario ``name`` at ``fraction`` (0..1) of the run."""
    after = fraction >= shift_at
    if name == "sudden-shift":
        return Mix(emerging=0.35 if after else 0.0)
    if name == "gradual-shift":
        ramp = max(0.0, (fraction - shift_at) / max(1e-9, 1.0 - shift_at))
        return Mix(emerging=0.35 * min(1.0, ramp))
    if name == "ood-burst":
        return Mix(ood=0.3 if shift_at <= fraction < shift_at + burst_len else 0.0)
    if name == "asr-degradation":
        return Mix(noise_rate=0.35 if after else 0.0)
    if name == "new-names":
        return Mix(new_names=0.5 if after else 0.0)
    if name == "malformed":
        return Mix(malformed=0.05)
    if name == "demo":
        return Mix(emerging=0.3 if fraction >= 0.4 else 0.0, ood=0.3 if 0.65 <= fraction < 0.8 else 0.0)
    return Mix()


def _oos_texts() -> list[str]:
    """CLINC150's out-of-scope queries (test, then val), shipped with the package: no datasets folder needed."""
    from model_runtime.data.clinc150 import load_oos_queries

    return load_oos_queries()


class _Sources:
    """Endless, seeded streams of each kind of utterance."""

    def __init__(self, seed: int, count: int, ood_texts: Callable[[], list[str]]) -> None:
        n = max(count, 1)
        self.ordinary = iter_examples(GeneratorConfig(n=n, seed=seed))
        self.emerging = iter_examples(GeneratorConfig(n=n, seed=seed + 1, unseen_products=True,
                                                      intents=EMERGING_INTENTS))
        self.new_names = iter_examples(GeneratorConfig(n=n, seed=seed + 2, unseen_products=True, unseen_names=True))
        self._ood_loader = ood_texts
        self._ood: list[str] | None = None
        self._ood_index = 0

    def ood(self) -> str:
        if self._ood is None:
            self._ood = self._ood_loader()
        text = self._ood[self._ood_index % len(self._ood)]
        self._ood_index += 1
        return text


def scenario_events(
    name: str,
    count: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    spacing_ms: float = 100.0,
    shift_at: float = 0.5,
    burst_len: float = 0.2,
    malformed_share: float = 0.0,
    ood_texts: Callable[[], list[str]] = _oos_texts,
    cleared_share: float = 0.0,
) -> Iterator[ScenarioEvent]:
    """The events of one scenario run; ``start`` defaults to so that the last event is 'now'.

    ``cleared_share`` of the events are marked ``cleared_for_analysis`` (drawn from their own random stream,
    so the events themselves are the same whatever the share)."""
    from streams.replay import malformed_record

    timeline = phases(name, shift_at, burst_len)
    rng = random.Random(seed)
    cleared_rng = random.Random(f"cleared-{seed}")
    start = start or datetime.now(UTC) - timedelta(milliseconds=spacing_ms * count)
    sources = _Sources(seed, count, ood_texts)
    for index in range(count):
        fraction = index / count
        mix = mix_at(name, fraction, shift_at, burst_len)
        phase = next(p.name for p in timeline if p.start <= fraction < p.end or (p.end >= 1.0 and fraction >= p.start))
        ts = start + timedelta(milliseconds=spacing_ms * index)
        session = f"s-{seed}-{index // 5}"
        truth = {"index": index, "phase": phase, "ts": ts.isoformat(), "session_id": session}
        if rng.random() < max(mix.malformed, malformed_share):
            yield ScenarioEvent(session.encode(), malformed_record(index, ts), {**truth, "kind": "malformed"})
            continue
        roll = rng.random()
        noise = 0.0
        if roll < mix.ood:
            kind, text, intent = "ood", sources.ood(), "oos"
            assistant = "shopper" if rng.random() < 0.8 else "associate"
        else:
            kind, example = _pick(rng, roll - mix.ood, mix, sources)
            if mix.noise_rate > 0:
                noise = mix.noise_rate
                tokens, _ = add_asr_noise(example.tokens, example.tags, mix.noise_rate, rng)
                text = " ".join(tokens) or example.text
            else:
                text = example.text
            intent, assistant = example.intent, example.assistant
        event = UtteranceEvent(
            id=f"{name}-{seed}-{index}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
            ts=ts, assistant=assistant, session_id=session, text=text,
            channel="voice" if rng.random() < 0.7 else "text",
            asr_confidence=round(max(0.05, rng.uniform(0.75, 1.0) - noise), 3),
            cleared_for_analysis=cleared_rng.random() < cleared_share,
        )
        yield ScenarioEvent(session.encode(), event.to_json(), {
            **truth, "id": event.id, "kind": kind, "intent": intent, "assistant": assistant, "noise_rate": noise,
        })


def _pick(rng: random.Random, roll: float, mix: Mix, sources: _Sources) -> tuple[str, Example]:
    if roll < mix.emerging:
        return "emerging", next(sources.emerging)
    if rng.random() < mix.new_names:
        return "new-names", next(sources.new_names)
    return "in-domain", next(sources.ordinary)


def timeline_document(name: str, count: int, seed: int, start: datetime, spacing_ms: float,
                      shift_at: float = 0.5, burst_len: float = 0.2) -> dict:
    """The timeline as saved next to the truth: phases with their simulated start and end times."""
    span = timedelta(milliseconds=spacing_ms * count)
    return {
        "scenario": name, "description": SCENARIOS[name], "count": count, "seed": seed,
        "start": start.isoformat(), "end": (start + span).isoformat(), "spacing_ms": spacing_ms,
        "phases": [
            {**asdict(phase), "start_ts": (start + span * phase.start).isoformat(),
             "end_ts": (start + span * phase.end).isoformat()}
            for phase in phases(name, shift_at, burst_len)
        ],
    }
