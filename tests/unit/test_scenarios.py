from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from nlumon.records import parse_utterance
from streams.scenarios import SCENARIOS, mix_at, phases, scenario_events, timeline_document

START = datetime(2026, 1, 1, tzinfo=UTC)
OOS = [f"out of scope question {i}" for i in range(50)]


def events(name: str, count: int = 600, seed: int = 1, **options):
    return list(scenario_events(name, count, seed=seed, start=START, ood_texts=lambda: OOS, **options))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_is_deterministic_and_valid_on_the_wire(name):
    first, second = events(name), events(name)
    assert [e.value for e in first] == [e.value for e in second]
    assert first[0].value != events(name, seed=2)[0].value
    for event in first:
        if event.truth["kind"] != "malformed":
            parse_utterance(event.value)


def test_events_are_spaced_in_simulated_time():
    stream = events("stable", 10, spacing_ms=1000)
    times = [parse_utterance(e.value).ts for e in stream]
    assert times[0] == START
    assert (times[-1] - times[0]).total_seconds() == 9


def test_sudden_shift_brings_emerging_intents_only_after_the_shift():
    kinds = Counter((e.truth["phase"], e.truth["kind"]) for e in events("sudden-shift", 2000))
    assert kinds[("baseline", "emerging")] == 0
    assert 0.25 < kinds[("shift", "emerging")] / 1000 < 0.45  # 35 % of the second half


def test_ood_burst_is_confined_to_its_phase():
    stream = events("ood-burst", 1000, shift_at=0.5, burst_len=0.2)
    ood = [e for e in stream if e.truth["kind"] == "ood"]
    assert ood and all(e.truth["phase"] == "ood-burst" for e in ood)
    assert all(e.truth["intent"] == "oos" for e in ood)
    assert {parse_utterance(e.value).text for e in ood} <= set(OOS)


def test_gradual_shift_ramps_up():
    assert mix_at("gradual-shift", 0.4).emerging == 0
    assert 0 < mix_at("gradual-shift", 0.6).emerging < mix_at("gradual-shift", 0.9).emerging <= 0.35


def test_asr_degradation_lowers_asr_confidence_after_the_shift():
    stream = [e for e in events("asr-degradation", 1000) if e.truth["kind"] != "malformed"]
    before = [parse_utterance(e.value).asr_confidence for e in stream if e.truth["phase"] == "baseline"]
    after = [parse_utterance(e.value).asr_confidence for e in stream if e.truth["phase"] == "shift"]
    assert sum(after) / len(after) < sum(before) / len(before) - 0.2


def test_malformed_scenario_mixes_in_bad_records():
    share = sum(e.truth["kind"] == "malformed" for e in events("malformed", 2000)) / 2000
    assert 0.03 < share < 0.07


def test_timeline_covers_the_run_without_gaps():
    for name in SCENARIOS:
        timeline = phases(name)
        assert timeline[0].start == 0 and timeline[-1].end == 1
        assert all(a.end == b.start for a, b in pairwise(timeline))
    document = timeline_document("demo", 100, 0, START, 1000)
    assert document["phases"][0]["start_ts"] == START.isoformat()
    assert document["end"] == "2026-01-01T00:01:40+00:00"


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        phases("earthquake")
