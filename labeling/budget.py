"""The daily labeling budget: stratified across (reason, assistant) so one burst cannot flood the labelers.

Items are grouped by stratum = (primary reason, assistant). Selection goes round-robin over the
strata, each time taking the stratum's highest-priority item left, so every stratum gets an equal
share of the budget and a share that a small stratum cannot use passes to the others. Within a
stratum the order is by priority (then id), so the result is deterministic.

    >>> from datetime import datetime, timezone
    >>> from labeling.items import LabelingItem, Reason
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> def item(i, reason, assistant, p):
    ...     return LabelingItem(str(i), f"text {i}", ("text", str(i)), "x", ("O", "O"), (reason,), p, t, t, "m",
    ...                         assistant)
    >>> burst = [item(i, Reason.OOD, "shopper", 5.0) for i in range(100)]
    >>> few = [item(100, Reason.SMALL_MARGIN, "associate", 1.0), item(101, Reason.LOW_CONFIDENCE, "shopper", 2.0)]
    >>> [i.id for i in select_within_budget(burst + few, 4)]
    ['0', '101', '100', '1']
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from labeling.items import LabelingItem, Reason


def stratum(item: LabelingItem) -> tuple[Reason, str]:
    """The (primary reason, assistant) group an item is counted in."""
    return item.primary_reason, item.assistant


def select_within_budget(items: Iterable[LabelingItem], budget: int) -> list[LabelingItem]:
    """Up to ``budget`` items, balanced across strata (see the module docstring).

    ``budget`` is what is left of today's allowance (the caller tracks what was queued earlier today).
    """
    if budget <= 0:
        return []
    strata: dict[tuple[Reason, str], list[LabelingItem]] = defaultdict(list)
    for item in items:
        strata[stratum(item)].append(item)
    queues: list[Sequence[LabelingItem]] = [
        sorted(group, key=lambda i: (-i.priority, i.id))
        # Strata whose best item is most valuable pick first in each round.
        for _, group in sorted(strata.items(), key=lambda kv: (-max(i.priority for i in kv[1]), kv[0]))
    ]
    chosen: list[LabelingItem] = []
    depth = 0
    while len(chosen) < budget and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < budget:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def stratum_counts(items: Iterable[LabelingItem]) -> dict[str, int]:
    """Items per ``reason/assistant`` (for logs and dashboards)."""
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        reason, assistant = stratum(item)
        counts[f"{reason}/{assistant}"] += 1
    return dict(counts)
