"""The Label Studio round trip against a real server: push queue items (with labeling-function votes) through the
CLI, find them on the server as tasks with predictions, annotate them through the REST API as an annotator's
Submit/Skip would, pull, and get the annotator's labels back as training examples with their source.

The server is the ``label-studio`` package from PyPI in its own cached virtualenv (tests/label_studio_server.py).
The test skips only when pip cannot install it (the reason is pip's own message); a server that is installed but
does not start, or answers wrongly, fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

import pytest
import requests
from typer.testing import CliRunner

from labeling.annotation.base import LABEL_OF_SLOT
from labeling.cli import labeling_app
from labeling.items import LabelingItem, Reason
from labeling.label_studio import export_label_studio, label_config_values, vote_slot_types
from labeling.label_studio_client import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioNotFound,
    find_project,
    pull_examples,
)
from model_runtime.data.example import Example
from model_runtime.data.extra import load_extra
from model_runtime.data.retail import GeneratorConfig, iter_examples
from tests.label_studio_server import LabelStudioInstallError, LabelStudioServer, ensure_venv, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory) -> Iterator[LabelStudioServer]:
    try:
        venv, venv_s, built = ensure_venv()
    except LabelStudioInstallError as error:
        pytest.skip(f"cannot install Label Studio from PyPI: {error}")
    server = start_server(venv, tmp_path_factory.mktemp("label-studio"))
    print(f"\nlabel-studio venv {'built' if built else 'reused'} in {venv_s:.1f} s; "
          f"server up in {server.start_s:.1f} s at {server.url}")
    yield server
    server.stop()
    assert server.process.poll() is not None


def queue_items(count: int = 5) -> list[LabelingItem]:
    """Queue items from generated utterances with slots; two labeling functions voted on each."""
    examples = [ex for ex in islice(iter_examples(GeneratorConfig(n=400, seed=23)), 400) if ex.spans()][:count]
    items = []
    for index, ex in enumerate(examples):
        echo = tuple(LABEL_OF_SLOT.get(tag[2:], "O") if tag != "O" else "O" for tag in ex.tags)
        last_is_time = (None,) * (len(ex.tokens) - 1) + ("time",)
        items.append(LabelingItem(f"ls-{index}", ex.text, ex.tokens, ex.intent, ex.tags, (Reason.ANNOTATION_AMBIGUOUS,),
                                  2.0, T, T, "m1", ex.assistant, 0.4,
                                  votes={"lf_echo": echo, "lf_last_time": last_is_time}))
    return items


def corrected(result: list[dict], slot_types: set[str]) -> tuple[list[dict], dict]:
    """The model's prediction with its first slot relabelled (to another type the project offers): what a correcting
    annotator submits."""
    result = json.loads(json.dumps(result))
    slot = next(r for r in result if r["type"] == "labels")
    slot["value"]["labels"] = [sorted(slot_types - set(slot["value"]["labels"]))[0]]
    return result, slot


def expected_tags(item: LabelingItem, slot: dict) -> tuple[str, ...]:
    tags = list(item.tags)
    offsets, start = [], 0
    for token in item.tokens:
        start = item.text.index(token, start)
        offsets.append((start, start + len(token)))
        start += len(token)
    covered = [i for i, (s, e) in enumerate(offsets) if s < slot["value"]["end"] and e > slot["value"]["start"]]
    kind = slot["value"]["labels"][0]
    for n, i in enumerate(covered):
        tags[i] = f"{'B' if n == 0 else 'I'}-{kind}"
    return tuple(tags)


def annotate(server: LabelStudioServer, task_id: int, result: list[dict], *, cancelled: bool = False) -> None:
    """POST /api/tasks/{id}/annotations, as the annotator's browser does on Submit (or Skip)."""
    answer = requests.post(f"{server.url}/api/tasks/{task_id}/annotations", timeout=30,
                           headers={"Authorization": f"Token {server.token}"},
                           json={"result": result, "was_cancelled": cancelled})
    assert answer.status_code == 201, answer.text


