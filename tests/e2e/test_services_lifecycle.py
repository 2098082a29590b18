"""`services up` / `status` / `down` as a user runs them, on their own ports and folder."""

import socket

import pytest

from nlumon.services import services_down, services_status, services_up
from nlumon.services.clickhouse import ClickHouseServer
from nlumon.services.kafka import KafkaBroker
from tests.conftest import make_test_settings

pytestmark = pytest.mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_is_idempotent_and_down_leaves_nothing_of_ours(tmp_path):
    settings = make_test_settings(
        kafka={"bootstrap_servers": "127.0.0.1:39092", "controller_port": 39093},
        clickhouse={"port": 39000, "http_port": 38123},
        services={"run_dir": tmp_path / "run"},
    )
    try:
        first = services_up(settings)
        assert (first["kafka"], first["clickhouse"]) == ("started", "started")
        pids = (KafkaBroker(settings).process.pid(), ClickHouseServer(settings).process.pid())
        second = services_up(settings)
        assert (second["kafka"], second["clickhouse"]) == ("already running", "already running")
        assert (KafkaBroker(settings).process.pid(), ClickHouseServer(settings).process.pid()) == pids
        assert all(row["answers"] for row in services_status(settings))
    finally:
        stopped = services_down(settings)
    assert stopped == {"kafka": True, "clickhouse": True}
    for pid in pids:
        with pytest.raises(FileNotFoundError):
            open(f"/proc/{pid}/cmdline").read()
    assert not any(port_open(port) for port in (39092, 39093, 39000, 38123))
    assert services_down(settings) == {"kafka": False, "clickhouse": False}  # nothing else gets signalled
