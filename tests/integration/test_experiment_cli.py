"""``nlumon experiment start|status|stop|conclude`` on the real ClickHouse, from start to a real promotion.

Each test has its own database and its own model registry (two versions of the tiny test package: ``v1`` is
``current``, ``v2`` the challenger). Predictions rows carry the experiment and the arm the assignment gives, as a
worker writes them; outcomes rows say which sessions completed their task. The promotion goes through
``model_runtime.registry.promote_gated`` with a gate report built as ``nlumon model gate`` would leave it
(evidence constructed, package identities real), so ``current`` really moves to the challenger.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from experiments.cli import experiment_app
from experiments.definition import load_experiment
from model_runtime.gate import (
    GATE_REPORT,
    Evidence,
    GateThresholds,
    build_report,
    decide,
    package_identity,
    write_report,
)
from model_runtime.package import MANIFEST, load_package, write_manifest
from model_runtime.registry import current_version, promote
from model_runtime.testing import cached_tiny_package
from nlumon.schema import connect, ensure_schema

pytestmark = pytest.mark.integration
GOOD = Evidence(0.97, 0.95, {"shopper": 0.97, "associate": 0.96}, slot_f1_by_type={"person": 0.9})
HOLDOUT = {"kind": "holdout", "name": "production-v1", "sha256": "0" * 64, "n": 600}


def variant(folder: Path, version: str) -> Path:
    """A copy of the tiny package re-packaged under another version (another manifest digest)."""
    shutil.copytree(cached_tiny_package(), folder)
    (folder / GATE_REPORT).unlink(missing_ok=True)
    manifest = json.loads((folder / MANIFEST).read_text())
    write_manifest(folder, {**manifest, "version": version})
    return folder


def gate_against(package: Path, champion: Path) -> None:
    """The passed gate report `nlumon model gate --champion` leaves beside a better challenger."""
    report = build_report(decide(GOOD, GOOD, GateThresholds()), package_identity(load_package(package)),
                          package_identity(load_package(champion)), HOLDOUT, [GOOD, GOOD], GateThresholds(),
                          backend="onnx-cpu")
    write_report(package / GATE_REPORT, report)


@pytest.fixture
def lab(services, unique, tmp_path):
    """Own database, a registry serving v1, a gated challenger v2 and an ungated v3, and a settings file."""
    database = f"nlumon_experiment_{unique}"
    clickhouse = services.clickhouse.model_copy(update={"database": database})
    ensure_schema(clickhouse)
    registry = tmp_path / "registry"
    promote(variant(tmp_path / "src" / "v1", f"exp-v1-{unique}"), registry)
    v2 = variant(tmp_path / "src" / "v2", f"exp-v2-{unique}")
    gate_against(v2, registry / "current")
    v3 = variant(tmp_path / "src" / "v3", f"exp-v3-{unique}")
    config = tmp_path / "nlumon.toml"
    config.write_text(
        f'environment = "test"\n[clickhouse]\nport = {clickhouse.port}\ndatabase = "{database}"\n'
        f'[model]\npackage_path = "{registry / "current"}"\n[services]\nrun_dir = "{tmp_path / "run"}"\n'
        f'[monitor]\noutcome_delay_s = 300\n')
    client = connect(clickhouse)
    yield {"config": config, "registry": registry, "v2": v2, "v3": v3, "client": client, "unique": unique,
           "run_dir": tmp_path / "run"}
    client.execute(f"DROP DATABASE IF EXISTS {database}")
    client.disconnect()


def cli(lab, *args: str):
    return CliRunner().invoke(experiment_app, [*args, "--config", str(lab["config"])])


def traffic(lab, name: str, sessions: int, rates: dict[str, float], *, young: int = 0, seed: int = 0) -> None:
    """Predictions (2 per session, the arm of the assignment) and outcomes, as workers and assistants leave them.

    ``young`` more sessions spoke 10 s ago: their outcomes may still come, so they must not count yet.
    """
    experiment = load_experiment(lab["registry"] / "experiment.json")
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    predictions, outcomes, letters = [], [], []
    for index in range(sessions + young):
        session = f"{lab['unique']}-{seed}-{index}"
        arm = experiment.arm_of(session)
        at = now - (timedelta(seconds=10) if index >= sessions else timedelta(hours=2))
        for turn in range(2):
            predictions.append((str(uuid.uuid4()), at + timedelta(seconds=turn), at, "shopper", session,
                                f"version-of-{arm}", float(rng.normal(40, 5)), int(rng.random() < 0.05), 1, name, arm))
        if rng.random() < rates[arm]:
            outcomes.append((str(uuid.uuid4()), at + timedelta(minutes=1), at, session, "", "task_completed",
                             int(rng.integers(3, 6)), None, 0, index, 1))
        if index % 200 == 0:
            letters.append((at, f"utterances-{lab['unique']}", 0, seed * 100_000 + index, "bad json", 10, "h",
                            name, arm))
    client = lab["client"]
    client.execute("INSERT INTO predictions (id, ts, ingested_at, assistant, session_id, model_version, e2e_ms, "
                   "is_ood, row_version, experiment, arm) VALUES", predictions)
    client.execute("INSERT INTO outcomes (id, ts, ingested_at, session_id, utterance_id, kind, satisfaction, value, "
                   "kafka_partition, kafka_offset, row_version) VALUES", outcomes)
    client.execute("INSERT INTO dead_letters (ts, source_topic, kafka_partition, kafka_offset, reason, "
                   "original_bytes, original_hash, experiment, arm) VALUES", letters)


def stored(lab, name: str):
    client = lab["client"]
    experiment = client.execute("SELECT status, arms, model_versions FROM experiments FINAL WHERE name = %(n)s",
                                {"n": name})
    results = client.execute("SELECT arm, metric, sessions, p_value, decision FROM experiment_results FINAL "
                             "WHERE experiment = %(n)s", {"n": name})
    return experiment, results


def test_an_experiment_from_start_to_a_promoted_challenger(lab):
    name = f"ab-{lab['unique']}"
    started = cli(lab, "start", name, "--challenger", str(lab["v2"]), "--min-sessions", "100")
    assert started.exit_code == 0, started.output
    assert f"exp-v1-{lab['unique']}" in started.output and f"exp-v2-{lab['unique']}" in started.output
    assert load_experiment(lab["registry"] / "experiment.json").running
    assert stored(lab, name)[0] == [("running", ["control", "challenger"],
                                     [f"exp-v1-{lab['unique']}", f"exp-v2-{lab['unique']}"])]
    again = cli(lab, "start", f"other-{lab['unique']}", "--challenger", str(lab["v3"]))
    assert again.exit_code == 1 and f"experiment {name!r} is running" in again.output

    traffic(lab, name, 1600, {"control": 0.45, "challenger": 0.70}, young=60)
    status = cli(lab, "status", "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert arms["control"]["sessions"] + arms["challenger"]["sessions"] == 1600
    assert arms["control"]["pending_sessions"] + arms["challenger"]["pending_sessions"] == 60
    assert abs(arms["challenger"]["metrics"]["task_completed"]["value"] - 0.70) < 0.05
    assert arms["challenger"]["model_versions"] == ["version-of-challenger"]
    assert report["decision"]["outcome"] == "challenger_wins" and report["srm"]["p_value"] > 0.001
    assert report["comparisons"]["challenger"]["task_completed"]["p_value"] < 0.001
    assert {check["status"] for check in report["guardrails"] if check["arm"] == "challenger"} == {"pass"}
    _experiment, results = stored(lab, name)
    assert len(results) == 2 * 6 + 6 + 2 * 3
    assert {row[4] for row in results} == {"challenger_wins"}

    table = cli(lab, "status")
    assert table.exit_code == 0 and "decision: challenger_wins" in table.output and "task_completed" in table.output

    stopped = cli(lab, "stop", "--reason", "enough data")
    assert stopped.exit_code == 0, stopped.output
    assert load_experiment(lab["registry"] / "experiment.json").status == "stopped"
    assert stored(lab, name)[0][0][0] == "stopped"
    assert cli(lab, "stop").exit_code == 1

    concluded = cli(lab, "conclude", "--promote")
    assert concluded.exit_code == 0, concluded.output
    assert f"promoted exp-v2-{lab['unique']}" in concluded.output
    assert current_version(lab["registry"]) == f"exp-v2-{lab['unique']}"
    folder = lab["run_dir"] / "experiments" / name
    written = json.loads((folder / "report.json").read_text())
    assert written["decision"]["outcome"] == "challenger_wins" and written["promotion"]["promoted"] is True
    assert written["status"] == "concluded" and written["stop_reason"] == "enough data"
    assert "challenger_wins" in (folder / "report.md").read_text()
    assert load_experiment(lab["registry"] / "experiment.json").status == "concluded"
    assert stored(lab, name)[0][0][0] == "concluded"


def test_promotion_is_refused_without_a_winner_or_without_a_passed_gate(lab):
    flat = f"flat-{lab['unique']}"
    assert cli(lab, "start", flat, "--challenger", str(lab["v2"]), "--min-sessions", "100").exit_code == 0
    traffic(lab, flat, 600, {"control": 0.5, "challenger": 0.5}, seed=1)
    refused = cli(lab, "conclude", "--promote")
    assert refused.exit_code == 1
    assert "not promoting: the decision is stopped_no_difference" in refused.output
    assert current_version(lab["registry"]) == f"exp-v1-{lab['unique']}"
    written = json.loads((lab["run_dir"] / "experiments" / flat / "report.json").read_text())
    assert written["promotion"]["promoted"] is False and written["status"] == "concluded"

    ungated = f"ungated-{lab['unique']}"
    assert cli(lab, "start", flat, "--challenger", str(lab["v3"])).exit_code == 1  # a name is never reused
    assert cli(lab, "start", ungated, "--challenger", str(lab["v3"]), "--min-sessions", "100").exit_code == 0
    traffic(lab, ungated, 1600, {"control": 0.45, "challenger": 0.70}, seed=2)
    refused = cli(lab, "conclude", "--promote")
    assert refused.exit_code == 1 and "no gate report" in refused.output
    assert current_version(lab["registry"]) == f"exp-v1-{lab['unique']}"
    earlier = cli(lab, "status", flat, "--json")  # a concluded experiment is still readable by name
    assert earlier.exit_code == 0 and json.loads(earlier.output)["experiment"] == flat


def test_start_refuses_a_package_that_does_not_load(lab, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    result = cli(lab, "start", f"bad-{lab['unique']}", "--challenger", str(broken))
    assert result.exit_code == 1 and "does not load" in result.output
    assert not (lab["registry"] / "experiment.json").exists()
