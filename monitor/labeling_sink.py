"""The labeling queue's I/O: flagged samples of each scored window to ClickHouse ``labeling_queue`` and Kafka.

After each window (an outcome handler of :class:`monitor.job.MonitorJob`): read the window's candidate
rows (OOD, low confidence, small margin, a brand or person slot, or a text of a growing OOD cluster) from
``predictions``, flag and score them with :mod:`labeling.flags`, keep one per normalised text, drop texts
already in the queue, and keep what the budget allows (``labeling.budget``: stratified across reasons and
assistants). The daily budget counts items per UTC day of *traffic* (the window's day), so a backfill of old
traffic gets the same share as live traffic did. Items go to Kafka first (acks=all, flushed), then to
ClickHouse, which is what the next run deduplicates against: a failure in between re-sends to Kafka (its
consumers deduplicate on the key, ``text_hash``) but never loses an item.

    >>> queue_text_hash("Is <PERSON> on shift?") == queue_text_hash("is <person> on   shift")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from labeling.budget import select_within_budget
from labeling.flags import FlagContext, candidates, prediction_tags
from labeling.items import LabelingItem, Reason, normalise_text
from monitor.storage import CANDIDATE_COLUMNS, insert_rows, naive_utc, read_predictions

if TYPE_CHECKING:
    from monitor.job import WindowOutcome

log = logging.getLogger(__name__)

QUEUE_COLUMNS = (
    "item_id", "text_hash", "flagged_at", "window_start", "assistant", "model_version", "text_scrubbed", "intent",
    "slot_types", "slot_values", "reasons", "priority", "row_version",
)
# Rows worth flagging, as SQL (a superset: labeling.flags decides). Brand/person rows are read for the
# brand-vs-person check, the texts of growing clusters for cluster membership.
CANDIDATE_FILTER = (
    "AND (is_ood = 1 OR ood_score > %(ood_threshold)s OR confidence < %(low_confidence)s"
    " OR margin < %(small_margin)s OR has(slot_types, 'brand') OR has(slot_types, 'person')"
    " OR text_scrubbed IN %(cluster_texts)s)"
)


def queue_text_hash(text: str) -> str:
    """The queue's dedup key: SHA-256 of the normalised scrubbed text (no secret: the text is stored as is)."""
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


def queue_row(item: LabelingItem, row: Mapping[str, Any], flagged_at: datetime, row_version: int) -> dict[str, Any]:
    """The ``labeling_queue`` row of one item (``row`` is its prediction, for the slot values)."""
    return {
        "item_id": item.id, "text_hash": queue_text_hash(item.text), "flagged_at": flagged_at,
        "window_start": naive_utc(item.window_start), "assistant": item.assistant, "model_version": item.model_version,
        "text_scrubbed": item.text, "intent": item.intent, "slot_types": list(row.get("slot_types") or []),
        "slot_values": list(row.get("slot_values") or []), "reasons": [str(r) for r in item.reasons],
        "priority": float(item.priority), "row_version": row_version,
    }


def kafka_message(row: Mapping[str, Any], item: LabelingItem) -> bytes:
    """The ``labeling-queue`` message: the item (with its BIO pre-annotation) plus the queue's key and slots."""
    payload = {**item.to_dict(), "text_hash": row["text_hash"], "slot_types": row["slot_types"],
               "slot_values": row["slot_values"], "flagged_at": row["flagged_at"].isoformat()}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


