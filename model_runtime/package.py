"""Model packages: a folder the workers load, verified file by file against its manifest. No torch.

Layout::

    manifest.json          version, sha256 of every other file, data fingerprint, library versions,
                           eval metrics, calibration temperature, export parity, reference summary
    config.json            ModelConfig with every label map (intents, BIO tags, extra heads)
    tokenizer.json ...     the encoder's tokenizer files
    model.onnx             fp32, dynamic batch/length
    model.int8.onnx        dynamic int8 (per channel)
    model.safetensors      torch weights (torch-cuda backend, further fine-tuning); encoder_config.json
    reference.npz          monitor reference arrays (see model_runtime.reference)

:func:`load_package` refuses a package whose files are missing or changed
(:class:`PackageIntegrityError` names the file).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_runtime.config import ModelConfig

MANIFEST = "manifest.json"
CONFIG = "config.json"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
TORCH_WEIGHTS = "model.safetensors"
ENCODER_CONFIG = "encoder_config.json"
REFERENCE = "reference.npz"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
REQUIRED = (CONFIG, "tokenizer.json", ONNX_FILES["fp32"])
FORMAT_VERSION = 1


class PackageIntegrityError(RuntimeError):
    """A model package is incomplete or a file does not match its manifest hash."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPackage:
    """A verified package. ``manifest`` is the parsed manifest.json."""

    path: Path
    manifest: Mapping[str, Any]
    config: ModelConfig

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def temperature(self) -> float:
        return float(self.manifest.get("calibration", {}).get("temperature", 1.0))

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.manifest.get("metrics", {})

    def has_file(self, name: str) -> bool:
        return name in self.manifest["files"]

    def onnx_path(self, variant: str = "fp32") -> Path:
        name = ONNX_FILES[variant]
        if not self.has_file(name):
            raise PackageIntegrityError(self.path / name, f"this package has no {variant} ONNX model")
        return self.path / name

    def reference(self):  # -> ReferenceStats (imported lazily: numpy-heavy, not needed to serve)
        from model_runtime.reference import ReferenceStats

        return ReferenceStats.load(self.path / REFERENCE, self.manifest.get("reference", {}))


def write_manifest(package_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under ``package_dir`` (but the manifest) into ``manifest['files']`` and write it."""
    package_dir = Path(package_dir)
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(package_dir).as_posix()] = sha256_file(path)
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise PackageIntegrityError(package_dir / missing[0], "required file missing; cannot write a manifest")
    manifest = {**manifest, "format": FORMAT_VERSION, "files": files}
    tmp = package_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, package_dir / MANIFEST)
    return manifest


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_package(package_dir: Path, *, verify: bool = True) -> ModelPackage:
    """Read and (by default) verify a package; a missing or changed file raises PackageIntegrityError."""
    package_dir = Path(package_dir).resolve()  # resolves a `current` symlink once, so a swap mid-load is harmless
    manifest_path = package_dir / MANIFEST
    if not manifest_path.is_file():
        raise PackageIntegrityError(manifest_path, "no manifest.json: not a model package (or an incomplete one)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise PackageIntegrityError(manifest_path, f"manifest is not valid JSON ({error})") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or "version" not in manifest:
        raise PackageIntegrityError(manifest_path, "manifest lacks 'files' or 'version'")
    for name in REQUIRED:
        if name not in files:
            raise PackageIntegrityError(package_dir / name, "required file not listed in the manifest")
    for name, expected in files.items():
        path = package_dir / name
        if not path.is_file():
            raise PackageIntegrityError(path, "file listed in the manifest is missing")
        if verify and sha256_file(path) != expected:
            raise PackageIntegrityError(path, "SHA-256 does not match the manifest (file changed or corrupted)")
    config = ModelConfig.from_dict(json.loads((package_dir / CONFIG).read_text()))
    return ModelPackage(path=package_dir, manifest=manifest, config=config)
