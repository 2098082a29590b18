"""The package reference for packages of every corpus, and reads that return no rows (no services).

A package's reference (``model_runtime.reference.build_reference``) keeps the predicted-intent mix per
*assistant of its examples*: ``shopper``/``associate`` for the generated retail corpus, one ``snips``
assistant for SNIPS (``model_runtime/data/snips.py``), one ``clinc150`` assistant for CLINC150
(``model_runtime/data/clinc150.py``). Training real SNIPS/CLINC150 packages needs the datasets (which tests
must not read) and minutes, so these tests build the reference the way ``model_runtime.pipeline`` does —
``build_reference`` over (predictions, assistants, gold intents) per split — from synthetic predictions with
each corpus's assistant and intent sets, plus an unknown assistant name.

Packages keep per-row assistant, intent, slot types and slot confidences for their reference sample and a
slot-value vocabulary (issue #15): with them the package reference scores every detector per assistant, slot-mix
and slot-confidence drift included, and the job runs the unseen-slot-value detector, stores
``slot_value_windows`` rows, proposes new names and emits the ``slot_unseen_*`` metrics. ``legacy`` strips both
to stand for a package built before: whole-traffic drift only, the detector ``not_scored``, logged once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import monitor.job as job_module
from alerts.engine import AlertEngine
from alerts.events import MetricPoint
from alerts.rules import load_rules
from alerts.store import AlertStore
from detectors.base import DetectionResult
from detectors.slot_values import SlotValueVocabulary
from labeling.names import NameDictionary
from model_runtime.data.retail import ASSOCIATE_INTENTS, SHOPPER_INTENTS
from model_runtime.predictions import SlotSpan
from model_runtime.reference import ROW_COLUMNS, ReferenceStats, build_reference
from monitor.job import MonitorJob, build_outcome, slot_value_metrics, slot_value_rows
from monitor.reference import (
    NotEnoughReferenceError,
    ReferenceProvider,
    ReferenceUnavailableError,
    _draw_intents,
    package_rows,
)
from monitor.storage import (
    SLOT_VALUE_COLUMNS,
    SLOT_VALUE_WINDOW_COLUMNS,
    WINDOW_COLUMNS,
    ObservedWindow,
    WindowFacts,
    read_predictions,
    window_facts,
)
from tests.conftest import make_test_settings

SNIPS_INTENTS = ("AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork",
                 "SearchScreeningEvent")
CLINC150_INTENTS = tuple(f"intent_{k:03d}" for k in range(150))
# assistant -> intents, as each corpus loader labels its examples
CORPORA: dict[str, dict[str, tuple[str, ...]]] = {
    "retail": {"shopper": tuple(SHOPPER_INTENTS), "associate": tuple(ASSOCIATE_INTENTS)},
    "snips": {"snips": SNIPS_INTENTS},
    "clinc150": {"clinc150": CLINC150_INTENTS},
    "unknown-assistant": {"kiosk": ("open_hours", "find_store", "greet")},
}
START = datetime(2026, 3, 1, 12, 0)


@dataclass(frozen=True)
class FakePrediction:
    """The fields of ``UtterancePrediction`` that ``build_reference`` reads."""

    intent: str
    confidence: float
    margin: float
    entropy: float
    energy: float
    token_count: int
    unk_rate: float
    slots: tuple
    embedding: np.ndarray


# Slot types and values per assistant position (first assistant: shopping slots; others: staff slots).
SLOT_POOLS = ({"brand": ("acme", "nova", "zest"), "product": ("milk", "bread", "paper towels")},
              {"person": ("olivia", "mason"), "date_time": ("tomorrow", "friday")})


def fake_slots(rng: np.random.Generator, position: int) -> tuple[SlotSpan, ...]:
    pool = SLOT_POOLS[min(position, 1)]
    slots = []
    for _ in range(int(rng.integers(0, 3))):
        kind = str(rng.choice(sorted(pool)))
        value = str(rng.choice(pool[kind]))
        slots.append(SlotSpan(kind, 0, len(value), value, float(rng.beta(8, 1.5))))
    return tuple(slots)


def corpus_split(assistants: dict[str, tuple[str, ...]], n: int, seed: int, slots: bool = False):
    """(predictions, assistants, gold intents) of one split, shaped like a package of that corpus."""
    rng = np.random.default_rng(seed)
    names = [(assistant, intent) for assistant, intents in assistants.items() for intent in intents]
    positions = {assistant: i for i, assistant in enumerate(assistants)}
    centres = np.random.default_rng(99).normal(size=(len(names), 16))
    predictions, owners, gold = [], [], []
    for _ in range(n):
        k = int(rng.integers(len(names)))
        assistant, intent = names[k]
        confidence = float(rng.beta(9, 1.2))
        predictions.append(FakePrediction(
            intent, confidence, confidence * 0.8, float(rng.uniform(0, 1)), float(-6 * confidence),
            int(rng.integers(3, 12)), 0.0, fake_slots(rng, positions[assistant]) if slots else (),
            (centres[k] + 0.3 * rng.normal(size=16)).astype(np.float32)))
        owners.append(assistant)
        gold.append(intent)
    return predictions, owners, gold


def legacy(stats: ReferenceStats) -> ReferenceStats:
    """The same statistics as a package built before per-row columns and the slot-value vocabulary."""
    arrays = {k: v for k, v in stats.arrays.items() if k.split("/")[-1] not in ROW_COLUMNS}
    return ReferenceStats(arrays, {k: v for k, v in stats.summary.items() if k != "slot_values"})


def corpus_package(corpus: str, n_dev: int = 400, per_assistant_n: bool = True, slots: bool = False,
                   old: bool = False) -> SimpleNamespace:
    """A stand-in for a loaded package of ``corpus``: manifest metrics + reference statistics."""
    assistants = CORPORA[corpus]
    arrays, summary = build_reference({"train": corpus_split(assistants, 600, 1, slots),
                                       "dev": corpus_split(assistants, n_dev, 2, slots)}, seed=0)
    stats = ReferenceStats(arrays, summary)
    if old:
        stats = legacy(stats)
    per_assistant = {name: {"n": 50 * (i + 1), "intent_accuracy": 0.9} for i, name in enumerate(assistants)}
    metrics = {"onnx-cpu": {"intent_accuracy": 0.9, **({"per_assistant": per_assistant} if per_assistant_n else {})}}
    return SimpleNamespace(version=f"{corpus}-test", metrics=metrics, manifest={}, reference=lambda: stats,
                           stats=stats)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_intents_are_drawn_from_every_assistant_of_the_package(corpus: str) -> None:
    package = corpus_package(corpus)
    intents = _draw_intents(package, package.stats, 2000, seed=0)
    known = {intent for intents in CORPORA[corpus].values() for intent in intents}
    assert intents is not None and len(intents) == 2000
    assert set(intents) <= known
    if corpus == "retail":  # both assistants' intents are drawn
        assert set(intents) & set(SHOPPER_INTENTS) and set(intents) & set(ASSOCIATE_INTENTS)


def test_assistants_weigh_by_their_test_counts_or_equally_without_them() -> None:
    package = corpus_package("retail")  # shopper n=50, associate n=100
    associate_share = np.isin(_draw_intents(package, package.stats, 20_000, seed=1), ASSOCIATE_INTENTS).mean()
    assert associate_share == pytest.approx(100 / 150, abs=0.03)
    package.metrics["onnx-cpu"]["per_assistant"] = {"shopper": {"n": 50}}  # associate missing: equal weights
    associate_share = np.isin(_draw_intents(package, package.stats, 20_000, seed=1), ASSOCIATE_INTENTS).mean()
    assert associate_share == pytest.approx(0.5, abs=0.03)


def test_a_package_without_an_intent_mix_still_gives_reference_rows() -> None:
    package = corpus_package("snips", old=True)  # per-row intents would make the mix unnecessary
    package.stats.summary["splits"]["dev"]["intent_mix"] = {}
    package.stats.summary["splits"]["train"]["intent_mix"] = {}
    assert _draw_intents(package, package.stats, 10, seed=0) is None
    rows = package_rows(package, package.stats)
    assert "intent" not in rows.columns and len(rows) == 400


def provider(package: Any, kind: str = "package", **options: Any) -> ReferenceProvider:
    return ReferenceProvider(kind, "/nonexistent/current", fpr=0.05, ood_fpr=0.05, max_sample=200, n_windows=10,
                             load_package=lambda _directory: package, **options)


def live_window(reference_rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Live traffic as the worker stores it: retail assistants (the wire contract), whatever the package."""
    rng = np.random.default_rng(seed)
    frame = reference_rows.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    frame["assistant"] = rng.choice(["shopper", "associate"], size=n)
    frame["text_scrubbed"] = [f"utterance {i % 97}" for i in range(n)]
    return frame


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_a_package_of_any_corpus_scores_a_window(corpus: str) -> None:
    package = corpus_package(corpus)
    reference = provider(package).reference_for(None, package.version, START)
    assert reference.kind == "package" and "intent" in reference.rows.columns
    window = ObservedWindow(START, START + timedelta(minutes=5), 150, START + timedelta(minutes=5), package.version)
    frame = live_window(reference.rows, 150, seed=3)
    facts = WindowFacts(frame["assistant"].value_counts().to_dict(), 0, None, "e2e_ms", 0)
    outcome = build_outcome(window, frame, facts, reference.suite, reference.kind, START)
    assert set(outcome.groups) == {"all", "shopper", "associate"}
    assert any(r.feature == "intent" for r in outcome.report.results)
    assert 0.0 <= outcome.groups["all"].accuracy <= 1.0


