"""CLINC150 (Larson et al. 2019): 150 in-scope intents plus out-of-scope (``oos``) queries.

There are no slot labels, so every tag is ``O``. The standard OOD test mixes in-scope traffic
with the ``oos`` queries of the same split.
"""

from __future__ import annotations

import json
import os

from model_runtime.data.example import Example
from model_runtime.data.integrity import DatasetFormatError, DatasetIntegrityError, datasets_root, verify_dataset

__all__ = ["CLINC150_SPLITS", "OOS_INTENT", "DatasetIntegrityError", "clinc150_domains", "load_clinc150"]

CLINC150_SPLITS: tuple[str, ...] = ("train", "val", "test")
OOS_INTENT = "oos"


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
