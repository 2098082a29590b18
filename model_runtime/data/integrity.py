"""Where the public datasets live, and proof that they are the files we expect.

The folder holds a ``SHA256SUMS`` file (``sha256sum`` format); a loader verifies the entries of
its dataset before it reads a byte of them, so an edited or truncated copy fails loudly instead
of quietly shifting the published anchors.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATASETS_ENV = "NLUMON_DATASETS"


class DatasetIntegrityError(RuntimeError):
    """A dataset file is missing from, or differs from, what ``SHA256SUMS`` records."""


class DatasetFormatError(ValueError):
    """A dataset file passed its checksum but cannot be read as the format says (should not happen)."""


def default_datasets_root() -> Path:
    """``<checkout>/../shared/datasets``: the shared folder next to the project checkout."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def datasets_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The datasets folder: ``root`` if given, else ``$NLUMON_DATASETS``, else the default.

    >>> str(datasets_root("/tmp/data"))
    '/tmp/data'
    """
    if root is not None:
        return Path(root)
    from_env = os.environ.get(DATASETS_ENV)
    return Path(from_env) if from_env else default_datasets_root()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` from ``root/SHA256SUMS``."""
    sums_file = root / "SHA256SUMS"
    if not sums_file.is_file():
        raise DatasetIntegrityError(f"{sums_file} not found: is {root} the datasets folder? (set ${DATASETS_ENV})")
    checksums = {}
    for line in sums_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            checksums[name.lstrip("*").strip()] = digest.lower()
    return checksums


def verify_dataset(root: Path, dataset: str) -> None:
    """Check every ``SHA256SUMS`` entry under ``dataset/``; raise :class:`DatasetIntegrityError` on any mismatch."""
    entries = {name: digest for name, digest in read_checksums(root).items() if name.startswith(f"{dataset}/")}
    if not entries:
        raise DatasetIntegrityError(f"{root / 'SHA256SUMS'} lists no files of {dataset!r}")
    for name, expected in sorted(entries.items()):
        path = root / name
        if not path.is_file():
            raise DatasetIntegrityError(f"{path} is missing (listed in SHA256SUMS)")
        actual = sha256_of(path)
        if actual != expected:
            raise DatasetIntegrityError(f"{path}: sha256 {actual} does not match SHA256SUMS ({expected})")