def test_a_reference_too_small_to_calibrate_is_reported_not_crashed() -> None:
    package = corpus_package("clinc150", n_dev=15)
    with pytest.raises(NotEnoughReferenceError, match=r"15 reference rows \(< 20\)"):
        provider(package).reference_for(None, package.version, START)


def test_a_missing_package_is_reported_and_not_reloaded_for_every_window() -> None:
    calls = []

    def missing(directory):
        calls.append(directory)
        raise FileNotFoundError(f"{directory}/manifest.json")

    references = ReferenceProvider("package", "/nonexistent/current", fpr=0.05, ood_fpr=0.05, max_sample=200,
                                   load_package=missing)
    for minute in (0, 5, 10):
        with pytest.raises(ReferenceUnavailableError, match="no usable model package"):
            references.reference_for(None, "m1", START + timedelta(minutes=minute))
    assert len(calls) == 1


class EmptyClient:
    """A ClickHouse client with no data: what clickhouse-driver returns for zero rows."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def execute(self, query: str, params: Any = None, columnar: bool = False) -> list:
        self.queries.append(query)
        return []  # columnar: not one empty list per column; an aggregate: (unusually) no row at all


def test_zero_row_reads_give_empty_frames_and_zero_facts() -> None:
    client = EmptyClient()
    frame = read_predictions(client, START, START + timedelta(minutes=5), 100)
    assert frame.empty and list(frame.columns) == list(WINDOW_COLUMNS)
    facts = window_facts(client, START, START + timedelta(minutes=5))
    assert facts == WindowFacts({}, 0, None, "inference_ms", 0)


@pytest.mark.parametrize("kind", ["rolling", "seasonal"])
def test_no_history_falls_back_to_the_package(kind: str) -> None:
    package = corpus_package("snips")
    reference = provider(package, kind).reference_for(EmptyClient(), package.version, START)
    assert reference.kind == "package (fallback)" and len(reference.rows) == 400


def test_no_history_and_a_small_package_says_both() -> None:
    package = corpus_package("snips", n_dev=15)
    with pytest.raises(NotEnoughReferenceError, match=r"rolling reference .* has 0 rows .* package snips-test has 15"):
        provider(package, "rolling").reference_for(EmptyClient(), package.version, START)


# -- per-row columns and the slot-value vocabulary (issue #15) ----------------------------------------------------
def test_per_row_columns_survive_the_npz_and_align_with_the_features(tmp_path) -> None:
    predictions, owners, _ = split = corpus_split(CORPORA["retail"], 300, 2, slots=True)
    arrays, summary = build_reference({"dev": split}, embedding_split="dev", seed=0, sample_size=120)
    np.savez_compressed(tmp_path / "reference.npz", **arrays)
    stats = ReferenceStats.load(tmp_path / "reference.npz", summary)
    columns = stats.row_columns("dev")
    pick = np.random.default_rng(0).permutation(300)[:120]  # build_reference's sample of the split
    assert columns["assistant"] == [owners[i] for i in pick]
    assert columns["slot_types"] == [[slot.type for slot in predictions[i].slots] for i in pick]
    assert np.allclose(stats.values("confidence", "dev"), [predictions[i].confidence for i in pick])
    assert [len(c) for c in columns["slot_confidences"]] == [len(t) for t in columns["slot_types"]]
    assert "olivia" not in json_text(summary) and "mason" not in json_text(summary)  # person values never kept


def json_text(summary: dict) -> str:
    import json

    return json.dumps(summary)


def live_rows(reference_rows: pd.DataFrame, n: int, seed: int, associate_confidence: float | None = None):
    """Reference rows resampled per assistant (as live traffic of the same shape), optionally with the
    associate's slot confidences pushed down."""
    frame = reference_rows.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    if associate_confidence is not None:
        associate = frame["assistant"] == "associate"
        frame.loc[associate, "slot_confidences"] = pd.Series(
            [[associate_confidence] * len(v) for v in frame.loc[associate, "slot_confidences"]],
            index=frame.index[associate], dtype=object)
    frame["text_scrubbed"] = [f"utterance {i % 97}" for i in range(n)]
    return frame


