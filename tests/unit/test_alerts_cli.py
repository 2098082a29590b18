"""The alerts CLI: verify, test RECEIVER (against a real local receiver), outbox and rules-check."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from alerts.cli import app
from alerts.rules import DEFAULT_RULES_PATH
from alerts.testing import LocalReceiver, free_port
from alerts.webhooks import generate_secret, signed_headers

runner = CliRunner()


def test_verify_accepts_a_valid_webhook_from_flags_or_a_headers_file_and_rejects_a_forgery(tmp_path):
    secret = generate_secret()
    env = {"HOOK_SECRET": secret}
    body = b'{"type": "alert.firing", "data": {}}'
    headers = signed_headers(secret, "msg_cli", body)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    flags = ["--id", headers["webhook-id"], "--timestamp", headers["webhook-timestamp"],
             "--signature", headers["webhook-signature"]]

    ok = runner.invoke(app, ["verify", "--secret-env", "HOOK_SECRET", "--body", str(tmp_path / "body.json"), *flags],
                       env=env)
    assert (ok.exit_code, ok.output.strip()) == (0, "valid")
    from_stdin = runner.invoke(app, ["verify", "--secret-env", "HOOK_SECRET", "--headers",
                                     str(tmp_path / "headers.json")], input=body, env=env)
    assert from_stdin.exit_code == 0, from_stdin.output

    forged = runner.invoke(app, ["verify", "--secret-env", "HOOK_SECRET", *flags], input=body + b" ", env=env)
    assert forged.exit_code == 1 and "InvalidSignature" in forged.output
    old = signed_headers(secret, "msg_old", body, timestamp=int(time.time()) - 3600)
    stale = runner.invoke(app, ["verify", "--secret-env", "HOOK_SECRET", "--id", "msg_old", "--timestamp",
                                old["webhook-timestamp"], "--signature", old["webhook-signature"]], input=body, env=env)
    assert stale.exit_code == 1 and "StaleTimestamp" in stale.output
    unset = runner.invoke(app, ["verify", "--secret-env", "NLUMON_TEST_UNSET_SECRET", *flags], input=body, env={})
    assert unset.exit_code == 2 and "NLUMON_TEST_UNSET_SECRET is not set" in unset.output


def test_rules_check_reports_ok_or_the_file_and_line(tmp_path):
    ok = runner.invoke(app, ["rules-check", str(DEFAULT_RULES_PATH)])
    assert ok.exit_code == 0 and "rule(s) OK" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text('rules:\n  - name: x\n    metric: ood_rate\n    condition: ">"\n    threshold: lots\n')
    result = runner.invoke(app, ["rules-check", str(bad)])
    assert result.exit_code == 1 and f"{bad}:5: rule 'x': threshold must be a number" in result.output


def test_test_command_delivers_a_signed_alert_and_outbox_counts_it(tmp_path):
    secret = generate_secret()
    store = tmp_path / "alerts.db"
    with LocalReceiver(secret) as receiver:
        config = tmp_path / "receivers.yaml"
        config.write_text(f"receivers:\n  - name: oncall\n    url: {receiver.url}\n    secret_env: ONCALL_SECRET\n")
        result = runner.invoke(app, ["test", "oncall", "--receivers", str(config), "--store", str(store)],
                               env={"ONCALL_SECRET": secret})
    assert result.exit_code == 0, result.output
    assert "delivered after 1 attempt(s)" in result.output
    assert len(receiver.accepted) == 1 and receiver.requests[0].status == 204

    dead_port = free_port()  # nobody listens there
    config.write_text(f"receivers:\n  - name: down\n    url: http://127.0.0.1:{dead_port}/\n    secret_env: S\n")
    failed = runner.invoke(app, ["test", "down", "--receivers", str(config), "--store", str(store),
                                 "--timeout-s", "0.3"], env={"S": secret})
    assert failed.exit_code == 1 and "pending" in failed.output and "ConnectionError" in failed.output

    counts = runner.invoke(app, ["outbox", "--store", str(store)])
    lines = {line.split()[0]: line.split()[1:] for line in counts.output.splitlines()[1:]}
    assert lines == {"down": ["1", "0", "0"], "oncall": ["0", "1", "0"]}
    assert secret not in result.output + failed.output + counts.output
