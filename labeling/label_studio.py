"""Label Studio tasks out (pre-annotated with the model's answer) and annotations back in as examples.

The project's labeling config (see :func:`label_config`) has a ``Text`` named ``text``, a single
``Choices`` named ``intent`` and a ``Labels`` named ``slots``. A task follows Label Studio's JSON
format: ``data.text`` plus ``predictions[].result``, where the intent is a ``choices`` result and
each slot a ``labels`` result with character offsets ``start``/``end`` (end exclusive) into
``data.text``. Importing maps character spans back to whitespace tokens as BIO tags.

The model's answer is the first (primary) prediction; each labeling function that voted on the item follows as a
prediction of its own, ``model_version`` = the function's name, with its per-token labels as slot spans (its
``time`` votes become the model's ``date_time`` slot, see ``labeling.annotation.base.SLOT_OF_LABEL``). Annotators
see who said what; only their submitted annotation comes back.

    >>> from datetime import datetime, timezone
    >>> from labeling.items import LabelingItem, Reason
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> item = LabelingItem("p1", "add two jordan sneakers", ("add", "two", "jordan", "sneakers"), "add_to_cart",
    ...                     ("O", "B-quantity", "B-brand", "B-product"), (Reason.LOW_CONFIDENCE,), 2.0, t, t,
    ...                     "m1", "shopper", 0.4)
    >>> task = export_label_studio([item])[0]
    >>> [(r["value"].get("start"), r["value"].get("end")) for r in task["predictions"][0]["result"]]
    [(None, None), (4, 7), (8, 14), (15, 23)]
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling.annotation.base import SLOT_OF_LABEL, label_spans
from labeling.items import LabelingItem
from model_runtime.data.bio import bio_spans
from model_runtime.data.example import Example

log = logging.getLogger(__name__)
TEXT_NAME, INTENT_NAME, SLOTS_NAME = "text", "intent", "slots"
_TOKEN = re.compile(r"\S+")


class LabelStudioFormatError(ValueError):
    """An annotated task cannot be turned into a training example; the message names the task."""


def token_offsets(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each whitespace token.

    >>> token_offsets("add  two")
    [(0, 3), (5, 8)]
    """
    return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]


def label_config(intents: Iterable[str], slot_types: Iterable[str]) -> str:
    """The Label Studio labeling config XML that the exported tasks expect."""
    choices = "".join(f"<Choice value={quoteattr(i)}/>" for i in sorted(set(intents)))
    labels = "".join(f"<Label value={quoteattr(s)}/>" for s in sorted(set(slot_types)))
    return (
        f'<View><Text name="{TEXT_NAME}" value="$text"/>'
        f'<Choices name="{INTENT_NAME}" toName="{TEXT_NAME}" choice="single" showInLine="true">{choices}</Choices>'
        f'<Labels name="{SLOTS_NAME}" toName="{TEXT_NAME}">{labels}</Labels></View>'
    )


def label_config_values(config: str) -> tuple[set[str], set[str]]:
    """The intents and slot types a labeling config offers; an error when it is not nlumon's config.

    >>> sorted(map(sorted, label_config_values(label_config(["greet", "buy"], ["brand"]))))
    [['brand'], ['buy', 'greet']]
    """
    try:
        root = ET.fromstring(config)
    except ET.ParseError as error:
        raise LabelStudioFormatError(f"the labeling config is not XML: {error}") from None
    controls = {element.get("name"): element for element in root.iter() if element.tag in ("Choices", "Labels")}
    intents, slots = controls.get(INTENT_NAME), controls.get(SLOTS_NAME)
    if intents is None or slots is None or intents.tag != "Choices" or slots.tag != "Labels":
        raise LabelStudioFormatError(
            f"the labeling config has no Choices named {INTENT_NAME!r} and Labels named {SLOTS_NAME!r}: "
            "not a project made by nlumon")
    return ({c.get("value", "") for c in intents.iter("Choice")}, {c.get("value", "") for c in slots.iter("Label")})


