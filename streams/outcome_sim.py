"""The simulated assistant: outcome events that depend on whether the model was right (``nlumon outcomes``).

It reads the ``predictions`` topic, looks up the true intent of each predicted utterance in a replay's
``truth.jsonl`` (``streams.replay.save_truth``) and sends what the user then did to the ``outcomes`` topic:
the task completed, a rephrase, an escalation to a person, an abandonment, and for some completed shopper
purchases a conversion. How likely each is depends on whether the model's intent was right, on the assistant
and on the route the worker chose (:class:`OutcomeModel`), so a better model really produces better outcomes.

Deterministic: every random draw is a hash of (seed, utterance id, draw name) (:func:`draw`), so the same
prediction always gets the same outcome, and a model that is right on more utterances turns exactly those
utterances' outcomes from the "wrong" odds to the "right" odds (the same draw, compared with other odds).
Outcome ids are a hash of the utterance id and the event's name: simulating again replaces, never doubles.

    >>> from datetime import UTC
    >>> truth = {"u1": TruthItem("add_to_cart", "shopper", "s1", datetime(2026, 11, 23, tzinfo=UTC))}
    >>> simulator = OutcomeSimulator(truth, seed=10)
    >>> [(event.kind, event.value) for event in simulator.outcomes_for({"id": "u1", "intent": "add_to_cart"})]
    [('task_completed', None), ('converted', 103.75)]
    >>> [event.kind for event in simulator.outcomes_for({"id": "u1", "intent": "track_delivery"})]
    ['escalated']

The kinds are ordered from best to worst (completed, rephrased, escalated, abandoned) and one draw picks the
kind; the default "right" odds put at least as much mass on the better kinds as the "wrong" odds at every step
(for both assistants), so with the same draw a right prediction never gets a worse outcome than a wrong one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlumon.records import OutcomeEvent
from nlumon.settings import Settings

if TYPE_CHECKING:
    from streams.replay import ReplayOutcome

log = logging.getLogger(__name__)

PURCHASE_INTENTS = (
    "search_product", "add_to_cart", "reorder", "compare_products", "check_availability", "ask_price",
    "gift_registry", "price_match",
)
"""Shopper intents that can end in a purchase (a ``converted`` outcome); the rest are service questions."""


@dataclass(frozen=True)
class KindOdds:
    """Probabilities of an utterance's outcome kind; ``abandoned`` takes the rest (must not be negative)."""

    task_completed: float
    rephrased: float
    escalated: float

    def __post_init__(self) -> None:
        if min(self.task_completed, self.rephrased, self.escalated) < 0 or self.abandoned < -1e-9:
            raise ValueError(f"outcome odds must be >= 0 and sum to at most 1: {self}")

    @property
    def abandoned(self) -> float:
        return 1.0 - self.task_completed - self.rephrased - self.escalated

    def patient(self, share: float) -> KindOdds:
        """These odds for users who rephrase ``share`` of the times they would otherwise give up."""
        return KindOdds(self.task_completed, self.rephrased + share * self.abandoned, self.escalated)


@dataclass(frozen=True)
class OutcomeModel:
    """What a simulated user does after the assistant acted on the model's decision.

    Per predicted utterance, one outcome:

    - the route first: ``escalate`` hands the user to a person (``escalated``, probability
      ``escalate_escalated``); ``clarify`` asks them to say it again (``rephrased``, ``clarify_rephrased``);
    - otherwise the odds of the model being right or wrong (``right``: 75 % completed, 10 % rephrased,
      3 % escalated, 12 % abandoned; ``wrong``: 20 %, 45 %, 10 %, 25 %). The model is right when its
      intent is the true intent, or, for an out-of-scope utterance (``oos``), when it flagged it as OOD;
    - for the ``associate`` assistant (store staff, who have to get their answer) ``associate_patience`` of
      the abandonment odds become rephrase odds (:meth:`KindOdds.patient`).

    Plus, for a completed shopper utterance whose true intent is a purchase (:data:`PURCHASE_INTENTS`), a
    ``converted`` outcome with probability ``converted`` and an order ``value`` in ``value_range``. A share
    ``rated`` of outcomes carries a satisfaction: 4-5 when the model was right and the task completed, 1-3
    otherwise. Outcomes come ``delay_s`` after the utterance (uniform), a conversion as long again after that.
    """

    right: KindOdds = KindOdds(task_completed=0.75, rephrased=0.10, escalated=0.03)
    wrong: KindOdds = KindOdds(task_completed=0.20, rephrased=0.45, escalated=0.10)
    associate_patience: float = 0.5
    clarify_rephrased: float = 0.6
    escalate_escalated: float = 0.9
    converted: float = 0.35
    purchase_intents: tuple[str, ...] = PURCHASE_INTENTS
    value_range: tuple[float, float] = (5.0, 150.0)
    rated: float = 0.4
    delay_s: tuple[float, float] = (2.0, 90.0)


