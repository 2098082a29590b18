"""The public benchmark datasets (SNIPS, CLINC150) for the few tests that measure the loaders against them.

They are not part of the repository. These tests read ``$NLUMON_DATASETS``, else ``../shared/datasets`` next to
the checkout (where ``benchmarks/`` looks too), and skip when neither holds a ``SHA256SUMS``. The demo and every
other test need nothing from there: ``tests/unit/test_no_shared_paths.py`` allows this path here and in
``benchmarks/`` only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_runtime.data.integrity import DATASETS_ENV
from nlumon.settings import PROJECT_ROOT

SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def public_datasets() -> Path | None:
    """The datasets folder if one is at hand, else None."""
    for candidate in (os.environ.get(DATASETS_ENV), SHARED_DATASETS):
        if candidate and (Path(candidate) / "SHA256SUMS").is_file():
            return Path(candidate)
    return None


def require_public_datasets() -> Path:
    """The datasets folder, or skip the calling test."""
    root = public_datasets()
    if root is None:
        pytest.skip(f"no public datasets (set ${DATASETS_ENV} to a folder with SHA256SUMS, snips/ and clinc150/)")
    return root
