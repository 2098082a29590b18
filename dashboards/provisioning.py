"""Files for Grafana's provisioning folders, and the datasource definition they and `push` share.

``compose.yaml`` mounts ``deploy/grafana/provisioning`` at ``/etc/grafana/provisioning``; the dashboard
provider (``dashboards/nlumon.yaml``) loads every JSON file of ``dashboards/json``, and the datasource file
(``datasources/clickhouse.yaml``) defines :func:`datasource_config` for the compose services.

    >>> config = datasource_config("clickhouse", 9000)
    >>> config["uid"], config["jsonData"]["protocol"], config["jsonData"]["defaultDatabase"]
    ('nlumon-clickhouse', 'native', 'nlumon')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dashboards.boards import all_dashboards
from dashboards.model import DATASOURCE_TYPE, DATASOURCE_UID, dashboard_json
from dashboards.validate import check_dashboard

DATASOURCE_NAME = "nlumon-clickhouse"
DEFAULT_OUT = Path("deploy/grafana/provisioning/dashboards/json")


def datasource_config(
    host: str,
    port: int,
    *,
    protocol: str = "native",
    database: str = "nlumon",
    user: str = "default",
    password: str = "",
    uid: str = DATASOURCE_UID,
    name: str = DATASOURCE_NAME,
) -> dict[str, Any]:
    """The datasource as Grafana's API (and its provisioning) takes it, for the v4 ClickHouse plugin."""
    config: dict[str, Any] = {
        "name": name,
        "uid": uid,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {"host": host, "port": port, "protocol": protocol, "defaultDatabase": database,
                     "username": user},
    }
    if password:
        config["secureJsonData"] = {"password": password}
    return config


def dashboard_documents(datasource_uid: str = DATASOURCE_UID) -> dict[str, dict[str, Any]]:
    """File name -> validated dashboard JSON for every nlumon dashboard."""
    documents = {}
    for board in all_dashboards():
        doc = dashboard_json(board, datasource_uid)
        check_dashboard(doc, datasource_uid)
        documents[f"{board.uid}.json"] = doc
    return documents


def render(doc: dict[str, Any]) -> str:
    """Stable text for a committed file (a regenerated file only changes when a dashboard does)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path, datasource_uid: str = DATASOURCE_UID) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` under ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in dashboard_documents(datasource_uid).items():
        path = out_dir / name
        path.write_text(render(doc), encoding="utf-8")
        paths.append(path)
    return paths
