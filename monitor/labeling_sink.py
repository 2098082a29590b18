"""The labeling queue's I/O: flagged samples of each scored window to ClickHouse ``labeling_queue`` and Kafka.

After each window (an outcome handler of :class:`monitor.job.MonitorJob`): read the window's candidate
rows (OOD, low confidence, small margin, a brand or person slot, a text of a growing OOD cluster, or an
utterance the shadow challenger disagreed on: another intent, ``champion_challenger_disagreement``, or another
route, ``champion_challenger_route_disagreement``; ids from ``shadow_predictions`` via
:attr:`monitor.job.WindowOutcome.shadow`) from ``predictions``, flag and score them with :mod:`labeling.flags`,
keep one per normalised text, drop texts already in the queue, and keep what the budget allows
(``labeling.budget``: stratified across reasons and assistants, so a burst of disagreements takes its share of
the window's and the day's allowance, not all of it). The daily budget counts items per UTC day of *traffic*
(the window's day), so a backfill of old traffic gets the same share as live traffic did. Items go to Kafka
first (acks=all, flushed, and every send's result checked: a send the broker did not acknowledge raises
:class:`LabelingPublishError`), then to ClickHouse, which is what the next run deduplicates against: a failure
in between re-sends to Kafka (its consumers deduplicate on the key, ``text_hash``) but never loses an item.

One window's failure does not stop the others: the sink raises :class:`monitor.job.HandoffError` naming the
windows that failed (the job stores them as ``failed`` and retries them). After a Kafka failure the rest of
the batch is not tried (the broker is most likely down for them too) and fails with the same reason.

    >>> queue_text_hash("Is <PERSON> on shift?") == queue_text_hash("is <person> on   shift")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from labeling.budget import select_within_budget
from labeling.flags import FlagContext, candidates, prediction_tags
from labeling.items import LabelingItem, Reason, normalise_text
from monitor.job import HandoffError
from monitor.storage import CANDIDATE_COLUMNS, insert_rows, naive_utc, read_predictions
from nlumon.pii import deidentify_copy, deidentify_row

if TYPE_CHECKING:
    from monitor.job import WindowOutcome

log = logging.getLogger(__name__)

QUEUE_COLUMNS = (
    "item_id", "text_hash", "flagged_at", "window_start", "assistant", "model_version", "text_scrubbed", "intent",
    "slot_types", "slot_values", "reasons", "priority", "row_version",
)
# Rows worth flagging, as SQL (a superset: labeling.flags decides). Brand/person rows are read for the
# brand-vs-person check, the texts of growing clusters for cluster membership, the shadow challenger's
# disagreements by id.
CANDIDATE_FILTER = (
    "AND (is_ood = 1 OR ood_score > %(ood_threshold)s OR confidence < %(low_confidence)s"
    " OR margin < %(small_margin)s OR has(slot_types, 'brand') OR has(slot_types, 'person')"
    " OR text_scrubbed IN %(cluster_texts)s OR id IN %(shadow_ids)s)"
)


# ClickHouse refuses a query longer than max_query_size (256 KiB by default): the lists inlined into the
# candidate and dedup queries are bounded well under it.
CLUSTER_TEXT_CHARS = 128 * 1024
HASHES_PER_QUERY = 1000
SHADOW_IDS_PER_QUERY = 1000  # ids of 36 characters: ~40 KiB beside the cluster texts


def bounded_texts(texts: Iterable[str], budget: int = CLUSTER_TEXT_CHARS) -> tuple[str, ...]:
    """The growing clusters' texts to match, as many as fit in ``budget`` characters (never empty: ``IN ()``
    is not SQL).

    >>> bounded_texts(["a" * 10, "b" * 10, "c" * 10], budget=30)
    ('aaaaaaaaaa', 'bbbbbbbbbb')
    >>> bounded_texts([])
    ('',)
    """
    kept, used = [], 0
    for text in texts:
        used += len(text) + 4
        if used > budget:
            break
        kept.append(text)
    return tuple(kept) or ("",)


def shadow_ids(outcome: WindowOutcome, limit: int = SHADOW_IDS_PER_QUERY) -> tuple[str, ...]:
    """The ids the shadow challenger disagreed on (another intent first, then another route), at most ``limit``
    (never empty: ``IN ()`` is not SQL)."""
    shadow = outcome.shadow
    if shadow is None:
        return ("",)
    ids = [*shadow.challenger_intents(), *sorted(shadow.route_disagreement_ids())]
    return tuple(dict.fromkeys(ids))[:limit] or ("",)


def queue_text_hash(text: str) -> str:
    """The queue's dedup key: SHA-256 of the normalised scrubbed text (no secret: the text is stored as is)."""
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


