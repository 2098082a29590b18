"""Label Studio export/import: the task format, and a round trip over generated retail utterances and, where the
public datasets are at hand (tests/datasets.py), real SNIPS ones."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from itertools import islice

import pytest
from typer.testing import CliRunner

from labeling.cli import labeling_app
from labeling.items import LabelingItem, Reason
from labeling.label_studio import LabelStudioFormatError, export_label_studio, import_label_studio, label_config
from model_runtime.data.retail import GeneratorConfig, iter_examples
from model_runtime.data.snips import load_snips
from tests.datasets import require_public_datasets

T = datetime(2026, 3, 1, tzinfo=UTC)


def corpus_examples(corpus: str, count: int) -> list:
    """``count`` labelled examples: generated retail ones (always there) or SNIPS test ones (skip without it)."""
    if corpus == "snips":
        return load_snips("test", root=require_public_datasets())[:count]
    return list(islice(iter_examples(GeneratorConfig(n=count, seed=11)), count))


def to_item(index, example, text=None):
    return LabelingItem(f"i{index}", text or example.text, example.tokens, example.intent, example.tags,
                        (Reason.LOW_CONFIDENCE,), 2.0, T, T, "m1", example.assistant, 0.42)


def accept_predictions(tasks):
    """What a labeler who accepts the pre-annotation submits."""
    accepted = copy.deepcopy(tasks)
    for task in accepted:
        task["annotations"] = [{"result": task["predictions"][0]["result"], "was_cancelled": False}]
    return accepted


def test_task_format_matches_label_studio_json_and_the_labeling_config():
    text = "add  two jordan sneakers"  # a double space: offsets must be into this exact string
    item = LabelingItem("p1", text, tuple(text.split()), "add_to_cart", ("O", "B-quantity", "B-brand", "B-product"),
                        (Reason.BRAND_PERSON,), 3.0, T, T, "m1", "shopper", 0.61)
    (task,) = export_label_studio([item])
    assert task["data"]["text"] == text and task["data"]["item_id"] == "p1"
    assert task["data"]["reasons"] == ["brand_person_ambiguity"]
    prediction = task["predictions"][0]
    assert prediction["model_version"] == "m1" and prediction["score"] == 0.61
    intent, *slots = prediction["result"]
    assert intent["type"] == "choices" and intent["value"] == {"choices": ["add_to_cart"]}
    assert [(s["type"], s["value"]["labels"], text[s["value"]["start"]:s["value"]["end"]]) for s in slots] == [
        ("labels", ["quantity"], "two"), ("labels", ["brand"], "jordan"), ("labels", ["product"], "sneakers"),
    ]
    assert all(s["value"]["text"] == text[s["value"]["start"]:s["value"]["end"]] for s in slots)
    config = ET.fromstring(label_config(["add_to_cart"], ["brand", "product", "quantity"]))
    names = {child.get("name"): child for child in config}
    assert {intent["from_name"], slots[0]["from_name"], intent["to_name"]} == set(names)
    assert names["intent"].get("toName") == names["text"].get("name") == slots[0]["to_name"]
    json.dumps(task)  # plain JSON, no datetimes


@pytest.mark.parametrize("corpus", ["retail", "snips"])
def test_round_trip_accepting_predictions_gives_the_same_intent_and_tags(corpus):
    examples = corpus_examples(corpus, 300)
    items = [to_item(i, ex) for i, ex in enumerate(examples)]
    imported = import_label_studio(accept_predictions(export_label_studio(items)))
    assert len(imported) == len(examples)
    for original, back in zip(examples, imported, strict=True):
        assert (back.tokens, back.intent, back.tags) == (original.tokens, original.intent, original.tags)


def test_import_uses_the_latest_usable_annotation_and_maps_loose_spans_to_tokens():
    text = "is jordan on shift tomorrow"
    tasks = [{"id": 7, "data": {"text": text, "assistant": "associate"}, "annotations": [
        {"was_cancelled": False, "updated_at": "2026-03-01T10:00:00Z",
         "result": [{"type": "choices", "from_name": "intent", "to_name": "text", "value": {"choices": ["other"]}}]},
        {"was_cancelled": True, "updated_at": "2026-03-03T10:00:00Z", "result": []},
        {"was_cancelled": False, "updated_at": "2026-03-02T10:00:00Z", "result": [
            {"type": "choices", "from_name": "intent", "to_name": "text", "value": {"choices": ["check_shift"]}},
            # a sloppy drag that starts mid-word and eats the space: still the token "jordan"
            {"type": "labels", "from_name": "slots", "to_name": "text",
             "value": {"start": 4, "end": 10, "labels": ["person"]}},
            {"type": "labels", "from_name": "slots", "to_name": "text",
             "value": {"start": 19, "end": 27, "labels": ["date"]}},
        ]},
    ]}, {"id": 8, "data": {"text": "skipped"}, "annotations": []}]
    (example,) = import_label_studio(tasks)
    assert example.intent == "check_shift" and example.assistant == "associate"
    assert example.tags == ("O", "B-person", "O", "O", "B-date")


def test_an_annotation_without_an_intent_is_an_error_naming_the_task():
    task = {"id": 9, "data": {"text": "hello"}, "annotations": [{"result": []}]}
    with pytest.raises(LabelStudioFormatError, match="task 9: expected exactly one intent"):
        import_label_studio([task])


@pytest.mark.parametrize("corpus", ["retail", "snips"])
def test_cli_export_then_import(tmp_path, corpus):
    examples = corpus_examples(corpus, 20)
    items_path = tmp_path / "items.jsonl"
    items_path.write_text("".join(json.dumps(to_item(i, ex).to_dict()) + "\n" for i, ex in enumerate(examples)))
    runner = CliRunner()
    result = runner.invoke(labeling_app, ["export", "--format", "label-studio", "--input", str(items_path),
                                          "--out", str(tmp_path / "tasks.json")])
    assert result.exit_code == 0, result.output
    annotated = accept_predictions(json.loads((tmp_path / "tasks.json").read_text()))
    (tmp_path / "annotated.json").write_text(json.dumps(annotated))
    result = runner.invoke(labeling_app, ["import", "--input", str(tmp_path / "annotated.json"),
                                          "--out", str(tmp_path / "examples.jsonl")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert [(d["intent"], tuple(d["tags"])) for d in lines] == [(e.intent, e.tags) for e in examples]
    bad = runner.invoke(labeling_app, ["export", "--format", "csv", "--input", str(items_path), "--out", "x"])
    assert bad.exit_code == 1 and "unknown format" in bad.output
