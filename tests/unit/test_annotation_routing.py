"""Routing annotated utterances: close calls and person/brand conflicts go to humans, a seeded random share of
the confident rest is audited, everything else is auto-labelled."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from labeling.annotation.aggregate import MajorityVote, TokenDecision, WeightedVote
from labeling.annotation.base import Vote
from labeling.annotation.routing import (
    DEFAULT_AUDIT_RATE,
    AnnotatedUtterance,
    ambiguous_tokens,
    is_ambiguous,
    route,
)
from labeling.items import LabelingItem, Reason

WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 1, tzinfo=UTC))
NAMES = ("gazetteer", "cue_words", "model_tags", "brand_list")
P, B, T, NO = (Vote(label, 0.9) for label in ("person", "brand", "time", "O"))


def decision(label, runner_up=None, **support):
    ranked = sorted(support.values(), reverse=True)
    margin = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
    return TokenDecision(label, support[label], runner_up, margin, support)


def annotated(uid: str, votes, aggregator=None, tokens=("is", "jordan", "in", "tomorrow")) -> AnnotatedUtterance:
    aggregator = aggregator or MajorityVote().fit([], NAMES)
    return AnnotatedUtterance(uid, tuple(tokens), NAMES, votes, aggregator.predict(votes), "check_schedule",
                              "associate", "m7", confidence=0.8)


CONFIDENT = [[None, P, None, T], [None, P, None, T], [None, P, None, T], [NO, None, None, None]]
PERSON_OR_BRAND = [[None, P, None, T], [None, P, None, T], [None, B, None, None], [None, B, None, None]]


@pytest.mark.parametrize(
    ("decisions", "ambiguous"),
    [
        ([decision("person", "brand", person=0.55, brand=0.45)], True),  # two entities, close
        ([decision("O", "person", O=0.55, person=0.45)], True),  # a target type at stake
        ([decision("O", "brand", O=0.55, brand=0.45)], False),  # O or brand: not worth a human
        ([decision("time", "O", time=0.9, O=0.1)], False),
        ([decision("person", "brand", person=0.6, brand=0.3, O=0.1)], True),  # not close, but a conflict
        ([decision("person", "O", person=0.7, brand=0.2, O=0.1)], False),  # brand support too small
    ],
)
def test_close_calls_that_matter_and_person_brand_conflicts_are_ambiguous(decisions, ambiguous):
    assert is_ambiguous(decisions) is ambiguous


def test_thresholds_move_the_line():
    conflict = [decision("person", "brand", person=0.6, brand=0.3, O=0.1)]
    assert not is_ambiguous(conflict, margin_threshold=0.25, min_conflict_support=0.35)
    assert is_ambiguous(conflict, margin_threshold=0.35, min_conflict_support=0.35)


def test_a_person_brand_conflict_among_real_votes_is_routed_with_every_vote():
    conflict, sure = annotated("u1", PERSON_OR_BRAND), annotated("u2", CONFIDENT)
    assert ambiguous_tokens(conflict.decisions) == [1] and not is_ambiguous(sure.decisions)
    routing = route([conflict, sure], WINDOW, audit_rate=0.0)
    [item] = routing.items
    assert item.id == "annotation-u1" and item.reasons == (Reason.ANNOTATION_AMBIGUOUS,)
    assert item.votes == {"gazetteer": (None, "person", None, "time"), "cue_words": (None, "person", None, "time"),
                          "model_tags": (None, "brand", None, None), "brand_list": (None, "brand", None, None)}
    assert item.tags == ("O", "O", "O", "B-date_time")  # the 2-2 tie is O until a human decides
    assert (item.intent, item.assistant, item.model_version, item.confidence) == ("check_schedule", "associate",
                                                                                  "m7", 0.8)
    assert routing.auto_labelled == ["u2"] and routing.ambiguous == [item] and routing.audited == []
    assert LabelingItem.from_dict(item.to_dict()) == item


def test_the_weighted_vote_also_routes_the_conflict():
    model = WeightedVote().fit([], NAMES)
    assert [i.id for i in route([annotated("u1", PERSON_OR_BRAND, model)], WINDOW).ambiguous] == ["annotation-u1"]
    assert route([annotated("u2", CONFIDENT, model)], WINDOW, audit_rate=0.0).items == []


def test_a_closer_call_ranks_higher():
    votes_3_1 = [[P], [P], [P], [B]]  # shares 0.75 / 0.25: a conflict, the aggregate leaning person
    votes_2_2 = [[P], [P], [B], [B]]  # a tie
    items = route([annotated("a", votes_3_1, tokens=("jordan",)), annotated("b", votes_2_2, tokens=("jordan",))],
                  WINDOW).items
    assert [item.id for item in items] == ["annotation-b", "annotation-a"]
    assert items[0].priority > items[1].priority


@pytest.fixture(scope="module")
def confident_batch():
    return [annotated(f"u{i}", CONFIDENT) for i in range(20_000)]


def test_the_audit_share_is_the_rate_and_the_draw_is_fixed_by_seed(confident_batch):
    first = route(confident_batch, WINDOW, seed=7)
    audited = {item.id for item in first.audited}
    expected, spread = 20_000 * DEFAULT_AUDIT_RATE, (20_000 * DEFAULT_AUDIT_RATE * (1 - DEFAULT_AUDIT_RATE)) ** 0.5
    assert abs(len(audited) - expected) < 4 * spread, len(audited)
    assert all(item.reasons == (Reason.AUDIT,) and item.priority == 1.0 for item in first.audited)
    assert len(first.auto_labelled) == 20_000 and first.ambiguous == []
    shuffled = confident_batch[:]
    random.Random(1).shuffle(shuffled)
    assert {item.id for item in route(shuffled, WINDOW, seed=7).audited} == audited  # order does not matter
    other_seed = {item.id for item in route(confident_batch, WINDOW, seed=8).audited}
    assert other_seed != audited and abs(len(other_seed) - expected) < 4 * spread


def test_ambiguous_utterances_are_never_audited():
    batch = [annotated(f"u{i}", PERSON_OR_BRAND) for i in range(200)]
    routing = route(batch, WINDOW, audit_rate=1.0)
    assert len(routing.ambiguous) == 200 and routing.audited == [] and routing.auto_labelled == []


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="audit_rate"):
        route([], WINDOW, audit_rate=1.5)
    with pytest.raises(ValueError, match="4 tokens, votes on 3"):
        annotated("u1", [[None] * 3] * 4)
