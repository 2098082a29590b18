"""What `nlumon retention` covers, without services: every table is accounted for, files and the alert store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from nlumon.schema import TABLES
from nlumon.settings import load_settings
from streams.retention import (
    DAY_PARTITIONED,
    DELETED_BY_TIME,
    KEPT,
    delete_alert_rows,
    delete_files,
    expired_alert_rows,
    expired_files,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_every_table_is_dropped_by_day_deleted_by_time_or_kept_for_a_stated_reason():
    groups = [set(DAY_PARTITIONED), set(DELETED_BY_TIME), set(KEPT)]
    assert set().union(*groups) == set(TABLES), "a table retention does not know: add it to a group"
    assert sum(len(group) for group in groups) == len(TABLES), "a table in two groups"
    for table, column in DELETED_BY_TIME.items():
        assert f"\n    {column} DateTime," in TABLES[table], f"{table}.{column} is not a DateTime column"
    for table in ("predictions", "utterance_log", "dead_letters", "ood_clusters", "alert_events", "monitor_windows",
                  "drift_results"):
        assert table in DAY_PARTITIONED
    assert {"labeling_queue", "alert_deliveries"} <= set(DELETED_BY_TIME)  # text / alert bodies, no day partitions
    assert "text" not in TABLES["model_versions"]


def age(path, days):
    stamp = (NOW - timedelta(days=days)).timestamp()
    os.utime(path, (stamp, stamp))


def test_old_reports_and_demo_alert_stores_expire_and_nothing_else(tmp_path):
    settings = load_settings(None, services={"run_dir": tmp_path})
    files = {
        "reports/window-20260101T000000-300s.html": 40, "reports/demo-report.html": 40,
        "reports/nested/old.html": 40, "reports/window-new.html": 1, "demo-alerts-101010.db": 40,
        "demo-alerts-101010.db-wal": 40, "alerts.db": 40, "logs/demo-worker.log": 40,
        "replays/demo-x/truth.jsonl": 40, "reports/notes.txt": 40,
    }
    for name, days in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * 10)
        age(path, days)
    (tmp_path / "reports" / "link.html").symlink_to(tmp_path / "alerts.db")
    expired = expired_files(settings, 30, now=NOW)
    assert {path.relative_to(tmp_path).as_posix() for path, _ in expired} == {
        "reports/window-20260101T000000-300s.html", "reports/demo-report.html", "reports/nested/old.html",
        "demo-alerts-101010.db", "demo-alerts-101010.db-wal"}
    assert delete_files(expired) == 50
    assert expired_files(settings, 30, now=NOW) == []
    assert (tmp_path / "alerts.db").exists() and (tmp_path / "reports" / "window-new.html").exists()
    assert expired_files(load_settings(None, services={"run_dir": tmp_path / "missing"}), 30) == []


def test_the_alert_store_loses_old_events_and_finished_deliveries_only(tmp_path):
    from alerts.store import AlertStore

    path = tmp_path / "alerts.db"
    old, new = (NOW - timedelta(days=40)).timestamp(), (NOW - timedelta(days=1)).timestamp()
    with AlertStore(path) as store, store.transaction() as conn:
        for event_id, created in (("e-old", old), ("e-new", new)):
            conn.execute("INSERT INTO alert_events (id, rule, group_key, status, window_end, event_json, created_at)"
                         " VALUES (?, 'r', 'g', 'firing', '', '{\"examples\": [\"my name is ana\"]}', ?)",
                         (event_id, created))
        for webhook, status, finished in (("w-delivered-old", "delivered", old), ("w-dead-old", "dead", old),
                                          ("w-pending-old", "pending", None), ("w-delivered-new", "delivered", new)):
            conn.execute("INSERT INTO outbox (webhook_id, receiver, event_json, status, created_at, next_attempt_at,"
                         " finished_at) VALUES (?, 'hook', '{}', ?, ?, ?, ?)", (webhook, status, old, old, finished))
    assert expired_alert_rows(path, 30, now=NOW) == [("alert_events", 1), ("outbox", 2)]
    assert delete_alert_rows(path, 30, now=NOW) == 3
    with AlertStore(path) as store, store.transaction() as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM alert_events")] == ["e-new"]
        assert sorted(r[0] for r in conn.execute("SELECT webhook_id FROM outbox")) == [
            "w-delivered-new", "w-pending-old"]  # a pending delivery is the sender's to finish
    assert expired_alert_rows(tmp_path / "none.db", 30) == [] and not (tmp_path / "none.db").exists()
