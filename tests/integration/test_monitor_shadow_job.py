"""Route mix and shadow disagreement through the monitor job on the real ClickHouse.

Six 5-minute windows of ``predictions`` rows with route decisions and one ``shadow_predictions`` row per
prediction (the rows a worker with a routing policy and a shadow challenger stores; written here directly so
that the disagreement of every window is known exactly). In the first four windows the challenger disagrees
on 5 % of the intents; in the last two it also renames most of the shopper's ``track_order`` utterances and
routes every tenth utterance differently. One ``MonitorJob.run_once`` with the labeling sink as hand-off scores
them all; the test checks ``route_windows``, ``shadow_windows``, the alert points and the labeling queue.

Every run uses its own random day in the 1990s and random words in its texts, so reruns never mix.
Reference: the tiny test package (its sample is smaller than a drift test's minimum, so the windows score
without drift tests: this test is about the route mix and the shadow).
"""

from __future__ import annotations

import random
import statistics
import string
from datetime import datetime, timedelta

import pytest

from model_runtime.package import load_package
from monitor.alerting import metric_points
from monitor.job import MonitorJob
from monitor.labeling_sink import LabelingSink
from monitor.reference import package_rows
from monitor.storage import insert_rows
from nlumon.schema import connect
from tests.conftest import make_test_settings
from tests.helpers import tiny_model_settings

pytestmark = pytest.mark.integration
WINDOWS, ROWS, WINDOW_S = 6, 300, 300
JUMP_FROM = 4  # windows 4 and 5: the challenger renames track_order and reroutes
SHOPPER_INTENTS = ("track_order", "buy_product", "return_item")
ASSOCIATE_INTENTS = ("check_schedule", "swap_shift")
CHALLENGER = "challenger-test-1"
PREDICTION_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "model_version", "text_scrubbed", "intent", "confidence",
    "margin", "entropy", "energy", "ood_score", "is_ood", "token_count", "unk_rate", "slot_types", "slot_values",
    "slot_confidences", "embedding_sketch", "row_version", "route", "route_heads", "route_scores",
)
SHADOW_COLUMNS = (
    "id", "ts", "ingested_at", "assistant", "session_id", "role", "model_version", "champion_version", "intent",
    "confidence", "ood_score", "is_ood", "route", "slot_types", "slot_values", "champion_intent", "champion_route",
    "champion_slot_types", "intent_agrees", "slots_agree", "route_agrees", "inference_ms", "row_version",
)


def random_day() -> datetime:
    return datetime(1990, 1, 8) + timedelta(days=random.SystemRandom().randrange(3500))


def word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(10))


def champion_route(i: int) -> str:
    return "escalate" if i % 50 == 7 else "clarify" if i % 10 == 3 else "fulfil"


def challenger_of(window: int, i: int, intent: str) -> tuple[str, str, list[str]]:
    """The challenger's (intent, route, slot types) for utterance ``i`` of ``window``."""
    challenger_intent = intent
    if i % 20 == 0:
        challenger_intent = "other_intent"  # 5 % everywhere
    if window >= JUMP_FROM and intent == "track_order" and i % 5 in (1, 2):
        challenger_intent = "cancel_order"
    route = "clarify" if window >= JUMP_FROM and i % 10 == 5 else champion_route(i)
    return challenger_intent, route, ["date"] if i % 30 == 0 else []


