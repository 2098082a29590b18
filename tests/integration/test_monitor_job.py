"""The monitor job on real ClickHouse rows written by the real pipeline (tiny real model package).

Every run uses its own random day in the 1990s, so reruns and other engineers' data never mix with it;
queries are filtered by that time range. Reference: ``rolling`` over a stable baseline filled the day before.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.job import MonitorJob
from nlumon.schema import connect
from tests.conftest import make_test_settings
from tests.helpers import fill_clickhouse, tiny_model_settings

pytestmark = pytest.mark.integration
SPACING_MS = 300.0  # 1000 rows per 5-minute window


def random_day() -> datetime:
    return datetime(1990, 1, 8, tzinfo=UTC) + timedelta(days=random.SystemRandom().randrange(3500))


@pytest.fixture(scope="module")
def scored(services, tmp_path_factory):
    """Baseline (day 0), a stable day (day 1) and a demo day (day 2), each scored once."""
    day0 = random_day()
    settings = tiny_model_settings(make_test_settings(monitor={"reference": "rolling", "max_sample": 400}))
    fill_clickhouse(settings, "stable", 3000, seed=11, spacing_ms=SPACING_MS, start=day0 + timedelta(hours=12))
    stable = fill_clickhouse(settings, "stable", 3000, seed=12, spacing_ms=SPACING_MS, start=day0 + timedelta(days=1))
    demo = fill_clickhouse(settings, "demo", 5000, seed=13, spacing_ms=SPACING_MS, start=day0 + timedelta(days=2))
    job = MonitorJob(settings, lambda: connect(settings.clickhouse), report_dir=tmp_path_factory.mktemp("reports"))
    late_by = timedelta(seconds=settings.monitor.window_s + settings.monitor.grace_s)
    stable_outcomes = job.run_once(now=stable.last_ts + late_by, since=day0 + timedelta(days=1))
    demo_outcomes = job.run_once(now=demo.last_ts + late_by, since=day0 + timedelta(days=2))
    return {"settings": settings, "job": job, "stable": (stable, stable_outcomes), "demo": (demo, demo_outcomes)}


def phases_of(filled, outcome) -> set[str]:
    start, end = outcome.window_start.replace(tzinfo=UTC), outcome.window_end.replace(tzinfo=UTC)
    return {e.truth["phase"] for e in filled.events if start <= datetime.fromisoformat(e.truth["ts"]) < end}


def test_stable_traffic_raises_almost_no_drift(scored) -> None:
    _filled, outcomes = scored["stable"]
    assert len(outcomes) == 3 and all(o.reference == "rolling" for o in outcomes)
    assert sum(o.drifted for o in outcomes) <= 1


def test_shifted_windows_of_the_demo_are_flagged(scored) -> None:
    filled, outcomes = scored["demo"]
    assert len(outcomes) == 5
    baseline = [o for o in outcomes if phases_of(filled, o) == {"baseline"}]
    shifted = [o for o in outcomes if phases_of(filled, o) & {"shift", "ood-burst"}]
    assert len(baseline) == 2 and len(shifted) == 3
    assert sum(o.drifted for o in baseline) <= 1
    assert sum(o.drifted for o in shifted) >= 2
    flagged = {r.feature for o in shifted for r in o.report.drifted}
    assert flagged & {"embedding_sketch", "ood_score", "ood_rate", "intent"}


def test_results_are_stored_and_a_drifted_window_has_a_report(scored) -> None:
    filled, outcomes = scored["demo"]
    settings = scored["settings"]
    first, last = outcomes[0].window_start, outcomes[-1].window_end
    client = connect(settings.clickhouse)
    try:
        windows = client.execute(
            "SELECT window_start, assistant, rows, drifted, report_path FROM monitor_windows FINAL"
            " WHERE window_start >= %(a)s AND window_start < %(b)s ORDER BY window_start, assistant",
            {"a": first, "b": last})
        results = client.execute(
            "SELECT count(), sum(drifted) FROM drift_results FINAL"
            " WHERE window_start >= %(a)s AND window_start < %(b)s",
            {"a": first, "b": last})[0]
    finally:
        client.disconnect()
    overall = [row for row in windows if row[1] == "all"]
    assert [row[0] for row in overall] == [o.window_start for o in outcomes]
    assert sum(row[2] for row in overall) == len(filled.events) == 5000
    assert {row[1] for row in windows} == {"all", "shopper", "associate"}
    assert results[0] == sum(len(o.report.results) for o in outcomes)
    assert results[1] == sum(len(o.report.drifted) for o in outcomes)
    reports = [row[4] for row in overall if row[3]]
    assert reports and all(Path(path).is_file() and path.endswith(".html") for path in reports)


def test_scored_windows_are_left_alone_until_late_rows_arrive(scored) -> None:
    settings, job = scored["settings"], scored["job"]
    filled, outcomes = scored["stable"]
    now = filled.last_ts + timedelta(hours=1)
    assert job.run_once(now=now, since=outcomes[0].window_start) == []
    target = outcomes[1]
    fill_clickhouse(settings, "stable", 40, seed=99, spacing_ms=1000,
                    start=target.window_start.replace(tzinfo=UTC) + timedelta(seconds=30))
    rescored = job.run_once(now=now, since=outcomes[0].window_start)
    assert [o.window_start for o in rescored] == [target.window_start]
    assert rescored[0].rescored and rescored[0].rows == target.rows + 40
