"""CLINC150 (Larson et al. 2019): 150 in-scope intents plus out-of-scope (``oos``) queries.

There are no slot labels, so every tag is ``O``. The standard OOD test mixes in-scope traffic
with the ``oos`` queries of the same split.

The full data set is read from the datasets folder (``$NLUMON_DATASETS``, checksums verified) by
:func:`load_clinc150`, for training on CLINC150 and for the benchmarks. The demo and the tests need only
out-of-scope queries, which ship with the package (``clinc150_oos/``, CC BY 3.0, its licence and
attribution beside it): :func:`load_oos_queries`.

    >>> queries = load_oos_queries()
    >>> len(queries), queries[0]
    (1100, 'how much has the dow changed today')
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from model_runtime.data.example import Example
from model_runtime.data.integrity import DatasetFormatError, DatasetIntegrityError, datasets_root, verify_dataset

__all__ = ["CLINC150_SPLITS", "OOS_INTENT", "DatasetIntegrityError", "clinc150_domains", "load_clinc150",
           "load_oos_queries"]

CLINC150_SPLITS: tuple[str, ...] = ("train", "val", "test")
OOS_INTENT = "oos"
# The out-of-scope queries of the test then the val split, one per line (README.md and LICENSE beside them).
SHIPPED_OOS = Path(__file__).with_name("clinc150_oos") / "queries.txt"
SHIPPED_OOS_COUNT = 1100


def load_oos_queries() -> list[str]:
    """CLINC150's 1,100 out-of-scope queries (test split, then val) as shipped with the package.

    Needs no datasets folder: the demo's and the tests' out-of-scope traffic comes from here.
    """
    return list(_shipped_oos())


@cache
def _shipped_oos() -> tuple[str, ...]:
    queries = tuple(line.strip() for line in SHIPPED_OOS.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(queries) != SHIPPED_OOS_COUNT:
        raise DatasetFormatError(f"{SHIPPED_OOS} holds {len(queries)} queries, not {SHIPPED_OOS_COUNT}: "
                                 f"the package is damaged, reinstall it")
    return queries


def load_clinc150(split: str, root: str | os.PathLike[str] | None = None, include_oos: bool = True) -> list[Example]:
    """Load one split (``train``/``val``/``test``): in-scope examples, then the ``oos`` ones if asked."""
    if split not in CLINC150_SPLITS:
        raise ValueError(f"unknown CLINC150 split {split!r}; choose one of {CLINC150_SPLITS}")
    base = datasets_root(root)
    verify_dataset(base, "clinc150")
    data = json.loads((base / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    pairs = list(data[split]) + (list(data[f"oos_{split}"]) if include_oos else [])
    examples = []
    for index, (text, intent) in enumerate(pairs):
        tokens = tuple(text.split())
        if not tokens:
            raise DatasetFormatError(f"clinc150 {split} entry {index} has no text")
        examples.append(Example(tokens, ("O",) * len(tokens), intent, "clinc150", {}))
    return examples


def clinc150_domains(root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``intent -> domain`` for the 150 in-scope intents (from ``domains.json``)."""
    base = datasets_root(root)
    verify_dataset(base, "clinc150")
    domains = json.loads((base / "clinc150" / "domains.json").read_text(encoding="utf-8"))
    return {intent: domain for domain, intents in domains.items() for intent in intents}
