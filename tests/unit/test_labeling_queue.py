"""Dedup by normalised text and the stratified daily budget."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from labeling.budget import select_within_budget, stratum
from labeling.flags import FlagContext, candidates
from labeling.items import LabelingItem, Reason, dedup, normalise_text

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(minutes=5))


def item(i, reason=Reason.OOD, assistant="shopper", priority=1.0, text=None):
    text = text or f"utterance number {i}"
    return LabelingItem(str(i), text, tuple(text.split()), "x", ("O",) * len(text.split()), (reason,), priority,
                        *WINDOW, "m1", assistant)


def test_dedup_keeps_the_highest_priority_copy_with_all_reasons_and_drops_seen_texts():
    copies = [
        item(1, Reason.SMALL_MARGIN, priority=1.2, text="Is Jordan on shift?"),
        item(2, Reason.BRAND_PERSON, priority=3.0, text="is jordan on  shift"),
        item(3, Reason.OOD, priority=2.5, text="do you sell kayaks"),
    ]
    kept = {i.id: i for i in dedup(copies, seen=[normalise_text("DO YOU SELL KAYAKS!")])}
    assert set(kept) == {"2"}
    assert kept["2"].reasons == (Reason.BRAND_PERSON, Reason.SMALL_MARGIN)


def test_a_burst_in_one_stratum_cannot_take_the_whole_budget():
    burst = [item(i, Reason.OOD, "shopper", priority=5.0) for i in range(1000)]
    others = (
        [item(2000 + i, Reason.SMALL_MARGIN, "associate", 1.0) for i in range(30)]
        + [item(3000 + i, Reason.BRAND_PERSON, "associate", 2.0) for i in range(5)]
        + [item(4000 + i, Reason.LOW_CONFIDENCE, "shopper", 1.5) for i in range(12)]
    )
    chosen = select_within_budget(burst + others, 40)
    per_stratum = Counter(stratum(i) for i in chosen)
    # Round-robin over 4 strata: 5 rounds exhaust the brand/person stratum (20 chosen), the other three
    # share the last 20 (6 full rounds = 18, then the two best-ranked strata take one more each).
    assert per_stratum == {
        (Reason.OOD, "shopper"): 12, (Reason.LOW_CONFIDENCE, "shopper"): 12,
        (Reason.SMALL_MARGIN, "associate"): 11, (Reason.BRAND_PERSON, "associate"): 5,
    }
    assert len({i.id for i in chosen}) == 40


def test_budget_edges_and_priority_order_within_a_stratum():
    items = [item(i, priority=float(i)) for i in range(10)]
    assert select_within_budget(items, 0) == []
    assert len(select_within_budget(items, 100)) == 10
    assert [i.id for i in select_within_budget(items, 3)] == ["9", "8", "7"]


def test_candidates_flag_score_and_dedup_one_window():
    rows = [
        {"id": "a", "assistant": "shopper", "model_version": "m1", "text_scrubbed": "do you sell kayaks",
         "intent": "find_product", "confidence": 0.9, "margin": 0.5, "is_ood": 1},
        {"id": "b", "assistant": "shopper", "model_version": "m1", "text_scrubbed": "Do you sell kayaks?",
         "intent": "find_product", "confidence": 0.3, "margin": 0.05, "is_ood": 1},
        {"id": "c", "assistant": "shopper", "model_version": "m1", "text_scrubbed": "where is the milk",
         "intent": "find_product", "confidence": 0.99, "margin": 0.9, "is_ood": 0},
    ]
    (only,) = candidates(rows, FlagContext(), WINDOW)
    assert only.id == "b" and only.reasons == (Reason.OOD, Reason.LOW_CONFIDENCE, Reason.SMALL_MARGIN)
    assert only.window_start == WINDOW[0] and only.model_version == "m1"