def score(reference, frame: pd.DataFrame):
    window = ObservedWindow(START, START + timedelta(minutes=5), len(frame), START, "retail-test")
    facts = WindowFacts(frame["assistant"].value_counts().to_dict(), 0, None, "e2e_ms", 0)
    return build_outcome(window, frame, facts, reference.suite, reference.kind, START)


def test_the_package_reference_scores_slot_mix_and_slot_confidence_per_assistant() -> None:
    package = corpus_package("retail", n_dev=1200, slots=True)
    reference = provider(package).reference_for(None, package.version, START)
    assert {"assistant", "intent", "slot_types", "slot_confidences"} <= set(reference.rows.columns)
    fitted = {group: {d.feature for d in detectors} for group, detectors in reference.suite.detectors.items()}
    assert set(fitted) == {"overall", "shopper", "associate"}
    assert all({"slot_types", "slot_confidence", "intent"} <= features for features in fitted.values())

    def slot_scores(frame: pd.DataFrame) -> dict[tuple[str, str], DetectionResult]:
        outcome = score(reference, frame)
        return {(r.details["group"], r.feature): r for r in outcome.report.results if r.feature.startswith("slot")}

    clean = slot_scores(live_rows(reference.rows, 300, seed=5))
    shifted = slot_scores(live_rows(reference.rows, 300, seed=5, associate_confidence=0.3))
    associate = shifted[("associate", "slot_confidence")]
    assert associate.drifted and associate.score > 3 * max(associate.threshold, clean[associate.details["group"],
                                                                                       "slot_confidence"].score)
    # the shopper rows did not change: the same score, whatever the associate's slots do
    assert shifted[("shopper", "slot_confidence")].score == clean[("shopper", "slot_confidence")].score
    assert not any(result.drifted for key, result in shifted.items() if key[1] == "slot_types")


