"""Create or update the datasource, the folder and the dashboards in a running Grafana.

Idempotent: the datasource is found by name and updated in place (or created), the folder is found by
uid (or created), and every dashboard is posted to ``/api/dashboards/db`` with its fixed uid and
``overwrite: true``, so a second push makes a new version of the same dashboard, never a copy.

    >>> parse_datasource_url("clickhouse:9000")
    ('native', 'clickhouse', 9000)
    >>> parse_datasource_url("http://ch.internal:8123")
    ('http', 'ch.internal', 8123)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dashboards.model import DATASOURCE_UID
from dashboards.provisioning import DATASOURCE_NAME, dashboard_documents

log = logging.getLogger(__name__)
FOLDER_UID = "nlumon"
FOLDER_TITLE = "nlumon"


class PushError(RuntimeError):
    """Grafana refused a request, or could not be reached."""


@dataclass(frozen=True)
class PushResult:
    datasource: str  # "created" or "updated"
    folder: str  # "created" or "exists"
    dashboards: dict[str, int]  # uid -> version Grafana reports


def parse_datasource_url(url: str) -> tuple[str, str, int]:
    """(protocol, host, port) from ``host:port``, ``native://host:port`` or ``http(s)://host:port``."""
    parts = urlsplit(url if "://" in url else f"native://{url}")
    protocol = "http" if parts.scheme in ("http", "https") else "native"
    if not parts.hostname:
        raise PushError(f"datasource url {url!r} has no host")
    default_port = 8123 if protocol == "http" else 9000
    return protocol, parts.hostname, parts.port or default_port


def grafana_client(url: str, token: str, timeout_s: float = 10.0) -> Any:
    """A ``GrafanaFace`` for ``url``; ``token`` is an API/service-account token, or ``user:password``."""
    from grafana_api.grafana_face import GrafanaFace

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"grafana url {url!r} must look like http://host:3000")
    prefix = parts.path.strip("/")
    auth: Any = tuple(token.split(":", 1)) if ":" in token else token
    return GrafanaFace(auth, host=parts.hostname, port=parts.port, protocol=parts.scheme,
                       url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout_s)


def _status(error: Exception) -> int | None:
    return getattr(error, "status_code", None)


def _upsert_datasource(client: Any, config: dict[str, Any]) -> str:
    from grafana_api.grafana_api import GrafanaClientError

    try:
        existing = client.datasource.get_datasource_by_name(config["name"])
    except GrafanaClientError as error:
        if _status(error) != 404:
            raise
        client.datasource.create_datasource(config)
        return "created"
    client.datasource.update_datasource(existing["id"], {**config, "id": existing["id"]})
    return "updated"


def _ensure_folder(client: Any) -> str:
    from grafana_api.grafana_api import GrafanaClientError

    try:
        client.folder.get_folder(FOLDER_UID)
        return "exists"
    except GrafanaClientError as error:
        if _status(error) != 404:
            raise
    client.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    return "created"


def push(
    client: Any,
    datasource: dict[str, Any] | None,
    *,
    datasource_uid: str = DATASOURCE_UID,
    on_dashboard: Callable[[str, int], None] | None = None,
) -> PushResult:
    """Push the datasource (unless ``None``), the folder and every dashboard through ``client``."""
    from grafana_api.grafana_api import GrafanaException
    from requests import RequestException

    try:
        datasource_state = _upsert_datasource(client, datasource) if datasource is not None else "skipped"
        folder_state = _ensure_folder(client)
        versions = {}
        for doc in dashboard_documents(datasource_uid).values():
            # id None + fixed uid + overwrite: Grafana replaces the dashboard with that uid, as a new version.
            body = {"dashboard": {**doc, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                    "message": "nlumon dashboards push"}
            answer = client.dashboard.update_dashboard(body)
            versions[doc["uid"]] = int(answer.get("version", 0)) if isinstance(answer, dict) else 0
            if on_dashboard is not None:
                on_dashboard(doc["uid"], versions[doc["uid"]])
    except GrafanaException as error:
        raise PushError(f"grafana answered {error.status_code}: {error.message}") from error
    except RequestException as error:
        raise PushError(f"grafana unreachable: {error}") from error
    return PushResult(datasource_state, folder_state, versions)


__all__ = ["DATASOURCE_NAME", "PushError", "PushResult", "grafana_client", "parse_datasource_url", "push"]
