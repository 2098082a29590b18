"""Where the public datasets live, and proof that they are the files we expect.

The folder holds a ``SHA256SUMS`` file (``sha256sum`` format); a loader verifies the entries of
its dataset before it reads a byte of them, so an edited or truncated copy fails loudly instead
of quietly shifting the published anchors.

There is no default folder: it is given to a loader, or named by ``$NLUMON_DATASETS``. Only training on
SNIPS or CLINC150 and the benchmarks that measure against them read it; the demo and the tests need
nothing from it (the out-of-scope queries they replay ship with the package, ``clinc150.load_oos_queries``).
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


def datasets_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The datasets folder: ``root`` if given, else ``$NLUMON_DATASETS``.

    >>> str(datasets_root("/tmp/data"))
    '/tmp/data'
    """
    if root is not None:
        return Path(root)
    from_env = os.environ.get(DATASETS_ENV)
    if not from_env:
        raise DatasetIntegrityError(
            f"no datasets folder: set ${DATASETS_ENV} to the folder that holds SHA256SUMS, snips/ and clinc150/ "
            f"(SNIPS and CLINC150 as published; see model_runtime/README.md, Corpora and benchmarks)")
    return Path(from_env)


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
