"""Label Studio export/import: the task format, and a round trip over generated retail utterances and, where the
public datasets are at hand (tests/datasets.py), real SNIPS ones."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from itertools import islice
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from labeling import cli as labeling_cli
from labeling.cli import labeling_app
from labeling.items import LabelingItem, Reason
from labeling.label_studio import (
    LabelStudioFormatError,
    export_label_studio,
    import_label_studio,
    label_config,
    label_config_values,
    merged_label_config,
)
from labeling.label_studio_client import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnreachable,
    Project,
    find_project,
    pull_examples,
    push_items,
)
from model_runtime.data.retail import GeneratorConfig, iter_examples
from model_runtime.data.snips import load_snips
from nlumon.settings import load_settings
from tests.datasets import require_public_datasets
from tests.label_studio_server import free_port

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


# -- labeling-function votes as predictions ------------------------------------------------------------------------
def voted_item(item_id="v1", text="swap with  ana on friday night", votes=None):
    tokens = tuple(text.split())
    votes = votes if votes is not None else {
        "times": (None, None, None, None, "time", "time"),
        "names": ("O", None, "person", "O", None, None),
    }
    return LabelingItem(item_id, text, tokens, "swap_shift", ("O", "O", "B-person", "O", "B-date_time", "I-date_time"),
                        (Reason.ANNOTATION_AMBIGUOUS,), 2.0, T, T, "m7", "associate", 0.55, votes=votes)


def test_each_labeling_function_is_a_prediction_after_the_models_with_its_labels_as_slots():
    item = voted_item()
    (task,) = export_label_studio([item])
    model, *functions = task["predictions"]
    assert model["model_version"] == "m7" and model["score"] == 0.55  # the model's answer stays first
    assert [p["model_version"] for p in functions] == ["names", "times"]
    spans = {p["model_version"]: [(r["value"]["labels"], r["value"]["text"]) for r in p["result"]] for p in functions}
    assert spans == {"names": [(["person"], "ana")], "times": [(["date_time"], "friday night")]}  # time -> date_time
    for p in functions:  # offsets into the exact text (double space), all slots, no intent from a function
        assert all(item.text[r["value"]["start"]:r["value"]["end"]] == r["value"]["text"] for r in p["result"])
        assert {(r["from_name"], r["type"]) for r in p["result"]} == {("slots", "labels")}
    ids = [r["id"] for p in task["predictions"] for r in p["result"]]
    assert "votes" not in task["data"] and len(set(ids)) == len(ids) == 5  # intent + 2 slots + 1 span per function


def test_abstaining_everywhere_gives_an_empty_prediction_and_bad_votes_are_errors():
    (task,) = export_label_studio([voted_item(votes={"shy": (None,) * 6, "nothing": ("O",) * 6})])
    assert [(p["model_version"], p["result"]) for p in task["predictions"][1:]] == [("nothing", []), ("shy", [])]
    with pytest.raises(LabelStudioFormatError, match="'short' voted on 2 tokens, the text has 6"):
        export_label_studio([voted_item(votes={"short": ("O", "O")})])
    with pytest.raises(LabelStudioFormatError, match=r"'odd' voted unknown label\(s\) \['colour'\]"):
        export_label_studio([voted_item(votes={"odd": ("colour",) + (None,) * 5})])


def test_accepting_the_models_prediction_ignores_the_votes():
    items = [voted_item(f"v{i}") for i in range(3)]
    (back, *_) = import_label_studio(accept_predictions(export_label_studio(items)))
    assert back.tags == items[0].tags


def test_the_labeling_config_grows_and_refuses_a_foreign_one():
    config = label_config(["swap_shift"], ["person"])
    assert merged_label_config(config, ["swap_shift"], ["person"]) is None
    grown = merged_label_config(config, ["check_shift"], ["date_time"])
    assert label_config_values(grown) == ({"swap_shift", "check_shift"}, {"person", "date_time"})
    with pytest.raises(LabelStudioFormatError, match="not a project made by nlumon"):
        label_config_values("<View><Text name='text' value='$text'/></View>")


# -- push and pull over the tiny API, with a plain fake server ------------------------------------------------------
class FakeLabelStudio:
    """The calls of labeling.label_studio_client.LabelStudioApi, kept in memory like a server would."""

    url = "http://ls.test"

    def __init__(self, fail_import_after: int | None = None):
        self.projects_by_id: dict[int, Project] = {}
        self.tasks_by_project: dict[int, list[dict]] = {}
        self.imports: list[int] = []  # tasks per import call
        self.config_updates = 0
        self.fail_import_after = fail_import_after

    def projects(self, title):
        return [p for p in self.projects_by_id.values() if title in p.title]  # the server filters by "contains"

    def create_project(self, title, config):
        project = Project(len(self.projects_by_id) + 1, title, config)
        self.projects_by_id[project.id] = project
        self.tasks_by_project[project.id] = []
        return project

    def set_label_config(self, project_id, config):
        self.config_updates += 1
        self.projects_by_id[project_id] = Project(project_id, self.projects_by_id[project_id].title, config)
        return self.projects_by_id[project_id]

    def tasks(self, project_id, *, full):
        for task in self.tasks_by_project[project_id]:
            yield copy.deepcopy(task) if full else {k: v for k, v in task.items() if k not in ("annotations",
                                                                                               "predictions")}

    def import_tasks(self, project_id, tasks):
        if self.fail_import_after is not None and len(self.imports) >= self.fail_import_after:
            raise LabelStudioError("server went away")
        tasks_here = self.tasks_by_project[project_id]
        for task in tasks:
            tasks_here.append({"id": 1000 + len(tasks_here), **copy.deepcopy(dict(task)), "annotations": []})
        self.imports.append(len(tasks))
        return len(tasks)


def retail_items(count, votes=True):
    items = []
    for index, example in enumerate(corpus_examples("retail", count)):
        item = to_item(index, example)
        if votes:
            item = dataclasses.replace(item, votes={"last_time": (None,) * (len(example.tokens) - 1) + ("time",)})
        items.append(item)
    return items


def test_push_creates_the_project_sends_each_item_once_and_offers_every_label():
    server, items = FakeLabelStudio(), retail_items(5)
    first = push_items(server, items + items[:2], "queue", intents=["store_hours"], batch_size=2)
    assert (first.project_action, first.pushed, first.already_pushed, first.repeated) == ("created", 5, 0, 2)
    assert server.imports == [2, 2, 1]
    intents, slots = label_config_values(first.project.label_config)
    assert intents == {i.intent for i in items} | {"store_hours"}
    assert "date_time" in slots and {t[2:] for i in items for t in i.tags if t != "O"} <= slots
    again = push_items(server, retail_items(7), "queue")
    assert (again.project_action, again.pushed, again.already_pushed) == ("updated", 2, 5)  # new intents: grown
    assert [t["data"]["item_id"] for t in server.tasks_by_project[1]] == [f"i{n}" for n in range(7)]
    assert server.config_updates == 1 and push_items(server, items, "queue").project_action == "found"


def test_a_push_cut_short_is_finished_by_the_next_one():
    server, items = FakeLabelStudio(fail_import_after=1), retail_items(4)
    with pytest.raises(LabelStudioError, match="went away"):
        push_items(server, items, "queue", batch_size=2)
    server.fail_import_after = None
    assert push_items(server, items, "queue", batch_size=2).pushed == 2
    assert sorted(t["data"]["item_id"] for t in server.tasks_by_project[1]) == ["i0", "i1", "i2", "i3"]


def test_push_checks_every_item_before_touching_the_server_and_refuses_ambiguous_projects():
    server = FakeLabelStudio()
    bad = dataclasses.replace(retail_items(1)[0], tags=("O",))
    with pytest.raises(LabelStudioFormatError, match="item i0"):
        push_items(server, [*retail_items(3), bad], "queue")
    assert server.projects_by_id == {}
    server.create_project("queue (old)", label_config(["x"], ["y"]))  # only contains the title: not a match
    assert push_items(server, retail_items(1), "queue").project_action == "created"
    server.create_project("queue", label_config(["x"], ["y"]))
    with pytest.raises(LabelStudioError, match=r"2 Label Studio projects .* are titled 'queue' \(ids 2, 3\)"):
        push_items(server, retail_items(1), "queue")
    server.create_project("foreign", "<View><Text name='text' value='$text'/></View>")
    with pytest.raises(LabelStudioError, match=r"'foreign' .*not a project made by nlumon"):
        push_items(server, retail_items(1), "foreign")


def annotation(result, *, cancelled=False, at="2026-03-02T10:00:00Z"):
    return {"result": result, "was_cancelled": cancelled, "updated_at": at}


def test_pull_keeps_tasks_with_a_submitted_annotation_and_says_why_others_are_left_out():
    server, items = FakeLabelStudio(), retail_items(6)
    project = push_items(server, items, "queue").project
    tasks = server.tasks_by_project[project.id]
    relabelled = copy.deepcopy(tasks[0]["predictions"][0]["result"])
    slot = next(r for r in relabelled if r["type"] == "labels")
    slot["value"]["labels"] = ["person"]
    tasks[0]["annotations"] = [annotation(relabelled)]
    tasks[1]["annotations"] = [annotation([], cancelled=True)]  # skipped
    tasks[2]["annotations"] = [annotation(tasks[2]["predictions"][0]["result"]),  # submitted, later skipped
                               annotation([], cancelled=True, at="2026-03-03T10:00:00Z")]
    tasks[3]["annotations"] = [annotation([])]  # submitted without choosing an intent
    # tasks[4] and tasks[5] were never opened
    pulled = pull_examples(server, "queue")
    assert (pulled.tasks, pulled.unannotated, pulled.cancelled, len(pulled.examples)) == (6, 2, 1, 2)
    assert pulled.source == f"human:label-studio:{project.id}"
    assert len(pulled.invalid) == 1 and "task 1003: expected exactly one intent" in pulled.invalid[0]
    first, second = pulled.examples
    assert first.text == items[0].text and first.tags != items[0].tags  # the annotator's labels, not the model's
    assert "B-person" in first.tags and second.tags == items[2].tags
    with pytest.raises(LabelStudioNotFound, match="no Label Studio project titled 'other'"):
        pull_examples(server, "other")


# -- the HTTP client: auth, errors, and a token that never shows ------------------------------------------------------
LEGACY = "c0ffee" * 6 + "beef"
PAT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


class FakeResponse:
    def __init__(self, status_code, body=None, text=None):
        self.status_code, self._body = status_code, body
        self.text = text if text is not None else json.dumps(body)

    def json(self):
        if self._body is None:
            raise ValueError("not JSON")
        return self._body


class FakeSession:
    """``requests.Session.request`` answering from ``routes``: (method, path) -> a response, or a callable."""

    def __init__(self, routes):
        self.routes, self.calls = routes, []

    def request(self, method, url, **kwargs):
        path = urlsplit(url).path
        self.calls.append((method, path, kwargs.get("headers", {}).get("Authorization"), kwargs.get("params")))
        answer = self.routes[(method, path)]
        return answer(kwargs) if callable(answer) else answer


def task_page(kwargs, total=150):
    page, size = kwargs["params"]["page"], kwargs["params"]["page_size"]
    ids = range((page - 1) * size, min(page * size, total))
    return FakeResponse(200, {"total": total, "tasks": [{"id": i, "data": {"item_id": f"i{i}"}} for i in ids]})


def test_a_legacy_token_is_sent_as_token_and_pages_are_followed():
    session = FakeSession({("GET", "/api/tasks"): task_page})
    client = LabelStudioClient("http://ls.test/", LEGACY, session=session)
    assert len(list(client.tasks(3, full=True))) == 150
    assert [(c[2], c[3]["page"], c[3]["fields"]) for c in session.calls] == [(f"Token {LEGACY}", 1, "all"),
                                                                              (f"Token {LEGACY}", 2, "all")]


def test_a_personal_access_token_is_traded_for_an_access_token_again_when_it_expires():
    accesses = iter(["access-1", "access-2"])
    answers = iter([FakeResponse(401, {"detail": "Token is expired"}), FakeResponse(200, {"count": 0, "results": []})])
    session = FakeSession({
        ("POST", "/api/token/refresh/"): lambda kw: FakeResponse(200, {"access": next(accesses)}),
        ("GET", "/api/projects"): lambda kw: next(answers),
    })
    assert LabelStudioClient("http://ls.test", PAT, session=session).projects("q") == []
    assert [(c[0], c[2]) for c in session.calls] == [("POST", None), ("GET", "Bearer access-1"),
                                                      ("POST", None), ("GET", "Bearer access-2")]


@pytest.mark.parametrize(("token", "status", "body", "error", "message"), [
    (LEGACY, 401, {"detail": "Invalid token."}, LabelStudioAuthError, "legacy token .*legacy tokens enabled"),
    (LEGACY, 403, {"detail": "forbidden"}, LabelStudioAuthError, "refused the legacy token"),
    (LEGACY, 404, {"detail": "No Project matches the given query."}, LabelStudioNotFound, "project 7 not found"),
    (LEGACY, 500, None, LabelStudioError, "answered 500 to GET /api/tasks: <html>oops"),
    (LEGACY, 200, None, LabelStudioError, "not JSON: is it a Label Studio server"),
    (PAT, 401, {"detail": "Token is invalid"}, LabelStudioAuthError, "refused the Personal Access Token"),
])
def test_failures_are_named_errors_that_never_quote_the_token(token, status, body, error, message):
    response = FakeResponse(status, body, text=None if body else f"<html>oops {token}</html>")
    session = FakeSession({("GET", "/api/tasks"): response, ("POST", "/api/token/refresh/"): response})
    client = LabelStudioClient("http://ls.test", token, session=session)
    with pytest.raises(error, match=message) as raised:
        list(client.tasks(7, full=False))
    assert token not in str(raised.value) and token not in repr(client)


def test_an_unreachable_server_is_a_clear_error_even_when_the_library_quotes_the_header(caplog):
    import requests

    def refuse(kwargs):
        raise requests.ConnectionError(f"Invalid header value {kwargs['headers']['Authorization']!r}")

    client = LabelStudioClient("http://u:pw@ls.test", LEGACY, session=FakeSession({("GET", "/api/projects"): refuse}))
    caplog.set_level(logging.DEBUG)
    redacted = r"cannot reach Label Studio at http://ls.test \(ConnectionError: .* 'Token \*\*\*'\)"
    with pytest.raises(LabelStudioUnreachable, match=redacted) as down:
        find_project(client, "q")
    assert LEGACY not in str(down.value) and LEGACY not in caplog.text and "pw" not in str(down.value)
    closed = LabelStudioClient(f"http://127.0.0.1:{free_port()}", LEGACY, timeout_s=5)  # a real refused connection
    with pytest.raises(LabelStudioUnreachable, match="Connection refused"):
        closed.projects("q")
    with pytest.raises(LabelStudioAuthError, match="no Label Studio API token"):
        LabelStudioClient("http://ls.test", "")
    with pytest.raises(LabelStudioAuthError, match="spaces or control characters") as bad:
        LabelStudioClient("http://ls.test", LEGACY + "\n")
    assert LEGACY not in str(bad.value)


def test_push_and_pull_log_no_token(caplog):
    tasks = []

    def list_tasks(kwargs):
        return FakeResponse(200, {"total": len(tasks), "tasks": tasks})

    def import_tasks(kwargs):
        tasks.extend({"id": n, **t, "annotations": []} for n, t in enumerate(kwargs["json"], start=len(tasks)))
        return FakeResponse(201, {"task_count": len(kwargs["json"])})

    session = FakeSession({
        ("GET", "/api/projects"): FakeResponse(200, {"count": 0, "results": []}),
        ("POST", "/api/projects"): lambda kw: FakeResponse(201, {"id": 4, "title": "q", **kw["json"]}),
        ("GET", "/api/tasks"): list_tasks, ("POST", "/api/projects/4/import"): import_tasks,
    })
    client = LabelStudioClient("http://ls.test", LEGACY, session=session)
    caplog.set_level(logging.DEBUG)
    assert push_items(client, retail_items(3), "q").pushed == 3
    session.routes[("GET", "/api/projects")] = FakeResponse(200, {"count": 1, "results": [
        {"id": 4, "title": "q", "label_config": "<View/>"}]})
    assert pull_examples(client, "q").unannotated == 3
    assert "pushed 3/3 task(s)" in caplog.text and LEGACY not in caplog.text


# -- the CLI ----------------------------------------------------------------------------------------------------------
def test_push_and_pull_commands_print_counts_and_write_examples_the_trainer_reads(tmp_path, monkeypatch):
    from model_runtime.data.extra import load_extra

    server = FakeLabelStudio()
    monkeypatch.setattr(labeling_cli, "_client", lambda settings, url: server)
    monkeypatch.setenv("NLUMON_MODEL__PACKAGE_PATH", str(tmp_path / "no-model"))
    items = retail_items(4)
    items_path = tmp_path / "items.jsonl"
    items_path.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in items))
    runner = CliRunner()
    pushed = runner.invoke(labeling_app, ["push", "--input", str(items_path), "--project", "q"])
    assert pushed.exit_code == 0, pushed.output
    assert "project 'q' (id 1, created): 4 task(s) pushed, 0 already there, 0 repeated" in pushed.output
    for task in server.tasks_by_project[1][:2]:
        task["annotations"] = [annotation(task["predictions"][0]["result"])]
    out = tmp_path / "human.jsonl"
    pulled = runner.invoke(labeling_app, ["pull", "--project", "q", "--out", str(out)])
    assert pulled.exit_code == 0, pulled.output
    assert "2 example(s) from 4 task(s)" in pulled.output and "2 without annotation" in pulled.output
    rows = load_extra(out)
    assert [(r.example.tags, r.source) for r in rows] == [(i.tags, "human:label-studio:1") for i in items[:2]]


def test_push_and_pull_fail_cleanly_without_a_server_or_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("NLUMON_CONFIG", raising=False)
    monkeypatch.delenv("NLUMON_LABEL_STUDIO__TOKEN", raising=False)
    monkeypatch.setenv("NLUMON_LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    runner = CliRunner()
    for command in ("push", "pull"):
        help_text = runner.invoke(labeling_app, [command, "--help"])
        assert help_text.exit_code == 0 and "--project" in help_text.output and "--url" in help_text.output
    monkeypatch.delenv("NLUMON_LABEL_STUDIO_TOKEN", raising=False)
    no_token = runner.invoke(labeling_app, ["pull", "--out", str(tmp_path / "x.jsonl")])
    assert no_token.exit_code == 1 and "no Label Studio API token" in no_token.output
    monkeypatch.setenv("NLUMON_LABEL_STUDIO_TOKEN", LEGACY)
    down = runner.invoke(labeling_app, ["pull", "--out", str(tmp_path / "x.jsonl")])
    assert down.exit_code == 1 and "cannot reach Label Studio" in down.output and LEGACY not in down.output
    assert isinstance(down.exception, SystemExit)  # a message, no traceback
    assert LEGACY not in repr(load_settings(None))
