"""Receivers config (secrets from the environment) and the two body formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alerts.events import AlertEvent
from alerts.payloads import render
from alerts.receivers import ReceiverConfigError, load_receivers, parse_receivers

SECRET = "whsec_dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0"


def test_secrets_and_slack_urls_come_from_the_environment_and_stay_out_of_repr():
    text = """
receivers:
  - name: oncall
    url: https://hooks.example.com/nlumon
    secret_env: NLUMON_RECEIVER_ONCALL_SECRET
    timeout_s: 3
  - name: chat
    url_env: NLUMON_SLACK_URL
    format: slack
"""
    env = {"NLUMON_RECEIVER_ONCALL_SECRET": SECRET, "NLUMON_SLACK_URL": "https://hooks.slack.com/services/T0/B0/xyz"}
    found = parse_receivers(text, env)
    assert found["oncall"].secret == SECRET and found["oncall"].timeout_s == 3.0
    assert found["chat"].url.endswith("/xyz") and found["chat"].secret is None
    shown = repr(found)
    assert SECRET not in shown and "xyz" not in shown and "hooks.example.com" not in shown


@pytest.mark.parametrize(
    ("item", "env", "message"),
    [
        ("    url: https://x/\n    secret_env: MISSING_VAR", {}, "environment variable MISSING_VAR is not set"),
        ("    url: https://x/", {}, "needs 'secret_env'"),
        ("    url: https://x/\n    secret_env: S", {"S": "not base64!"}, "$S is not a whsec_<base64> secret"),
        ("    url: ftp://x/\n    secret_env: S", {"S": SECRET}, "needs an http(s) 'url'"),
        ("    url: https://x/\n    secret_env: S\n    format: teams", {"S": SECRET}, "format must be one of"),
        ("    url: https://x/\n    secret: inline", {}, "unknown field(s) secret"),
    ],
)
def test_bad_receivers_fail_at_load_without_echoing_secret_values(item, env, message):
    with pytest.raises(ReceiverConfigError) as caught:
        parse_receivers(f"receivers:\n  - name: oncall\n{item}\n", env, source="r.yaml")
    assert message in str(caught.value) and str(caught.value).startswith("r.yaml: receiver #1 (oncall)")
    assert "not base64!" not in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ReceiverConfigError, match="cannot read receivers file"):
        load_receivers(tmp_path / "nope.yaml")


def _event(status="firing"):
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return AlertEvent("e1", "ood-high", "ood-high|shopper", status, "critical", "ood_rate", ">", 0.1, 0.4,
                      "shopper", "per_assistant", t, t, "i1", t,
                      evidence={"examples": [f"utterance {i}" for i in range(8)],
                                "dashboard": "https://grafana.local/d/nlumon", "threshold_source": "reference"})


def test_standard_body_carries_the_whole_alert_and_renders_the_same_bytes_every_time():
    body = render(_event().to_dict(), "standard")
    assert body == render(_event().to_dict(), "standard")  # retries must resend identical bytes
    parsed = json.loads(body)
    assert parsed["type"] == "alert.firing" and parsed["timestamp"] == "2026-03-01T12:00:00+00:00"
    assert AlertEvent.from_dict(parsed["data"]) == _event()


def test_slack_body_has_a_headline_a_few_examples_and_links():
    parsed = json.loads(render(_event().to_dict(), "slack"))
    assert parsed["blocks"][0]["text"]["text"].startswith("*:rotating_light: [CRITICAL] ood-high")
    text = "\n".join(block["text"]["text"] for block in parsed["blocks"])  # summary, examples, links
    assert parsed["text"].startswith(":rotating_light: [CRITICAL] ood-high firing for shopper")
    assert "`utterance 4`" in text and "`utterance 5`" not in text  # at most 5 examples
    assert "<https://grafana.local/d/nlumon|dashboard>" in text
    assert json.loads(render(_event("resolved").to_dict(), "slack"))["text"].startswith(":white_check_mark:")
    with pytest.raises(ValueError, match="unknown webhook format"):
        render(_event().to_dict(), "xml")