def test_an_old_package_keeps_whole_traffic_drift_and_says_so_once(caplog) -> None:
    package = corpus_package("retail", slots=True, old=True)
    references = provider(package, "rolling")
    with caplog.at_level("WARNING", logger="monitor.reference"):
        for day in (0, 1):  # two periods: two builds from the package (fallback)
            reference = references.reference_for(EmptyClient(), package.version, START + timedelta(days=day))
    assert set(reference.suite.detectors) == {"overall"} and "assistant" not in reference.rows.columns
    assert not {d.feature for d in reference.suite.detectors["overall"]} & {"slot_types", "slot_confidence"}
    assert reference.vocabulary is None
    told = [r.getMessage() for r in caplog.records if "keeps no per-row" in r.getMessage()]
    assert len(told) == 1 and package.version in told[0]
    assert len([r for r in caplog.records if "no slot-value vocabulary" in r.getMessage()]) == 1


def test_a_new_package_carries_its_vocabulary_and_dev_baseline() -> None:
    package = corpus_package("retail", slots=True)
    vocabulary = provider(package).reference_for(None, package.version, START).vocabulary
    assert vocabulary is not None
    assert vocabulary.values["brand"] == {"acme", "nova", "zest"} and vocabulary.values["person"] == frozenset()
    assert vocabulary.reference_rate("shopper", "brand") == 0.0


