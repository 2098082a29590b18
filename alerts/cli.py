"""``nlumon alerts ...``: verify a webhook, send a test alert, inspect the outbox, check a rule file.

The lead mounts :data:`app` under the project CLI; every option has an explicit default that the
settings object may override.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from alerts.events import AlertEvent
from alerts.outbox import Outbox, webhook_id_for
from alerts.receivers import ReceiverConfigError, load_receivers
from alerts.rules import RuleError, load_rules
from alerts.sender import RetryPolicy, WebhookSender
from alerts.store import AlertStore
from alerts.webhooks import WebhookVerificationError, verify

app = typer.Typer(help="Alert rules, signed webhooks and the delivery outbox.", no_args_is_help=True)

DEFAULT_STORE = Path(".run/alerts.db")
StoreOption = Annotated[Path, typer.Option("--store", help="SQLite file of alert state and the outbox.")]


@app.command("verify")
def verify_command(
    secret_env: Annotated[str, typer.Option("--secret-env", help="Environment variable holding the whsec_ secret.")],
    body: Annotated[str, typer.Option("--body", help="File with the raw request body, or - for stdin.")] = "-",
    webhook_id: Annotated[str | None, typer.Option("--id", help="The webhook-id header.")] = None,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="The webhook-timestamp header.")] = None,
    signature: Annotated[str | None, typer.Option("--signature", help="The webhook-signature header.")] = None,
    headers_file: Annotated[
        Path | None, typer.Option("--headers", help="JSON file with the headers (instead of --id/--timestamp/...).")
    ] = None,
    tolerance_s: Annotated[float, typer.Option("--tolerance-s", help="Largest accepted clock skew, seconds.")] = 300,
) -> None:
    """Check a received webhook's signature; exit 0 when valid, 1 with the reason when not."""
    secret = os.environ.get(secret_env)
    if not secret:
        _fail(f"environment variable {secret_env} is not set", code=2)
    headers: dict[str, str] = {}
    if headers_file is not None:
        try:
            headers = {str(k): str(v) for k, v in json.loads(headers_file.read_text()).items()}
        except (OSError, ValueError, AttributeError) as error:
            _fail(f"cannot read headers from {headers_file}: {error}", code=2)
    for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)):
        if value is not None:
            headers[name] = value
    raw = sys.stdin.buffer.read() if body == "-" else _read_bytes(Path(body))
    try:
        verify(secret, headers, raw, tolerance_s=tolerance_s)
    except WebhookVerificationError as error:
        _fail(f"invalid: {type(error).__name__}: {error}")
    except ValueError as error:  # a malformed secret
        _fail(f"invalid secret in {secret_env}: {error}", code=2)
    typer.echo("valid")


@app.command("test")
def test_command(
    receiver: Annotated[str, typer.Argument(help="Receiver name from the receivers file.")],
    receivers_file: Annotated[Path, typer.Option("--receivers", help="Receivers YAML file.")] = Path("receivers.yaml"),
    store: StoreOption = DEFAULT_STORE,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="How long to keep retrying before reporting.")] = 30.0,
) -> None:
    """Send a signed test alert to RECEIVER through the outbox and report the delivery."""
    try:
        receivers = load_receivers(receivers_file)
    except ReceiverConfigError as error:
        _fail(str(error), code=2)
    if receiver not in receivers:
        _fail(f"no receiver {receiver!r} in {receivers_file} (have: {', '.join(sorted(receivers)) or 'none'})", code=2)
    event = _test_event(receiver)
    with AlertStore(store) as alert_store:
        outbox = Outbox(alert_store)
        outbox.enqueue(event)
        policy = RetryPolicy(base_s=0.5, cap_s=5.0, lease_s=max(10.0, 2 * receivers[receiver].timeout_s))
        sender = WebhookSender(outbox, {receiver: receivers[receiver]}, policy=policy)
        webhook_id = webhook_id_for(event)
        deadline = time.monotonic() + timeout_s
        row = outbox.row(webhook_id, receiver)
        while row["status"] == "pending" and time.monotonic() < deadline:
            if sender.run_once(webhook_id=webhook_id).claimed == 0:
                time.sleep(0.1)
            row = outbox.row(webhook_id, receiver)
    typer.echo(f"{webhook_id} -> {receiver}: {row['status']} after {row['attempts']} attempt(s)"
               f" (last HTTP status: {row['last_status_code'] or '-'}, last error: {row['last_error'] or '-'})")
    if row["status"] != "delivered":
        if row["status"] == "pending":
            typer.echo("still pending: a running sender will keep retrying it", err=True)
        raise typer.Exit(1)


@app.command("outbox")
def outbox_command(
    store: StoreOption = DEFAULT_STORE,
    dead: Annotated[int, typer.Option("--dead", help="Also list this many most recent dead deliveries.")] = 0,
) -> None:
    """Show pending / delivered / dead counts per receiver."""
    if not store.exists():
        _fail(f"no outbox at {store}", code=2)
    with AlertStore(store) as alert_store:
        outbox = Outbox(alert_store)
        counts = outbox.counts()
        dead_rows = outbox.dead(dead) if dead else []
    typer.echo(f"{'receiver':<24}{'pending':>10}{'delivered':>12}{'dead':>8}")
    for name, by_status in sorted(counts.items()):
        typer.echo(f"{name:<24}{by_status.get('pending', 0):>10}{by_status.get('delivered', 0):>12}"
                   f"{by_status.get('dead', 0):>8}")
    for row in dead_rows:
        typer.echo(f"dead: {row['webhook_id']} -> {row['receiver']} after {row['attempts']} attempt(s): "
                   f"{row['last_error']}")


@app.command("rules-check")
def rules_check_command(path: Annotated[Path, typer.Argument(help="Rule YAML file to validate.")]) -> None:
    """Validate a rule file; print the rules, or the file:line of the first problem and exit 1."""
    try:
        rules = load_rules(path)
    except RuleError as error:
        _fail(str(error))
    for rule in rules:
        typer.echo(f"{rule.name}: {rule.metric} {rule.condition} {rule.threshold:g} for {rule.for_windows} window(s),"
                   f" {rule.scope}, {rule.severity}, cooldown {rule.cooldown_s:g}s -> {', '.join(rule.receivers)}")
    typer.echo(f"{path}: {len(rules)} rule(s) OK")


def _test_event(receiver: str) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(
        id=f"test-{uuid.uuid4().hex[:20]}", rule="nlumon-test", group_key="nlumon-test|*", status="firing",
        severity="info", metric="test", condition=">", threshold=0.0, value=1.0, assistant=None, scope="global",
        window_start=now, window_end=now, incident_id="test", incident_started=now,
        evidence={"note": "test alert sent by `nlumon alerts test`"}, receivers=(receiver,),
        description="A test alert: if you can read this, delivery and signatures work.",
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        _fail(f"cannot read body from {path}: {error.strerror or error}", code=2)
        raise  # unreachable: _fail exits


def _fail(message: str, *, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)