@pytest.fixture(scope="module")
def scored(services, tmp_path_factory):
    day = random_day()
    settings = tiny_model_settings(make_test_settings(monitor={"reference": "package", "window_s": WINDOW_S}))
    package = load_package(settings.model.package_path)
    features = package_rows(package, package.reference())
    low_ood = float(features["ood_score"].min()) / 2  # below the package's OOD threshold
    rng = random.Random(day.toordinal())
    predictions, shadows, truth = [], [], []
    for window in range(WINDOWS):
        start = day + timedelta(hours=12, seconds=WINDOW_S * window)
        for i in range(ROWS):
            shopper = i % 5 < 3
            intent = SHOPPER_INTENTS[(i // 5) % 3] if shopper else ASSOCIATE_INTENTS[(i // 5) % 2]
            ts = start + timedelta(seconds=i)
            row_id = f"shadow-{day:%Y%m%d}-{window}-{i}"
            sample = features.iloc[i % len(features)]
            predictions.append({
                "id": row_id, "ts": ts, "ingested_at": ts + timedelta(seconds=1),
                "assistant": "shopper" if shopper else "associate", "session_id": f"s{i % 40}",
                "model_version": package.version, "text_scrubbed": f"{intent.replace('_', ' ')} {word(rng)}",
                "intent": intent, "confidence": 0.95, "margin": 0.8, "entropy": 0.2, "energy": -6.0,
                "ood_score": low_ood, "is_ood": 0, "token_count": 3, "unk_rate": 0.0, "slot_types": [],
                "slot_values": [], "slot_confidences": [], "embedding_sketch": list(sample["embedding_sketch"]),
                "row_version": 1, "route": champion_route(i), "route_heads": [], "route_scores": [],
            })
            challenger_intent, route, slot_types = challenger_of(window, i, intent)
            shadows.append({
                "id": row_id, "ts": ts, "ingested_at": ts + timedelta(seconds=1),
                "assistant": predictions[-1]["assistant"], "session_id": predictions[-1]["session_id"],
                "role": "shadow", "model_version": CHALLENGER,
                "champion_version": package.version, "intent": challenger_intent, "confidence": 0.9,
                "ood_score": low_ood, "is_ood": 0, "route": route, "slot_types": slot_types,
                "slot_values": ["today"] if slot_types else [], "champion_intent": intent,
                "champion_route": champion_route(i), "champion_slot_types": [],
                "intent_agrees": int(challenger_intent == intent), "slots_agree": int(not slot_types),
                "route_agrees": int(route == champion_route(i)), "inference_ms": 3.0, "row_version": 1,
            })
            truth.append((window, predictions[-1], shadows[-1]))
    client = connect(settings.clickhouse)
    try:
        insert_rows(client, "predictions", PREDICTION_COLUMNS, predictions)
        insert_rows(client, "shadow_predictions", SHADOW_COLUMNS, shadows)
    finally:
        client.disconnect()
    sink = LabelingSink(lambda: connect(settings.clickhouse), daily_budget=5000, max_per_window=500)
    job = MonitorJob(settings, lambda: connect(settings.clickhouse), handlers=[sink], shadow_min_jump_rows=150,
                     report_dir=tmp_path_factory.mktemp("reports"), names=tmp_path_factory.mktemp("names") / "n.json")
    first = day + timedelta(hours=12)
    outcomes = job.run_once(now=first + timedelta(seconds=WINDOW_S * WINDOWS + 3600), since=first)
    return {"settings": settings, "outcomes": outcomes, "truth": truth, "first": first, "version": package.version}


def rows_of(scored, window: int) -> list[tuple[dict, dict]]:
    return [(p, s) for w, p, s in scored["truth"] if w == window]


def rate(pairs, group: str = "all") -> float:
    chosen = [s for p, s in pairs if group in ("all", p["assistant"])]
    return sum(1 - s["intent_agrees"] for s in chosen) / len(chosen)


def query(scored, sql: str) -> list[tuple]:
    client = connect(scored["settings"].clickhouse)
    try:
        return client.execute(sql, {"a": scored["first"], "b": scored["first"] + timedelta(seconds=WINDOW_S * WINDOWS)})
    finally:
        client.disconnect()


def test_every_window_is_scored_and_handed_to_the_labeling_queue(scored) -> None:
    outcomes = scored["outcomes"]
    assert [o.window_start for o in outcomes] == [scored["first"] + timedelta(seconds=WINDOW_S * w)
                                                  for w in range(WINDOWS)]
    assert all(o.shadow is not None and o.shadow.shadow_version == CHALLENGER for o in outcomes)


def test_route_windows_hold_the_route_mix(scored) -> None:
    stored = query(scored, "SELECT window_start, assistant, route, rows, share FROM route_windows FINAL"
                           " WHERE window_start >= %(a)s AND window_start < %(b)s")
    assert len(stored) == WINDOWS * 3 * 4  # all, shopper, associate x fulfil, clarify, confirm, escalate
    last = scored["first"] + timedelta(seconds=WINDOW_S * (WINDOWS - 1))
    mine = {(assistant, route): (rows, share) for start, assistant, route, rows, share in stored if start == last}
    routes = [p["route"] for p, _ in rows_of(scored, WINDOWS - 1)]
    for route in ("fulfil", "clarify", "confirm", "escalate"):
        assert mine[("all", route)][0] == routes.count(route)
        assert mine[("all", route)][1] == pytest.approx(routes.count(route) / ROWS, abs=1e-6)
    shopper = [p["route"] for p, _ in rows_of(scored, WINDOWS - 1) if p["assistant"] == "shopper"]
    assert mine[("shopper", "clarify")][0] == shopper.count("clarify") and mine[("all", "confirm")][0] == 0


def test_shadow_windows_hold_the_disagreement_per_group_and_intent(scored) -> None:
    stored = query(scored, "SELECT window_start, assistant, intent, champion_version, shadow_version, rows,"
                           " intent_disagreement, slot_disagreement, route_disagreement FROM shadow_windows FINAL"
                           " WHERE window_start >= %(a)s AND window_start < %(b)s")
    by_key = {(start, assistant, intent): rest for start, assistant, intent, *rest in stored}
    for window in range(WINDOWS):
        start = scored["first"] + timedelta(seconds=WINDOW_S * window)
        pairs = rows_of(scored, window)
        version, challenger, rows, intent_rate, slot_rate, route_rate = by_key[(start, "all", "")]
        assert (version, challenger, rows) == (scored["version"], CHALLENGER, ROWS)
        assert intent_rate == pytest.approx(rate(pairs), abs=1e-6)
        assert slot_rate == pytest.approx(sum(1 - s["slots_agree"] for _, s in pairs) / ROWS, abs=1e-6)
        assert route_rate == pytest.approx(sum(1 - s["route_agrees"] for _, s in pairs) / ROWS, abs=1e-6)
        track = [s for p, s in pairs if p["assistant"] == "shopper" and p["intent"] == "track_order"]
        assert by_key[(start, "shopper", "track_order")][2] == len(track) == 60
        assert by_key[(start, "shopper", "track_order")][3] == pytest.approx(
            sum(1 - s["intent_agrees"] for s in track) / 60, abs=1e-6)
    last = scored["first"] + timedelta(seconds=WINDOW_S * (WINDOWS - 1))
    assert {intent for start, assistant, intent in by_key if start == last and assistant == "associate"} == {
        "", "check_schedule", "swap_shift"}


def test_the_points_show_the_jump_in_the_last_windows_with_evidence(scored) -> None:
    outcomes = scored["outcomes"]
    rates = [rate(rows_of(scored, w)) for w in range(WINDOWS)]
    points = [{(p.metric, p.assistant): p for p in metric_points(o)} for o in outcomes]
    for window in range(WINDOWS):
        assert points[window][("shadow_disagreement", None)].value == pytest.approx(rates[window])
        jump = points[window][("shadow_disagreement_jump", None)]
        expected = rates[window] - statistics.median(rates[:window][::-1][:12]) if window >= 3 else 0.0
        assert jump.value == pytest.approx(expected, abs=1e-6)  # the history is stored as Float32
        assert ("shadow_disagreement_jump", "shopper") in points[window]  # 180 shopper rows >= 150
        assert ("shadow_disagreement_jump", "associate") not in points[window]  # 120 rows < 150
    jumps = [window_points[("shadow_disagreement_jump", None)].value for window_points in points]
    assert max(jumps[:JUMP_FROM]) < 0.08 < min(jumps[JUMP_FROM:])  # the proposed rule's threshold
    last = points[-1][("shadow_disagreement_jump", None)]
    assert last.value > 0.08 and last.evidence["baseline_windows"] == WINDOWS - 1
    assert (last.evidence["champion_version"], last.evidence["shadow_version"]) == (scored["version"], CHALLENGER)
    assert last.evidence["top_intents"][0]["intent"] == "track_order"
    texts = {p["text_scrubbed"] for p, _ in rows_of(scored, WINDOWS - 1)}
    example = last.evidence["examples"][0]
    assert example.endswith("(champion track_order, challenger cancel_order)")
    assert example.split(" (champion")[0] in texts
    share = points[-1][("route_share.clarify", None)]
    assert share.value == pytest.approx([p["route"] for p, _ in rows_of(scored, WINDOWS - 1)].count("clarify") / ROWS)


def test_disagreements_are_queued_for_labeling_with_their_reason(scored) -> None:
    queued = query(scored, "SELECT window_start, item_id, reasons FROM labeling_queue FINAL"
                           " WHERE window_start >= %(a)s AND window_start < %(b)s")
    for window in (0, WINDOWS - 1):
        start = scored["first"] + timedelta(seconds=WINDOW_S * window)
        reasons = {item_id: set(r) for begin, item_id, r in queued if begin == start}
        pairs = rows_of(scored, window)
        by_intent = {p["id"] for p, s in pairs if not s["intent_agrees"]}
        by_route = {p["id"] for p, s in pairs if not s["route_agrees"]}
        assert by_intent and set(reasons) == by_intent | by_route  # nothing else in these windows is worth a label
        assert all("champion_challenger_disagreement" in reasons[i] for i in by_intent)
        assert all("champion_challenger_route_disagreement" in reasons[i] for i in by_route)
