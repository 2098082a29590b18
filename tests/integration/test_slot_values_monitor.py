"""Unseen slot values and new names in the monitor job, on real ClickHouse rows written by the real pipeline.

The worker's pipeline (tiny real package: its reference now carries per-row assistant/slot columns and a
slot-value vocabulary) stores a ``new-names`` replay; the monitor scores its windows with the package reference.
Checked against ClickHouse itself: every ``slot_value_windows`` count equals what SQL counts in ``predictions``
for that window, assistant and slot type; every stored new value was used by at least 3 distinct sessions; the
name dictionary received exactly the new ``person``/``brand`` values; slot-mix drift runs with the package
reference, per assistant. A copy of the package without the new columns (a package built before them) scores its
windows too: the detector is stored ``not_scored``, drift is scored on the whole traffic only, no slot detector
runs. Each run uses its own random day (2003-2011).
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.slot_values import is_scrubbed
from labeling.names import InvalidNameError, NameDictionary, clean_value
from model_runtime.package import REFERENCE, write_manifest
from model_runtime.reference import ROW_COLUMNS
from monitor.job import PROPOSED_SLOT_TYPES, MonitorJob, slot_value_metrics
from nlumon.schema import connect, ensure_schema
from tests.conftest import make_test_settings
from tests.helpers import fill_clickhouse, tiny_model_settings

pytestmark = pytest.mark.integration
SPACING_MS = 300.0  # 1000 rows per 5-minute window
PLACEHOLDERS = "<(EMAIL|CARD|PHONE|ADDRESS|PERSON)>"


def random_day() -> datetime:
    return datetime(2003, 1, 6, tzinfo=UTC) + timedelta(days=random.SystemRandom().randrange(3000))


def package_copy(source: Path, target: Path, *, legacy: bool = False) -> Path:
    """``source`` with its training sample as the held-out one (the tiny package's 29 dev rows calibrate no drift
    test), re-sealed; ``legacy``: also without per-row columns and vocabulary, as a package built before them."""
    shutil.copytree(source, target)
    with np.load(target / REFERENCE) as data:
        arrays = {key: data[key] for key in data.files}
    for key in [k for k in arrays if k.startswith("dev/")]:
        arrays[key] = arrays["train/" + key.split("/", 1)[1]]
    if legacy:
        arrays = {key: value for key, value in arrays.items() if key.split("/")[-1] not in ROW_COLUMNS}
    np.savez_compressed(target / REFERENCE, **arrays)
    manifest = json.loads((target / "manifest.json").read_text())
    if legacy:
        manifest["reference"].pop("slot_values")
    write_manifest(target, manifest)
    return target


def with_package(settings, package: Path):
    return settings.model_copy(update={"model": settings.model.model_copy(update={"package_path": package})})


def query(settings, sql: str, params: dict) -> list[tuple]:
    client = connect(settings.clickhouse)
    try:
        return client.execute(sql, params)
    finally:
        client.disconnect()


@pytest.fixture(scope="module")
def scored(services, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slot-values")
    day = random_day()
    settings = tiny_model_settings(make_test_settings(monitor={"reference": "package", "max_sample": 400}))
    ensure_schema(settings.clickhouse)  # services started before slot_value_windows existed get it here
    filled = fill_clickhouse(settings, "new-names", 3000, seed=21, spacing_ms=SPACING_MS, start=day)
    names = NameDictionary.load(tmp / "names.json")
    new_settings = with_package(settings, package_copy(settings.model.package_path, tmp / "package"))
    job = MonitorJob(new_settings, lambda: connect(settings.clickhouse), report_dir=tmp / "reports", names=names)
    late_by = timedelta(seconds=settings.monitor.window_s + settings.monitor.grace_s)
    outcomes = job.run_once(now=filled.last_ts + late_by, since=day)

    old_day = day + timedelta(days=1)
    old_settings = with_package(settings, package_copy(settings.model.package_path, tmp / "legacy", legacy=True))
    old_filled = fill_clickhouse(settings, "stable", 1000, seed=22, spacing_ms=SPACING_MS, start=old_day)
    old_job = MonitorJob(old_settings, lambda: connect(settings.clickhouse), report_dir=tmp / "reports")
    old_outcomes = old_job.run_once(now=old_filled.last_ts + late_by, since=old_day)
    return {"settings": settings, "job": job, "outcomes": outcomes, "names": names, "day": day,
            "old": old_outcomes, "old_job": old_job, "late_by": late_by, "filled": filled}


def stored_rows(settings, outcomes) -> list[dict]:
    columns = ("window_start", "assistant", "slot_type", "values", "unseen", "unseen_rate", "reference_rate",
               "scrubbed", "new_values", "status", "reason")
    rows = query(settings, f"SELECT {', '.join(columns)} FROM slot_value_windows FINAL WHERE window_start >= %(a)s"
                 " AND window_start <= %(b)s ORDER BY window_start, assistant, slot_type",
                 {"a": outcomes[0].window_start, "b": outcomes[-1].window_start})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_every_window_scores_and_stores_its_slot_values(scored) -> None:
    outcomes = scored["outcomes"]
    assert len(outcomes) == 3 and [r.status for r in scored["job"].last_run.results] == ["scored"] * 3
    assert all(o.slot_values.status == "scored" for o in outcomes)
    rows = stored_rows(scored["settings"], outcomes)
    assert {row["window_start"] for row in rows} == {o.window_start for o in outcomes}
    assert {row["status"] for row in rows} == {"scored"}
    assert {row["assistant"] for row in rows} <= {"all", "shopper", "associate"}


def test_stored_counts_equal_what_clickhouse_counts(scored) -> None:
    settings, outcomes = scored["settings"], scored["outcomes"]
    counted = query(settings, (
        "SELECT toDateTime(intDiv(toUInt32(ts), 300) * 300) AS w, toString(assistant) AS a, t, count(),"
        " countIf(match(v, %(placeholders)s)) FROM predictions FINAL ARRAY JOIN slot_types AS t, slot_values AS v"
        " WHERE ts >= %(a)s AND ts < %(b)s GROUP BY w, a, t"),
        {"a": outcomes[0].window_start, "b": outcomes[-1].window_end, "placeholders": PLACEHOLDERS})
    expected: dict[tuple, list[int]] = {}
    for window, assistant, slot_type, values, scrubbed in counted:
        for group in ("all", assistant):
            totals = expected.setdefault((window, group, slot_type), [0, 0])
            totals[0] += values
            totals[1] += scrubbed
    stored = {(r["window_start"], r["assistant"], r["slot_type"]): r for r in stored_rows(settings, outcomes)}
    assert expected, "the package's model predicted no slot at all"
    assert set(stored) == set(expected)
    for key, (values, scrubbed) in expected.items():
        row = stored[key]
        assert (row["values"], row["scrubbed"]) == (values, scrubbed), key
        assert row["unseen"] <= values - scrubbed
        if values > scrubbed:
            assert row["unseen_rate"] == pytest.approx(row["unseen"] / (values - scrubbed), abs=1e-6)
        else:
            assert np.isnan(row["unseen_rate"])


def test_new_values_were_used_by_at_least_three_sessions(scored) -> None:
    settings, outcomes = scored["settings"], scored["outcomes"]
    checked = 0
    for row in stored_rows(settings, outcomes):
        for value in row["new_values"]:
            if is_scrubbed(value):  # a value that reads as a given name is stored as <PERSON> in this table
                continue
            assistant = "" if row["assistant"] == "all" else " AND assistant = %(assistant)s"
            (sessions,) = query(settings, (
                "SELECT uniqExact(session_id) FROM predictions FINAL WHERE ts >= %(a)s AND ts < %(b)s"
                " AND arrayExists((t, x) -> t = %(t)s AND lowerUTF8(replaceRegexpAll(x, %(trim)s, '')) = %(v)s,"
                " slot_types, slot_values)" + assistant),
                {"a": row["window_start"], "b": row["window_start"] + timedelta(minutes=5), "t": row["slot_type"],
                 "v": value, "assistant": row["assistant"], "trim": r"^\s+|\s+$"})[0]
            assert sessions >= 3, (row["slot_type"], value, sessions)
            checked += 1
    assert checked, "no new value in a replay where half of the traffic names unseen products and brands"


def test_the_dictionary_got_exactly_the_new_person_and_brand_values(scored) -> None:
    expected = set()
    for outcome in scored["outcomes"]:
        for slot_type in PROPOSED_SLOT_TYPES:
            stats = outcome.slot_values.report.get("overall", slot_type)
            for value in stats.new_values if stats else ():
                try:
                    expected.add((clean_value(value), slot_type))
                except InvalidNameError:
                    continue
    names = scored["names"].reload()
    assert {(e.value, e.slot_type) for e in names.entries()} == expected
    assert all(e.status == "proposed" and e.sessions >= 3 and e.proposed_by == "monitor" for e in names.entries())
    version = names.version
    job, filled = scored["job"], scored["filled"]
    assert job.run_once(now=filled.last_ts + scored["late_by"], since=scored["day"]) == []  # nothing due
    assert names.reload().version == version


def test_the_unseen_rate_reaches_the_alert_metrics(scored) -> None:
    for outcome in scored["outcomes"]:
        metrics = {(m, a): value for m, value, a, _ in slot_value_metrics(outcome)}
        for stats in outcome.slot_values.report.stats:
            if stats.judged:
                key = (f"slot_unseen_rate.{stats.slot_type}", None if stats.group == "overall" else stats.group)
                assert metrics[key] == pytest.approx(stats.unseen_rate)


def test_slot_mix_drift_runs_with_the_package_reference_and_not_with_an_old_package(scored) -> None:
    settings = scored["settings"]

    def features(outcomes) -> set[tuple[str, str]]:
        span = {"a": outcomes[0].window_start, "b": outcomes[-1].window_start}
        rows = query(settings, "SELECT DISTINCT assistant, feature FROM drift_results FINAL WHERE window_start >="
                     " %(a)s AND window_start <= %(b)s", span)
        return set(rows)

    new = features(scored["outcomes"])
    assert ("all", "slot_types") in new and ("shopper", "slot_types") in new  # per assistant, package reference
    assert {assistant for assistant, _ in new} > {"all"}
    old = scored["old"]
    assert old and [r.status for r in scored["old_job"].last_run.results] == ["scored"] * len(old)
    assert {assistant for assistant, _ in features(old)} == {"all"}  # whole traffic only, as before
    assert not {feature for _, feature in features(old)} & {"slot_types", "slot_confidence"}
    rows = stored_rows(settings, old)
    assert [(r["assistant"], r["slot_type"], r["status"]) for r in rows] == [("all", "", "not_scored")] * len(old)
    assert all(r["reason"].startswith("no_vocabulary:") for r in rows)
