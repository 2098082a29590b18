"""The annotator as the loop runs it: every labeling function, an aggregator fitted on the labelled holdout.

    annotator = build_annotator(package_path, roster=NameDictionary.load(path).accepted())

``aggregator`` is ``weighted`` (the design's weighted vote, the default: it measured best on the evaluation
slice, docs/labeling.md), ``label-model`` (Snorkel's LabelModel) or ``majority``. Both fitted aggregators are
fitted on :func:`labeling.annotation.slice.fit_set`, the small labelled holdout; nothing of the evaluation slice
is seen while fitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from labeling.annotation.annotator import (
    DEFAULT_AUTO_WEIGHT,
    DEFAULT_MIN_INTENT_CONFIDENCE,
    Annotator,
    champion_outputs,
)
from labeling.annotation.base import LabelingFunction
from labeling.annotation.routing import DEFAULT_AUDIT_RATE, DEFAULT_MARGIN

AGGREGATORS = ("weighted", "label-model", "majority")


def all_functions(roster: Iterable[str] = ()) -> list[LabelingFunction]:
    """The default labeling functions plus the SNIPS-trained tagger."""
    from labeling.annotation.functions import default_functions
    from labeling.annotation.lf_snips import SnipsTagger

    return [*default_functions(roster), SnipsTagger()]


def make_aggregator(name: str, seed: int = 0) -> Any:
    from labeling.annotation.aggregate import LabelModelAggregator, MajorityVote, WeightedVote

    if name == "weighted":
        return WeightedVote()
    if name == "label-model":
        return LabelModelAggregator(seed=seed)
    if name == "majority":
        return MajorityVote()
    raise ValueError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")


def build_annotator(
    package: Path | None,
    *,
    roster: Iterable[str] = (),
    aggregator: str = "weighted",
    functions: Sequence[LabelingFunction] | None = None,
    backend: str = "onnx-cpu",
    fit_examples: Sequence[Any] | None = None,
    margin_threshold: float = DEFAULT_MARGIN,
    audit_rate: float = DEFAULT_AUDIT_RATE,
    min_intent_confidence: float = DEFAULT_MIN_INTENT_CONFIDENCE,
    weight: float = DEFAULT_AUTO_WEIGHT,
    seed: int | None = None,
) -> Annotator:
    """A fitted annotator; ``package`` is the champion (``None``: annotate without it, no examples made)."""
    from labeling.annotation.slice import fit_set
    from model_runtime.data.extra import Vocabulary

    predict = None
    if package is not None:
        from model_runtime.runtime import load_runtime

        predict = champion_outputs(load_runtime(Path(package), backend))
    annotator = Annotator(
        list(functions) if functions is not None else all_functions(roster),
        make_aggregator(aggregator, seed or 0), predict=predict, margin_threshold=margin_threshold,
        audit_rate=audit_rate, min_intent_confidence=min_intent_confidence, weight=weight, seed=seed,
        vocabulary=Vocabulary.retail(),
    )
    return annotator.fit(fit_examples if fit_examples is not None else fit_set())
