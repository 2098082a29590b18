"""The fixed production holdout: checksum verified, both assistants, person and time slots, unlike the generator."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest

from model_runtime.data import lexicon
from model_runtime.data.holdout import (
    DEFAULT_HOLDOUT,
    HOLDOUT_DIR,
    MANIFEST,
    HoldoutIntegrityError,
    holdout_versions,
    load_holdout,
    read_holdout,
)
from model_runtime.data.holdout import build as holdout_build
from model_runtime.data.retail import SLOT_TYPES, TRAINED_INTENTS, GeneratorConfig, generate


@pytest.fixture(scope="module")
def holdout():
    return read_holdout(DEFAULT_HOLDOUT)


def spans_of(examples, kind):
    return [" ".join(e.tokens[a:b]) for e in examples for t, a, b in e.spans() if t == kind]


def test_default_version_is_listed_and_loads_verified(holdout):
    assert DEFAULT_HOLDOUT == "production-v1" and DEFAULT_HOLDOUT in holdout_versions()
    assert holdout.sha256 == json.loads((HOLDOUT_DIR / MANIFEST).read_text())[DEFAULT_HOLDOUT]["sha256"]
    assert len(holdout.examples) == holdout.info["n"] == 600
    assert load_holdout() == list(holdout.examples)
    assert holdout.info["generated"] is True and holdout.info["human_verified"] is False  # honest about it


def test_a_changed_file_is_refused(tmp_path):
    root = tmp_path / "holdout"
    shutil.copytree(HOLDOUT_DIR, root)
    path = root / f"{DEFAULT_HOLDOUT}.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"check_shift"', b'"find_coworker"', 1))  # one label edited
    with pytest.raises(HoldoutIntegrityError, match="does not match"):
        load_holdout(DEFAULT_HOLDOUT, root)


def test_unknown_versions_and_paths_are_refused(tmp_path):
    with pytest.raises(HoldoutIntegrityError, match="unknown holdout version"):
        load_holdout("production-v0")
    root = tmp_path / "holdout"
    root.mkdir()
    (root / MANIFEST).write_text(json.dumps({"evil": {"file": "../../etc/passwd", "sha256": "0" * 64, "n": 1}}))
    with pytest.raises(HoldoutIntegrityError, match="names no plain file"):
        load_holdout("evil", root)


def test_both_assistants_and_every_trained_intent_are_present(holdout):
    examples = holdout.examples
    per_assistant = Counter(e.assistant for e in examples)
    assert per_assistant == {"shopper": 300, "associate": 300}
    assert set(Counter(e.intent for e in examples)) == set(TRAINED_INTENTS)  # only intents the model knows
    assert {t for e in examples for t, _, _ in e.spans()} <= set(SLOT_TYPES)
    assert holdout.describe()["per_assistant"] == {"associate": 300, "shopper": 300}


def test_person_and_time_slots_with_new_names_and_brand_names(holdout):
    examples = holdout.examples
    people, times = spans_of(examples, "person"), spans_of(examples, "date_time")
    assert len(people) >= 60 and len(times) >= 100
    known = set(lexicon.PEOPLE_FIRST) | set(lexicon.UNSEEN_PEOPLE_FIRST)
    first_names = Counter(p.split()[0] for p in people)
    new = [name for name in first_names if name not in known]
    assert len(new) >= 20  # names the training lexicon has never seen
    brands = " ".join(spans_of(examples, "brand")).split()
    brand_named = [name for name in first_names if name in brands]  # "calvin" here, "calvin klein" there
    assert len(brand_named) >= 4
    assert set(times) - set(lexicon.DATE_TIMES), "time expressions the generator never says"


def test_text_is_asr_style(holdout):
    for example in holdout.examples:
        assert re.fullmatch(r"[a-z0-9 ]+", example.text), example.text
    assert any(e.tokens[0] in ("um", "uh") or "um" in e.tokens for e in holdout.examples)


def test_no_holdout_text_is_a_text_of_a_default_generator_run(holdout):
    generated = {e.text for e in generate(GeneratorConfig(n=20000, seed=13))}  # the default training corpus
    overlap = generated & {e.text for e in holdout.examples}
    assert not overlap, sorted(overlap)[:5]


def test_the_committed_file_is_what_the_committed_builder_makes():
    assert holdout_build.main(["--check"]) == 0
    rows = holdout_build.build()
    assert all(not holdout_build.generator_can_say(" ".join(r["tokens"])) for r in rows[:50])