# -- the monitor job: stored rows, proposals, metrics, failures ----------------------------------------------------
class JobStorage:
    """Stands in for ClickHouse in ``monitor.job``: one window of rows, and what was inserted."""

    def __init__(self, window_rows: pd.DataFrame, slot_rows: pd.DataFrame | Exception) -> None:
        self.window_rows, self.slot_rows = window_rows, slot_rows
        self.inserted: dict[str, list[dict]] = {}

    def install(self, monkeypatch, window: ObservedWindow) -> None:
        monkeypatch.setattr(job_module, "observed_windows", lambda client, w, since, until: [window])
        monkeypatch.setattr(job_module, "scored_windows", lambda client, w, since, until: {})
        monkeypatch.setattr(job_module, "read_predictions", self.read)
        monkeypatch.setattr(job_module, "window_facts", lambda client, start, end: WindowFacts(
            self.window_rows["assistant"].value_counts().to_dict(), 0, 40.0, "e2e_ms", 0))
        monkeypatch.setattr(job_module, "insert_rows", self.insert)
        monkeypatch.setattr(job_module, "save_evidently_report", lambda reference, current, path: None)

    def read(self, client, start, end, limit, columns=WINDOW_COLUMNS, *args, **kwargs):
        if tuple(columns) == SLOT_VALUE_COLUMNS:
            if isinstance(self.slot_rows, Exception):
                raise self.slot_rows
            return self.slot_rows
        return self.window_rows

    def insert(self, client, table, columns, rows):
        rows = [dict(row) for row in rows]
        assert all(set(columns) <= set(row) for row in rows)
        self.inserted.setdefault(table, []).extend(rows)
        return len(rows)


class NoClient:
    def execute(self, *args, **kwargs):
        return []

    def disconnect(self) -> None:
        pass


def slot_rows(new_brand_sessions: int) -> pd.DataFrame:
    """Slot values of a window: known brands, <PERSON>s, and one new brand used by ``new_brand_sessions``."""
    rows = [("shopper", f"k{i}", ["brand"], ["acme"]) for i in range(30)]
    rows += [("associate", f"p{i}", ["person"], ["<PERSON>"]) for i in range(10)]
    rows += [("shopper", f"n{i}", ["brand", "brand"], ["Zorblax", "zorblax"]) for i in range(new_brand_sessions)]
    return pd.DataFrame(rows, columns=["assistant", "session_id", "slot_types", "slot_values"])