def draw(seed: int, utterance_id: str, name: str) -> float:
    """A uniform number in [0, 1) that depends only on (seed, utterance id, draw name).

    >>> draw(1, "u1", "kind") == draw(1, "u1", "kind") != draw(2, "u1", "kind")
    True
    """
    digest = hashlib.blake2b(f"{seed}\x00{utterance_id}\x00{name}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def outcome_id(utterance_id: str, name: str) -> str:
    """The outcome event's id: the same for the same utterance and event, whatever the seed (resent = replaced)."""
    digest = hashlib.blake2b(f"{utterance_id}\x00{name}".encode("utf-8", "surrogatepass"), digest_size=12)
    return f"sim-{digest.hexdigest()}"


@dataclass(frozen=True)
class TruthItem:
    """What the replay knows about one utterance it sent."""

    intent: str
    assistant: str
    session_id: str
    ts: datetime


def load_truth(path: Path) -> dict[str, TruthItem]:
    """Utterance id -> truth, from a replay's ``truth.jsonl`` (malformed records, which have no id, left out)."""
    truth: dict[str, TruthItem] = {}
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if item.get("kind") == "malformed" or "id" not in item:
                continue
            if "session_id" not in item:
                raise ValueError(f"{path}:{number}: no session_id (a truth file from before outcomes: replay again)")
            truth[item["id"]] = TruthItem(item["intent"], item["assistant"], item["session_id"],
                                          datetime.fromisoformat(item["ts"]))
    return truth


class OutcomeSimulator:
    """Outcome events for predictions, following :class:`OutcomeModel` with draws seeded by ``seed``."""

    def __init__(self, truth: Mapping[str, TruthItem], model: OutcomeModel | None = None, seed: int = 0) -> None:
        self.truth = truth
        self.model = model or OutcomeModel()
        self.seed = seed

    def is_right(self, prediction: Mapping[str, Any], truth: TruthItem) -> bool:
        """The model's intent is the true one; an out-of-scope utterance is handled right when flagged OOD."""
        return prediction.get("intent") == truth.intent or (truth.intent == "oos" and bool(prediction.get("is_ood")))

    def kind(self, prediction: Mapping[str, Any], truth: TruthItem, right: bool) -> str:
        """The utterance's outcome kind: the route's effect first, else the right or wrong odds."""
        utterance = str(prediction["id"])
        route = prediction.get("route") or ""
        if route == "escalate" and draw(self.seed, utterance, "route") < self.model.escalate_escalated:
            return "escalated"
        if route == "clarify" and draw(self.seed, utterance, "route") < self.model.clarify_rephrased:
            return "rephrased"
        odds = self.model.right if right else self.model.wrong
        if truth.assistant == "associate":
            odds = odds.patient(self.model.associate_patience)
        roll = draw(self.seed, utterance, "kind")
        for kind, share in (("task_completed", odds.task_completed), ("rephrased", odds.rephrased),
                            ("escalated", odds.escalated)):
            if roll < share:
                return kind
            roll -= share
        return "abandoned"

    def outcomes_for(self, prediction: Mapping[str, Any]) -> list[OutcomeEvent]:
        """The outcome events of one prediction (a ``predictions`` topic row); none for an utterance the truth
        does not know (another replay's, or live traffic)."""
        truth = self.truth.get(str(prediction.get("id", "")))
        if truth is None:
            return []
        utterance, model = str(prediction["id"]), self.model
        right = self.is_right(prediction, truth)
        kind = self.kind(prediction, truth, right)
        low, high = model.delay_s
        ts = truth.ts + timedelta(seconds=round(low + (high - low) * draw(self.seed, utterance, "delay")))
        satisfaction = None
        if draw(self.seed, utterance, "rated") < model.rated:
            good = right and kind == "task_completed"
            satisfaction = (4 if good else 1) + int(draw(self.seed, utterance, "score") * (2 if good else 3))
        events = [OutcomeEvent(id=outcome_id(utterance, "outcome"), ts=ts, session_id=truth.session_id,
                               utterance_id=utterance, kind=kind, satisfaction=satisfaction)]
        if (kind == "task_completed" and truth.assistant == "shopper" and truth.intent in model.purchase_intents
                and draw(self.seed, utterance, "converted") < model.converted):
            low_value, high_value = model.value_range
            value = round(low_value + (high_value - low_value) * draw(self.seed, utterance, "value"), 2)
            events.append(OutcomeEvent(id=outcome_id(utterance, "converted"), ts=ts + (ts - truth.ts),
                                       session_id=truth.session_id, utterance_id=utterance, kind="converted",
                                       value=value))
        return events


@dataclass
class SimulationReport:
    """What one simulation read and sent."""

    expected: int = 0  # utterances in the truth file
    predictions: int = 0  # prediction messages read
    matched: int = 0  # distinct utterances of the truth with a prediction (and their outcomes sent)
    right: int = 0  # of the matched: the model was right
    outcomes: dict[str, int] = field(default_factory=dict)  # kind -> events sent
    stopped: str = ""  # complete, max_predictions, idle or timeout
    sent: ReplayOutcome | None = None  # what the broker confirmed of the outcome events

    @property
    def ok(self) -> bool:
        return self.sent is not None and self.sent.ok

    def summary(self) -> str:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.outcomes.items()))
        share = f"{self.right / self.matched:.0%}" if self.matched else "-"
        return (f"{self.matched} of {self.expected} utterances got outcomes (model right on {share}; "
                f"{self.predictions} predictions read, stopped: {self.stopped}): {kinds or 'none'}; "
                f"{self.sent.summary() if self.sent is not None else 'nothing sent'}")


