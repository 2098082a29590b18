"""Extra labelled examples: the strict JSONL reader, the atomic writer, and how their weights become loss weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_runtime.batching import domain_weights, loss_weights
from model_runtime.data import extra
from model_runtime.data.example import Example
from model_runtime.data.extra import (
    ExtraExamplesError,
    Vocabulary,
    WeightedExample,
    load_extra,
    summarize,
    write_extra,
)

GOOD = {
    "tokens": ["is", "ana", "in", "tomorrow"],
    "tags": ["O", "B-person", "O", "B-date_time"],
    "intent": "check_shift",
    "assistant": "associate",
    "heads": {"frustration": "calm"},
    "source": "human:label-studio:3",
    "weight": 2.0,
}


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def test_a_good_file_loads_with_sources_weights_and_defaults(tmp_path):
    without_weight = {k: v for k, v in GOOD.items() if k not in ("weight", "heads")} | {"source": "auto:ws"}
    path = write_lines(tmp_path / "x.jsonl", [json.dumps(GOOD), "", json.dumps(without_weight)])
    rows = load_extra(path)
    assert [r.weight for r in rows] == [2.0, 1.0]
    assert [r.source for r in rows] == ["human:label-studio:3", "auto:ws"]
    assert rows[0].example.spans() == [("person", 1, 2), ("date_time", 3, 4)]
    assert rows[0].example.heads == {"frustration": "calm"} and rows[1].example.heads == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad JSON"),
        ("[" * 5000 + "]" * 5000, "refuses"),  # deep nesting: RecursionError inside the stdlib parser
        ('{"weight": ' + "9" * 5000 + "}", "refuses"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({**GOOD, "intent": "book_flight"}), "unknown intent 'book_flight'"),
        (json.dumps({**GOOD, "intent": "gift_registry"}), "unknown intent"),  # emerging: no output in the model
        (json.dumps({**GOOD, "intent": "add_to_cart"}), "belongs to \\['shopper'\\]"),
        (json.dumps({**GOOD, "assistant": "pharmacist"}), "unknown assistant"),
        (json.dumps({**GOOD, "tags": ["O", "B-employee", "O", "O"]}), "unknown slot type\\(s\\) \\['employee'\\]"),
        (json.dumps({**GOOD, "tags": ["O", "B-person", "O"]}), "4 tokens but 3 tags"),
        (json.dumps({**GOOD, "tags": ["O", "I-person", "O", "O"]}), "not valid BIO"),
        (json.dumps({**GOOD, "tags": ["O", "B-person", "I-date_time", "O"]}), "not valid BIO"),
        (json.dumps({**GOOD, "tags": ["O", "B-", "O", "O"]}), "not valid BIO"),
        (json.dumps({**GOOD, "weight": -1}), "weight must be > 0"),
        (json.dumps({**GOOD, "weight": 0}), "weight must be > 0"),
        (json.dumps({**GOOD, "weight": 1e9}), "weight must be > 0 and <= 100"),
        (json.dumps({**GOOD, "weight": True}), "weight must be a number"),
        (json.dumps({**GOOD, "weight": "1"}), "weight must be a number"),
        (json.dumps({**GOOD, "weight": float("nan")}), "weight must be > 0"),
        (json.dumps({**GOOD, "heads": {"mood": "calm"}}), "unknown head 'mood'"),
        (json.dumps({**GOOD, "heads": {"frustration": "livid"}}), "unknown label 'livid'"),
        (json.dumps({**GOOD, "source": ""}), "source"),
        (json.dumps({**GOOD, "source": "a b"}), "source"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "source"}), "missing field"),
        (json.dumps({**GOOD, "label": "x"}), "unknown field"),
        (json.dumps({**GOOD, "tokens": ["is", "ana smith", "in", "tomorrow"]}), "whitespace"),
        (json.dumps({**GOOD, "tokens": ["is", "ana\u0000", "in", "tomorrow"]}), "control"),
        (json.dumps({**GOOD, "tokens": ["is", "\ud800", "in", "tomorrow"]}), "control"),
        (json.dumps({**GOOD, "tokens": [], "tags": []}), "non-empty list"),
        (json.dumps({**GOOD, "tokens": ["a"] * 200, "tags": ["O"] * 200}), "at most 128"),
    ],
)
def test_a_hostile_line_is_refused_with_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), line])
    with pytest.raises(ExtraExamplesError, match=message) as raised:
        load_extra(path)
    assert f"{path}:2:" in str(raised.value)  # the first line is fine: the second is named


def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "huge.jsonl", [json.dumps({**GOOD, "source": "x" * (extra.MAX_LINE_BYTES + 10)})])
    with pytest.raises(ExtraExamplesError, match=r"huge\.jsonl:1: line longer than"):
        load_extra(path)
    monkeypatch.setattr(extra, "MAX_FILE_BYTES", 100)
    with pytest.raises(ExtraExamplesError, match="may hold 100"):
        load_extra(write_lines(tmp_path / "big.jsonl", [json.dumps(GOOD)] * 3))


def test_too_many_lines_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(extra, "MAX_LINES", 3)
    load_extra(write_lines(tmp_path / "ok.jsonl", [json.dumps(GOOD)] * 3))
    with pytest.raises(ExtraExamplesError, match="more than 3 lines"):
        load_extra(write_lines(tmp_path / "long.jsonl", [json.dumps(GOOD)] * 4))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExtraExamplesError, match="no such file"):
        load_extra(tmp_path / "nope.jsonl")


def test_another_corpus_brings_its_own_vocabulary(tmp_path):
    snips = Vocabulary.from_examples([Example(("play", "jazz"), ("O", "B-genre"), "PlayMusic", "snips")])
    row = {"tokens": ["play", "rock"], "tags": ["O", "B-genre"], "intent": "PlayMusic", "assistant": "snips",
           "source": "human:x"}
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(row)])
    assert load_extra(path, snips)[0].example.intent == "PlayMusic"
    with pytest.raises(ExtraExamplesError, match="unknown slot type"):
        load_extra(path)  # the retail vocabulary knows no genre (nor PlayMusic)


def test_writer_round_trips_and_refuses_what_the_reader_would(tmp_path):
    rows = load_extra(write_lines(tmp_path / "in.jsonl", [json.dumps(GOOD)]))
    rows.append(WeightedExample(Example(("add", "milk"), ("O", "B-product"), "add_to_cart", "shopper"), "auto:ws",
                                0.25, id="q-17"))
    target = tmp_path / "out" / "extra.jsonl"
    assert write_extra(target, rows) == 2
    assert load_extra(target) == rows
    assert target.stat().st_mode & 0o777 == 0o644
    bad = WeightedExample(Example(("hi",), ("O",), "book_flight", "shopper"), "auto:ws")
    with pytest.raises(ExtraExamplesError, match="row 2: unknown intent"):
        write_extra(target, [rows[0], bad])
    assert load_extra(target) == rows  # the earlier file is intact: nothing half-written
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_weighted_example_checks_its_own_weight_and_source():
    example = Example(("hi",), ("O",), "store_hours", "shopper")
    for weight in (0.0, -1.0, float("inf"), 101.0):
        with pytest.raises(ExtraExamplesError):
            WeightedExample(example, "auto:ws", weight)
    with pytest.raises(ExtraExamplesError):
        WeightedExample(example, "")


def test_summary_counts_per_source_and_assistant():
    shop = Example(("hi",), ("O",), "store_hours", "shopper")
    assoc = Example(("hi",), ("O",), "check_shift", "associate")
    summary = summarize([WeightedExample(assoc, "auto:ws", 0.5)] * 3 + [WeightedExample(shop, "human:ls", 1.0)])
    assert summary["per_assistant"] == {"associate": 3, "shopper": 1}
    assert summary["per_source"]["auto:ws"] == {"n": 3, "weight_sum": 1.5, "per_assistant": {"associate": 3}}
    assert summary["weight"] == {"min": 0.5, "max": 1.0, "mean": 0.625, "sum": 2.5}


def test_balance_gives_each_assistant_equal_total_and_extra_weights_multiply_within():
    shop = Example(("hi",), ("O",), "store_hours", "shopper")
    assoc = Example(("hi",), ("O",), "check_shift", "associate")
    examples = [shop] * 2 + [assoc] * 8  # auto-labelled associate logs outnumber the shopper's
    base = [1.0, 1.0] + [1.0] * 4 + [0.5] * 4
    weights = loss_weights(examples, base, domain_balance=True)
    assert weights[:2].sum() == pytest.approx(weights[2:].sum())
    assert weights[2] == pytest.approx(2 * weights[6])  # weight 1 counts twice weight 0.5 inside an assistant
    assert weights.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(domain_weights(examples), loss_weights(examples, None, True))  # no extras: as before
    unbalanced = loss_weights(examples, base, domain_balance=False)
    assert unbalanced[2:].sum() > 2 * unbalanced[:2].sum()  # the tilt that balance prevents
    with pytest.raises(ValueError, match="finite positive"):
        loss_weights(examples, [1.0] * 9 + [-1.0], domain_balance=True)


def test_training_with_extra_files_records_them_and_their_weights_reach_the_loss(tmp_path, monkeypatch):
    """The one real training run here (tiny random BERT, 200 generated examples, one epoch)."""
    import hashlib

    from typer.testing import CliRunner

    import model_runtime.train as train_module
    from model_runtime.cli import app
    from model_runtime.data.holdout import load_holdout
    from model_runtime.model import MultiTaskLoss
    from model_runtime.package import load_package
    from model_runtime.pipeline import load_corpus
    from model_runtime.testing import tiny_encoder

    def row(tokens, tags, intent, assistant, source, weight):
        return WeightedExample(Example(tuple(tokens), tuple(tags), intent, assistant), source, weight)

    auto = [row(["is", name, "in", "tomorrow"], ["O", "B-person", "O", "B-date_time"], "check_shift", "associate",
                "auto:weak-supervision", 0.5) for name in ("zorblat", "quixa", "vemund", "ilsabet", "drovan")]
    human = [row(["add", "flumox", "to", "my", "cart"], ["O", "B-product", "O", "O", "O"], "add_to_cart", "shopper",
                 "human:label-studio:3", 3.0)]
    leaked = load_holdout()[0]  # a holdout utterance must never train the model the holdout judges
    write_extra(tmp_path / "auto.jsonl", [*auto, WeightedExample(leaked, "auto:weak-supervision", 1.0)])
    write_extra(tmp_path / "human.jsonl", human)

    collated, weighed = [], []
    original_collate, original_losses = train_module.collate, MultiTaskLoss.task_losses

    def spy_collate(examples, encoder, config, example_weight=None):
        collated.append([(e.text, e.assistant, float(w)) for e, w in zip(examples, example_weight, strict=True)])
        return original_collate(examples, encoder, config, example_weight)

    def spy_losses(self, outputs, batch):
        weighed.append(batch["example_weight"].tolist())
        return original_losses(self, outputs, batch)

    monkeypatch.setattr(train_module, "collate", spy_collate)
    monkeypatch.setattr(MultiTaskLoss, "task_losses", spy_losses)
    encoder = tiny_encoder(tmp_path / "encoder")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model:\n  encoder: {encoder}\n  max_length: 32\n  heads: []\n"
        "train:\n  epochs: 1\n  batch_size: 32\n  learning_rate: 0.001\n  device: cpu\n  grad_cosine_every: 0\n"
    )
    out = tmp_path / "pkg"
    args = ["train", "--size", "200", "--seed", "3", "--out", str(out), "--config", str(config), "--no-verbose",
            "--extra", str(tmp_path / "auto.jsonl"), "--extra", str(tmp_path / "human.jsonl")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    training = load_package(out).manifest["training"]
    assert training["domain_balance"] == "base-mix"  # by default with extras: the base corpus's assistant shares
    auto_file, human_file = training["extra"]["files"]
    assert auto_file["sha256"] == hashlib.sha256((tmp_path / "auto.jsonl").read_bytes()).hexdigest()
    assert auto_file["rows"] == 6 and auto_file["dropped_holdout_overlap"] == 1 and auto_file["n"] == 5
    assert auto_file["per_source"]["auto:weak-supervision"]["per_assistant"] == {"associate": 5}
    assert human_file["weight"] == {"min": 3.0, "max": 3.0, "mean": 3.0, "sum": 3.0}
    assert training["extra"]["total"]["per_assistant"] == {"associate": 5, "shopper": 1}
    base_train, base_dev, _ = load_corpus("retail", 200, 3)
    data = load_package(out).manifest["training_data"]
    assert data["n_train"] == len(base_train) + 6 and data["n_dev"] == len(base_dev)  # train split only

    assert len(weighed) == len(collated)
    for got, batch in zip(weighed, collated, strict=True):  # what was collated is what the loss got (float32)
        np.testing.assert_allclose(got, [w for _, _, w in batch], rtol=1e-6)
    seen = {(text, assistant): w for batch in collated for text, assistant, w in batch}
    assert len(seen) >= len({(e.text, e.assistant) for e in base_train})  # one epoch: every example once
    assert leaked.text not in {text for text, _ in seen}
    base_associate = next(w for (t, a), w in seen.items() if a == "associate" and "zorblat" not in t)
    base_shopper = next(w for (t, a), w in seen.items() if a == "shopper" and "flumox" not in t)
    assert seen[("is zorblat in tomorrow", "associate")] == pytest.approx(0.5 * base_associate, rel=1e-5)
    assert seen[("add flumox to my cart", "shopper")] == pytest.approx(3.0 * base_shopper, rel=1e-5)
    every = [(a, w) for batch in collated for _, a, w in batch]  # one epoch: each train example once
    associate_share = sum(w for a, w in every if a == "associate") / sum(w for _, w in every)
    base_share = sum(e.assistant == "associate" for e in base_train) / len(base_train)
    assert associate_share == pytest.approx(base_share, rel=1e-4)  # the extras did not shift the mix
