"""Model packages: a folder the workers load, verified file by file against its manifest. No torch.

Layout::

    manifest.json          version, sha256 of every other file, data fingerprint, library versions,
                           eval metrics, calibration temperature, export parity, reference summary,
                           and ``manifest_sha256``: the SHA-256 of the manifest's own canonical JSON
    config.json            ModelConfig with every label map (intents, BIO tags, extra heads)
    tokenizer.json ...     the encoder's tokenizer files
    model.onnx             fp32, dynamic batch/length
    model.int8.onnx        dynamic int8 (per channel)
    model.safetensors      torch weights (torch-cuda backend, further fine-tuning); encoder_config.json
    reference.npz          monitor reference arrays (see model_runtime.reference)

:func:`load_package` refuses a package whose files are missing or changed, whose manifest was edited
(temperature, thresholds, file hashes...) or whose version is not a plain folder name
(:class:`PackageIntegrityError` names the file). A manifest written before the manifest digest existed
(format 1) still loads, with a WARNING and ``ModelPackage.verified_manifest == False``; see
docs/security.md, "Model packages".

    >>> digest = manifest_digest({"version": "v1", "files": {}, "format": 2})
    >>> digest == manifest_digest({"format": 2, "files": {}, "version": "v1", MANIFEST_DIGEST: "x"})
    True
    >>> is_valid_version("retail-20261123T180000Z-1a2b3c4d"), is_valid_version("../../etc")
    (True, False)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
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
FORMAT_VERSION = 2  # 2: the manifest carries MANIFEST_DIGEST; 1 (legacy): weight files hashed, the manifest not
MANIFEST_DIGEST = "manifest_sha256"
# A version is a folder name in the registry: one path component, no "..", not hidden, bounded.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)


class PackageIntegrityError(RuntimeError):
    """A model package is incomplete or a file does not match its manifest hash."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def is_valid_version(version: object) -> bool:
    """Whether ``version`` can name a registry folder: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``, without ``..``."""
    return isinstance(version, str) and _VERSION.fullmatch(version) is not None and ".." not in version


def check_version(version: object, where: Path) -> str:
    """``version`` if :func:`is_valid_version`, else :class:`PackageIntegrityError` naming ``where``."""
    if not is_valid_version(version):
        raise PackageIntegrityError(
            where,
            f"version {version!r} is not a valid package version: it names the package's registry folder, so it "
            "must be 1-128 characters of letters, digits, '.', '_' or '-', start with a letter or digit, and not "
            "contain '..'",
        )
    return str(version)


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the manifest's canonical JSON without its :data:`MANIFEST_DIGEST` field.

    Canonical: sorted keys, no whitespace, ASCII escapes; values as :func:`json.loads` gives them back, so
    the digest computed when writing equals the one recomputed from the parsed file.
    """
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _safe_member(name: object) -> bool:
    """A file name listed in a manifest must stay inside the package folder."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and all(part not in ("", ".", "..") for part in parts)


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
    verified_manifest: bool = True  # False: a legacy (format 1) manifest without MANIFEST_DIGEST

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


GATE_REPORT = "gate-report.json"  # model_runtime.gate writes it; named here to keep package.py import-free