def prediction_offsets(settings: Settings) -> dict[int, int]:
    """partition -> end offset of the predictions topic now: where a simulation of a replay about to be sent
    starts reading (only that replay's predictions, none of the topic's history)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None)
    try:
        topic = settings.topics.predictions
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist (run `nlumon services init`)")
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def simulate(
    settings: Settings, truth_path: Path, *, model: OutcomeModel | None = None, seed: int = 0,
    timeout_s: float = 300.0, idle_s: float | None = 60.0, max_predictions: int | None = None,
    start_offsets: Mapping[int, int] | None = None, group_id: str | None = None, progress: bool = False,
) -> SimulationReport:
    """Read predictions, send their outcomes (confirmed by the broker), and stop when every utterance of the
    truth got its outcomes, after ``max_predictions`` predictions, ``idle_s`` without a prediction, or
    ``timeout_s`` in all.

    With ``start_offsets`` (from :func:`prediction_offsets`) it reads from there and commits nothing; else it
    reads as consumer group ``group_id`` (default ``<kafka.consumer_group>-outcome-sim``) from its last commit
    (the topic's start the first time), and commits once the outcomes were confirmed."""
    from tqdm import tqdm

    from streams.replay import send_records

    truth = load_truth(truth_path)
    simulator = OutcomeSimulator(truth, model, seed)
    report = SimulationReport(expected=len(truth))
    consumer = _prediction_consumer(settings, start_offsets, group_id)
    bar = tqdm(total=len(truth), unit="utt", disable=not progress, desc="outcomes")
    seen: set[str] = set()
    positions: dict[Any, int] = {}  # TopicPartition -> next offset to read: what is committed at the end

    def outcome_records() -> Iterator[tuple[bytes, bytes]]:
        for message, prediction in _predictions(consumer, report, timeout_s, idle_s, max_predictions,
                                                done=lambda: len(seen) == len(truth)):
            positions[(message.topic, message.partition)] = message.offset + 1
            utterance = str(prediction.get("id", ""))
            events = simulator.outcomes_for(prediction)
            if not events or utterance in seen:  # another replay's utterance, or a prediction delivered twice
                continue
            seen.add(utterance)
            report.matched += 1
            report.right += simulator.is_right(prediction, truth[utterance])
            bar.update()
            for event in events:
                report.outcomes[event.kind] = report.outcomes.get(event.kind, 0) + 1
                yield event.session_id.encode(), event.to_json()

    try:
        report.sent = send_records(settings, outcome_records(), topic=settings.topics.outcomes)
        if start_offsets is None and report.sent.ok and positions:
            _commit(consumer, positions)
    finally:
        bar.close()
        consumer.close()
    log.info("outcome simulation: %s", report.summary())
    return report


def _prediction_consumer(settings: Settings, start_offsets: Mapping[int, int] | None, group_id: str | None):
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topics.predictions
    if start_offsets is None:
        return KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=group_id or f"{settings.kafka.consumer_group}-outcome-sim",
                             auto_offset_reset="earliest", enable_auto_commit=False, client_id="nlumon-outcome-sim")
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, client_id="nlumon-outcome-sim")
    partitions = [TopicPartition(topic, partition) for partition in sorted(start_offsets)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, start_offsets[tp.partition])
    return consumer


def _commit(consumer: Any, positions: Mapping[tuple[str, int], int]) -> None:
    """Commit what was read and answered (not what the last poll fetched beyond ``max_predictions``)."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                     for (topic, partition), offset in positions.items()})


def _predictions(consumer: Any, report: SimulationReport, timeout_s: float, idle_s: float | None,
                 max_predictions: int | None, done: Callable[[], bool]) -> Iterator[tuple[Any, dict]]:
    """(message, prediction row) as they come, until ``done()``, the count, the idle time or the timeout (the
    reason is left in ``report.stopped``)."""
    started = last = time.monotonic()
    while True:
        now = time.monotonic()
        reasons = {
            "complete": done(),
            "max_predictions": max_predictions is not None and report.predictions >= max_predictions,
            "idle": idle_s is not None and now - last > idle_s,
            "timeout": now - started > timeout_s,
        }
        stopped = [reason for reason, stop in reasons.items() if stop]
        if stopped:
            report.stopped = stopped[0]
            return
        for message in (m for batch in consumer.poll(timeout_ms=500).values() for m in batch):
            if max_predictions is not None and report.predictions >= max_predictions:
                break
            last = time.monotonic()
            report.predictions += 1
            try:
                prediction = json.loads(message.value)
            except ValueError:
                log.warning("skipped a prediction that is not JSON (partition %s, offset %s)", message.partition,
                            message.offset)
                continue
            if isinstance(prediction, dict):
                yield message, prediction
