"""Model packages: hash verification, refusal of tampered or incomplete packages, registry promotion, golden set."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from model_runtime.cli import app
from model_runtime.evaluation import golden_check
from model_runtime.golden import GoldenCase
from model_runtime.package import MANIFEST, PackageIntegrityError, load_package, write_manifest
from model_runtime.registry import CURRENT, RegistryError, current_version, promote
from model_runtime.runtime import load_runtime
from model_runtime.testing import cached_tiny_package


@pytest.fixture(scope="module")
def source():
    return cached_tiny_package()


@pytest.fixture
def package_dir(source, tmp_path):
    target = tmp_path / "pkg"
    shutil.copytree(source, target)  # tests below damage their copy, never the shared package
    return target


def test_intact_package_loads_with_its_metadata(package_dir):
    package = load_package(package_dir)
    manifest = package.manifest
    assert set(manifest["files"]) >= {"model.onnx", "model.int8.onnx", "config.json", "tokenizer.json", "reference.npz"}
    assert len(manifest["training_data"]["fingerprint"]) == 64
    assert manifest["export"]["parity"]["max_abs_diff"] < 1e-3
    assert {"onnx-cpu", "onnx-int8"} <= set(manifest["metrics"])
    assert package.temperature > 0 and "ece_after" in manifest["calibration"]
    assert manifest["libraries"]["onnxruntime"]


def test_tampered_file_is_refused_and_named(package_dir):
    with open(package_dir / "model.int8.onnx", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))  # one flipped byte
    with pytest.raises(PackageIntegrityError, match=r"model\.int8\.onnx.*SHA-256"):
        load_package(package_dir)


def test_missing_file_is_refused_and_named(package_dir):
    (package_dir / "tokenizer.json").unlink()
    with pytest.raises(PackageIntegrityError, match=r"tokenizer\.json.*missing"):
        load_runtime(package_dir)


def test_manifest_that_drops_a_required_file_is_refused(package_dir):
    manifest = json.loads((package_dir / MANIFEST).read_text())
    del manifest["files"]["model.onnx"]
    (package_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PackageIntegrityError, match=r"model\.onnx"):
        load_package(package_dir)


def test_folder_without_manifest_is_not_a_package(tmp_path):
    with pytest.raises(PackageIntegrityError, match="manifest"):
        load_package(tmp_path)


def test_reference_statistics_serve_the_monitors(package_dir):
    reference = load_package(package_dir).reference()
    sample = reference.values("confidence", "dev")
    assert sample.ndim == 1 and ((0 <= sample) & (sample <= 1)).all()
    embeddings = reference.arrays["embedding_sample"]
    assert reference.sketch(embeddings[:5]).shape == (5, 32)
    assert (reference.mahalanobis(embeddings[:5]) >= 0).all()
    quantiles = reference.feature_summary("energy", "train")["quantiles"]
    assert quantiles == sorted(quantiles) and len(quantiles) == 101
    assert abs(sum(reference.intent_mix("shopper", "train").values()) - 1.0) < 1e-3


def test_promote_points_current_at_the_new_version(source, package_dir, tmp_path):
    registry = tmp_path / "registry"
    first = promote(source, registry)
    assert current_version(registry) == first.version
    assert load_package(registry / CURRENT).version == first.version
    manifest = json.loads((package_dir / MANIFEST).read_text())
    manifest["version"] = "retail-challenger"
    write_manifest(package_dir, manifest)  # re-packaged: a hand-edited manifest would be refused
    second = promote(package_dir, registry)
    assert (registry / CURRENT).is_symlink() and os.readlink(registry / CURRENT) == "retail-challenger"
    assert second.version == "retail-challenger" and (registry / first.version).is_dir()
    assert len((registry / "promotions.jsonl").read_text().splitlines()) == 2


def test_promote_refuses_a_tampered_package(package_dir, tmp_path):
    (package_dir / "config.json").write_text("{}")
    with pytest.raises(PackageIntegrityError, match=r"config\.json"):
        promote(package_dir, tmp_path / "registry")
    assert not (tmp_path / "registry" / CURRENT).exists()


def test_promote_refuses_a_registry_whose_current_is_a_folder(source, tmp_path):
    (tmp_path / "registry" / CURRENT).mkdir(parents=True)
    with pytest.raises(RegistryError):
        promote(source, tmp_path / "registry")


def test_golden_set_catches_a_changed_model(source):
    runtime = load_runtime(source)
    texts = ["add two jordan sneakers to my cart", "is jordan on shift tomorrow", "what time do you close"]
    # record today's answers as the golden expectations: this model passes them by construction
    cases = [
        GoldenCase(
            f"c{i}",
            "shopper",
            t,
            p.intent,
            tuple((s.type, s.text) for s in p.slots),
            max(0.0, p.confidence - 0.01),
            min(1.0, p.confidence + 0.01),
        )
        for i, (t, p) in enumerate(zip(texts, runtime.predict(texts), strict=True))
    ]
    assert golden_check(runtime, cases).ok
    # a changed model: same weights with the intent logits shifted toward another intent
    original_run = runtime.engine.run
    config = runtime.package.config

    def shifted(input_ids, attention_mask):
        outputs = dict(original_run(input_ids, attention_mask))
        logits = outputs["intent_logits"].copy()
        target = next(i for i, name in enumerate(config.intents) if name != cases[0].intent)
        logits[:, target] += 50.0
        outputs["intent_logits"] = logits
        return outputs

    runtime.engine.run = shifted
    result = golden_check(runtime, cases)
    assert not result.ok and "c0" in result.summary()


def test_check_command_exits_non_zero_when_the_golden_set_fails(source):
    # the tiny model is trained a few steps only: it cannot pass the hand-written retail golden set
    result = CliRunner().invoke(app, ["check", str(source)])
    assert result.exit_code == 1, result.output
    assert "FAIL golden-01" in result.output


def test_cli_trains_a_package_then_evaluates_and_promotes_it(tmp_path):
    from model_runtime.pipeline import load_corpus
    from model_runtime.testing import tiny_encoder

    encoder = tiny_encoder(tmp_path / "encoder")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model:\n  encoder: {encoder}\n  max_length: 32\n"
        "  heads: [{name: frustration, source: heads.frustration, positive_label: frustrated}]\n"
        "train:\n  epochs: 1\n  batch_size: 32\n  learning_rate: 0.001\n  device: cpu\n  grad_cosine_every: 0\n"
    )
    runner = CliRunner()
    out = tmp_path / "models" / "tiny"
    trained = runner.invoke(app, ["train", "--size", "200", "--out", str(out), "--config", str(config), "--seed", "3"])
    assert trained.exit_code == 0, trained.output
    package = load_package(out)
    assert [h.name for h in package.config.heads] == ["frustration"]  # the config file, not the default heads
    train_split, _, _ = load_corpus("retail", 200, 3)  # --size 200 --seed 3 regenerate the same split
    assert package.manifest["training_data"]["n_train"] == len(train_split)
    evaluated = runner.invoke(
        app,
        ["eval", str(out), "--json-out", str(tmp_path / "e.json")],  # size and seed from the manifest
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "e.json").read_text())["n"] == package.manifest["training_data"]["n_test"]
    ungated = runner.invoke(app, ["promote", str(out), "--registry", str(tmp_path / "models")])
    assert ungated.exit_code == 1 and current_version(tmp_path / "models") is None  # no gate report: refused
    promoted = runner.invoke(
        app, ["promote", str(out), "--registry", str(tmp_path / "models"), "--force", "--reason", "tiny test model"]
    )
    assert promoted.exit_code == 0 and current_version(tmp_path / "models") == package.version