def write_manifest(package_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under ``package_dir`` (but the manifest) into ``manifest['files']``, then the manifest
    itself into ``manifest['manifest_sha256']``, and write it. ``manifest['version']`` must be valid."""
    package_dir = Path(package_dir)
    check_version(manifest.get("version"), package_dir / MANIFEST)
    files = {}
    for path in sorted(package_dir.rglob("*")):
        # the gate's report is written next to the package after it is sealed, about it: not part of it
        if path.is_file() and path.name not in (MANIFEST, GATE_REPORT):
            files[path.relative_to(package_dir).as_posix()] = sha256_file(path)
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise PackageIntegrityError(package_dir / missing[0], "required file missing; cannot write a manifest")
    manifest = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}  # a copied manifest's old digest
    manifest = {**manifest, "format": FORMAT_VERSION, "files": files}
    # through JSON once, so the digest covers exactly what a reader parses (tuples, numpy values, paths)
    manifest = json.loads(json.dumps(manifest, default=_json_default))
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    tmp = package_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, package_dir / MANIFEST)
    return manifest


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_package(package_dir: Path, *, verify: bool = True, allow_legacy: bool = True) -> ModelPackage:
    """Read and verify a package; a missing or changed file or an edited manifest raises PackageIntegrityError.

    The manifest digest and the version are always checked (the manifest is small); ``verify=False`` skips
    only hashing the (large) files. ``allow_legacy=False`` refuses a format-1 manifest without a digest
    instead of loading it with a warning.
    """
    package_dir = Path(package_dir).resolve()  # resolves a `current` symlink once, so a swap mid-load is harmless
    manifest_path = package_dir / MANIFEST
    if not manifest_path.is_file():
        raise PackageIntegrityError(manifest_path, "no manifest.json: not a model package (or an incomplete one)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PackageIntegrityError(manifest_path, f"manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise PackageIntegrityError(manifest_path, "manifest is not a JSON object")
    files = manifest.get("files")
    if not isinstance(files, dict) or "version" not in manifest:
        raise PackageIntegrityError(manifest_path, "manifest lacks 'files' or 'version'")
    check_version(manifest["version"], manifest_path)
    for name in REQUIRED:
        if name not in files:
            raise PackageIntegrityError(package_dir / name, "required file not listed in the manifest")
    for name, expected in files.items():
        if not _safe_member(name) or name == MANIFEST:
            raise PackageIntegrityError(manifest_path, f"manifest lists {name!r}, which is not a file of the package")
        if not isinstance(expected, str) or not _SHA256.fullmatch(expected):
            raise PackageIntegrityError(package_dir / name, "manifest hash is not a SHA-256 hex digest")
    verified_manifest = _check_manifest_digest(manifest, manifest_path, allow_legacy)
    for name, expected in files.items():
        path = package_dir / name
        if not path.is_file():
            raise PackageIntegrityError(path, "file listed in the manifest is missing")
        if verify and sha256_file(path) != expected:
            raise PackageIntegrityError(path, "SHA-256 does not match the manifest (file changed or corrupted)")
    config = ModelConfig.from_dict(json.loads((package_dir / CONFIG).read_text()))
    return ModelPackage(path=package_dir, manifest=manifest, config=config, verified_manifest=verified_manifest)


def _check_manifest_digest(manifest: Mapping[str, Any], manifest_path: Path, allow_legacy: bool) -> bool:
    """True when the manifest's digest matches; False for an accepted legacy manifest; else raise."""
    recorded = manifest.get(MANIFEST_DIGEST)
    fmt = manifest.get("format", 1)
    if recorded is None and fmt == 1:
        if not allow_legacy:
            raise PackageIntegrityError(
                manifest_path,
                f"legacy manifest (format 1) has no {MANIFEST_DIGEST}, so edits to it cannot be detected; "
                "re-package it with `nlumon model seal PACKAGE` (after checking the manifest's values) or retrain",
            )
        log.warning(
            "%s: legacy manifest (format 1) without %s: its file hashes are checked but edits to the manifest "
            "itself (temperature, thresholds) cannot be detected; re-package it with `nlumon model seal` or retrain",
            manifest_path,
            MANIFEST_DIGEST,
        )
        return False
    if recorded is None:
        raise PackageIntegrityError(
            manifest_path, f"format {fmt!r} manifest has no {MANIFEST_DIGEST} (removed or the manifest edited)"
        )
    if not isinstance(recorded, str) or manifest_digest(manifest) != recorded:
        raise PackageIntegrityError(
            manifest_path,
            f"{MANIFEST_DIGEST} does not match the manifest (manifest edited or corrupted); re-package it "
            "rather than editing manifest.json by hand",
        )
    return True
