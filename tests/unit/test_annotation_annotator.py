"""The annotator end to end without services: fake labeling functions and a fake champion, real aggregation,
routing and surrogates; and the privacy of what it writes."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.annotation.aggregate import MajorityVote, WeightedVote
from labeling.annotation.annotator import AUTO_SOURCE, Annotator, LogEvent, ModelOutput, gold_labels, merged_tags
from labeling.annotation.base import PERSON, TIME, Vote
from labeling.annotation.slice import eval_slice, fit_set
from labeling.annotation.surrogate import surrogate
from labeling.items import Reason
from monitor.annotate import append_examples, dedupe_examples, select_events
from nlumon.pii import find_pii

NAMES = {"ingrid", "okonkwo", "kwame", "jordan"}
TIMES = {"tomorrow", "monday", "tonight"}


class Names:
    name = "names"

    def apply(self, utterance):
        return [Vote(PERSON, 0.9) if t in NAMES else None for t in utterance.tokens]


class Times:
    name = "times"

    def apply(self, utterance):
        return [Vote(TIME, 0.9) if t in TIMES else None for t in utterance.tokens]


class Brands:
    """Votes brand on 'jordan' (so 'jordan' is a person/brand conflict)."""

    name = "brands"

    def apply(self, utterance):
        return [Vote("brand", 0.9) if t == "jordan" else None for t in utterance.tokens]


class Broken:
    name = "broken"

    def apply(self, utterance):
        raise RuntimeError("boom")


def champion(texts):
    return [ModelOutput("check_shift", 0.95, ("O",) * len(t.split()), (0.8,) * len(t.split()), "m1") for t in texts]


def event(i: int, text: str, session: str = "s") -> LogEvent:
    return LogEvent(f"e{i}", text, "associate", f"{session}{i % 4}", datetime(2026, 12, 1, tzinfo=UTC))


def annotator(**options) -> Annotator:
    return Annotator([Names(), Times(), Brands()], MajorityVote(), predict=champion, seed=3, **options)


def test_examples_carry_surrogates_and_aggregate_spans() -> None:
    batch = annotator(audit_rate=0.0).annotate([event(1, "is ingrid okonkwo in tomorrow")])
    [example] = batch.examples
    assert example["tags"] == ["O", "B-person", "I-person", "O", "B-date_time"]
    assert example["tokens"][1:3] != ["ingrid", "okonkwo"]  # the person is gone, the entity stays
    assert example["tokens"][0] == "is" and example["tokens"][4] == "tomorrow"
    assert example["source"] == AUTO_SOURCE and example["intent"] == "check_shift"
    assert batch.person_sessions == {"ingrid okonkwo": {"s1"}}
    assert batch.counts["auto_labelled"] == 1


def test_person_brand_conflict_goes_to_the_queue_with_every_vote() -> None:
    batch = annotator(audit_rate=0.0).annotate([event(1, "is jordan on shift tonight")])
    assert not batch.examples
    [item] = batch.queue
    assert item.reasons == (Reason.ANNOTATION_AMBIGUOUS,)
    assert set(item.votes) == {"names", "times", "brands"}
    assert "jordan" not in item.text  # surrogate or placeholder, never the raw name


def test_audit_sample_is_queued_and_still_auto_labelled() -> None:
    events = [event(i, f"is kwame in monday number {i}") for i in range(200)]
    batch = annotator(audit_rate=0.25).annotate(events)
    audited = [item for item in batch.queue if Reason.AUDIT in item.reasons]
    assert 25 <= len(audited) <= 80
    assert len(batch.examples) == 200
    again = annotator(audit_rate=0.25).annotate(events)
    assert [i.id for i in again.queue] == [i.id for i in batch.queue]  # the draw is fixed by (seed, id)


def test_unsure_intent_and_missing_champion_make_no_example() -> None:
    def unsure(texts):
        return [ModelOutput("x", 0.2, ("O",) * len(t.split()), (0.5,) * len(t.split()), "m") for t in texts]

    low = Annotator([Names(), Times()], MajorityVote(), predict=unsure, audit_rate=0.0).annotate(
        [event(1, "is kwame in monday")])
    none = Annotator([Names(), Times()], MajorityVote(), audit_rate=0.0).annotate([event(1, "is kwame in monday")])
    assert not low.examples and low.counts["skipped:intent_unsure"] == 1
    assert not none.examples and none.counts["skipped:no_champion"] == 1


def test_an_utterance_with_other_personal_data_is_dropped() -> None:
    batch = annotator(audit_rate=0.0).annotate([event(1, "ask kwame to call 415 555 0134 tomorrow")])
    assert not batch.examples
    assert batch.counts["dropped_pii:phone"] == 1


def test_a_failing_function_abstains() -> None:
    batch = Annotator([Names(), Times(), Broken()], MajorityVote(), predict=champion, audit_rate=0.0).annotate(
        [event(1, "is kwame in monday")])
    assert batch.examples[0]["tags"] == ["O", "B-person", "O", "B-date_time"]


def test_weighted_vote_fitted_on_the_fit_set_beats_no_fit_on_unseen_gold() -> None:
    fit = fit_set(120, seed=5)
    fitted = Annotator([Names(), Times(), Brands()], WeightedVote()).fit(fit)
    gold = eval_slice(60, seed=6, snips=0)
    labels = fitted.label([" ".join(g.tokens) for g in gold], [g.assistant for g in gold])
    assert len(labels) == len(gold) and all(len(a) == len(g.tokens) for a, g in zip(labels, gold, strict=True))
    assert fitted.aggregator.weights_["names"][PERSON] > 0


def test_merged_tags_keep_the_models_other_slots() -> None:
    assert merged_tags(["B-quantity", "B-brand", "I-brand"], ["O", "person", "person"]) == (
        "B-quantity", "B-person", "I-person")
    assert merged_tags(["B-person", "I-person"], ["O", "person"]) == ("O", "B-person")
    assert gold_labels(["B-date_time", "O"]) == ("time", "O")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12).filter(lambda t: t.split() == [t]), min_size=1, max_size=12),
       st.integers(0, 2**32))
def test_surrogate_never_keeps_a_person_word_or_raises(tokens: list[str], seed: int) -> None:
    tags = ["B-person" if i % 3 == 0 else "O" for i in range(len(tokens))]
    result = surrogate(tokens, tags, random.Random(seed))
    assert len(result.tokens) == len(tokens) and result.tags == tuple(tags)
    if result.ok:
        for index, tag in enumerate(tags):
            if tag == "B-person" and any(c.isalpha() for c in tokens[index]):
                assert result.tokens[index].casefold() != tokens[index].casefold()
        assert not find_pii(" ".join(t for t, g in zip(result.tokens, tags, strict=True) if g == "O"))


@pytest.mark.parametrize("text", [
    "email ann dot lee at gmail dot com about maria", "card 4111 1111 1111 1111 for kwame",
    "ship to 500 n main ave apt 4 for kwame",
])
def test_surrogate_refuses_utterances_with_other_personal_data(text: str) -> None:
    tokens = text.split()
    tags = ["B-person" if t in ("maria", "kwame") else "O" for t in tokens]
    assert not surrogate(tokens, tags, random.Random(1)).ok


def test_select_events_reads_only_cleared_events_of_the_assistants() -> None:
    def raw(i, cleared, assistant="associate"):
        return json.dumps({"id": f"i{i}", "ts": "2026-12-01T10:00:00Z", "assistant": assistant, "session_id": "s",
                           "text": "is kwame in", "channel": "voice", "cleared_for_analysis": cleared}).encode()

    counts = __import__("collections").Counter()
    events = select_events([raw(1, True), raw(2, False), raw(3, True, "shopper"), b"{bad", None,
                            raw(4, "yes")], ("associate",), counts)
    assert [e.id for e in events] == ["i1"]
    assert counts == {"skipped:not_cleared": 1, "skipped:other_assistant": 1, "skipped:invalid": 3}


def test_dedupe_keeps_one_line_per_event(tmp_path) -> None:
    path = tmp_path / "auto.jsonl"
    append_examples(path, [{"id": "a", "tokens": ["x"]}, {"id": "b", "tokens": ["y"]}])
    append_examples(path, [{"id": "a", "tokens": ["z"]}])  # the same event again, other surrogates
    assert dedupe_examples(path) == 1
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b"]