def run_job(monkeypatch, package, slot_frame, names=None):
    references = provider(package)
    reference = references.reference_for(None, package.version, START)
    frame = live_rows(reference.rows, 200, seed=4)
    if "assistant" not in frame.columns:  # an old package's rows: live rows always carry one
        frame["assistant"] = ["shopper", "associate"] * 100
    window = ObservedWindow(START, START + timedelta(minutes=5), 200, START + timedelta(minutes=5), package.version)
    storage = JobStorage(frame, slot_frame)
    storage.install(monkeypatch, window)
    job = MonitorJob(make_test_settings(), NoClient, references=references, names=names, report_dir=None,
                     clock=lambda: (START + timedelta(hours=1) - datetime(1970, 1, 1)).total_seconds())
    outcomes = job.run_once(now=START + timedelta(hours=1), since=START)
    return job, outcomes, storage


def test_each_window_stores_unseen_values_and_proposes_new_names(monkeypatch, tmp_path) -> None:
    package = corpus_package("retail", slots=True)
    names = NameDictionary.load(tmp_path / "names.json")
    job, outcomes, storage = run_job(monkeypatch, package, slot_rows(4), names)
    assert [r.status for r in job.last_run.results] == ["scored"] and outcomes[0].slot_values.status == "scored"
    rows = {(r["assistant"], r["slot_type"]): r for r in storage.inserted["slot_value_windows"]}
    brand = rows[("all", "brand")]
    assert (brand["values"], brand["unseen"], brand["scrubbed"], brand["new_values"]) == (38, 8, 0, ["zorblax"])
    assert brand["unseen_rate"] == pytest.approx(8 / 38) and brand["reference_rate"] == 0.0
    person = rows[("all", "person")]
    assert (person["values"], person["scrubbed"], person["unseen"], person["new_values"]) == (10, 10, 0, [])
    assert np.isnan(person["unseen_rate"])
    assert ("shopper", "brand") in rows and ("associate", "person") in rows
    assert {r["status"] for r in rows.values()} == {"scored"}
    assert len({r["row_version"] for r in rows.values()}) == 1
    proposed = NameDictionary.load(tmp_path / "names.json").entries(status="proposed")
    assert [(e.value, e.slot_type, e.sessions, e.first_seen) for e in proposed] == [
        ("zorblax", "brand", 4, START.replace(tzinfo=UTC).isoformat())]


def test_values_used_by_too_few_sessions_are_not_proposed(monkeypatch, tmp_path) -> None:
    names = NameDictionary.load(tmp_path / "names.json")
    _, _, storage = run_job(monkeypatch, corpus_package("retail", slots=True), slot_rows(2), names)
    assert next(r for r in storage.inserted["slot_value_windows"] if r["slot_type"] == "brand")["new_values"] == []
    assert names.reload().entries() == []


def test_an_old_package_stores_the_detector_as_not_scored_and_the_window_scores(monkeypatch) -> None:
    job, outcomes, storage = run_job(monkeypatch, corpus_package("retail", slots=True, old=True), slot_rows(4))
    assert [r.status for r in job.last_run.results] == ["scored"]
    (row,) = storage.inserted["slot_value_windows"]
    assert (row["assistant"], row["slot_type"], row["status"]) == ("all", "", "not_scored")
    assert row["reason"].startswith("no_vocabulary:") and slot_value_metrics(outcomes[0]) == []


