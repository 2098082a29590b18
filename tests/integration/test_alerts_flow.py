"""A rule fires on a real monitor result and a real local HTTP receiver gets a correctly signed webhook."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.testing import LocalReceiver
from alerts.webhooks import generate_secret, verify
from monitor.service import build_monitor
from nlumon.schema import connect
from tests.conftest import make_test_settings
from tests.helpers import fill_clickhouse, tiny_model_settings

pytestmark = pytest.mark.integration

RULES = """
rules:
  - name: ood-share-present
    metric: ood_rate
    condition: ">"
    threshold: 0.01
    for_windows: 1
    scope: global
    severity: warning
    receivers: [oncall]
"""


def test_monitor_result_fires_a_signed_webhook_and_is_mirrored(services, tmp_path, monkeypatch) -> None:
    secret = generate_secret()
    monkeypatch.setenv("NLUMON_TEST_RECEIVER_SECRET", secret)
    (tmp_path / "rules.yaml").write_text(RULES)
    start = datetime(1980, 1, 1, tzinfo=UTC) + timedelta(days=random.SystemRandom().randrange(3500))
    with LocalReceiver(secret=secret) as receiver:
        (tmp_path / "receivers.yaml").write_text(
            f"receivers:\n  - name: oncall\n    url: {receiver.url}\n    secret_env: NLUMON_TEST_RECEIVER_SECRET\n")
        settings = tiny_model_settings(make_test_settings(
            monitor={"max_sample": 300},
            alerts={"rules_path": tmp_path / "rules.yaml", "receivers_path": tmp_path / "receivers.yaml",
                    "store_path": tmp_path / "alerts.db", "retry_base_s": 0.01, "retry_cap_s": 0.1},
        ))
        filled = fill_clickhouse(settings, "ood-burst", 1000, seed=5, spacing_ms=300.0, start=start)
        runtime = build_monitor(settings, labeling=False, kafka=False)
        try:
            outcomes = runtime.run_once(now=filled.last_ts + timedelta(minutes=10), since=start)
            assert outcomes and outcomes[0].groups["all"].ood_rate > 0.01
            runtime.delivery.deliver_once()
            runtime.alerts.mirror_deliveries()
            counts = runtime.delivery.sender.outbox.counts()
        finally:
            runtime.close()
    assert counts == {"oncall": {"delivered": 1}}
    assert len(receiver.accepted) == 1 and receiver.duplicates == 0
    request = next(r for r in receiver.requests if r.status == 204)
    verify(secret, request.headers, request.body)  # raises if the signature is wrong
    body = json.loads(request.body)
    assert body["type"] == "alert.firing" and body["data"]["rule"] == "ood-share-present"
    evidence = body["data"]["evidence"]
    assert evidence["window_start"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    assert evidence["ood_score_threshold"] > 0 and isinstance(evidence["examples"], list)
    event_id = body["data"]["id"]
    client = connect(settings.clickhouse)
    try:
        events = client.execute("SELECT rule, state, window_start FROM alert_events FINAL WHERE event_id = %(id)s",
                                {"id": event_id})
        deliveries = client.execute(
            "SELECT receiver, state, attempts FROM alert_deliveries FINAL WHERE event_id = %(id)s", {"id": event_id})
    finally:
        client.disconnect()
    assert events == [("ood-share-present", "firing", start.replace(tzinfo=None))]
    assert deliveries == [("oncall", "delivered", 1)]
