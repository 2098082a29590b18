"""A folder registry of model packages with an atomically swapped ``current`` pointer.

    registry/
      quick-20261123T180000Z-1a2b3c4d/     one verified package per version
      current -> quick-20261123T180000Z-1a2b3c4d    (relative symlink, replaced with rename(2))
      promotions.jsonl                     who became current when

Workers watch ``registry/current`` and hot-reload when it points elsewhere; because the link is
replaced by a single rename, a reader sees either the old or the new package, never half of one.

A version becomes a folder name here, so :func:`promote` refuses one that is not a plain name
(``model_runtime.package.is_valid_version``) or that names the registry's own entries.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from model_runtime.package import MANIFEST, ModelPackage, check_version, load_package

CURRENT = "current"
PROMOTIONS = "promotions.jsonl"
RESERVED = frozenset({CURRENT, PROMOTIONS})


class RegistryError(RuntimeError):
    """The registry folder is not usable (e.g. ``current`` is a real folder, not a link)."""


def _copy(source: Path, target: Path) -> None:
    """Hard-link files when source and registry share a file system (packages are ~200 MB), else copy."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def promote(package_dir: Path, registry: Path) -> ModelPackage:
    """Verify ``package_dir``, place it in ``registry`` under its version, and point ``current`` at it."""
    package = load_package(package_dir)
    version = check_version(package.version, package.path / MANIFEST)  # load_package checked it too
    if version.lower() in RESERVED:
        raise RegistryError(f"version {version!r} is a reserved name in the registry; re-package under another")
    registry = Path(registry)
    registry.mkdir(parents=True, exist_ok=True)
    current = registry / CURRENT
    if current.exists() and not current.is_symlink():
        raise RegistryError(f"{current} is a real folder, not a link; move it away first")
    target = registry / version
    if target.resolve() != package.path:
        if target.exists():
            load_package(target)  # same version already there: it must be intact
        else:
            staging = registry / f".{version}.incoming"
            shutil.rmtree(staging, ignore_errors=True)
            _copy(package.path, staging)
            load_package(staging)  # the copy is verified before it can become current
            staging.rename(target)
    link = registry / f".{CURRENT}.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(version)
    os.replace(link, current)
    record = {
        "version": version,
        "promoted_at": datetime.now(UTC).isoformat(),
        "source": str(package.path),
    }
    with open(registry / PROMOTIONS, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    return load_package(current, verify=False)


def current_version(registry: Path) -> str | None:
    """The version ``current`` points at, or None when nothing was promoted yet."""
    current = Path(registry) / CURRENT
    return os.readlink(current) if current.is_symlink() else None