def test_push_annotate_pull_gives_the_annotators_labels(label_studio, tmp_path, monkeypatch):
    monkeypatch.setenv("NLUMON_LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("NLUMON_LABEL_STUDIO_TOKEN", label_studio.token)
    monkeypatch.setenv("NLUMON_MODEL__PACKAGE_PATH", str(tmp_path / "no-model"))  # labels from the items only
    monkeypatch.delenv("NLUMON_CONFIG", raising=False)
    items = queue_items()
    items_path = tmp_path / "items.jsonl"
    items_path.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in items))
    runner = CliRunner()
    push = ["push", "--input", str(items_path), "--project", "round trip"]

    first = runner.invoke(labeling_app, push)
    assert first.exit_code == 0, first.output
    assert "created" in first.output and "5 task(s) pushed, 0 already there" in first.output
    again = runner.invoke(labeling_app, push)
    assert again.exit_code == 0, again.output
    assert "0 task(s) pushed, 5 already there" in again.output

    client = LabelStudioClient(label_studio.url, label_studio.token)
    project = find_project(client, "round trip")
    intents, slot_types = label_config_values(project.label_config)
    assert intents == {item.intent for item in items}
    used = {kind for item in items for kind, _, _ in Example(item.tokens, item.tags, "", "").spans()}
    assert slot_types == used | vote_slot_types(items) and "date_time" in slot_types - used  # the votes' time
    tasks = sorted(client.tasks(project.id, full=True), key=lambda t: t["data"]["item_id"])
    assert [t["data"]["item_id"] for t in tasks] == [item.id for item in items]
    for item, task, sent in zip(items, tasks, export_label_studio(items), strict=True):
        predictions = sorted(task["predictions"], key=lambda p: p["id"])
        assert [p["model_version"] for p in predictions] == ["m1", "lf_echo", "lf_last_time"]
        assert [p["result"] for p in predictions] == [p["result"] for p in sent["predictions"]]
        (last,) = predictions[2]["result"]
        assert last["value"]["labels"] == ["date_time"] and item.text.endswith(last["value"]["text"])

    expected = {}
    for item, task in zip(items[:3], tasks[:3], strict=True):
        result, slot = corrected(sorted(task["predictions"], key=lambda p: p["id"])[0]["result"], slot_types)
        annotate(label_studio, task["id"], result)
        expected[item.text] = expected_tags(item, slot)
        assert expected[item.text] != item.tags
    annotate(label_studio, tasks[3]["id"], [], cancelled=True)  # skipped; tasks[4] is never opened

    out = tmp_path / "human.jsonl"
    pulled = runner.invoke(labeling_app, ["pull", "--project", "round trip", "--out", str(out)])
    assert pulled.exit_code == 0, pulled.output
    assert "3 example(s) from 5 task(s)" in pulled.output and "1 without annotation, 1 only skipped" in pulled.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r.pop("source") for r in records} == {f"human:label-studio:{project.id}"}
    examples = [Example(tuple(r["tokens"]), tuple(r["tags"]), r["intent"], r["assistant"], r["heads"])
                for r in records]
    assert {ex.text: ex.tags for ex in examples} == expected
    assert {ex.text: ex.intent for ex in examples} == {item.text: item.intent for item in items[:3]}
    loaded = load_extra(out)  # what `nlumon model train --extra` reads
    assert [(row.example, row.source, row.weight) for row in loaded] == [
        (ex, f"human:label-studio:{project.id}", 1.0) for ex in examples]

    # and train on them: the tiny model's manifest records the human examples it was trained with
    from model_runtime.package import load_package
    from model_runtime.testing import tiny_package

    package = load_package(tiny_package(tmp_path / "retrained", extra=(str(out),)))
    [trained_on] = package.manifest["training"]["extra"]["files"]
    assert trained_on["rows"] == 3 and trained_on["dropped_holdout_overlap"] == 0


def test_a_personal_access_token_works_and_failures_are_clear(label_studio):
    legacy = LabelStudioClient(label_studio.url, label_studio.token)
    project = legacy.create_project("tokens", "<View><Text name='text' value='$text'/></View>")
    created = requests.post(f"{label_studio.url}/api/token/", timeout=30,
                            headers={"Authorization": f"Token {label_studio.token}"})
    if created.status_code == 409:  # one personal token per user: take the one that exists
        created = requests.get(f"{label_studio.url}/api/token/", timeout=30,
                               headers={"Authorization": f"Token {label_studio.token}"})
        pat = created.json()[0]["token"]
    else:
        assert created.status_code == 201, created.text
        pat = created.json()["token"]
    personal = LabelStudioClient(label_studio.url, pat)
    assert [p.id for p in personal.projects("tokens") if p.title == "tokens"] == [project.id]

    wrong = "0" * 40
    with pytest.raises(LabelStudioAuthError, match="refused the legacy token") as refused:
        LabelStudioClient(label_studio.url, wrong).projects("x")
    assert wrong not in str(refused.value)
    with pytest.raises(LabelStudioNotFound, match="no Label Studio project titled 'missing'"):
        pull_examples(legacy, "missing")
