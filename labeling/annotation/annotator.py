"""The annotator: raw store-log utterances in, surrogate-named training examples and queue items out.

For a batch of utterances (raw text: the caller reads it where it already is, within the ``utterances``
topic's retention, and only for events ``cleared_for_analysis``):

1. the champion model runs on them (intent, BIO slot tags, slot confidences);
2. every labeling function votes per token (:mod:`labeling.annotation.base`);
3. the fitted aggregator (weighted vote by default, or the label model) turns the votes into one label per
   token, with a score and a runner-up;
4. routing (:mod:`labeling.annotation.routing`): an utterance with a close call or a person/brand conflict goes
   to the labeling queue as ``annotation_ambiguous`` with every function's votes; a random share of the rest
   goes to the queue as ``audit``; the rest is auto-labelled;
5. an auto-labelled utterance becomes a training example: the champion's intent (only when it is confident)
   and tags, with person/time/brand/product spans taken from the aggregate; its person names are replaced by
   surrogates and an utterance in which any other personal data remains is dropped
   (:mod:`labeling.annotation.surrogate`).

Nothing raw leaves this module: examples carry surrogates, queue items carry surrogates and are scrubbed
again by the queue writer (``monitor.labeling_sink.queue_row``).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labeling.annotation.base import (
    LABEL_OF_SLOT,
    OTHER,
    SLOT_OF_LABEL,
    LabelingFunction,
    Utterance,
    Vote,
)
from labeling.annotation.routing import DEFAULT_AUDIT_RATE, DEFAULT_MARGIN, AnnotatedUtterance, route
from labeling.annotation.surrogate import surrogate
from labeling.items import LabelingItem
from model_runtime.data.bio import bio_spans, repair_bio
from model_runtime.data.extra import ExtraExamplesError, parse_row

log = logging.getLogger(__name__)

AUTO_SOURCE = "auto:weak-supervision"
DEFAULT_AUTO_WEIGHT = 0.7  # an auto label counts less than a human one in training (measured noise: docs/labeling.md)
DEFAULT_MIN_INTENT_CONFIDENCE = 0.6  # the champion's intent is copied into an example only when it is this sure
# Plain O tokens: the model reports no per-token confidence there, so the champion's vote abstains on them
# (an O vote at 0.8 outvoted correct time votes on the evaluation slice: docs/labeling.md). Tokens of its other
# slots (quantity, aisle, ...) keep the slot's confidence: an O vote there is informative.
O_CONFIDENCE = 0.0


@dataclass(frozen=True)
class LogEvent:
    """What the annotator needs of an utterance event (``streams``' UtteranceEvent has these fields)."""

    id: str
    text: str
    assistant: str = "associate"
    session_id: str = ""
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class ModelOutput:
    """The champion's answer for one utterance, aligned with ``text.split()``."""

    intent: str
    confidence: float
    tags: tuple[str, ...]
    token_confidences: tuple[float, ...]
    version: str = ""


@dataclass
class AnnotationBatch:
    """What one call of :meth:`Annotator.annotate` produced."""

    examples: list[dict[str, Any]] = field(default_factory=list)  # rows for `nlumon model train --extra`
    queue: list[LabelingItem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    # auto-labelled person name -> sessions it was seen in; raw names, in memory only (name proposals)
    person_sessions: dict[str, set[str]] = field(default_factory=dict)

    def extend(self, other: AnnotationBatch) -> None:
        self.examples += other.examples
        self.queue += other.queue
        self.counts.update(other.counts)
        for name, sessions in other.person_sessions.items():
            self.person_sessions.setdefault(name, set()).update(sessions)


def champion_outputs(runtime: Any) -> Callable[[Sequence[str]], list[ModelOutput]]:
    """A ``predict`` for :class:`Annotator` from a ``model_runtime.runtime.Runtime``."""
    from model_runtime.encoding import whitespace_words

    def predict(texts: Sequence[str]) -> list[ModelOutput]:
        outputs = []
        for text, prediction in zip(texts, runtime.predict(list(texts)), strict=True):
            words = whitespace_words(text)
            confidences = [O_CONFIDENCE] * len(words)
            for slot in prediction.slots:
                for index, word in enumerate(words):
                    if word.start >= slot.start and word.end <= slot.end:
                        confidences[index] = float(slot.confidence)
            outputs.append(ModelOutput(prediction.intent, float(prediction.confidence), tuple(prediction.tags),
                                       tuple(confidences), runtime.model_version))
        return outputs

    return predict


class Annotator:
    """Fitted labeling functions + aggregator; see the module docstring.

    ``predict`` is the champion (:func:`champion_outputs`), or ``None`` to annotate without it (the
    champion's labeling function then abstains and examples cannot be made: no intent).
    """

    def __init__(
        self,
        functions: Sequence[LabelingFunction],
        aggregator: Any,
        *,
        predict: Callable[[Sequence[str]], list[ModelOutput]] | None = None,
        margin_threshold: float = DEFAULT_MARGIN,
        audit_rate: float = DEFAULT_AUDIT_RATE,
        min_intent_confidence: float = DEFAULT_MIN_INTENT_CONFIDENCE,
        weight: float = DEFAULT_AUTO_WEIGHT,
        seed: int | None = None,
        vocabulary: Any = None,
    ) -> None:
        names = [f.name for f in functions]
        if len(set(names)) != len(names):
            raise ValueError(f"labeling function names must be unique: {names}")
        self.functions = list(functions)
        self.aggregator = aggregator
        self.predict = predict
        self.margin_threshold = margin_threshold
        self.audit_rate = audit_rate
        self.min_intent_confidence = min_intent_confidence
        self.weight = weight
        self.vocabulary = vocabulary  # model_runtime.data.extra.Vocabulary: examples outside it are not written
        self.rng = random.Random(seed)  # surrogate draws; None: fresh randomness per run
        self.audit_seed = seed or 0  # the audit draw is fixed by (seed, utterance id): reruns audit the same ones

    @property
    def function_names(self) -> list[str]:
        return [f.name for f in self.functions]

    def utterances(
        self, texts: Sequence[str], assistants: Sequence[str]
    ) -> tuple[list[Utterance], list[ModelOutput | None]]:
        """The labeling functions' input for ``texts`` (with the champion's tags when there is a champion)."""
        outputs: list[ModelOutput | None] = list(self.predict(texts)) if self.predict else [None] * len(texts)
        utterances = []
        for text, assistant, output in zip(texts, assistants, outputs, strict=True):
            tokens = tuple(text.split())
            if output is not None and len(output.tags) == len(tokens):
                utterances.append(Utterance(tokens, assistant, output.tags, output.token_confidences))
            else:
                utterances.append(Utterance(tokens, assistant))
        return utterances, outputs

    def votes(self, utterance: Utterance) -> list[list[Vote | None]]:
        """Every function's votes on one utterance; a function that fails abstains (and is counted)."""
        result = []
        for function in self.functions:
            try:
                votes = list(function.apply(utterance))
                if len(votes) != len(utterance.tokens):
                    raise ValueError(f"{len(votes)} votes for {len(utterance.tokens)} tokens")
            except Exception:  # one broken function must not stop the annotator
                log.exception("labeling function %s failed; it abstains on this utterance", function.name)
                votes = [None] * len(utterance.tokens)
            result.append(votes)
        return result

    def fit(self, gold: Sequence[Any]) -> Annotator:
        """Fit the aggregator on gold utterances (objects with ``tokens``, ``labels``, ``assistant``)."""
        utterances, _ = self.utterances([" ".join(g.tokens) for g in gold], [g.assistant for g in gold])
        corpus = [self.votes(u) for u in utterances]
        self.aggregator.fit(corpus, self.function_names, [list(g.labels) for g in gold])
        return self

    def label(self, texts: Sequence[str], assistants: Sequence[str]) -> list[list[str]]:
        """Aggregate labels per token (for measurement)."""
        utterances, _ = self.utterances(texts, assistants)
        return [[d.label for d in self.aggregator.predict(self.votes(u))] for u in utterances]

    def annotate(self, events: Sequence[LogEvent]) -> AnnotationBatch:
        """Annotate a batch; see the module docstring. ``batch.person_sessions`` keeps, in memory only, the
        sessions each auto-labelled person name was seen in (for name proposals)."""
        batch = AnnotationBatch()
        events = [e for e in events if e.text.split()]
        if not events:
            return batch
        utterances, outputs = self.utterances([e.text for e in events], [e.assistant for e in events])
        annotated, tags_of, by_id = [], {}, {}
        for event, utterance, output in zip(events, utterances, outputs, strict=True):
            votes = self.votes(utterance)
            decisions = self.aggregator.predict(votes)
            tags_of[event.id] = merged_tags(output.tags if output else ("O",) * len(decisions),
                                            [d.label for d in decisions])
            by_id[event.id] = (event, utterance, output)
            annotated.append(AnnotatedUtterance(
                id=event.id, tokens=utterance.tokens, function_names=tuple(self.function_names), votes=votes,
                decisions=decisions, intent=output.intent if output else "", assistant=event.assistant,
                model_version=output.version if output else "", confidence=output.confidence if output else None))
        window = (min(e.ts for e in events), max(e.ts for e in events))
        routing = route(annotated, window, margin_threshold=self.margin_threshold, audit_rate=self.audit_rate,
                        seed=self.audit_seed)
        batch.counts["read"] += len(events)
        for item in routing.items:
            batch.queue.append(self._safe_item(item))
            batch.counts[f"queued:{item.primary_reason}"] += 1
        for event_id in routing.auto_labelled:
            event, utterance, output = by_id[event_id]
            self._example(batch, event, utterance, tags_of[event_id], output)
        return batch

    def _safe_item(self, item: LabelingItem) -> LabelingItem:
        """The item with surrogate names (or, where other personal data remains, scrubbed to placeholders)."""
        safe = surrogate(item.tokens, item.tags, self.rng)
        if safe.ok:
            return item.deidentified(" ".join(safe.tokens))
        return item.deidentified()

    def _example(self, batch: AnnotationBatch, event: LogEvent, utterance: Utterance, tags: tuple[str, ...],
                 output: ModelOutput | None) -> None:
        if output is None:
            batch.counts["skipped:no_champion"] += 1
            return
        if output.confidence < self.min_intent_confidence:
            batch.counts["skipped:intent_unsure"] += 1
            return
        safe = surrogate(utterance.tokens, tags, self.rng)
        if not safe.ok:
            batch.counts[f"dropped_pii:{safe.reason}"] += 1
            return
        row = {"id": event.id, "tokens": list(safe.tokens), "tags": list(safe.tags), "intent": output.intent,
               "assistant": event.assistant, "heads": {}, "source": AUTO_SOURCE, "weight": self.weight}
        if self.vocabulary is not None:  # what is written must load in `nlumon model train --extra`
            try:
                parse_row(row, self.vocabulary)
            except ExtraExamplesError as error:
                batch.counts["skipped:not_trainable"] += 1
                log.debug("example %s not written: %s", event.id, error)
                return
        for slot, start, end in bio_spans(tags):
            if slot == "person" and event.session_id:
                name = " ".join(utterance.tokens[start:end]).casefold()
                batch.person_sessions.setdefault(name, set()).add(event.session_id)
        batch.counts["auto_labelled"] += 1
        batch.counts["surrogate_names"] += safe.replaced
        batch.examples.append(row)


def merged_tags(model_tags: Sequence[str], labels: Sequence[str]) -> tuple[str, ...]:
    """The champion's BIO tags with every person/time/brand/product decision taken from the aggregate.

    >>> merged_tags(["O", "B-brand", "O", "B-quantity"], ["O", "person", "time", "O"])
    ('O', 'B-person', 'B-date_time', 'B-quantity')
    """
    annotated = set(SLOT_OF_LABEL.values())
    tags: list[str] = []
    for index, (tag, label) in enumerate(zip(model_tags, labels, strict=True)):
        slot = SLOT_OF_LABEL.get(label)
        if slot is not None:
            same = index and labels[index - 1] == label
            tags.append(f"I-{slot}" if same else f"B-{slot}")
        elif tag != "O" and tag[2:] in annotated:
            tags.append("O")  # the aggregate overrules the model's entity
        else:
            tags.append(tag)
    return repair_bio(tags)  # an I- that no longer follows its kind begins a span


def gold_labels(tags: Sequence[str]) -> tuple[str, ...]:
    """Annotation labels of BIO slot tags (slots outside the annotated types -> ``O``).

    >>> gold_labels(["B-person", "I-person", "B-date_time", "B-quantity"])
    ('person', 'person', 'time', 'O')
    """
    return tuple(LABEL_OF_SLOT.get(t[2:], OTHER) if t != "O" else OTHER for t in tags)