def merged_label_config(config: str, intents: Iterable[str], slot_types: Iterable[str]) -> str | None:
    """``config`` grown by the intents and slot types it lacks; ``None`` when it offers them all already.

    Values are only ever added: an annotation made with a value that a later config lacked would no longer load
    in Label Studio's editor.

    >>> config = label_config(["buy"], ["brand"])
    >>> merged_label_config(config, ["buy"], ["brand"]) is None
    True
    >>> sorted(label_config_values(merged_label_config(config, ["greet"], ["person"]))[1])
    ['brand', 'person']
    """
    have_intents, have_slots = label_config_values(config)
    want_intents, want_slots = have_intents | set(intents), have_slots | set(slot_types)
    if (want_intents, want_slots) == (have_intents, have_slots):
        return None
    return label_config(want_intents, want_slots)


def export_label_studio(items: Iterable[LabelingItem], *, deidentify: bool = False) -> list[dict[str, Any]]:
    """One pre-annotated Label Studio task per item.

    Items read from the labeling queue (``labeling_queue`` or its Kafka topic) are de-identified already, where
    the queue's rows were built; ``deidentify`` scrubs each item once more (:meth:`LabelingItem.deidentified`)
    for items from elsewhere."""
    return [_task(item.deidentified() if deidentify else item) for item in items]


def _task(item: LabelingItem) -> dict[str, Any]:
    offsets = token_offsets(item.text)
    if len(offsets) != len(item.tags):
        raise LabelStudioFormatError(f"item {item.id}: {len(item.tags)} tags for {len(offsets)} tokens")
    result: list[dict[str, Any]] = [{
        "id": f"{item.id}-intent", "from_name": INTENT_NAME, "to_name": TEXT_NAME, "type": "choices",
        "value": {"choices": [item.intent]},
    }]
    for n, (kind, first, end) in enumerate(bio_spans(item.tags)):
        start_char, end_char = offsets[first][0], offsets[end - 1][1]
        result.append({
            "id": f"{item.id}-slot{n}", "from_name": SLOTS_NAME, "to_name": TEXT_NAME, "type": "labels",
            "value": {"start": start_char, "end": end_char, "text": item.text[start_char:end_char], "labels": [kind]},
        })
    data = item.to_dict()
    data["item_id"] = data.pop("id")
    for key in ("tokens", "tags", "intent", "votes"):  # the predictions say these; no second copy to drift
        data.pop(key)
    prediction: dict[str, Any] = {"model_version": item.model_version, "result": result}
    if item.confidence is not None:
        prediction["score"] = item.confidence
    votes = [_vote_prediction(item, name, labels, offsets) for name, labels in sorted(item.votes.items())]
    return {"data": data, "predictions": [prediction, *votes]}


