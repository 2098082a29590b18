"""The package reference for packages of every corpus, and reads that return no rows (no services).

A package's reference (``model_runtime.reference.build_reference``) keeps the predicted-intent mix per
*assistant of its examples*: ``shopper``/``associate`` for the generated retail corpus, one ``snips``
assistant for SNIPS (``model_runtime/data/snips.py``), one ``clinc150`` assistant for CLINC150
(``model_runtime/data/clinc150.py``). Training real SNIPS/CLINC150 packages needs the datasets (which tests
must not read) and minutes, so these tests build the reference the way ``model_runtime.pipeline`` does —
``build_reference`` over (predictions, assistants, gold intents) per split — from synthetic predictions with
each corpus's assistant and intent sets, plus an unknown assistant name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model_runtime.data.retail import ASSOCIATE_INTENTS, SHOPPER_INTENTS
from model_runtime.reference import ReferenceStats, build_reference
from monitor.job import build_outcome
from monitor.reference import (
    NotEnoughReferenceError,
    ReferenceProvider,
    ReferenceUnavailableError,
    _draw_intents,
    package_rows,
)
from monitor.storage import WINDOW_COLUMNS, ObservedWindow, WindowFacts, read_predictions, window_facts

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


def corpus_split(assistants: dict[str, tuple[str, ...]], n: int, seed: int):
    """(predictions, assistants, gold intents) of one split, shaped like a package of that corpus."""
    rng = np.random.default_rng(seed)
    names = [(assistant, intent) for assistant, intents in assistants.items() for intent in intents]
    centres = np.random.default_rng(99).normal(size=(len(names), 16))
    predictions, owners, gold = [], [], []
    for _ in range(n):
        k = int(rng.integers(len(names)))
        assistant, intent = names[k]
        confidence = float(rng.beta(9, 1.2))
        predictions.append(FakePrediction(
            intent, confidence, confidence * 0.8, float(rng.uniform(0, 1)), float(-6 * confidence),
            int(rng.integers(3, 12)), 0.0, (), (centres[k] + 0.3 * rng.normal(size=16)).astype(np.float32)))
        owners.append(assistant)
        gold.append(intent)
    return predictions, owners, gold


def corpus_package(corpus: str, n_dev: int = 400, per_assistant_n: bool = True) -> SimpleNamespace:
    """A stand-in for a loaded package of ``corpus``: manifest metrics + reference statistics."""
    assistants = CORPORA[corpus]
    arrays, summary = build_reference({"train": corpus_split(assistants, 600, 1),
                                       "dev": corpus_split(assistants, n_dev, 2)}, seed=0)
    stats = ReferenceStats(arrays, summary)
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
    package = corpus_package("snips")
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
