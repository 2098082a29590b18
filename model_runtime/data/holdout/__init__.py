"""Fixed, versioned holdout sets for the promotion gate: read only through :func:`load_holdout`, checksum verified.

A holdout version is immutable: ``manifest.json`` beside this file records each version's file, SHA-256 and
counts, and a file that does not match is refused (:class:`HoldoutIntegrityError`) rather than quietly
moving the gate's yardstick. A new or corrected set is a new version (``production-v2``), never an edit.
Rows use the extra-examples JSONL format (:mod:`model_runtime.data.extra`) and are validated the same way,
so every intent and slot type of a holdout is one the retail model knows.

``production-v1`` is generated (``build.py``), not human-labelled: see ``README.md``.

>>> examples = load_holdout()
>>> sorted({e.assistant for e in examples})
['associate', 'shopper']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_runtime.data.example import Example

HOLDOUT_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
DEFAULT_HOLDOUT = "production-v1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class HoldoutIntegrityError(RuntimeError):
    """A holdout version is unknown, missing, or its file does not match the recorded SHA-256."""


@dataclass(frozen=True)
class Holdout:
    """One verified holdout version: its examples and what identifies them in a gate report."""

    version: str
    path: Path
    sha256: str
    examples: tuple[Example, ...]
    info: Mapping[str, Any]

    def describe(self) -> dict[str, Any]:
        """What a gate report records about the set it judged on."""
        per_assistant: dict[str, int] = {}
        for example in self.examples:
            per_assistant[example.assistant] = per_assistant.get(example.assistant, 0) + 1
        return {
            "kind": "holdout",
            "name": self.version,
            "sha256": self.sha256,
            "n": len(self.examples),
            "per_assistant": dict(sorted(per_assistant.items())),
            "generated": bool(self.info.get("generated", False)),
            "human_verified": bool(self.info.get("human_verified", False)),
            "gate_floors": dict(self.info.get("gate_floors") or {}),
        }


def holdout_versions(root: str | os.PathLike[str] | None = None) -> list[str]:
    """The versions ``manifest.json`` lists, sorted."""
    return sorted(_manifest(Path(root) if root else HOLDOUT_DIR))


def _manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise HoldoutIntegrityError(f"{path}: cannot read the holdout manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise HoldoutIntegrityError(f"{path}: not a JSON object")
    return manifest


def read_holdout(version: str = DEFAULT_HOLDOUT, root: str | os.PathLike[str] | None = None) -> Holdout:
    """Verify a version's checksum, then read and validate its rows."""
    from model_runtime.data.extra import ExtraExamplesError, Vocabulary, load_extra

    root = Path(root) if root else HOLDOUT_DIR
    manifest = _manifest(root)
    if version not in manifest:
        raise HoldoutIntegrityError(f"unknown holdout version {version!r}; known: {sorted(manifest)}")
    entry = manifest[version]
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise HoldoutIntegrityError(f"{root / MANIFEST}: version {version!r} names no plain file ({name!r})")
    path = root / name
    if not path.is_file():
        raise HoldoutIntegrityError(f"{path}: holdout file missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise HoldoutIntegrityError(
            f"{path}: SHA-256 {digest} does not match {MANIFEST} ({entry.get('sha256')}); a holdout never changes "
            "in place: restore the file, or publish the new set as a new version"
        )
    try:
        rows = load_extra(path, Vocabulary.retail())
    except ExtraExamplesError as error:
        raise HoldoutIntegrityError(f"holdout {version}: {error}") from None
    if len(rows) != entry.get("n"):
        raise HoldoutIntegrityError(f"{path}: {len(rows)} rows, {MANIFEST} says {entry.get('n')}")
    return Holdout(version, path, digest, tuple(row.example for row in rows), entry)


def load_holdout(version: str = DEFAULT_HOLDOUT, root: str | os.PathLike[str] | None = None) -> list[Example]:
    """The examples of a holdout version, after its checksum was verified (:func:`read_holdout`)."""
    return list(read_holdout(version, root).examples)