def _vote_prediction(
    item: LabelingItem, name: str, labels: Sequence[str | None], offsets: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """One labeling function's votes as a prediction: a slot span per run of equal entity labels.

    ``O`` and abstentions (``None``) make no span; a label the model has no slot for is an error (a new
    labeling function whose label was not mapped in ``SLOT_OF_LABEL``)."""
    if len(labels) != len(offsets):
        raise LabelStudioFormatError(f"item {item.id}: labeling function {name!r} voted on {len(labels)} tokens, "
                                     f"the text has {len(offsets)}")
    unknown = sorted({label for label in labels if label is not None and label != "O"} - set(SLOT_OF_LABEL))
    if unknown:
        raise LabelStudioFormatError(f"item {item.id}: labeling function {name!r} voted unknown label(s) {unknown}")
    result = []
    for n, (label, first, end) in enumerate(label_spans(labels, types=tuple(SLOT_OF_LABEL))):
        start_char, end_char = offsets[first][0], offsets[end - 1][1]
        result.append({
            "id": f"{item.id}-{name}-slot{n}", "from_name": SLOTS_NAME, "to_name": TEXT_NAME, "type": "labels",
            "value": {"start": start_char, "end": end_char, "text": item.text[start_char:end_char],
                      "labels": [SLOT_OF_LABEL[label]]},
        })
    return {"model_version": name, "result": result}


def vote_slot_types(items: Iterable[LabelingItem]) -> set[str]:
    """The model slot types that the items' labeling-function votes use (the labeling config must offer them).

    >>> from datetime import datetime, timezone
    >>> from labeling.items import Reason
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> item = LabelingItem("p1", "is ana in at 5", ("is", "ana", "in", "at", "5"), "check_shift", ("O",) * 5,
    ...                     (Reason.AUDIT,), 1.0, t, t, "m1", "associate", votes={"names": (None, "person", "O",
    ...                     None, None), "times": (None, None, None, "time", "time")})
    >>> sorted(vote_slot_types([item]))
    ['date_time', 'person']
    """
    return {SLOT_OF_LABEL[label] for item in items for labels in item.votes.values() for label in labels
            if label in SLOT_OF_LABEL}


def import_label_studio(tasks_with_annotations: Iterable[Mapping[str, Any]]) -> list[Example]:
    """Training examples from exported tasks; tasks without a usable (non-cancelled) annotation are skipped."""
    examples = []
    for index, task in enumerate(tasks_with_annotations):
        annotation = latest_annotation(task)
        if annotation is None:
            continue
        where = f"task {task.get('id', index)}"
        examples.append(_example(task, annotation["result"], where))
    return examples


def example_record(example: Example, source: str | None = None) -> dict[str, Any]:
    """One JSONL line of training examples (``nlumon labeling import``/``pull``; read by ``model train --extra``).

    >>> example_record(Example(("hi",), ("O",), "greet", "shopper"), "human:label-studio:3")["source"]
    'human:label-studio:3'
    """
    record: dict[str, Any] = {"tokens": list(example.tokens), "tags": list(example.tags), "intent": example.intent,
                              "assistant": example.assistant, "heads": dict(example.heads)}
    if source is not None:
        record["source"] = source
    return record


def latest_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The task's latest submitted annotation; ``None`` when it has none that was not cancelled (skipped)."""
    usable = [a for a in task.get("annotations") or () if not a.get("was_cancelled") and "result" in a]
    if not usable:
        return None
    # ISO timestamps sort as strings; without them, the last one in the list is the latest.
    return max(enumerate(usable), key=lambda pair: (str(pair[1].get("updated_at") or pair[1].get("created_at")
                                                        or ""), pair[0]))[1]


def _example(task: Mapping[str, Any], result: Sequence[Mapping[str, Any]], where: str) -> Example:
    data = task.get("data") or {}
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LabelStudioFormatError(f"{where}: data.text is missing or empty")
    intents = [r["value"]["choices"] for r in result
               if r.get("type") == "choices" and r.get("from_name") == INTENT_NAME]
    if len(intents) != 1 or len(intents[0]) != 1:
        raise LabelStudioFormatError(f"{where}: expected exactly one intent choice, got {intents}")
    offsets = token_offsets(text)
    tags = ["O"] * len(offsets)
    spans = sorted(
        (r["value"] for r in result if r.get("type") == "labels" and r.get("from_name") == SLOTS_NAME),
        key=lambda v: (v["start"], v["end"]),
    )
    for value in spans:
        covered = [i for i, (s, e) in enumerate(offsets) if s < value["end"] and e > value["start"]]
        if not covered:
            raise LabelStudioFormatError(f"{where}: span {value['start']}-{value['end']} covers no token")
        if any(tags[i] != "O" for i in covered):
            log.warning("%s: overlapping slot span %s-%s skipped", where, value["start"], value["end"])
            continue
        kind = value["labels"][0]
        tags[covered[0]] = f"B-{kind}"
        for i in covered[1:]:
            tags[i] = f"I-{kind}"
    return Example(tuple(text.split()), tuple(tags), intents[0][0], str(data.get("assistant", "unknown")))
