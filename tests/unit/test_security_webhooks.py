"""Webhook security: header parsing that never raises on odd input, and Slack messages that cannot be
hijacked by alert text nor rejected for their length (docs/security.md, "Webhooks")."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import UTC, datetime
from email.utils import formatdate

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from alerts.events import AlertEvent, MetricPoint
from alerts.outbox import Outbox
from alerts.payloads import (
    ELLIPSIS,
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_LIMIT,
    SLACK_TEXT_LIMIT,
    headline,
    render,
    slack_escape,
    slack_fit,
)
from alerts.receivers import Receiver
from alerts.rules import Rule
from alerts.sender import MAX_RETRY_AFTER_DIGITS, RetryPolicy, WebhookSender, parse_retry_after
from alerts.store import AlertStore
from alerts.testing import LocalReceiver
from alerts.webhooks import InvalidSignature, WebhookVerificationError, parse_timestamp, sign, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TS = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = sign(SECRET, "msg_1", TS, BODY)

# Everything odd a header can hold: any code point (lone surrogates too), digits of other scripts, signs.
header_text = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from("0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９³²¹+-_. \t\n\r\x00\u3000\ud800\udfff"),
    ),
    max_size=80,
)
header_value = st.one_of(header_text, st.binary(max_size=40), st.integers(), st.none(), st.floats())

# ---------------------------------------------------------------------------------------------- timestamps


@given(header_value)
def test_parse_timestamp_never_raises_and_takes_only_ascii_digits(value):
    parsed = parse_timestamp(value)
    if parsed is not None:
        text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip(" \t")
        assert text.isascii() and text.isdigit() and len(text) <= 12 and parsed == int(text)


@given(st.dictionaries(st.sampled_from(["webhook-id", "Webhook-Timestamp", "webhook-signature", "x"]),
                       header_value, max_size=4),
       st.one_of(st.binary(max_size=40), header_text))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_verify_only_ever_raises_verification_errors(headers, body):
    try:
        verify(SECRET, headers, body, now=TS)
    except WebhookVerificationError:
        pass


@given(header_text)
def test_any_timestamp_text_fails_cleanly_or_verifies_as_its_ascii_value(ts_text):
    headers = {"webhook-id": "msg_1", "webhook-timestamp": ts_text, "webhook-signature": SIGNATURE}
    try:
        verify(SECRET, headers, BODY, now=TS)
    except InvalidSignature as error:
        assert str(error)  # a reason, always
    else:
        assert ts_text.strip(" \t") == str(TS)


@pytest.mark.parametrize(
    "ts_text",
    [
        "١٦١٤٢٦٥٣٣٠",  # Arabic-Indic digits: int() reads them as 1614265330, so the HMAC would match
        "１６１４２６５３３０",  # fullwidth digits, same trap
        "۱۶۱۴۲۶۵۳۳۰",  # extended Arabic-Indic
        "+1614265330",
        "-1614265330",
        "1614_265_330",
        "1614265330.0",
        "1 614265330",
        "1614265330\n",
        "\u30001614265330",  # ideographic space: str.strip() would remove it, HTTP does not
        "³",
        "9" * 13,
        "9" * 5000,  # int() of > 4300 digits raises ValueError in Python 3.11+
    ],
)
def test_odd_timestamps_are_invalid_with_a_reason_never_a_crash(ts_text):
    headers = {"webhook-id": "msg_1", "webhook-timestamp": ts_text, "webhook-signature": SIGNATURE}
    with pytest.raises(InvalidSignature, match="webhook-timestamp is not integer unix seconds"):
        verify(SECRET, headers, BODY, now=TS)


def test_http_whitespace_around_a_timestamp_is_allowed_and_empty_values_are_missing():
    for ts_text in (f" {TS}", f"{TS}\t"):
        verify(SECRET, {"webhook-id": "msg_1", "webhook-timestamp": ts_text, "webhook-signature": SIGNATURE},
               BODY, now=TS)
    for headers in (
        {"webhook-id": "msg_1", "webhook-timestamp": "", "webhook-signature": SIGNATURE},
        {"webhook-id": "msg_1", "webhook-timestamp": None, "webhook-signature": SIGNATURE},
        {"webhook-id": "msg_1", "webhook-timestamp": TS, "webhook-signature": SIGNATURE},  # not text
    ):
        with pytest.raises(InvalidSignature, match="missing or unreadable header"):
            verify(SECRET, headers, BODY, now=TS)


def test_non_ascii_signatures_and_lone_surrogates_fail_cleanly():
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": "v1,ü€ v1,\ud800"}
    with pytest.raises(InvalidSignature, match="no v1 signature"):
        verify(SECRET, headers, BODY, now=TS)
    with pytest.raises(InvalidSignature, match="UTF-8"):
        verify(SECRET, {**headers, "webhook-id": "msg_\ud800"}, BODY, now=TS)


# ---------------------------------------------------------------------------------------------- Retry-After


@given(header_value, st.floats(min_value=0, max_value=4e9))
def test_parse_retry_after_never_raises(value, now):
    delay = parse_retry_after(value, now=now)
    assert delay is None or (delay >= 0 and delay == delay and delay != float("inf"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 120\t", 120.0),
        ("0", 0.0),
        ("9" * MAX_RETRY_AFTER_DIGITS, float("9" * MAX_RETRY_AFTER_DIGITS)),
        ("9" * (MAX_RETRY_AFTER_DIGITS + 1), None),  # huge: odd, ignored
        ("9" * 5000, None),
        ("١٢٠", None),
        ("１２０", None),
        ("²", None),
        ("+120", None),
        ("-120", None),
        ("1_20", None),
        ("12.5", None),
        ("1 20", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("Thu, 01 Jan 1970 00:03:20 GMT", 100.0),  # an HTTP date: its distance from now
        ("Thursday, 01-Jan-70 00:03:20 GMT", 100.0),  # RFC 850 form
        ("Thu Jan  1 00:03:20 1970", 100.0),  # asctime form
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # in the past: retry now
        ("Fri, 99 Foo 2026 99:99:99 GMT", None),
        ("Thu, 01 Jan 1970 00:03:20 GMT\u3000", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates_and_ignores_the_rest(value, expected):
    assert parse_retry_after(value, now=100.0) == expected


class _Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code, self.headers = status, headers

    def close(self) -> None:
        pass


class _Session:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def post(self, *args, **kwargs) -> _Response:
        return self.response


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("120", 120.0, 120.0),  # honoured
        ("١٢٠", 0.0, 1.0),  # ignored: the backoff (base 1 s) decides
        ("9" * 400, 0.0, 1.0),
        ("+120", 0.0, 1.0),
        (None, 0.0, 1.0),
        ("DATE+200", 195.0, 205.0),  # an HTTP date 200 s ahead of the wall clock
    ],
)
def test_the_sender_reschedules_on_odd_retry_after_values_without_crashing(tmp_path, retry_after, low, high):
    if retry_after == "DATE+200":
        retry_after = formatdate(time.time() + 200, usegmt=True)
    now = 1_000_000.0
    store = AlertStore(tmp_path / "alerts.db")
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    AlertEngine([Rule("ood-high", "ood_rate", ">", 0.1, receivers=("oncall",))], store, clock=lambda: now).evaluate(
        [MetricPoint("ood_rate", 0.4, t0, t0, "shopper")]
    )
    headers = {} if retry_after is None else {"retry-after": retry_after}
    sender = WebhookSender(
        Outbox(store, clock=lambda: now),
        {"oncall": Receiver("oncall", "http://127.0.0.1:9/hook", SECRET)},
        policy=RetryPolicy(base_s=1.0, cap_s=600.0),
        registry=CollectorRegistry(),
        session=_Session(_Response(503, headers)),
    )
    report = sender.run_once()
    assert report.retried == 1
    ((webhook_id, _, _),) = report.outcomes
    delay = sender.outbox.row(webhook_id, "oncall")["next_attempt_at"] - now
    store.close()
    assert low <= delay <= high


def test_the_local_receiver_refuses_a_content_length_that_is_not_ascii_digits():
    with LocalReceiver(None) as receiver:
        host, port = receiver.url.split("//", 1)[1].split("/", 1)[0].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall("POST / HTTP/1.1\r\nHost: x\r\ncontent-length: ٣\r\n\r\nabc".encode())
            reply = conn.recv(100)
    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400")


# ---------------------------------------------------------------------------------------------- Slack


def _event(**fields) -> dict:
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    evidence = fields.pop("evidence", {})
    values = dict(id="e1", rule="ood-high", group_key="g", status="firing", severity="critical", metric="ood_rate",
                  condition=">", threshold=0.1, value=0.4, assistant="shopper", scope="per_assistant",
                  window_start=t, window_end=t, incident_id="i1", incident_started=t, evidence=evidence)
    values.update(fields)
    return AlertEvent(**values).to_dict()


def _texts(payload: dict) -> list[str]:
    return [payload["text"], *(block["text"]["text"] for block in payload["blocks"])]


_OUR_LINK = re.compile(r"<https?://[^\s<>|]*\|[^<>]*>")
_ENTITY = re.compile(r"&(?:amp|lt|gt);")


def _assert_no_markup_but_ours(text: str) -> None:
    without_links = _OUR_LINK.sub("", text)
    assert "<" not in without_links and ">" not in without_links, text
    assert "&" not in _ENTITY.sub("", without_links), text


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


HOSTILE = {
    "assistant": "<!channel>",
    "rule": "ood<http://evil.example|click here>",
    "metric": "m&m",
    "severity": "critical",
    "description": "@here <!here> <@U024BE7LH> <#C024BE7LR> &lt;already escaped&gt;",
    "evidence": {
        "examples": ["<!channel> buy now", "<http://evil.example|your bank>", "a`b`c\nnew line", "x > y & y < z",
                     {"cluster": "<!everyone>"}],
        "top_intents": "<!channel>",
        "dashboard": "https://grafana.local/d?a=1&b=<script>|x> y",
        "<!channel>": "https://grafana.local/evil-key",
    },
}


def test_hostile_alert_text_cannot_mention_or_link_in_slack():
    payload = json.loads(render(_event(**HOSTILE), "slack"))
    joined = "\n".join(_texts(payload))
    for text in _texts(payload):
        _assert_no_markup_but_ours(text)
    assert "<!" not in joined and "<http://evil" not in joined and "<@" not in joined and "<#" not in joined
    assert "&lt;!channel&gt;" in joined and "&amp;lt;already escaped&amp;gt;" in joined
    assert "m&amp;m" in payload["text"] and "(&gt; 0.1)" in payload["text"]
    assert "• `a'b'c new line`" in joined  # one line, backticks cannot end the code span
    # the link keeps working, its URL %-encoded so it cannot close the link or add a label
    assert "<https://grafana.local/d?a=1&amp;b=%3Cscript%3E%7Cx%3E%20y|dashboard>" in joined
    assert "|&lt;!channel&gt;>" in joined
    # the plain headline (ClickHouse summaries, logs) is unchanged
    assert headline(_event(**HOSTILE)).startswith(":rotating_light: [CRITICAL] ood<http://evil.example|click here>")


def test_long_alert_text_is_cut_to_slacks_limits_with_an_ellipsis():
    huge = "&<>" * 20_000 + "😀" * 30_000
    payload = json.loads(render(_event(assistant=huge, description=huge, evidence={
        "examples": [huge] * 10, **{f"link{i:03d}": f"https://grafana.local/{'x' * 200}/{i}" for i in range(200)},
    }), "slack"))
    assert _units(payload["text"]) <= SLACK_TEXT_LIMIT and payload["text"].endswith(ELLIPSIS)
    assert len(payload["blocks"]) <= SLACK_MAX_BLOCKS
    for block in payload["blocks"]:
        assert _units(block["text"]["text"]) <= SLACK_SECTION_LIMIT and block["text"]["text"].endswith(ELLIPSIS)
    for text in _texts(payload):
        _assert_no_markup_but_ours(text)  # never cut inside an entity or one of our links


def test_slack_fit_counts_utf16_units_and_never_splits_an_entity():
    assert slack_fit("short", 10) == "short"
    assert slack_fit("😀" * 10, 10) == "😀" * 4 + ELLIPSIS  # 4 emoji = 8 units, + 1 for the ellipsis
    assert slack_fit("ab&amp;cd", 5) == "ab" + ELLIPSIS
    assert slack_fit("ab <https://x|y> cd", 10) == "ab " + ELLIPSIS


fields = st.text(max_size=300)


@given(
    assistant=fields, rule=fields, metric=fields, description=fields, severity=fields,
    examples=st.lists(st.one_of(fields, st.integers(), st.none()), max_size=8),
    links=st.dictionaries(fields, fields.map(lambda s: "https://" + s), max_size=5),
    limit=st.integers(min_value=2, max_value=400),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_any_alert_text_renders_a_slack_message_within_limits_and_without_foreign_markup(
    assistant, rule, metric, description, severity, examples, links, limit
):
    event = _event(assistant=assistant, rule=rule, metric=metric, description=description, severity=severity,
                   evidence={"examples": examples, **links})
    payload = json.loads(render(event, "slack"))
    assert len(payload["blocks"]) <= SLACK_MAX_BLOCKS and _units(payload["text"]) <= SLACK_TEXT_LIMIT
    for text in _texts(payload):
        _assert_no_markup_but_ours(text)
        assert _units(text) <= SLACK_SECTION_LIMIT or text is payload["text"]
    escaped = slack_escape(description)
    cut = slack_fit(escaped, limit)
    assert _units(cut) <= limit
    _assert_no_markup_but_ours(cut)


def test_lone_surrogates_in_alert_text_do_not_break_rendering():
    event = _event(assistant="bad \ud800 text", evidence={"examples": ["x \udfff y"]})
    for fmt in ("standard", "slack"):
        body = render(event, fmt)
        assert json.loads(body) and render(event, fmt) == body  # valid JSON, same bytes every retry
