"""The SNIPS-trained CRF (labeling/snips_tagger) and its labeling function (labeling/annotation/lf_snips.py).

Shipped data and model are verified before use (a changed byte is refused), the model tags the obvious cases,
training is deterministic, the labeling function keeps the annotation contract, and no input makes it raise
(hypothesis fuzzes the tokens: control characters, lone surrogates, empty strings, very long tokens).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeling.annotation.base import LABELS, OTHER, PERSON, TIME, LabelingFunction, Utterance, Vote
from labeling.annotation.lf_snips import SnipsTagger
from labeling.snips_tagger import corpus, train
from labeling.snips_tagger.evaluate import bio_spans, evaluate_snips
from labeling.snips_tagger.tagger import (
    MANIFEST_FILE,
    MODEL_DIR,
    MODEL_FILE,
    ModelIntegrityError,
    default_model,
    load_model,
)


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    return sorted(bio_spans(tags))


def copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(MODEL_DIR, folder)
    return folder


# -- shipped data ---------------------------------------------------------------------------------------
def test_shipped_splits_verify_and_hold_only_known_tags():
    sizes = {split: len(corpus.load_split(split)) for split in corpus.SPLITS}
    assert sizes == {"train": 13084, "dev": 700, "test": 700}  # the published SNIPS split sizes
    for tokens, tags in corpus.load_split("test"):
        assert len(tokens) == len(tags) and set(tags) <= set(corpus.TAGS)


def test_a_changed_data_file_is_refused(tmp_path):
    shutil.copytree(corpus.DATA_DIR, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "test.jsonl.gz"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(corpus.CorpusIntegrityError, match="differs"):
        corpus.load_split("test", tmp_path)
    (tmp_path / corpus.CHECKSUMS).unlink()
    with pytest.raises(corpus.CorpusIntegrityError, match="missing"):
        corpus.load_split("dev", tmp_path)


@pytest.mark.parametrize(("tokens", "snips_tags", "expected"), [
    ("play adele".split(), ["O", "B-artist"], ["O", "B-person"]),
    ("add it to my playlist".split(), ["O", "O", "O", "B-playlist_owner", "O"], ["O"] * 5),
    ("add it to ines s playlist".split(), ["O", "O", "O", "B-playlist_owner", "I-playlist_owner", "O"],
     ["O", "O", "O", "B-person", "O", "O"]),
    ("weather in one minute".split(), ["O", "B-timeRange", "I-timeRange", "I-timeRange"],
     ["O", "B-time", "I-time", "I-time"]),
    ("songs from 1990 by the edge".split(), ["O", "O", "B-year", "O", "B-artist", "I-artist"],
     ["O", "O", "O", "O", "B-person", "I-person"]),
    ("play the album kim wilde".split(), ["O", "O", "O", "B-album", "I-album"],
     ["O", "O", "O", "B-title", "I-title"]),  # a title named after a person is no person
    ("a b".split(), ["B-artist", "B-artist"], ["B-person", "B-person"]),  # two adjacent spans stay two
])
def test_snips_slots_map_to_person_and_time_only_where_they_name_one(tokens, snips_tags, expected):
    assert corpus.map_tags(tokens, snips_tags) == expected


# -- shipped model --------------------------------------------------------------------------------------
def test_shipped_model_is_verified_and_cached_per_process():
    model = default_model()
    assert model is default_model()
    manifest = json.loads((MODEL_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert model.manifest["sha256"] == manifest["sha256"]
    assert (MODEL_DIR / MODEL_FILE).stat().st_size == manifest["size_bytes"] < 5_000_000


def test_a_changed_model_file_is_refused(tmp_path):
    folder = copy_model(tmp_path)
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_model(folder)


@pytest.mark.parametrize("change", ["no manifest", "no digest", "other features", "not json"])
def test_a_model_without_a_matching_manifest_is_refused(tmp_path, change):
    folder = copy_model(tmp_path)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if change == "no manifest":
        manifest_path.unlink()
    elif change == "not json":
        manifest_path.write_text("{", encoding="utf-8")
    else:
        if change == "no digest":
            del manifest["sha256"]
        else:
            manifest["feature_version"] = -1
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelIntegrityError):
        load_model(folder)


@pytest.mark.parametrize(("text", "expected"), [
    ("play music by taylor swift", [("person", 3, 5)]),
    ("book a table for tomorrow evening", [("time", 4, 6)]),
    ("add frank farian to my workout playlist", [("person", 1, 3)]),
    ("what will the weather be in one hour", [("time", 5, 8)]),  # SNIPS's time ranges hold the "in"
])
def test_model_tags_people_and_times(text, expected):
    assert spans(default_model().tag(text.split())) == expected


def test_model_keeps_its_span_f1_on_the_snips_test_split():
    scores = evaluate_snips(default_model(), corpus.load_split("test"))
    assert scores["person"]["f1"] > 0.85 and scores["time"]["f1"] > 0.9, scores


def test_marginals_are_probabilities():
    for probabilities in default_model().label_probabilities("ask ingrid to cover friday night".split()):
        assert all(0.0 <= p <= 1.0 for p in (probabilities.person, probabilities.time, probabilities.other))
        assert probabilities.person + probabilities.time + probabilities.other == pytest.approx(1.0)


# -- training -------------------------------------------------------------------------------------------
def test_training_is_deterministic_for_a_seed(tmp_path):
    sentences = corpus.load_split("train")
    config = train.TrainingConfig(limit=300, seed=5, max_iterations=40)
    first = train.train(sentences, tmp_path / "a", config)
    second = train.train(sentences, tmp_path / "b", config)
    other_seed = train.train(sentences, tmp_path / "c", train.TrainingConfig(limit=300, seed=6, max_iterations=40))
    assert first == second and first["training"]["sentences"] == 300
    assert (tmp_path / "a" / MODEL_FILE).read_bytes() == (tmp_path / "b" / MODEL_FILE).read_bytes()
    assert other_seed["sha256"] != first["sha256"]  # the seed does choose the subset and the name swaps
    models = [load_model(tmp_path / name) for name in ("a", "b")]
    for tokens, _ in corpus.load_split("dev")[:50]:
        assert models[0].tag(tokens) == models[1].tag(tokens)
        assert models[0].label_probabilities(tokens) == models[1].label_probabilities(tokens)


def test_name_swaps_keep_tags_and_change_only_person_words():
    import random

    sentences = corpus.load_split("train")[:200]
    for (tokens, tags), (new_tokens, new_tags) in zip(
            [s for s in sentences if any(t.endswith("-person") for t in s[1])],
            train.swap_names(sentences, 1, random.Random(0)), strict=True):
        assert new_tags == tags
        assert all(a == b for a, b, tag in zip(tokens, new_tokens, tags, strict=True) if not tag.endswith("-person"))


def test_training_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0 and "--out" in capsys.readouterr().out


# -- the labeling function ------------------------------------------------------------------------------
def labels_of(text: str) -> list[str | None]:
    return [vote.label if vote else None for vote in SnipsTagger().apply(Utterance(tuple(text.split())))]


def test_labeling_function_follows_the_protocol():
    function = SnipsTagger()
    assert isinstance(function, LabelingFunction) and function.name == "snips_tagger"
    assert function.apply(Utterance(())) == []


def test_labeling_function_votes_person_time_and_sure_o():
    assert labels_of("play music by taylor swift") == [OTHER, OTHER, OTHER, PERSON, PERSON]
    assert labels_of("book a table for tomorrow evening")[-2:] == [TIME, TIME]


def test_o_is_voted_only_on_words_the_model_knows():
    model = default_model()
    tokens = ("ask", "zxqwv", "to", "cover", "my", "shift")
    votes = SnipsTagger().apply(Utterance(tokens))
    assert not model.knows("zxqwv") and model.knows("my")
    assert votes[1] is None or votes[1].label != OTHER
    assert votes[4] is not None and votes[4].label == OTHER  # "my": known and surely no entity
    assert all(vote is None or vote.label != OTHER or model.knows(token)
               for token, vote in zip(tokens, votes, strict=True))


def test_confidence_is_the_marginal():
    tokens = tuple("play music by taylor swift".split())
    probabilities = default_model().label_probabilities(tokens)
    votes = SnipsTagger().apply(Utterance(tokens))
    assert votes[3].confidence == pytest.approx(probabilities[3].person)


def test_thresholds_decide_when_to_vote():
    tokens = tuple("play music by taylor swift".split())
    strict = SnipsTagger(entity_threshold=1.0, o_threshold=1.0).apply(Utterance(tokens))
    assert all(vote is None or vote.confidence == 1.0 for vote in strict)
    with pytest.raises(ValueError, match="thresholds"):
        SnipsTagger(o_threshold=0.0)


def check_votes(tokens: tuple[str, ...]) -> None:
    votes = SnipsTagger().apply(Utterance(tokens))
    assert len(votes) == len(tokens)
    assert all(vote is None or (isinstance(vote, Vote) and vote.label in LABELS and 0 < vote.confidence <= 1)
               for vote in votes)


@pytest.mark.parametrize("text", ["", "?", "ASK JORDAN!!! 7:30pm??", "jordan's shift tomorrow?", "ǅ ß ﬁ ١٢ 😀"])
def test_odd_text_gets_one_vote_or_abstention_per_token(text):
    check_votes(tuple(text.split()))


def test_three_hundred_tokens_and_huge_tokens_are_fine():
    check_votes(tuple(["ingrid", "tomorrow", "at", "5", "aisle", "7b"] * 50))
    check_votes(("x" * 100_000, "", " ", "\x00", "\ud800"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.characters(exclude_categories=()), max_size=30), max_size=40))
def test_no_tokens_make_the_labeling_function_raise(tokens):
    check_votes(tuple(tokens))
