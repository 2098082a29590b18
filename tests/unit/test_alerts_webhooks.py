"""Standard Webhooks signing and verification, checked against the spec's published test vector."""

from __future__ import annotations

import ast
import base64
import sys
from pathlib import Path

import pytest

import alerts.webhooks as webhooks
from alerts.webhooks import InvalidSignature, StaleTimestamp, generate_secret, secret_key, sign, signed_headers, verify

# Published by the Standard Webhooks project (and reproduced by its reference libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_headers(**overrides: str) -> dict[str, str]:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}
    headers.update(overrides)
    return headers


def test_signature_matches_the_published_vector_with_and_without_prefix():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET.removeprefix("whsec_"), SPEC_ID, SPEC_TS, SPEC_BODY.decode()) == SPEC_SIGNATURE
    verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now=SPEC_TS + 10)


def test_the_key_is_the_base64_decoded_secret_not_its_text():
    assert secret_key(SPEC_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    fresh = generate_secret()
    assert fresh.startswith("whsec_") and len(secret_key(fresh)) == 32
    with pytest.raises(ValueError, match="whsec_<base64>"):
        secret_key("whsec_not base64!")


@pytest.mark.parametrize(
    ("secret", "headers", "body"),
    [
        (SPEC_SECRET, spec_headers(), b'{"test": 2432232315}'),  # body changed by one digit
        (generate_secret(), spec_headers(), SPEC_BODY),  # signed with another secret
        (SPEC_SECRET, spec_headers(**{"webhook-id": "msg_other"}), SPEC_BODY),  # id swapped
        (SPEC_SECRET, spec_headers(**{"webhook-timestamp": str(SPEC_TS + 1)}), SPEC_BODY),  # timestamp edited
        (SPEC_SECRET, spec_headers(**{"webhook-signature": "v2," + SPEC_SIGNATURE[3:]}), SPEC_BODY),  # wrong version
        (SPEC_SECRET, spec_headers(**{"webhook-signature": ""}), SPEC_BODY),  # missing
        (SPEC_SECRET, spec_headers(**{"webhook-timestamp": "1614265330.5"}), SPEC_BODY),  # not integer seconds
    ],
)
def test_forged_or_tampered_webhooks_are_rejected(secret, headers, body):
    with pytest.raises(InvalidSignature):
        verify(secret, headers, body, now=SPEC_TS)


def test_stale_and_future_timestamps_are_rejected_after_the_signature_checks_out():
    with pytest.raises(StaleTimestamp):
        verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now=SPEC_TS + 301)
    with pytest.raises(StaleTimestamp):
        verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now=SPEC_TS - 301)
    verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now=SPEC_TS + 3600, tolerance_s=3601)
    # A forged request that is also stale learns only that the signature is wrong.
    with pytest.raises(InvalidSignature):
        verify(SPEC_SECRET, spec_headers(), b"forged", now=SPEC_TS + 10_000)


def test_any_matching_signature_in_a_rotated_list_is_accepted_and_header_case_does_not_matter():
    rotated = f"v1,bm9wZQ== {SPEC_SIGNATURE}"
    headers = {k.upper(): v for k, v in spec_headers(**{"webhook-signature": rotated}).items()}
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS)


def test_signed_headers_round_trip_with_current_time():
    secret = generate_secret()
    headers = signed_headers(secret, "msg_1", b'{"a": 1}')
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    verify(secret, headers, b'{"a": 1}')


def test_the_verifier_module_imports_only_the_standard_library():
    # Receiving teams copy this one file; it must not drag in our dependencies.
    tree = ast.parse(Path(webhooks.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
