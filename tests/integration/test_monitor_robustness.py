"""The monitor on real ClickHouse when a reference or history is missing, and with packages of every corpus.

Each test works in its own throw-away database (``nlumon_test_monitor_<random>``, dropped afterwards), so
"empty" really means a fresh install: no predictions, no history, no monitor rows.

Packages of every corpus: a package's reference keeps the predicted-intent mix per *assistant of its
training examples* — ``shopper``/``associate`` for the generated retail corpus, the single value ``snips``
for SNIPS (``model_runtime/data/snips.py``) and ``clinc150`` for CLINC150 (``model_runtime/data/clinc150.py``).
Training real SNIPS/CLINC150 packages needs the datasets (tests must not read them) and minutes, so the tests
take the cached tiny retail test package and write variants of it whose reference carries the assistant sets
of those corpora (and of an unknown two-assistant product), re-keying the per-assistant intent and slot mixes
and test counts exactly where ``model_runtime.pipeline`` puts them. The variants also promote the training
sample to the held-out one (the tiny package holds only ~30 held-out rows, a real package hundreds), or cut
it to 12 rows for the "not enough reference" cases. Intent names stay the package's own, so the windows the
tiny model served are comparable with the reference.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_runtime.package import REFERENCE, write_manifest
from monitor.job import MonitorJob
from monitor.service import build_monitor
from nlumon.schema import connect, ensure_schema
from nlumon.settings import Settings
from tests.conftest import make_test_settings
from tests.helpers import fill_clickhouse, tiny_model_settings

pytestmark = pytest.mark.integration

# assistant sets of a package per corpus: new assistant -> the tiny retail package's assistants it takes over
CORPUS_ASSISTANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "retail": {"shopper": ("shopper",), "associate": ("associate",)},
    "snips": {"snips": ("shopper", "associate")},
    "clinc150": {"clinc150": ("shopper", "associate")},
    "other-product": {"kiosk": ("shopper",), "web": ("associate",)},
}
DAY = datetime(1995, 3, 1, 10, 0, tzinfo=UTC)


def package_variant(source: Path, target: Path, assistants: dict[str, tuple[str, ...]], dev_rows: int | None) -> Path:
    """A copy of ``source`` whose reference carries ``assistants``; its held-out sample is the training sample
    (``dev_rows`` None) or the first ``dev_rows`` held-out rows."""
    shutil.copytree(source, target)
    with np.load(target / REFERENCE) as data:
        arrays = {key: data[key] for key in data.files}
    for key in [k for k in arrays if k.startswith("dev/")]:
        if dev_rows is None:
            arrays[key] = arrays["train/" + key.split("/", 1)[1]]
        else:
            arrays[key] = arrays[key][:dev_rows]
    np.savez_compressed(target / REFERENCE, **arrays)
    manifest = json.loads((target / "manifest.json").read_text())
    for split in manifest["reference"]["splits"].values():
        for mix in ("intent_mix", "slot_mix"):
            split[mix] = {new: _merged([split[mix].get(old, {}) for old in olds]) for new, olds in assistants.items()}
    for metrics in manifest["metrics"].values():
        if "per_assistant" in metrics:
            per = metrics["per_assistant"]
            metrics["per_assistant"] = {new: {"n": sum(per.get(old, {}).get("n", 0) for old in olds),
                                              "intent_accuracy": metrics.get("intent_accuracy", 0.0)}
                                        for new, olds in assistants.items()}
    write_manifest(target, manifest)
    return target


def _merged(mixes: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for mix in mixes:
        for name, share in mix.items():
            total[name] = total.get(name, 0.0) + share / len(mixes)
    return total


@pytest.fixture
def fresh_database(services, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings for a new, empty database (made on first use, dropped at the end of the test)."""
    name = f"nlumon_test_monitor_{uuid.uuid4().hex[:10]}"
    made: list[Settings] = []

    def settings_for(**monitor: Any) -> Settings:
        settings = tiny_model_settings(make_test_settings(
            clickhouse={"database": name}, monitor={"max_sample": 400, **monitor},
            alerts={"store_path": tmp_path / f"alerts-{len(made)}.db"},
            services={"run_dir": tmp_path / "run"},
        ))
        if not made:
            ensure_schema(settings.clickhouse)
        made.append(settings)
        return settings

    yield settings_for
    if made:
        client = connect(made[0].clickhouse, database="default")
        try:
            client.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            client.disconnect()


def with_package(settings: Settings, package: Path) -> Settings:
    return settings.model_copy(update={"model": settings.model.model_copy(update={"package_path": package})})


def stored_windows(settings: Settings) -> list[tuple]:
    client = connect(settings.clickhouse)
    try:
        return client.execute("SELECT window_start, assistant, status, reason, attempts FROM monitor_windows FINAL"
                              " ORDER BY window_start, assistant")
    finally:
        client.disconnect()


def closing(settings: Settings, filled) -> datetime:
    return filled.last_ts + timedelta(seconds=settings.monitor.window_s + settings.monitor.grace_s)


