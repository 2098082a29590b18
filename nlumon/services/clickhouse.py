"""A real ClickHouse server (Debian's ``clickhouse-server``) with a project-local config.

Data, logs and tmp files live under ``<run_dir>/clickhouse``; it listens on 127.0.0.1 only. The
config uses the ``<yandex>`` root element, which 18.16 requires and current releases still accept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from nlumon.schema import connect, ensure_schema
from nlumon.services.process import ManagedProcess, ServiceError, refuse_foreign_listener
from nlumon.settings import Settings

CONFIG_XML = """\
<?xml version="1.0"?>
<!-- Written by `nlumon services up`; edit the settings, not this file. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>{home}/log/server.log</log>
        <errorlog>{home}/log/server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>{host}</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{home}/data/</path>
    <tmp_path>{home}/tmp/</tmp_path>
    <user_files_path>{home}/user_files/</user_files_path>
    <format_schema_path>{home}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"""

USERS_XML = """\
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <{user}>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{user}>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
                <read_rows>0</read_rows><execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


class ClickHouseServer:
    """Start, check and stop the local ClickHouse server described by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home: Path = settings.services.run_dir / "clickhouse"
        self.process = ManagedProcess("clickhouse", self.home, marker="clickhouse")

    def configure(self) -> Path:
        ch = self.settings.clickhouse
        for folder in ("log", "data", "tmp", "user_files", "format_schemas"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        config = self.home / "config.xml"
        config.write_text(
            CONFIG_XML.format(home=self.home, host=ch.host, tcp_port=ch.port, http_port=ch.http_port)
        )
        (self.home / "users.xml").write_text(USERS_XML.format(user=ch.user, password=escape(ch.password)))
        return config

    def start(self) -> bool:
        """Start the server unless ours is running; wait for a real query; create the schema."""
        started = False
        if self.process.pid() is None:
            binary = shutil.which(self.settings.clickhouse.server_binary)
            if binary is None:
                raise ServiceError(
                    f"{self.settings.clickhouse.server_binary} not found: run scripts/bootstrap.sh "
                    "(or apt-get install clickhouse-server)"
                )
            ch = self.settings.clickhouse
            refuse_foreign_listener("clickhouse", ch.host, [ch.port, ch.http_port])
            config = self.configure()
            self.process.start([binary, f"--config-file={config}"], cwd=self.home)
            started = True
        self.process.wait_until(
            self.answers, timeout_s=self.settings.services.start_timeout_s, what="answer SELECT 1"
        )
        ensure_schema(self.settings.clickhouse)
        return started

    def answers(self) -> bool:
        try:
            client = connect(self.settings.clickhouse, database="default")
            try:
                return client.execute("SELECT 1") == [(1,)]
            finally:
                client.disconnect()
        except Exception:
            return False

    def version(self) -> str | None:
        try:
            client = connect(self.settings.clickhouse, database="default")
            try:
                return client.execute("SELECT version()")[0][0]
            finally:
                client.disconnect()
        except Exception:
            return None

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)

    def status(self) -> dict[str, object]:
        pid = self.process.pid()
        ch = self.settings.clickhouse
        return {
            "service": "clickhouse",
            "pid": pid,
            "address": f"{ch.host}:{ch.port} (http {ch.http_port})",
            "answers": pid is not None and self.answers(),
            "version": self.version() if pid is not None else None,
            "log": str(self.home / "log" / "server.err.log"),
        }
