"""The simulated assistant's outcome model: rates as configured, deterministic, better model => better outcomes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from nlumon.records import parse_outcome
from streams.outcome_sim import (
    PURCHASE_INTENTS,
    KindOdds,
    OutcomeModel,
    OutcomeSimulator,
    TruthItem,
    draw,
    load_truth,
    outcome_id,
)
from streams.replay import save_truth
from streams.scenarios import scenario_events

N = 10_000
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RANK = {"task_completed": 0, "rephrased": 1, "escalated": 2, "abandoned": 3}


def population(intent: str = "add_to_cart", assistant: str = "shopper", n: int = N) -> dict[str, TruthItem]:
    return {f"u{i}": TruthItem(intent, assistant, f"s{i // 5}", T0) for i in range(n)}


def run(truth: dict[str, TruthItem], *, right: bool, model: OutcomeModel | None = None, seed: int = 1,
        **prediction: object) -> list[list]:
    simulator = OutcomeSimulator(truth, model, seed=seed)
    return [simulator.outcomes_for({"id": uid, "intent": item.intent if right else "track_delivery", **prediction})
            for uid, item in truth.items()]


def kind_rates(outcomes: list[list]) -> dict[str, float]:
    counts = Counter(events[0].kind for events in outcomes)
    return {kind: counts[kind] / len(outcomes) for kind in RANK}


def close(observed: float, expected: float) -> bool:
    return abs(observed - expected) < 0.02  # 10k draws: 4 standard errors of a rate near 0.5 is 0.02


def test_right_and_wrong_predictions_get_the_configured_outcome_rates():
    model = OutcomeModel()
    for right, odds in ((True, model.right), (False, model.wrong)):
        rates = kind_rates(run(population(), right=right))
        expected = {"task_completed": odds.task_completed, "rephrased": odds.rephrased,
                    "escalated": odds.escalated, "abandoned": odds.abandoned}
        assert all(close(rates[kind], expected[kind]) for kind in RANK), (right, rates, expected)
    assert kind_rates(run(population(), right=True))["task_completed"] > 0.7 > 0.25 > kind_rates(
        run(population(), right=False))["task_completed"]


def test_other_odds_give_other_rates():
    model = OutcomeModel(right=KindOdds(task_completed=0.5, rephrased=0.5, escalated=0.0))
    rates = kind_rates(run(population(), right=True, model=model))
    assert close(rates["task_completed"], 0.5) and close(rates["rephrased"], 0.5)
    assert rates["escalated"] == rates["abandoned"] == 0.0


def test_the_route_changes_the_outcome():
    clarified = kind_rates(run(population(), right=True, route="clarify"))
    # 60 % are asked to rephrase; the other 40 % follow the right odds (10 % rephrase)
    assert close(clarified["rephrased"], 0.6 + 0.4 * 0.10)
    assert close(clarified["task_completed"], 0.4 * 0.75)
    escalated = kind_rates(run(population(), right=True, route="escalate"))
    assert close(escalated["escalated"], 0.9 + 0.1 * 0.03)
    fulfilled = kind_rates(run(population(), right=True, route="fulfil"))
    assert fulfilled == kind_rates(run(population(), right=True, route=""))  # only clarify and escalate act


def test_store_staff_abandon_less_than_shoppers():
    shopper = kind_rates(run(population("check_stock", "shopper"), right=False))
    associate = kind_rates(run(population("check_stock", "associate"), right=False))
    assert close(associate["abandoned"], 0.25 * 0.5) and close(shopper["abandoned"], 0.25)
    assert close(associate["rephrased"], 0.45 + 0.25 * 0.5)
    assert associate["task_completed"] == shopper["task_completed"]


def test_completed_purchases_of_shoppers_convert_with_a_value():
    outcomes = run(population("add_to_cart"), right=True)
    completed = [events for events in outcomes if events[0].kind == "task_completed"]
    pairs = [events for events in completed if len(events) == 2]
    assert close(len(pairs) / len(completed), 0.35)
    assert all(converted.kind == "converted" and 5.0 <= converted.value <= 150.0 for _, converted in pairs)
    assert all(converted.ts > done.ts and converted.utterance_id == done.utterance_id for done, converted in pairs)
    assert all(len(events) == 1 for events in outcomes if events[0].kind != "task_completed")
    assert "check_order_status" not in PURCHASE_INTENTS
    for intent, assistant in (("check_order_status", "shopper"), ("add_to_cart", "associate")):
        assert all(len(events) == 1 for events in run(population(intent, assistant, 2000), right=True))


def test_satisfaction_is_high_when_the_model_was_right_and_the_task_done():
    right = [events[0] for events in run(population(), right=True)]
    wrong = [events[0] for events in run(population(), right=False)]
    rated = [event for event in right + wrong if event.satisfaction is not None]
    assert close(len(rated) / (2 * N), 0.4)

    def scores(events, completed: bool) -> set[int]:
        return {e.satisfaction for e in events if (e.kind == "task_completed") == completed and e.satisfaction}

    assert scores(right, completed=True) == {4, 5}
    assert scores(right, completed=False) == scores(wrong, completed=False) == {1, 2, 3}
    assert scores(wrong, completed=True) == {1, 2, 3}  # done, but only after the assistant got it wrong


def test_the_same_prediction_always_gets_the_same_outcome_and_the_seed_changes_it():
    truth = population(n=2000)
    first, again = run(truth, right=False, seed=5), run(truth, right=False, seed=5)
    assert first == again
    other = run(truth, right=False, seed=6)
    assert first != other
    changed = sum(a[0].kind != b[0].kind for a, b in zip(first, other, strict=True))
    assert changed > 500  # a new seed draws anew, it does not shift a few
    assert [events[0].id for events in first] == [events[0].id for events in other]  # ids do not depend on the seed
    assert draw(5, "u1", "kind") == draw(5, "u1", "kind") != draw(5, "u1", "delay")


@pytest.mark.parametrize(("intent", "assistant"), [("add_to_cart", "shopper"), ("check_stock", "associate")])
def test_a_right_prediction_never_gets_a_worse_outcome_than_a_wrong_one(intent: str, assistant: str):
    truth = population(intent, assistant)
    right, wrong = run(truth, right=True), run(truth, right=False)
    pairs = [(RANK[r[0].kind], RANK[w[0].kind]) for r, w in zip(right, wrong, strict=True)]
    assert all(better <= worse for better, worse in pairs)
    assert sum(better < worse for better, worse in pairs) > 0.45 * N  # and it is strictly better for many


def test_an_out_of_scope_query_is_handled_right_when_flagged_ood():
    truth = {"u1": TruthItem("oos", "shopper", "s1", T0)}
    simulator = OutcomeSimulator(truth)
    assert simulator.is_right({"id": "u1", "intent": "store_hours", "is_ood": 1}, truth["u1"])
    assert not simulator.is_right({"id": "u1", "intent": "store_hours", "is_ood": 0}, truth["u1"])
    assert simulator.outcomes_for({"id": "other", "intent": "oos"}) == []  # not in the truth: not ours


def test_every_simulated_event_passes_the_wire_contract():
    for events in run(population(n=2000), right=True) + run(population(n=2000), right=False, route="clarify"):
        for event in events:
            assert parse_outcome(event.to_json()) == event
            assert event.utterance_id and event.session_id.startswith("s") and event.ts > T0
    assert outcome_id("u1", "outcome") != outcome_id("u1", "converted") and len(outcome_id("u" * 128, "x")) < 40


def test_odds_that_do_not_sum_to_at_most_one_are_refused():
    with pytest.raises(ValueError, match="sum to at most 1"):
        KindOdds(task_completed=0.8, rephrased=0.3, escalated=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        KindOdds(task_completed=-0.1, rephrased=0.3, escalated=0.0)


def test_the_truth_of_a_replay_is_read_back_without_its_malformed_records(tmp_path):
    events = list(scenario_events("malformed", 300, seed=4, ood_texts=lambda: ["what is the meaning of life"]))
    timeline = {"scenario": "malformed"}
    sent = list(save_truth(tmp_path, timeline, events))
    assert len(sent) == 300
    truth = load_truth(tmp_path / "truth.jsonl")
    good = [e.truth for e in events if e.truth["kind"] != "malformed"]
    assert 200 < len(truth) == len(good) < 300
    first = truth[good[0]["id"]]
    assert (first.intent, first.assistant, first.session_id) == (good[0]["intent"], good[0]["assistant"],
                                                                 good[0]["session_id"])
    assert first.ts == datetime.fromisoformat(good[0]["ts"])
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({k: v for k, v in good[0].items() if k != "session_id"}) + "\n")
    with pytest.raises(ValueError, match="no session_id"):
        load_truth(old)