@pytest.mark.parametrize("kind", ["package", "rolling", "seasonal"])
def test_an_empty_database_gives_no_windows_and_no_error(fresh_database, kind: str) -> None:
    settings = fresh_database(reference=kind)
    job = MonitorJob(settings, lambda: connect(settings.clickhouse))
    assert job.run_once() == []  # now, the last 24 h
    assert job.run_once(now=DAY, since=DAY - timedelta(days=30)) == []
    assert job.last_run.results == ()
    assert stored_windows(settings) == []


def test_windows_without_enough_reference_are_stored_not_scored_with_the_reason(
    fresh_database, tmp_path: Path
) -> None:
    base = fresh_database()
    small = package_variant(base.model.package_path, tmp_path / "small", CORPUS_ASSISTANTS["snips"], dev_rows=12)
    reasons = {}
    # a day per reference kind, far enough apart that none is another's history
    for offset, kind in enumerate(("package", "rolling", "seasonal", "missing package")):
        settings = fresh_database(reference="package" if kind == "missing package" else kind)
        package = tmp_path / "no-such-package" if kind == "missing package" else small
        settings = with_package(settings, package)
        day = DAY + timedelta(days=30 * offset)
        filled = fill_clickhouse(settings, "stable", 400, seed=offset, spacing_ms=1000, start=day)
        job = MonitorJob(settings, lambda s=settings: connect(s.clickhouse), report_dir=tmp_path / "reports")
        assert job.run_once(now=closing(settings, filled), since=day) == []  # never raises
        results = job.last_run.results
        assert len(results) == 2 and {r.status for r in results} == {"not_scored"}
        reasons[kind] = results[0].reason
    assert reasons["package"].startswith("reference_too_small: package ")
    assert "has 12 reference rows (< 20)" in reasons["package"]
    assert reasons["rolling"].startswith("reference_too_small: rolling reference ")
    assert "has 0 rows" in reasons["rolling"] and "12 reference rows" in reasons["rolling"]
    assert reasons["seasonal"].startswith("reference_too_small: seasonal reference ")
    assert reasons["missing package"].startswith("no_reference: no usable model package at ")
    rows = stored_windows(base)
    assert len(rows) == 8 and {row[1] for row in rows} == {"all"}  # only the whole-traffic row
    assert {row[2] for row in rows} == {"not_scored"} and all(row[3] and row[4] == 1 for row in rows)


@pytest.mark.parametrize("corpus", sorted(CORPUS_ASSISTANTS))
def test_a_package_of_any_corpus_is_monitored_end_to_end(fresh_database, tmp_path: Path, corpus: str) -> None:
    settings = fresh_database(reference="package")
    package = package_variant(settings.model.package_path, tmp_path / corpus, CORPUS_ASSISTANTS[corpus],
                              dev_rows=None)
    settings = with_package(settings, package)
    filled = fill_clickhouse(settings, "stable", 600, seed=5, spacing_ms=1000, start=DAY)
    runtime = build_monitor(settings, kafka=False, measure_lag=False)  # alerts + labeling (ClickHouse only)
    try:
        outcomes = runtime.run_once(now=closing(settings, filled), since=DAY)
    finally:
        runtime.close()
    assert len(outcomes) == 2 and all(o.reference == "package" for o in outcomes)
    assert {r.status for r in runtime.job.last_run.results} == {"scored"}
    for outcome in outcomes:
        assert set(outcome.groups) == {"all", "shopper", "associate"}  # the live traffic's assistants
        assert any(r.feature == "intent" for r in outcome.report.results)
    rows = stored_windows(settings)
    assert {(row[1], row[2]) for row in rows} == {("all", "scored"), ("shopper", "scored"), ("associate", "scored")}
    assert all(row[3] == "" and row[4] == 0 for row in rows)


def test_an_older_monitor_windows_table_gets_the_status_columns(fresh_database) -> None:
    """ClickHouse 18.16 has no ``ADD COLUMN IF NOT EXISTS``: the migration reads system.columns first."""
    from nlumon.schema import MONITOR_WINDOWS, ensure_columns

    settings = fresh_database()
    database = settings.clickhouse.database
    old_ddl = MONITOR_WINDOWS.replace(",\n    status String DEFAULT 'scored',\n    reason String DEFAULT '',\n"
                                      "    attempts UInt16 DEFAULT 0", "")
    assert "status" not in old_ddl
    client = connect(settings.clickhouse)
    try:
        client.execute(f"DROP TABLE {database}.monitor_windows")
        client.execute(old_ddl.format(db=database))
        client.execute("INSERT INTO monitor_windows (window_start, window_end, assistant, rows, scored_at,"
                       " row_version) VALUES", [(DAY.replace(tzinfo=None), DAY.replace(tzinfo=None), "all", 7,
                                                 DAY.replace(tzinfo=None), 1)])
        assert ensure_columns(client, database, "monitor_windows") == ["status", "reason", "attempts"]
        ensure_schema(settings.clickhouse)  # what `nlumon services up` runs: nothing left to add
        assert ensure_columns(client, database, "monitor_windows") == []
        rows = client.execute("SELECT rows, status, reason, attempts FROM monitor_windows FINAL")
    finally:
        client.disconnect()
    assert rows == [(7, "scored", "", 0)]  # rows written before the columns were scored windows
    job = MonitorJob(settings, lambda: connect(settings.clickhouse))
    assert job.run_once(now=DAY, since=DAY - timedelta(days=1)) == []
