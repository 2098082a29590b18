"""Delivery through the outbox to a real local HTTP receiver: signed, retried, never lost, never leaked."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from alerts.events import MetricPoint
from alerts.outbox import Outbox, webhook_id_for
from alerts.receivers import Receiver
from alerts.rules import Rule
from alerts.sender import RetryPolicy, WebhookSender, wait_until_idle
from alerts.store import AlertStore
from alerts.testing import LocalReceiver, free_port
from alerts.webhooks import generate_secret, signed_headers, verify

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST = RetryPolicy(base_s=0.005, cap_s=0.02, horizon_s=60, lease_s=5)
RULE = Rule("ood-high", "ood_rate", ">", 0.1, receivers=("oncall",))


def breaching_points(assistants=("shopper", "associate", "kiosk"), window: int = 0) -> list[MetricPoint]:
    start = T0 + timedelta(minutes=5 * window)
    return [
        MetricPoint("ood_rate", 0.4, start, start + timedelta(minutes=5), a,
                    {"threshold": 0.1, "examples": [f"{a} asks about a thing we do not sell"]})
        for a in assistants
    ]


@pytest.fixture
def secret():
    return generate_secret()


@pytest.fixture
def store(tmp_path):
    store = AlertStore(tmp_path / "alerts.db")
    yield store
    store.close()


def make_sender(store, url, secret, *, registry=None, policy=FAST, clock=time.time, **kwargs):
    receivers = {"oncall": Receiver("oncall", url, secret, "standard", 2.0)}
    return WebhookSender(Outbox(store, clock=clock), receivers, policy=policy,
                         registry=registry or CollectorRegistry(), **kwargs)


def test_a_firing_rule_reaches_the_receiver_as_a_correctly_signed_webhook(store, secret):
    (event,) = AlertEngine([RULE], store).evaluate(breaching_points(("shopper",)))
    with LocalReceiver(secret) as receiver:
        report = wait_until_idle(make_sender(store, receiver.url, secret), timeout_s=10)
    assert report.delivered == 1
    (request,) = receiver.requests
    assert request.status == 204, request.reason
    verify(secret, request.headers, request.body)  # our own verifier, on what went over the wire
    assert request.headers["webhook-id"] == webhook_id_for(event)
    body = json.loads(request.body)
    assert body["type"] == "alert.firing"
    assert body["data"]["rule"] == "ood-high" and body["data"]["assistant"] == "shopper"
    assert body["data"]["evidence"]["examples"] == ["shopper asks about a thing we do not sell"]


def test_a_receiver_that_is_down_then_up_gets_every_alert_exactly_once(store, secret):
    port = free_port()
    engine = AlertEngine([RULE], store)
    events = engine.evaluate(breaching_points())
    sender = make_sender(store, f"http://127.0.0.1:{port}/hooks/alerts", secret)
    down = sender.run_once()
    assert (down.retried, down.delivered) == (3, 0)  # connection refused: all rescheduled
    with LocalReceiver(secret, port=port, fail_first=4) as receiver:  # then it answers 503 four times
        report = wait_until_idle(sender, timeout_s=10)
    assert report.delivered == 3 and report.dead == 0
    assert sorted(receiver.accepted) == sorted(webhook_id_for(e) for e in events)
    assert receiver.duplicates == 0
    assert [r.status for r in receiver.requests].count(503) == 4
    rows = [sender.outbox.row(webhook_id_for(e), "oncall") for e in events]
    assert sum(row["attempts"] for row in rows) == 3 + 4 + 3  # down, 503s, successes
    assert all(row["status"] == "delivered" and row["last_status_code"] == 204 for row in rows)


def test_forged_or_stale_deliveries_are_rejected_by_the_receiver(store, secret):
    AlertEngine([RULE], store).evaluate(breaching_points(("shopper",)))
    with LocalReceiver(secret) as receiver:
        forged = make_sender(store, receiver.url, generate_secret())  # signs with the wrong secret
        forged.run_once()
        body = b'{"type": "alert.firing"}'
        stale_ts = int(time.time()) - 3600
        stale = requests.post(receiver.url, data=body, timeout=5,
                              headers=signed_headers(secret, "msg_stale", body, timestamp=stale_ts))
    assert stale.status_code == 401
    reasons = [r.reason for r in receiver.requests]
    assert reasons[0].startswith("InvalidSignature") and reasons[1].startswith("StaleTimestamp")
    assert receiver.accepted == {}


def test_client_errors_die_at_once_and_are_counted(store, secret):
    registry = CollectorRegistry()
    AlertEngine([RULE], store).evaluate(breaching_points(("shopper",)))
    with LocalReceiver(secret, fail_first=1, fail_status=410) as receiver:
        report = make_sender(store, receiver.url, secret, registry=registry).run_once()
    assert (report.dead, len(receiver.requests)) == (1, 1)
    assert Outbox(store).counts() == {"oncall": {"dead": 1}}
    assert registry.get_sample_value("nlumon_webhook_dead_total", {"receiver": "oncall", "reason": "client_error"}) == 1


def test_retryable_failures_give_up_only_after_the_horizon(store, secret):
    now = [1_000_000.0]
    registry = CollectorRegistry()
    policy = RetryPolicy(base_s=1, cap_s=600, horizon_s=6 * 3600, lease_s=5)
    outbox = Outbox(store, clock=lambda: now[0])
    AlertEngine([RULE], store, clock=lambda: now[0]).evaluate(breaching_points(("shopper",)))
    with LocalReceiver(secret, fail_first=10_000) as receiver:
        sender = make_sender(store, receiver.url, secret, registry=registry, policy=policy, clock=lambda: now[0])
        assert sender.outbox.clock() == outbox.clock()
        attempts = 0
        while Outbox(store).counts()["oncall"].get("pending"):
            row = sender.outbox.row(f"msg_{_only_event_id(store)}", "oncall")
            now[0] = max(now[0], row["next_attempt_at"])  # jump to the next due time
            attempts += sender.run_once().claimed
            assert attempts < 1000
    # Backoff doubles up to the 600 s cap, so 6 hours hold at least 6*3600/600 = 36 attempts.
    assert attempts >= 36
    row = sender.outbox.row(f"msg_{_only_event_id(store)}", "oncall")
    assert row["status"] == "dead" and row["finished_at"] >= row["created_at"] + 6 * 3600
    assert registry.get_sample_value("nlumon_webhook_dead_total", {"receiver": "oncall", "reason": "horizon"}) == 1
    assert len(receiver.requests) == attempts


def _only_event_id(store) -> str:
    with store.transaction() as conn:
        (event_id,) = conn.execute("SELECT id FROM alert_events").fetchone()
    return event_id


def test_a_sender_killed_mid_delivery_loses_nothing(tmp_path, secret):
    path = tmp_path / "alerts.db"
    first_store = AlertStore(path)
    events = AlertEngine([RULE], first_store).evaluate(breaching_points())
    policy = RetryPolicy(base_s=0.005, cap_s=0.02, horizon_s=60, lease_s=0.3)
    doomed = make_sender(first_store, "http://127.0.0.1:9/unused", secret, policy=policy)
    claimed = doomed.outbox.claim(doomed.owner, limit=10, lease_s=policy.lease_s)
    assert len(claimed) == 3
    del doomed  # "killed": it never acks, never releases its leases
    first_store.close()

    with LocalReceiver(secret) as receiver:
        survivor = make_sender(AlertStore(path), receiver.url, secret, policy=policy)
        assert survivor.run_once().claimed == 0  # leases still held by the dead sender
        time.sleep(policy.lease_s + 0.05)
        report = wait_until_idle(survivor, timeout_s=10)
    assert report.delivered == 3
    assert sorted(receiver.accepted) == sorted(webhook_id_for(e) for e in events)
    assert all(survivor.outbox.row(webhook_id_for(e), "oncall")["attempts"] == 2 for e in events)


def test_secret_and_url_never_reach_logs_or_the_outbox_file(tmp_path, secret, caplog):
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    AlertEngine([RULE], store).evaluate(breaching_points())
    port = free_port()
    secret_path = "/hooks/alerts-token-abc123"
    url = f"http://127.0.0.1:{port}{secret_path}"
    caplog.set_level(logging.DEBUG)
    sender = make_sender(store, url, secret)
    sender.run_once()  # connection refused: logged, stored as an error
    with LocalReceiver(secret, port=port, fail_first=1) as receiver:
        wait_until_idle(sender, timeout_s=10)
    assert len(receiver.accepted) == 3
    store.close()
    assert secret not in caplog.text
    assert secret.removeprefix("whsec_") not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("alerts"))
    assert "oncall" in ours and secret_path not in ours  # urllib3's own debug lines may show the path
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("alerts.db"))
    assert secret.encode() not in stored and secret.removeprefix("whsec_").encode() not in stored
    assert secret_path.encode() not in stored
    assert secret not in repr(sender.receivers) and secret_path not in repr(sender.receivers)


def test_the_background_loop_delivers_what_the_engine_queues_while_it_runs(store, secret):
    with LocalReceiver(secret) as receiver:
        sender = make_sender(store, receiver.url, secret)
        stop = threading.Event()
        loop = threading.Thread(target=sender.run_forever, args=(stop,), kwargs={"idle_s": 0.01})
        loop.start()
        try:
            events = AlertEngine([RULE], store).evaluate(breaching_points())
            deadline = time.monotonic() + 10
            while len(receiver.accepted) < len(events) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            loop.join(timeout=5)
    assert not loop.is_alive()
    assert sorted(receiver.accepted) == sorted(webhook_id_for(e) for e in events)
