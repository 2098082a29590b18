"""``nlumon model promote`` behind the gate: a passed report against the current package, or a recorded override."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from typer.testing import CliRunner

from model_runtime.cli import app
from model_runtime.gate import (
    GATE_REPORT,
    REPORT_DIGEST,
    Evidence,
    GateThresholds,
    build_report,
    decide,
    package_identity,
    write_report,
)
from model_runtime.package import MANIFEST, load_package, write_manifest
from model_runtime.registry import (
    CURRENT,
    PROMOTIONS,
    PromotionRefusedError,
    current_version,
    promote,
    promote_gated,
    promotions,
)
from model_runtime.testing import cached_tiny_package

GOOD = Evidence(0.97, 0.95, {"shopper": 0.97, "associate": 0.96}, slot_f1_by_type={"person": 0.9})
BAD = Evidence(0.50, 0.95, {"shopper": 0.50, "associate": 0.50}, slot_f1_by_type={"person": 0.9})
HOLDOUT = {"kind": "holdout", "name": "production-v1", "sha256": "0" * 64, "n": 600}


@pytest.fixture(scope="module")
def source():
    return cached_tiny_package()


def variant(source, folder, version):
    """A copy of the tiny package re-packaged under another version (another manifest digest)."""
    shutil.copytree(source, folder)
    (folder / GATE_REPORT).unlink(missing_ok=True)
    manifest = json.loads((folder / MANIFEST).read_text())
    write_manifest(folder, {**manifest, "version": version})
    return folder


def gate(package_dir, champion_dir=None, challenger=GOOD, champion=GOOD):
    """Write the report a gate run would leave (evidence constructed, identities real)."""
    champion_id = package_identity(load_package(champion_dir)) if champion_dir else None
    evidence = [challenger, *([champion] if champion_dir else [])]
    decision = decide(challenger, champion if champion_dir else None, GateThresholds())
    report = build_report(
        decision, package_identity(load_package(package_dir)), champion_id, HOLDOUT, evidence, GateThresholds(),
        backend="onnx-int8",
    )
    write_report(package_dir / GATE_REPORT, report)
    return report


@pytest.fixture
def packages(source, tmp_path):
    return {name: variant(source, tmp_path / name, f"retail-{name}") for name in ("v1", "v2", "v3")}


def test_refused_without_a_gate_report(packages, tmp_path):
    registry = tmp_path / "registry"
    with pytest.raises(PromotionRefusedError, match="no gate report"):
        promote_gated(packages["v1"], registry)
    assert current_version(registry) is None and promotions(registry) == []
    result = CliRunner().invoke(app, ["promote", str(packages["v1"]), "--registry", str(registry)])
    assert result.exit_code == 1 and "refusing to promote retail-v1" in result.output
    assert "--force --reason" in result.output


def test_first_promotion_needs_a_passed_gate_without_champion(packages, tmp_path):
    registry = tmp_path / "registry"
    gate(packages["v1"], packages["v2"])  # a report against a champion does not fit an empty registry
    with pytest.raises(PromotionRefusedError, match=r"registry .* is empty but the gate report compared"):
        promote_gated(packages["v1"], registry)
    report = gate(packages["v1"])
    result = CliRunner().invoke(app, ["promote", str(packages["v1"]), "--registry", str(registry)])
    assert result.exit_code == 0, result.output
    assert current_version(registry) == "retail-v1"
    [record] = promotions(registry)
    assert record["gate"] == f"sha256:{report[REPORT_DIGEST]}" and record["previous"] is None
    assert (registry / "retail-v1" / GATE_REPORT).is_file()  # the evidence travels with the package


def test_a_failed_gate_is_refused(packages, tmp_path):
    registry = tmp_path / "registry"
    gate(packages["v1"])
    promote_gated(packages["v1"], registry)
    gate(packages["v2"], registry / CURRENT, challenger=BAD)
    with pytest.raises(PromotionRefusedError, match="says 'reject'"):
        promote_gated(packages["v2"], registry)
    assert current_version(registry) == "retail-v1"


def test_a_stale_champion_is_refused_and_a_fresh_gate_passes(packages, tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    registry = tmp_path / "registry"
    gate(packages["v1"])
    promote_gated(packages["v1"], registry)
    gate(packages["v2"], registry / CURRENT)
    gate(packages["v3"], registry / CURRENT)  # v3 was gated against v1 ...
    promote_gated(packages["v2"], registry)  # ... but v2 went in first
    with pytest.raises(PromotionRefusedError, match=r"stale gate report: it compared against 'retail-v1'.*retail-v2"):
        promote_gated(packages["v3"], registry)
    gate(packages["v3"], registry / CURRENT)
    promote_gated(packages["v3"], registry)
    log = promotions(registry)
    assert [(r["version"], r["previous"]) for r in log] == [
        ("retail-v1", None), ("retail-v2", "retail-v1"), ("retail-v3", "retail-v2"),
    ]
    assert {r["user"] for r in log} == {"alice"} and all(r["gate"].startswith("sha256:") for r in log)


def test_a_report_of_another_package_is_refused(packages, tmp_path):
    registry = tmp_path / "registry"
    gate(packages["v1"])
    shutil.copy2(packages["v1"] / GATE_REPORT, packages["v2"] / GATE_REPORT)  # copied along, e.g. by an export
    with pytest.raises(PromotionRefusedError, match="is for 'retail-v1'"):
        promote_gated(packages["v2"], registry)


def test_a_report_without_champion_does_not_replace_a_serving_model(packages, tmp_path):
    registry = tmp_path / "registry"
    gate(packages["v1"])
    promote_gated(packages["v1"], registry)
    gate(packages["v2"])
    with pytest.raises(PromotionRefusedError, match=r"has no champion, but .* serves retail-v1"):
        promote_gated(packages["v2"], registry)


def test_forced_promotion_needs_a_reason_and_is_logged_and_recorded(packages, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("USER", "bob")
    registry = tmp_path / "registry"
    promote(packages["v1"], registry)  # the unchecked placement underneath (demo bootstrap)
    runner = CliRunner()
    no_reason = runner.invoke(app, ["promote", str(packages["v2"]), "--registry", str(registry), "--force"])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    with pytest.raises(PromotionRefusedError, match="non-empty"):
        promote_gated(packages["v2"], registry, force_reason="  ")
    assert current_version(registry) == "retail-v1"
    with caplog.at_level(logging.WARNING, logger="model_runtime.registry"):
        result = runner.invoke(
            app, ["promote", str(packages["v2"]), "--registry", str(registry), "--force", "--reason", "hotfix 123"]
        )
    assert result.exit_code == 0, result.output
    assert current_version(registry) == "retail-v2"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "FORCED promotion of retail-v2" in warning.getMessage() and "hotfix 123" in warning.getMessage()
    lines = (registry / PROMOTIONS).read_text().splitlines()
    assert len(lines) == 2
    first, forced = (json.loads(line) for line in lines)
    assert first["gate"] == "unchecked"
    assert forced["gate"] == "forced: hotfix 123" and forced["user"] == "bob" and forced["previous"] == "retail-v1"
    assert "no gate report" in forced["overrode"] and forced["promoted_at"]


def test_promoting_the_current_package_again_changes_nothing(packages, tmp_path):
    registry = tmp_path / "registry"
    gate(packages["v1"])
    promote_gated(packages["v1"], registry)
    assert promote_gated(packages["v1"], registry).version == "retail-v1"
    assert len(promotions(registry)) == 1