class LabelingSink:
    """Outcome handler that fills the labeling queue; see the module docstring."""

    def __init__(
        self,
        clickhouse_client_factory: Callable[[], Any],
        *,
        daily_budget: int,
        max_per_window: int,
        low_confidence: float = 0.5,
        small_margin: float = 0.1,
        candidates_per_window: int = 5000,
        topic: str = "labeling-queue",
        producer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.client_factory = clickhouse_client_factory
        self.daily_budget, self.max_per_window = daily_budget, max_per_window
        self.low_confidence, self.small_margin = low_confidence, small_margin
        self.candidates_per_window = candidates_per_window
        self.topic = topic
        self.producer_factory = producer_factory
        self._producer: Any = None

    def __call__(self, outcomes: Sequence[WindowOutcome]) -> list[LabelingItem]:
        if not outcomes:
            return []
        client = self.client_factory()
        try:
            return [item for outcome in outcomes for item in self.queue_window(client, outcome)]
        finally:
            client.disconnect()

    def queue_window(self, client: Any, outcome: WindowOutcome) -> list[LabelingItem]:
        """Flag, deduplicate, budget and queue one window's samples; returns the items queued."""
        rows = self._candidate_rows(client, outcome)
        by_id = {row["id"]: row for row in rows}
        context = FlagContext(
            low_confidence=self.low_confidence, small_margin=self.small_margin, ood_threshold=outcome.ood_threshold,
            growing_cluster_members=frozenset(
                row["id"] for row in rows if row["text_scrubbed"] in outcome.growing_cluster_texts),
        )
        items = candidates(rows, context, (outcome.window_start, outcome.window_end))
        items = self._not_yet_queued(client, items)
        in_window, on_day = self._already_queued(client, outcome.window_start)
        left = min(self.max_per_window - in_window, self.daily_budget - on_day)
        chosen = select_within_budget(items, left)
        if not chosen:
            return []
        flagged_at, row_version = naive_utc(datetime.now(UTC)), time.time_ns() // 1000
        queue_rows = [queue_row(item, by_id[item.id], flagged_at, row_version) for item in chosen]
        self._publish(queue_rows, chosen)
        insert_rows(client, "labeling_queue", QUEUE_COLUMNS, queue_rows)
        log.info("labeling queue: %d of %d flagged sample(s) of window %s queued", len(chosen), len(items),
                 outcome.window_start)
        return chosen

    def _candidate_rows(self, client: Any, outcome: WindowOutcome) -> list[dict[str, Any]]:
        params = {
            "ood_threshold": float(outcome.ood_threshold), "low_confidence": self.low_confidence,
            "small_margin": self.small_margin, "cluster_texts": tuple(outcome.growing_cluster_texts) or ("",),
        }
        frame = read_predictions(client, outcome.window_start, outcome.window_end, self.candidates_per_window,
                                 CANDIDATE_COLUMNS, where=CANDIDATE_FILTER, params=params)
        return frame.to_dict("records")

    def _not_yet_queued(self, client: Any, items: list[LabelingItem]) -> list[LabelingItem]:
        hashes = {queue_text_hash(item.text): item for item in items}
        if not hashes:
            return []
        queued = {h for (h,) in client.execute(
            "SELECT text_hash FROM labeling_queue WHERE text_hash IN %(hashes)s", {"hashes": tuple(hashes)})}
        return [item for key, item in hashes.items() if key not in queued]

    def _already_queued(self, client: Any, window_start: datetime) -> tuple[int, int]:
        """Items queued earlier from this window (a rescore) and from its UTC day."""
        start = naive_utc(window_start)
        day = start.replace(hour=0, minute=0, second=0)
        in_window, on_day = client.execute(
            "SELECT countIf(window_start = %(start)s), count() FROM labeling_queue FINAL"
            " WHERE window_start >= %(day)s AND window_start < %(next)s",
            {"start": start, "day": day, "next": day + timedelta(days=1)})[0]
        return int(in_window), int(on_day)

    def _publish(self, rows: list[dict[str, Any]], items: list[LabelingItem]) -> None:
        if self.producer_factory is None:
            return
        if self._producer is None:
            self._producer = self.producer_factory()
        for row, item in zip(rows, items, strict=True):
            self._producer.send(self.topic, key=row["text_hash"].encode(), value=kafka_message(row, item))
        self._producer.flush(timeout=30)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


def kafka_producer_factory(bootstrap_servers: str) -> Callable[[], Any]:
    """A kafka-python producer that waits for every in-sync replica (acks=all)."""

    def make() -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", retries=5, linger_ms=5,
                             client_id="nlumon-labeling-queue")

    return make


def queued_items(client: Any, since: datetime, window_s: int, limit: int = 100_000) -> list[LabelingItem]:
    """Items in ``labeling_queue`` flagged at or after ``since``, highest priority first (for exports)."""
    rows = client.execute(
        f"SELECT {', '.join(QUEUE_COLUMNS)} FROM labeling_queue FINAL WHERE flagged_at >= %(since)s"
        " ORDER BY priority DESC, item_id LIMIT %(limit)s", {"since": naive_utc(since), "limit": int(limit)})
    items = []
    for values in rows:
        row = dict(zip(QUEUE_COLUMNS, values, strict=True))
        text = row["text_scrubbed"]
        start = row["window_start"].replace(tzinfo=UTC)
        items.append(LabelingItem(
            id=row["item_id"], text=text, tokens=tuple(text.split()), intent=row["intent"],
            tags=prediction_tags({"id": row["item_id"], "text_scrubbed": text, "slot_types": row["slot_types"],
                                  "slot_values": row["slot_values"]}),
            reasons=tuple(Reason(r) for r in row["reasons"]), priority=float(row["priority"]),
            window_start=start, window_end=start + timedelta(seconds=window_s),
            model_version=row["model_version"], assistant=row["assistant"],
        ))
    return items
