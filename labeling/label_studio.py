"""Label Studio tasks out (pre-annotated with the model's answer) and annotations back in as examples.

The project's labeling config (see :func:`label_config`) has a ``Text`` named ``text``, a single
``Choices`` named ``intent`` and a ``Labels`` named ``slots``. A task follows Label Studio's JSON
format: ``data.text`` plus ``predictions[].result``, where the intent is a ``choices`` result and
each slot a ``labels`` result with character offsets ``start``/``end`` (end exclusive) into
``data.text``. Importing maps character spans back to whitespace tokens as BIO tags.

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

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
    for key in ("tokens", "tags", "intent"):  # the pre-annotation says these; no second copy to drift
        data.pop(key)
    prediction: dict[str, Any] = {"model_version": item.model_version, "result": result}
    if item.confidence is not None:
        prediction["score"] = item.confidence
    return {"data": data, "predictions": [prediction]}


def import_label_studio(tasks_with_annotations: Iterable[Mapping[str, Any]]) -> list[Example]:
    """Training examples from exported tasks; tasks without a usable (non-cancelled) annotation are skipped."""
    examples = []
    for index, task in enumerate(tasks_with_annotations):
        annotation = _latest_annotation(task)
        if annotation is None:
            continue
        where = f"task {task.get('id', index)}"
        examples.append(_example(task, annotation["result"], where))
    return examples


def _latest_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
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
