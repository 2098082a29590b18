"""How much the labeling functions agree, and with gold: Krippendorff's alpha (``krippendorff`` package).

Alpha fits weak supervision better than a plain agreement rate: it corrects for chance (two functions that
both say ``O`` almost everywhere agree a lot by chance alone) and it takes missing values, so an
abstention is simply no rating. 1 is perfect agreement, 0 is chance, below 0 is systematic disagreement.
Every alpha here is nominal, over tokens as units:

- per entity type, binary: a vote for the type is 1, a vote for any other label 0, an abstention missing;
- over all labels (:data:`~labeling.annotation.base.LABELS` as categories) for one function against a
  reference, which flags the functions that disagree with the rest.

``None`` stands for an alpha that cannot be computed (no token rated by two coders, or only one value seen).

    >>> same = [[["person", "O", None, "time"]] * 3]
    >>> alpha_among_functions(same, ("person", "time"))
    {'person': 1.0, 'time': 1.0}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import krippendorff
import numpy as np

from labeling.annotation.aggregate import ENTITY_LABELS, Labels
from labeling.annotation.base import LABELS, TARGET_TYPES, Vote

#: A function whose alpha against the reference is below this is reported as low-agreement. 0.4 is the
#: usual floor of "moderate" agreement for kappa-like statistics; Krippendorff asks for 0.667 before drawing
#: tentative conclusions from human coders, too strict for heuristics that are expected to be noisy.
DEFAULT_THRESHOLD = 0.4

FunctionLabels = Sequence[Sequence[Vote | str | None]]  # [function][token], votes or bare labels


@dataclass(frozen=True)
class FunctionAgreement:
    """One function against the reference: over all labels, and per entity type."""

    name: str
    alpha: float | None
    alpha_by_type: dict[str, float | None]
    votes: int  # tokens it voted on
    low: bool


@dataclass(frozen=True)
class AgreementReport:
    """Alpha among the functions per type, per-function alpha against the reference, and against gold."""

    among_functions: dict[str, float | None]
    functions: list[FunctionAgreement]
    threshold: float
    reference: str
    against_gold: dict[str, float | None] = field(default_factory=dict)

    @property
    def low_agreement(self) -> list[str]:
        return [function.name for function in self.functions if function.low]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "low_agreement": self.low_agreement}


def nominal_alpha(reliability: np.ndarray) -> float | None:
    """Nominal alpha of a ``[coder][unit]`` array (``nan`` = missing), ``None`` when it is undefined.

    >>> nominal_alpha(np.array([[1, 0, 1, np.nan], [1, 0, 1, 1]]))
    1.0
    """
    if reliability.size == 0:
        return None
    try:
        value = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    except ValueError:  # one value in the domain, or no unit with two coders
        return None
    return None if np.isnan(value) else float(value)


def _label(value: Vote | str | None) -> str | None:
    return value.label if isinstance(value, Vote) else value


def _flatten(corpus: Sequence[FunctionLabels]) -> list[list[str | None]]:
    """``[function][token]`` over the whole corpus (tokens of all utterances, in order)."""
    if not corpus:
        return []
    n_functions = len(corpus[0])
    if any(len(votes) != n_functions for votes in corpus):
        raise ValueError("every utterance needs votes from the same functions")
    return [[_label(value) for votes in corpus for value in votes[index]] for index in range(n_functions)]


def _binary(labels: Sequence[str | None], kind: str) -> np.ndarray:
    return np.array([np.nan if label is None else float(label == kind) for label in labels])


def _categorical(labels: Sequence[str | None]) -> np.ndarray:
    return np.array([np.nan if label is None else float(LABELS.index(label)) for label in labels])


def alpha_among_functions(corpus_votes: Sequence[FunctionLabels],
                          types: Sequence[str] = ENTITY_LABELS) -> dict[str, float | None]:
    """Per type, alpha among all the functions (binary "is this type", abstain = missing)."""
    rows = _flatten(corpus_votes)
    return {kind: nominal_alpha(np.stack([_binary(row, kind) for row in rows]) if rows else np.empty(0))
            for kind in types}


def alpha_against_gold(pred: Sequence[Labels], gold: Sequence[Labels],
                       types: Sequence[str] = TARGET_TYPES) -> dict[str, float | None]:
    """Per type, alpha of predicted labels (an aggregate or one function; ``None`` = missing) and gold.

    >>> alpha_against_gold([["person", "O", "O", "time"]], [["person", "O", "person", "time"]], ("time",))
    {'time': 1.0}
    """
    if len(pred) != len(gold) or any(len(p) != len(g) for p, g in zip(pred, gold, strict=False)):
        raise ValueError("predicted and gold labels must have the same utterances and tokens")
    predicted = [label for labels in pred for label in labels]
    truth = [label for labels in gold for label in labels]
    return {kind: nominal_alpha(np.stack([_binary(predicted, kind), _binary(truth, kind)])) for kind in types}


def leave_one_out_reference(rows: Sequence[Sequence[str | None]], left_out: int) -> list[str | None]:
    """The majority label of the other functions per token; ``None`` where they tie or all abstain."""
    reference: list[str | None] = []
    for token in range(len(rows[left_out]) if rows else 0):
        counts = Counter(row[token] for index, row in enumerate(rows) if index != left_out and row[token])
        ranked = counts.most_common(2)
        tie = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
        reference.append(None if not ranked or tie else ranked[0][0])
    return reference


def function_agreement(corpus_votes: Sequence[FunctionLabels], function_names: Sequence[str],
                       reference: Sequence[Labels] | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                       types: Sequence[str] = ENTITY_LABELS) -> list[FunctionAgreement]:
    """Each function's alpha against ``reference`` (the aggregate's labels per utterance) or, when none is
    given, against the majority of the *other* functions (so a function does not agree with itself).
    A function is ``low`` when its all-label alpha is below ``threshold``."""
    rows = _flatten(corpus_votes)
    if len(rows) != len(function_names):
        raise ValueError(f"{len(rows)} functions voted; {len(function_names)} names given")
    given = [label for labels in reference for label in labels] if reference is not None else None
    if given is not None and rows and len(given) != len(rows[0]):
        raise ValueError(f"reference has {len(given)} labels for {len(rows[0])} tokens")
    results = []
    for index, (name, row) in enumerate(zip(function_names, rows, strict=True)):
        other = given if given is not None else leave_one_out_reference(rows, index)
        overall = nominal_alpha(np.stack([_categorical(row), _categorical(other)]))
        by_type = {kind: nominal_alpha(np.stack([_binary(row, kind), _binary(other, kind)])) for kind in types}
        votes = sum(label is not None for label in row)
        results.append(FunctionAgreement(name, overall, by_type, votes, overall is not None and overall < threshold))
    return results


def agreement_report(corpus_votes: Sequence[FunctionLabels], function_names: Sequence[str], *,
                     reference: Sequence[Labels] | None = None, gold: Sequence[Labels] | None = None,
                     threshold: float = DEFAULT_THRESHOLD, types: Sequence[str] = ENTITY_LABELS) -> AgreementReport:
    """Everything at once; ``against_gold`` (the reference against gold) only when both are given."""
    return AgreementReport(
        among_functions=alpha_among_functions(corpus_votes, types),
        functions=function_agreement(corpus_votes, function_names, reference, threshold=threshold, types=types),
        threshold=threshold,
        reference="aggregate" if reference is not None else "leave-one-out majority",
        against_gold=alpha_against_gold(reference, gold, types) if reference is not None and gold is not None
        else {},
    )