# String columns nlumon.pii.deidentify_row leaves as they are: identifiers, enums, the model's labels, and the
# text and slot values, which deidentify_copy has just scrubbed together (a slot value keeps the text's verdict).
QUEUE_KEEP = ("item_id", "text_hash", "assistant", "model_version", "intent", "slot_types", "reasons",
              "text_scrubbed", "slot_values")
# In the Kafka message, also the item's words and tags (its text, split) and the timestamps.
MESSAGE_KEEP = (*QUEUE_KEEP, "id", "text", "tokens", "tags", "window_start", "window_end", "flagged_at")


def deidentified_prediction(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``predictions`` row read back for the queue, its text and slot values scrubbed again together."""
    text, values = deidentify_copy(str(row.get("text_scrubbed") or ""), list(row.get("slot_values") or []),
                                   list(row.get("slot_types") or []))
    return {**row, "text_scrubbed": text, "slot_values": values}


def queue_row(item: LabelingItem, row: Mapping[str, Any], flagged_at: datetime, row_version: int) -> dict[str, Any]:
    """The ``labeling_queue`` row of one item (``row`` is its prediction, for the slot values)."""
    text, values = deidentify_copy(item.text, list(row.get("slot_values") or []), list(row.get("slot_types") or []))
    item = item.deidentified(text)
    return deidentify_row({
        "item_id": item.id, "text_hash": queue_text_hash(text), "flagged_at": flagged_at,
        "window_start": naive_utc(item.window_start), "assistant": item.assistant, "model_version": item.model_version,
        "text_scrubbed": text, "intent": item.intent, "slot_types": list(row.get("slot_types") or []),
        "slot_values": values, "reasons": [str(r) for r in item.reasons],
        "priority": float(item.priority), "row_version": row_version,
    }, keep=QUEUE_KEEP)


def kafka_message(row: Mapping[str, Any], item: LabelingItem) -> bytes:
    """The ``labeling-queue`` message: the item (with its BIO pre-annotation) plus the queue's key and slots."""
    payload = {**item.deidentified(row.get("text_scrubbed")).to_dict(), "text_hash": row["text_hash"],
               "slot_types": row["slot_types"],
               "slot_values": row["slot_values"], "flagged_at": row["flagged_at"].isoformat()}
    return json.dumps(deidentify_row(payload, keep=MESSAGE_KEEP), ensure_ascii=False, sort_keys=True).encode()


class LabelingPublishError(RuntimeError):
    """Kafka did not acknowledge every labeling-queue message of a window (nothing was written to ClickHouse)."""


class LabelingSink:
    """Outcome handler that fills the labeling queue; see the module docstring."""

    name = "labeling"

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
        send_timeout_s: float = 30.0,
    ) -> None:
        self.client_factory = clickhouse_client_factory
        self.daily_budget, self.max_per_window = daily_budget, max_per_window
        self.low_confidence, self.small_margin = low_confidence, small_margin
        self.candidates_per_window = candidates_per_window
        self.topic = topic
        self.producer_factory = producer_factory
        self.send_timeout_s = send_timeout_s
        self._producer: Any = None

    def __call__(self, outcomes: Sequence[WindowOutcome]) -> list[LabelingItem]:
        """Queue every window's items; raises :class:`HandoffError` naming the windows that failed (after the
        others were queued)."""
        if not outcomes:
            return []
        queued: list[LabelingItem] = []
        failures: dict[datetime, str] = {}
        client = self.client_factory()
        try:
            for index, outcome in enumerate(outcomes):
                try:
                    queued += self.queue_window(client, outcome)
                except LabelingPublishError as error:
                    log.error("labeling queue: window %s not queued, Kafka failed (%s); %d later window(s) of "
                              "this run not tried", outcome.window_start, error, len(outcomes) - index - 1)
                    for rest in outcomes[index:]:
                        failures[rest.window_start] = f"LabelingPublishError: {error}"
                    break
                except Exception as error:
                    log.exception("labeling queue: window %s not queued", outcome.window_start)
                    failures[outcome.window_start] = f"{type(error).__name__}: {error}"
        finally:
            client.disconnect()
        if failures:
            raise HandoffError(failures)
        return queued

    def queue_window(self, client: Any, outcome: WindowOutcome) -> list[LabelingItem]:
        """Flag, deduplicate, budget and queue one window's samples; returns the items queued."""
        rows = self._candidate_rows(client, outcome)
        members = frozenset(row["id"] for row in rows if row["text_scrubbed"] in outcome.growing_cluster_texts)
        rows = [deidentified_prediction(row) for row in rows]  # before the items (and their tags) are built
        by_id = {row["id"]: row for row in rows}
        shadow = outcome.shadow
        context = FlagContext(
            low_confidence=self.low_confidence, small_margin=self.small_margin, ood_threshold=outcome.ood_threshold,
            growing_cluster_members=members,
            challenger_intents=shadow.challenger_intents() if shadow is not None else {},
            route_disagreements=shadow.route_disagreement_ids() if shadow is not None else frozenset(),
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
            "small_margin": self.small_margin, "cluster_texts": bounded_texts(outcome.growing_cluster_texts),
            "shadow_ids": shadow_ids(outcome),
        }
        frame = read_predictions(client, outcome.window_start, outcome.window_end, self.candidates_per_window,
                                 CANDIDATE_COLUMNS, where=CANDIDATE_FILTER, params=params)
        return frame.to_dict("records")

    def _not_yet_queued(self, client: Any, items: list[LabelingItem]) -> list[LabelingItem]:
        hashes = {queue_text_hash(item.text): item for item in items}
        if not hashes:
            return []
        keys, queued = list(hashes), set()
        for first in range(0, len(keys), HASHES_PER_QUERY):  # each query stays under ClickHouse's max_query_size
            queued |= {h for (h,) in client.execute(
                "SELECT text_hash FROM labeling_queue WHERE text_hash IN %(hashes)s",
                {"hashes": tuple(keys[first:first + HASHES_PER_QUERY])})}
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
        """Send every item and wait for the broker's acknowledgement of each; raise if any is missing."""
        if self.producer_factory is None:
            return
        try:
            if self._producer is None:
                self._producer = self.producer_factory()
            futures = [self._producer.send(self.topic, key=row["text_hash"].encode(), value=kafka_message(row, item))
                       for row, item in zip(rows, items, strict=True)]
            self._producer.flush(timeout=self.send_timeout_s)
        except Exception as error:  # no broker, metadata timeout, flush timeout: nothing is known to be sent
            self._discard_producer()
            raise LabelingPublishError(f"{len(rows)} message(s) to {self.topic!r} not sent: "
                                       f"{type(error).__name__}: {error}") from error
        errors = []
        for future in futures:
            try:
                future.get(timeout=self.send_timeout_s)  # done after flush: returns the metadata or raises
            except Exception as error:
                errors.append(error)
        if errors:
            self._discard_producer()
            raise LabelingPublishError(f"{len(errors)} of {len(futures)} message(s) to {self.topic!r} not "
                                       f"acknowledged: {type(errors[0]).__name__}: {errors[0]}") from errors[0]

    def _discard_producer(self) -> None:
        """Drop a producer that failed: the next window makes a fresh one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception as error:
                log.warning("labeling queue: closing the failed Kafka producer: %s", error)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


def kafka_producer_factory(bootstrap_servers: str) -> Callable[[], Any]:
    """A kafka-python producer that waits for every in-sync replica (acks=all)."""

    def make() -> Any:
        from kafka import KafkaProducer

        # max_block_ms bounds send() when the broker is gone (the default waits a minute per window)
        return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", retries=5, linger_ms=5,
                             max_block_ms=15_000, client_id="nlumon-labeling-queue")

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
