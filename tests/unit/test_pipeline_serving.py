"""The worker's batch step with more than the champion: experiment arms, a shadow challenger, route decisions."""

from dataclasses import replace
from pathlib import Path

import pytest

from experiments.definition import Arm, Experiment, unit_hash
from nlumon.records import UtteranceEvent
from nlumon.settings import load_settings
from streams.features import PREDICTION_COLUMNS
from streams.model_service import ModelService
from streams.pipeline import SHADOW_COLUMNS, BatchPipeline, RawRecord
from streams.routing import ROUTES
from streams.serving import SHADOW_SALT, Lineup, Serving

TEXTS = ["add two cartons of milk to my cart", "is jordan on shift tomorrow", "where are the batteries",
         "call ann at 415-555-0134 about my order", "cancel my order please", "what time do you close"]


@pytest.fixture(scope="module")
def champion():
    from model_runtime.testing import cached_tiny_package

    settings = load_settings(None, model={"package_path": cached_tiny_package()})
    loaded = ModelService(settings.model).start()
    yield loaded
    loaded.runtime.close()


class FlipRuntime:
    """The real runtime, except that texts containing ``word`` get another intent (a challenger that differs)."""

    def __init__(self, runtime, word: str, fail: bool = False) -> None:
        self.runtime, self.word, self.fail = runtime, word, fail

    def predict(self, texts):
        if self.fail:
            raise RuntimeError("challenger crashed")
        predictions = self.runtime.predict(texts)
        return [replace(p, intent="flipped_intent", top_intents=("flipped_intent", *p.top_intents[1:]))
                if self.word in text else p for text, p in zip(texts, predictions, strict=True)]


def challenger_of(champion, word="order", fail=False):
    return replace(champion, runtime=FlipRuntime(champion.runtime, word, fail), version="challenger-1",
                   path=Path("/packages/challenger-1"))


def records(count=60, bad_every=0):
    out = []
    for index in range(count):
        session = f"session-{index % 20}"
        if bad_every and index % bad_every == 0:
            value = b'{"id": "broken"'
        else:
            value = UtteranceEvent.model_validate({
                "id": f"u{index}", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper", "session_id": session,
                "text": TEXTS[index % len(TEXTS)], "channel": "voice", "asr_confidence": 0.9,
            }).to_json()
        out.append(RawRecord(value, session.encode(), 0, index, "utterances", 1_700_000_000.0))
    return out


EXPERIMENT = Experiment(name="ab-1", arms=[Arm(name="control", package_path="models/current", share=0.5),
                                           Arm(name="treatment", package_path="models/new", share=0.5)])


def test_every_row_has_a_route_from_the_default_policy(champion):
    rows = BatchPipeline(load_settings(None)).process(records(), champion).rows["predictions"]
    assert rows and all(set(row) == set(PREDICTION_COLUMNS) for row in rows)
    assert all(row["route"] in ROUTES for row in rows)
    assert all(len(row["route_heads"]) == len(row["route_scores"]) for row in rows)
    assert all(row["experiment"] == "" and row["arm"] == "" for row in rows)


def test_no_policy_means_no_route(champion):
    settings = load_settings(None, routing={"policy_path": ""})
    rows = BatchPipeline(settings).process(records(), champion).rows["predictions"]
    assert {row["route"] for row in rows} == {""}


def test_each_session_is_served_by_its_arms_model(champion):
    challenger = challenger_of(champion)
    serving = Serving(champion, Lineup(experiment=EXPERIMENT, arms={"control": None, "treatment": challenger}))
    result = BatchPipeline(load_settings(None)).process(records(), serving)
    rows = result.rows["predictions"]
    assert [row["id"] for row in rows] == [f"u{i}" for i in range(60)]  # the batch's order, whatever the arms
    arms = {row["arm"] for row in rows}
    assert arms == {"control", "treatment"}, "20 sessions split 50/50 should reach both arms"
    for row in rows:
        assert row["experiment"] == "ab-1"
        assert row["arm"] == EXPERIMENT.arm_of(row["session_id"])
        assert row["model_version"] == (champion.version if row["arm"] == "control" else "challenger-1")
    flipped = {row["id"] for row in rows if row["intent"] == "flipped_intent"}
    assert flipped and all(next(r for r in rows if r["id"] == i)["arm"] == "treatment" for i in flipped)
    assert result.model_version == champion.version


def test_a_dead_letter_during_an_experiment_names_the_arm_of_its_key(champion):
    serving = Serving(champion, Lineup(experiment=EXPERIMENT, arms={"control": None, "treatment": None}))
    result = BatchPipeline(load_settings(None)).process(records(bad_every=7), serving)
    letters = result.rows["dead_letters"]
    assert len(letters) == 9
    for letter in letters:
        session = f"session-{letter['kafka_offset'] % 20}"
        assert letter["experiment"] == "ab-1" and letter["arm"] == EXPERIMENT.arm_of(session)


def test_a_stopped_experiment_serves_everyone_with_the_champion(champion):
    stopped = EXPERIMENT.model_copy(update={"status": "stopped"})
    arms = {"control": None, "treatment": challenger_of(champion)}
    serving = Serving(champion, Lineup(experiment=stopped, arms=arms))
    rows = BatchPipeline(load_settings(None)).process(records(), serving).rows["predictions"]
    assert {row["arm"] for row in rows} == {""} and {row["model_version"] for row in rows} == {champion.version}


def test_shadow_scores_its_share_of_sessions_beside_the_served_answer(champion):
    share = 0.5
    serving = Serving(champion, Lineup(shadow=challenger_of(champion), shadow_share=share))
    result = BatchPipeline(load_settings(None)).process(records(), serving)
    served = {row["id"]: row for row in result.rows["predictions"]}
    shadow = result.rows["shadow_predictions"]
    expected = {i for i, row in served.items() if unit_hash(SHADOW_SALT, row["session_id"]) < share}
    assert {row["id"] for row in shadow} == expected and 0 < len(expected) < 60
    for row in shadow:
        assert set(row) == set(SHADOW_COLUMNS)
        assert row["role"] == "shadow" and row["model_version"] == "challenger-1"
        assert row["champion_version"] == champion.version
        assert row["champion_intent"] == served[row["id"]]["intent"]
        assert row["intent_agrees"] == int(row["intent"] == row["champion_intent"])
        assert row["route_agrees"] == int(row["route"] == row["champion_route"])
    disagreeing = {row["id"] for row in shadow if not row["intent_agrees"]}
    assert disagreeing == {row["id"] for row in shadow if "order" in TEXTS[int(row["id"][1:]) % len(TEXTS)]}
    assert "415-555-0134" not in repr(shadow)
    assert all(row["model_version"] == champion.version for row in served.values())  # shadow publishes nothing


def test_a_failing_shadow_costs_only_its_own_rows(champion):
    plain = BatchPipeline(load_settings(None)).process(records(), champion)
    serving = Serving(champion, Lineup(shadow=challenger_of(champion, fail=True)))
    result = BatchPipeline(load_settings(None)).process(records(), serving)
    assert "challenger crashed" in result.shadow_error
    assert "shadow_predictions" not in result.rows and not result.dead_letters
    assert [r["intent"] for r in result.rows["predictions"]] == [r["intent"] for r in plain.rows["predictions"]]