def test_a_failing_detector_or_dictionary_never_fails_the_window(monkeypatch, tmp_path, caplog) -> None:
    job, _, storage = run_job(monkeypatch, corpus_package("retail", slots=True), RuntimeError("boom"))
    assert [r.status for r in job.last_run.results] == ["scored"]
    (row,) = storage.inserted["slot_value_windows"]
    assert row["status"] == "failed" and "RuntimeError: boom" in row["reason"]
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the dictionary's folder should be")
    job, _, storage = run_job(monkeypatch, corpus_package("retail", slots=True), slot_rows(4),
                              names=NameDictionary(blocked / "names.json"))
    assert [r.status for r in job.last_run.results] == ["scored"]
    assert any("name dictionary" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_metrics_feed_the_default_unseen_value_rule(tmp_path) -> None:
    vocabulary = SlotValueVocabulary({"brand": frozenset({"acme"})}, {"all": {"brand": 0.05}})
    rules = [rule for rule in load_rules() if rule.metric == "slot_unseen_excess"]
    assert len(rules) == 1 and rules[0].for_windows >= 1
    engine = AlertEngine(rules, AlertStore(str(tmp_path / "alerts.db")))
    statuses = []
    for index, share in enumerate((0.0, 0.5, 0.5, 0.5, 0.0)):
        start = START + timedelta(minutes=5 * index)
        unseen = int(40 * share)
        rows = pd.DataFrame({"assistant": "shopper", "session_id": [f"s{i}" for i in range(40)],
                             "slot_types": [["brand"]] * 40,
                             "slot_values": [["zorblax"]] * unseen + [["acme"]] * (40 - unseen)})
        outcome = SimpleNamespace(slot_values=job_module.score_slot_values(rows, vocabulary))
        points = [MetricPoint(metric, value, start.replace(tzinfo=UTC), (start + timedelta(minutes=5)).replace(
            tzinfo=UTC), assistant, evidence) for metric, value, assistant, evidence in slot_value_metrics(outcome)]
        assert {p.metric for p in points} == {"slot_unseen_rate.brand", "slot_unseen_excess"}
        statuses += [(index, event.status, event.assistant) for event in engine.evaluate(points)]
    fires_at = rules[0].for_windows  # windows 1.. breach: firing after for_windows of them
    by_group = sorted(statuses, key=lambda item: (str(item[2]), item[0]))
    assert by_group == [(fires_at, "firing", None), (4, "resolved", None),  # the whole traffic (rule|*)
                        (fires_at, "firing", "shopper"), (4, "resolved", "shopper")]


def test_slot_value_rows_scrub_new_values_again_and_mark_not_scored_windows() -> None:
    vocabulary = SlotValueVocabulary({"brand": frozenset()}, {})
    rows = pd.DataFrame({"assistant": "shopper", "session_id": ["a", "b", "c"], "slot_types": [["brand"]] * 3,
                         "slot_values": [["olivia"], ["olivia"], ["olivia"]]})
    outcome = SimpleNamespace(slot_values=job_module.score_slot_values(rows, vocabulary), window_start=START,
                              window_end=START, model_version="m1", scored_at=START)
    stored = slot_value_rows(outcome, 7)
    assert {tuple(sorted(r)) for r in stored} == {tuple(sorted(SLOT_VALUE_WINDOW_COLUMNS))}
    assert stored[0]["new_values"] == ["<PERSON>"]  # a given name is not stored as such in the window table
    assert outcome.slot_values.report.get("overall", "brand").new_values == ("olivia",)  # the roster gets it
    empty = SimpleNamespace(slot_values=job_module.score_slot_values(rows.iloc[:0], vocabulary), window_start=START,
                            window_end=START, model_version="m1", scored_at=START)
    assert [(r["status"], r["reason"][:12]) for r in slot_value_rows(empty, 7)] == [("not_scored", "empty_window")]


def test_per_row_columns_that_do_not_line_up_are_read_like_an_old_package(caplog) -> None:
    package = corpus_package("retail", slots=True)
    arrays = {k: (v[:300] if k.startswith("dev/") else v) for k, v in package.stats.arrays.items()}  # cut short
    stats = ReferenceStats(arrays, package.stats.summary)
    with caplog.at_level("WARNING", logger="monitor.reference"):
        rows = package_rows(package, stats)
    assert len(rows) == 300 and "assistant" not in rows.columns and "intent" in rows.columns  # drawn, as before
    assert any("do not line up" in r.getMessage() for r in caplog.records)
