"""Webhook receivers: where alerts go, read from YAML, with secrets taken from the environment.

The config names an environment variable (``secret_env``), never the secret itself, so the config
file, logs and outbox rows never hold it. A Slack incoming-webhook URL is itself a credential: give
it through ``url_env`` instead of ``url``. ``Receiver``'s repr hides both.

    >>> text = '''
    ... receivers:
    ...   - name: oncall
    ...     url: http://127.0.0.1:9/hook
    ...     secret_env: NLUMON_RECEIVER_ONCALL_SECRET
    ... '''
    >>> found = parse_receivers(text, environ={"NLUMON_RECEIVER_ONCALL_SECRET": "whsec_c2VjcmV0"})
    >>> found["oncall"]
    Receiver(name='oncall', format='standard', timeout_s=5.0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alerts.payloads import FORMATS
from alerts.webhooks import secret_key

_FIELDS = {"name", "url", "url_env", "secret_env", "format", "timeout_s"}


class ReceiverConfigError(ValueError):
    """The receivers config is invalid or names an environment variable that is not set."""


@dataclass(frozen=True)
class Receiver:
    """One webhook endpoint; ``url`` and ``secret`` are excluded from repr so they never reach logs."""

    name: str
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    format: str = "standard"
    timeout_s: float = 5.0


def load_receivers(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, Receiver]:
    """Receivers by name from a YAML file; secrets come from ``environ`` (default: ``os.environ``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ReceiverConfigError(f"{path}: cannot read receivers file: {error.strerror or error}") from None
    return parse_receivers(text, environ, source=str(path))


def parse_receivers(
    text: str, environ: Mapping[str, str] | None = None, *, source: str = "<receivers>"
) -> dict[str, Receiver]:
    """Validate receivers YAML ``text``; see :func:`load_receivers`."""
    env = os.environ if environ is None else environ
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ReceiverConfigError(f"{source}: not valid YAML: {error}") from None
    items = data.get("receivers") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ReceiverConfigError(f"{source}: expected a mapping with a 'receivers' list")
    found: dict[str, Receiver] = {}
    for index, item in enumerate(items):
        receiver = _receiver(item, env, f"{source}: receiver #{index + 1}")
        if receiver.name in found:
            raise ReceiverConfigError(f"{source}: duplicate receiver name {receiver.name!r}")
        found[receiver.name] = receiver
    return found


def _receiver(item: Any, env: Mapping[str, str], where: str) -> Receiver:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        raise ReceiverConfigError(f"{where}: needs a 'name'")
    where = f"{where} ({item['name']})"
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ReceiverConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    fmt = item.get("format", "standard")
    if fmt not in FORMATS:
        raise ReceiverConfigError(f"{where}: format must be one of {', '.join(FORMATS)}")
    url = _from_env(item["url_env"], env, where) if "url_env" in item else item.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ReceiverConfigError(f"{where}: needs an http(s) 'url' or a 'url_env'")
    secret = _from_env(item["secret_env"], env, where) if "secret_env" in item else None
    if secret is None and fmt == "standard":
        raise ReceiverConfigError(f"{where}: a standard receiver needs 'secret_env' (signatures are mandatory)")
    if secret is not None:
        try:
            secret_key(secret)
        except ValueError:
            raise ReceiverConfigError(f"{where}: ${item['secret_env']} is not a whsec_<base64> secret") from None
    timeout = item.get("timeout_s", 5.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ReceiverConfigError(f"{where}: timeout_s must be a positive number")
    return Receiver(item["name"], url, secret, fmt, float(timeout))


def _from_env(name: Any, env: Mapping[str, str], where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ReceiverConfigError(f"{where}: environment variable name expected")
    value = env.get(name)
    if not value:
        raise ReceiverConfigError(f"{where}: environment variable {name} is not set")
    return value
