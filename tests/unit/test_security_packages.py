"""Model package security: the manifest is covered by its own digest, versions cannot be paths, and
checkpoints are loaded as data only (docs/security.md, "Model packages")."""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_runtime.cli import app
from model_runtime.package import (
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_DIGEST,
    PackageIntegrityError,
    is_valid_version,
    load_package,
    manifest_digest,
    write_manifest,
)
from model_runtime.registry import CURRENT, RegistryError, promote
from model_runtime.testing import cached_tiny_package

ROOT = Path(__file__).resolve().parents[2]
BAD_VERSIONS = ["../../etc", "a/b", "", ".", "..", "a..b", ".hidden", "-rf", "a\\b", "a b", "a\x00b", "v\u00e9",
                "x" * 129, "/abs", 7, None]
GOOD_VERSIONS = ["retail-20261123T180000Z-1a2b3c4d", "v1.2_3", "0", "x" * 128]


@pytest.fixture(scope="module")
def source():
    return cached_tiny_package()


@pytest.fixture
def package_dir(source, tmp_path):
    target = tmp_path / "pkg"
    shutil.copytree(source, target)  # tests below damage their copy, never the shared package
    return target


def read(package_dir: Path) -> dict:
    return json.loads((package_dir / MANIFEST).read_text())


def write_raw(package_dir: Path, manifest: dict, *, reseal: bool = False) -> None:
    """Write a manifest as an editor would (reseal=True: also recompute the digest, as a forger would)."""
    if reseal:
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (package_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_a_new_package_carries_a_digest_of_its_own_manifest(package_dir):
    manifest = read(package_dir)
    assert manifest["format"] == FORMAT_VERSION == 2
    assert manifest[MANIFEST_DIGEST] == manifest_digest(manifest)
    package = load_package(package_dir)
    assert package.verified_manifest


def _set_temperature(m):
    m["calibration"]["temperature"] = 5.0


def _set_ood_threshold(m):
    m["ood"] = {"mahalanobis_threshold": 1e9}  # would silence every OOD alert


def _swap_file_hash(m):
    m["files"]["model.onnx"] = m["files"]["model.int8.onnx"]


def _drop_digest(m):
    del m[MANIFEST_DIGEST]


def _garbage_digest(m):
    m[MANIFEST_DIGEST] = ["not", "a", "digest"]


def _nudge_temperature(m):
    m["calibration"]["temperature"] = float(m["calibration"]["temperature"]) * (1 + 1e-12)


@pytest.mark.parametrize(
    "edit",
    [_set_temperature, _set_ood_threshold, _swap_file_hash, _drop_digest, _garbage_digest, _nudge_temperature],
)
@pytest.mark.parametrize("verify", [True, False])
def test_an_edited_manifest_is_refused_like_an_edited_weight_file(package_dir, edit, verify):
    manifest = read(package_dir)
    edit(manifest)
    write_raw(package_dir, manifest)
    with pytest.raises(PackageIntegrityError, match=rf"manifest\.json: .*{MANIFEST_DIGEST}"):
        load_package(package_dir, verify=verify)  # the manifest is checked even when file hashing is skipped


def test_formatting_alone_does_not_change_the_digest(package_dir):
    manifest = read(package_dir)
    (package_dir / MANIFEST).write_text(json.dumps(dict(reversed(list(manifest.items()))), indent=7))
    assert load_package(package_dir).verified_manifest


def test_rewriting_a_copied_manifest_reseals_it(package_dir):
    manifest = read(package_dir)
    manifest["calibration"]["temperature"] = 2.0
    write_manifest(package_dir, manifest)  # the old digest travels in the dict: it must be replaced, not kept
    package = load_package(package_dir)
    assert package.temperature == 2.0 and package.verified_manifest


def legacy(package_dir: Path) -> None:
    """Turn a package into what the code before the manifest digest wrote (format 1, no digest)."""
    manifest = read(package_dir)
    del manifest[MANIFEST_DIGEST]
    manifest["format"] = 1
    write_raw(package_dir, manifest)


def test_a_legacy_package_loads_with_a_warning_and_is_flagged_unverified(package_dir, caplog):
    legacy(package_dir)
    with caplog.at_level(logging.WARNING, logger="model_runtime.package"):
        package = load_package(package_dir)
    assert not package.verified_manifest
    assert "legacy manifest" in caplog.text and "nlumon model seal" in caplog.text
    with pytest.raises(PackageIntegrityError, match=r"legacy manifest .*`nlumon model seal PACKAGE`"):
        load_package(package_dir, allow_legacy=False)
    (package_dir / "config.json").write_text("{}")  # its file hashes are still checked
    with pytest.raises(PackageIntegrityError, match=r"config\.json.*SHA-256"):
        load_package(package_dir)


def test_seal_gives_a_legacy_package_its_digest_and_refuses_an_edited_one(package_dir):
    legacy(package_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["seal", str(package_dir)])
    assert result.exit_code == 0, result.output
    assert "sealed package" in result.output
    assert load_package(package_dir, allow_legacy=False).verified_manifest
    again = runner.invoke(app, ["seal", str(package_dir)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    manifest = read(package_dir)
    manifest["calibration"]["temperature"] = 9.0
    write_raw(package_dir, manifest)
    refused = runner.invoke(app, ["seal", str(package_dir)])  # sealing never launders an edited manifest
    assert refused.exit_code != 0 and isinstance(refused.exception, PackageIntegrityError)


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_a_version_that_is_not_a_plain_folder_name_is_refused_at_write_load_and_promote(
    package_dir, tmp_path, version
):
    assert not is_valid_version(version)
    manifest = read(package_dir)
    manifest["version"] = version
    with pytest.raises(PackageIntegrityError, match="not a valid package version"):
        write_manifest(package_dir, dict(manifest))
    write_raw(package_dir, manifest, reseal=True)  # even with a matching digest
    with pytest.raises(PackageIntegrityError, match="not a valid package version"):
        load_package(package_dir)
    registry = tmp_path / "deep" / "er" / "registry"
    with pytest.raises(PackageIntegrityError, match="not a valid package version"):
        promote(package_dir, registry)
    assert not registry.exists() and not (tmp_path / "etc").exists()


@pytest.mark.parametrize("version", GOOD_VERSIONS)
def test_plain_versions_are_accepted(version):
    assert is_valid_version(version)


@pytest.mark.parametrize("version", ["current", "promotions.jsonl", "CURRENT"])
def test_a_version_that_names_a_registry_entry_is_refused_at_promote(package_dir, tmp_path, version):
    manifest = read(package_dir)
    manifest["version"] = version
    write_manifest(package_dir, manifest)
    with pytest.raises(RegistryError, match="reserved name"):
        promote(package_dir, tmp_path / "registry")
    assert not (tmp_path / "registry" / CURRENT).exists()


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/hostname", "a/../../b", "./model.onnx", "a\\b", MANIFEST])
def test_a_manifest_cannot_list_files_outside_the_package(package_dir, tmp_path, name):
    (tmp_path / "outside.bin").write_bytes(b"x")
    manifest = read(package_dir)
    manifest["files"][name] = "0" * 64
    write_raw(package_dir, manifest, reseal=True)
    with pytest.raises(PackageIntegrityError, match="not a file of the package"):
        load_package(package_dir)


def test_a_manifest_hash_must_be_a_sha256_hex_digest(package_dir):
    manifest = read(package_dir)
    manifest["files"]["model.onnx"] = "sha256-of-nothing"
    write_raw(package_dir, manifest, reseal=True)
    with pytest.raises(PackageIntegrityError, match=r"model\.onnx: manifest hash is not a SHA-256"):
        load_package(package_dir)


def _python_files():
    skip = {".venv", ".git", ".run", "node_modules", "__pycache__", "shared"}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                yield Path(folder) / name


def test_torch_load_is_only_ever_called_with_weights_only_true():
    calls = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                safe = len(weights_only) == 1 and isinstance(weights_only[0].value, ast.Constant) and (
                    weights_only[0].value.value is True
                )
                calls.append((path.relative_to(ROOT).as_posix(), node.lineno, safe))
    assert calls, "expected the training checkpoint loader at least"
    assert [c for c in calls if not c[2]] == []
