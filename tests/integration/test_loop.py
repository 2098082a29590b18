"""The loop on real Kafka and ClickHouse: cleared store logs on the topic → annotation (examples with surrogate
names, ambiguous/audit items in the labeling queue) → a tiny retrain on the examples → gate on the production
holdout → promotion → a running worker serving the new version. Planted personal data must reach no table and
no file.

The tiny model's quality is not what is tested here (benchmarks/annotation.py measures a real loop): the gate
runs with thresholds a tiny model can meet, so that the test follows the mechanics to the end.
"""

from __future__ import annotations

import json
import random

import pytest

from labeling.annotation.build import build_annotator
from labeling.items import Reason
from model_runtime.cli import run_gate
from model_runtime.data import lexicon
from model_runtime.gate import GATE_REPORT
from model_runtime.package import load_package
from model_runtime.registry import promote, promote_gated
from monitor.annotate import annotate_topic
from nlumon.records import UtteranceEvent
from nlumon.schema import connect
from streams.replay import produce
from tests.integration.workers import Worker, isolated, unique_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLANTED = {"phone": "415 555 0134", "email": "ann.lee@example.com", "card": "4111 1111 1111 1111"}


def planted_events(unique: str) -> list[tuple[bytes, bytes]]:
    """Cleared associate events that carry other personal data: never written anywhere by the annotator."""
    texts = [f"ask ingrid to call {PLANTED['phone']} tomorrow", f"send the schedule to {PLANTED['email']} tonight",
             f"is kwame paying with {PLANTED['card']} today"]
    events = []
    for i, text in enumerate(texts):
        event = UtteranceEvent(id=f"pii-{unique}-{i}", ts="2026-12-01T10:00:00Z", assistant="associate",
                               session_id=f"s-{i}", text=text, channel="voice", cleared_for_analysis=True)
        events.append((event.session_id.encode(), event.to_json()))
    return events


def test_cleared_logs_to_a_promoted_model_served_by_a_worker(services, unique, tmp_path):
    from model_runtime.testing import cached_tiny_package, tiny_package

    registry = tmp_path / "registry"
    champion = promote(cached_tiny_package(), registry)
    settings = isolated(services, unique, model={"package_path": registry / "current"})
    worker = Worker(settings, "loop-worker", tmp_path)
    try:
        events = unique_events(settings, "new-names", 240, seed=7, shift_at=0.0, cleared_share=0.8)
        texts = {json.loads(e.value)["id"]: json.loads(e.value)["text"]
                 for e in events if e.truth["kind"] != "malformed"}
        produce(settings, [(e.key, e.value) for e in events] + planted_events(unique))

        # 1. annotate (a tiny champion is never sure of an intent: the confidence floor is off for it)
        annotator = build_annotator(registry / "current", min_intent_confidence=0.0, audit_rate=0.1, seed=1)
        report = annotate_topic(settings, annotator, tmp_path / "annotation", assistants=("associate", "shopper"),
                                idle_timeout_s=5, group_id=f"annotator-{unique}", progress=False)
        counts = report.counts
        assert counts["records"] == len(events) + 3
        assert counts["skipped:not_cleared"] > 0 and counts["auto_labelled"] > 20
        assert counts["dropped_pii:phone"] + counts["dropped_pii:email"] + counts["dropped_pii:card"] >= 2
        [examples_file] = report.files
        rows = [json.loads(line) for line in examples_file.read_text().splitlines()]
        assert len(rows) == counts["auto_labelled"]
        unseen = set(lexicon.UNSEEN_PEOPLE_FIRST) | set(lexicon.UNSEEN_PEOPLE_LAST)
        people = 0
        for row in rows:  # a person's words never survive: each one is a surrogate
            original = texts[row["id"]].split()
            for index, tag in enumerate(row["tags"]):
                if tag.endswith("-person"):
                    assert row["tokens"][index] != original[index]
                    people += 1
        assert people > 0
        assert not any(value in examples_file.read_text() for value in PLANTED.values())

        client = connect(settings.clickhouse)
        queued = client.execute("SELECT item_id, text_scrubbed, reasons FROM labeling_queue FINAL "
                                "WHERE item_id LIKE 'annotation-%%' AND item_id IN %(ids)s",
                                {"ids": tuple(f"annotation-{i}" for i in texts)})
        assert {reason for _, _, reasons in queued for reason in reasons} & {Reason.AUDIT, Reason.ANNOTATION_AMBIGUOUS}
        for _, text, _ in queued:
            assert not set(text.split()) & unseen, text

        # 2. every string column of every table, for the planted data
        leaks = []
        for table, column in client.execute(
                "SELECT table, name FROM system.columns WHERE database = %(db)s AND type LIKE '%%String%%'",
                {"db": settings.clickhouse.database}):
            for value in PLANTED.values():
                found = client.execute(f"SELECT count() FROM {table} WHERE positionCaseInsensitive("
                                       f"toString({column}), %(v)s) > 0", {"v": value})[0][0]
                if found:
                    leaks.append((table, column, value))
        client.disconnect()
        assert not leaks

        # 3. retrain on the examples, gate on the production holdout, promote
        challenger = load_package(tiny_package(tmp_path / "challenger", seed=0, extra=(str(examples_file),)))
        extra = challenger.manifest["training"]["extra"]
        assert sum(entry["rows"] for entry in extra["files"]) == len(rows), extra
        decision = run_gate(challenger.path, registry / "current", backend="onnx-cpu", latency_budget_ms=1e6,
                            slot_f1_floor=0.0, frustration_recall_floor=0.0, ece_budget=1.0, intent_drop=100.0,
                            assistant_intent_drop=100.0, span_f1_drop=100.0, slot_f1_drop=100.0, golden_regressions=100,
                            echo=lambda *_: None)
        gate_report = json.loads((challenger.path / GATE_REPORT).read_text())
        failed = [c for c in decision.criteria if not c.passed]
        assert decision.promote, failed
        assert gate_report["evaluation_set"]["kind"] == "holdout"
        assert gate_report["champion"]["version"] == champion.version
        promoted = promote_gated(challenger.path, registry)
        assert promoted.version == challenger.version
        log = [json.loads(line) for line in (registry / "promotions.jsonl").read_text().splitlines()]
        assert log[-1]["version"] == challenger.version and log[-1]["gate"].startswith("sha256:")

        # 4. the running worker hot-reloads it (after the batch in flight) and serves it
        wait_until(lambda: f"now serving model {challenger.version}" in worker.output(), 120,
                   "the worker's reload", (worker,))
        later = unique_events(settings, "stable", 60, seed=random.randrange(10**6))
        produce(settings, [(e.key, e.value) for e in later])
        ids = tuple(e.truth["id"] for e in later if e.truth["kind"] != "malformed")

        def served_by_challenger() -> bool:
            check = connect(settings.clickhouse)
            try:
                return check.execute("SELECT count() FROM predictions WHERE id IN %(ids)s AND model_version = %(v)s",
                                     {"ids": ids, "v": challenger.version})[0][0] > 0
            finally:
                check.disconnect()

        wait_until(served_by_challenger, 180, "rows served by the promoted challenger", (worker,))
    finally:
        worker.stop()
