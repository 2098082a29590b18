"""`nlumon retention` on the real services: ClickHouse loses whole old days and old rows of the tables without day
partitions (its own database: it deletes data), reports and alert-store rows go, and Kafka topics get an explicit
retention.ms, also when they already exist."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from nlumon.cli import app
from nlumon.schema import connect, ensure_schema
from nlumon.services.kafka import ensure_topics
from streams.retention import DAY_PARTITIONED, DELETED_BY_TIME, drop_partitions, expired_partitions
from tests.helpers import fill_clickhouse

pytestmark = pytest.mark.integration


def own_database(services, unique):
    return services.model_copy(update={
        "clickhouse": services.clickhouse.model_copy(update={"database": f"nlumon_retention_{unique}"})})


def test_old_day_partitions_are_dropped_and_recent_ones_kept(services, unique):
    settings = own_database(services, unique)
    ensure_schema(settings.clickhouse)
    now = datetime.now(UTC)
    old = fill_clickhouse(settings, "stable", 200, seed=1, spacing_ms=1000, start=now - timedelta(days=40))
    recent = fill_clickhouse(settings, "stable", 200, seed=2, spacing_ms=1000, start=now - timedelta(hours=2))
    client = connect(settings.clickhouse)
    try:
        expired = expired_partitions(settings, days=30)
        assert {table for table, _, _ in expired} == {"predictions", "utterance_log"}
        assert {table for table, _, _ in expired} <= set(DAY_PARTITIONED)
        assert drop_partitions(settings, expired) == 2 * old.rows["predictions"]
        left = client.execute("SELECT min(ts), count() FROM predictions")[0]
        assert left[1] == recent.rows["predictions"]
        assert left[0] >= (now - timedelta(days=1)).replace(tzinfo=None)
        assert expired_partitions(settings, days=30) == []
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
        client.disconnect()


# (table, the columns a test row sets, (old row, recent row)); every other column takes its default
def rows_of_every_other_table(old: datetime, new: datetime) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    o, n = old.replace(tzinfo=None), new.replace(tzinfo=None)
    return {
        "dead_letters": (("ts", "source_topic", "kafka_offset", "reason"), [(o, "u", 1, "x"), (n, "u", 2, "x")]),
        "monitor_windows": (("window_start", "window_end", "assistant"), [(o, o, "all"), (n, n, "all")]),
        "drift_results": (("window_start", "assistant", "feature"), [(o, "all", "confidence"), (n, "all", "x")]),
        "ood_clusters": (("window_start", "cluster_id", "examples"),
                         [(o, "c1", ["my name is ana"]), (n, "c2", ["hi"])]),
        "alert_events": (("event_id", "ts", "summary"), [("e1", o, "ood"), ("e2", n, "ood")]),
        "alert_deliveries": (("webhook_id", "receiver", "updated_at"), [("w1", "hook", o), ("w2", "hook", n)]),
        "labeling_queue": (("item_id", "text_hash", "flagged_at", "text_scrubbed"),
                           [("i1", "h1", o, "call [PERSON]"), ("i2", "h2", n, "add milk")]),
        "model_versions": (("model_version", "loaded_at", "worker"), [("m1", o, "w"), ("m1", n, "w")]),
    }


def test_the_command_deletes_every_kind_of_old_data_and_keeps_the_recent(services, unique, tmp_path):
    settings = own_database(services, unique)
    ensure_schema(settings.clickhouse)
    now = datetime.now(UTC)
    old, new = now - timedelta(days=45), now - timedelta(hours=3)
    filled = fill_clickhouse(settings, "stable", 60, seed=3, spacing_ms=1000, start=old)
    fill_clickhouse(settings, "stable", 60, seed=4, spacing_ms=1000, start=new)
    database = settings.clickhouse.database
    client = connect(settings.clickhouse)
    try:
        for table, (columns, rows) in rows_of_every_other_table(old, new).items():
            client.execute(f"INSERT INTO {database}.{table} ({', '.join(columns)}) VALUES", rows)
        run_dir = tmp_path / "run"
        report = run_dir / "reports" / "window-old.html"
        report.parent.mkdir(parents=True)
        report.write_text("<p>my name is ana</p>")
        os.utime(report, (old.timestamp(), old.timestamp()))
        (run_dir / "reports" / "window-new.html").write_text("<p>recent</p>")
        config = tmp_path / "nlumon.toml"
        config.write_text(
            f'[clickhouse]\nport = {settings.clickhouse.port}\ndatabase = "{database}"\n'
            f'[services]\nrun_dir = "{run_dir}"\n[stream]\nretention_days = 30\n')

        def counts() -> dict[str, int]:
            return {table: client.execute(f"SELECT count() FROM {database}.{table}")[0][0]
                    for table in rows_of_every_other_table(old, new)} | {
                table: client.execute(f"SELECT count() FROM {database}.{table}")[0][0]
                for table in ("predictions", "utterance_log")}

        before = counts()
        dry = CliRunner().invoke(app, ["retention", "--config", str(config), "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "would delete labeling_queue rows where flagged_at < toDateTime(" in dry.output
        assert "would delete alert_deliveries rows where updated_at" in dry.output
        assert f"would delete file {report}" in dry.output
        assert counts() == before and report.exists()

        result = CliRunner().invoke(app, ["retention", "--config", str(config)])
        assert result.exit_code == 0, result.output
        after = counts()
        assert after["model_versions"] == before["model_versions"]  # kept: no traffic data
        for table in [t for t in before if t != "model_versions"]:
            removed = filled.rows[table] if table in ("predictions", "utterance_log") else 1
            assert after[table] == before[table] - removed, (table, before[table], after[table], result.output)
        for table, column in DELETED_BY_TIME.items():
            assert client.execute(f"SELECT min({column}) FROM {database}.{table}")[0][0] > \
                (now - timedelta(days=30)).replace(tzinfo=None)
        assert client.execute(f"SELECT examples FROM {database}.ood_clusters") == [(["hi"],)]
        assert not report.exists() and (run_dir / "reports" / "window-new.html").exists()
        again = CliRunner().invoke(app, ["retention", "--config", str(config)])
        assert "nothing older than 30 days" in again.output, again.output
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
        client.disconnect()


def topic_config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {key: value["value"] for key, value in described["topic"][topic].items()}


def test_topics_get_their_retention_when_created_and_when_they_exist(services, unique):
    hour = 3_600_000
    names = {"utterances": f"ret-utt-{unique}", "predictions": f"ret-pred-{unique}",
             "labeling_queue": f"ret-label-{unique}", "dead_letter": f"ret-dlq-{unique}"}
    settings = services.model_copy(update={
        "topics": services.topics.model_copy(
            update={**names, "retention_ms": 5 * hour, "other_retention_ms": 9 * hour}),
        "kafka": services.kafka.model_copy(update={"consumer_group": f"ret-g-{unique}"})})
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, client_id=f"ret-{unique}")
    try:
        wanted = {names["utterances"]: 5 * hour, names["dead_letter"]: 5 * hour,
                  names["predictions"]: 9 * hour, names["labeling_queue"]: 9 * hour}
        for topic, retention in wanted.items():
            config = topic_config(admin, topic)
            assert config["retention.ms"] == str(retention), topic
            assert config["max.message.bytes"] == str(settings.topics.max_message_bytes)
        # an operator (or the broker default) changed one; an extra setting of theirs must survive our update
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, names["utterances"],
                                            {"retention.ms": str(30 * 24 * hour), "segment.ms": str(2 * hour)})])
        shorter = settings.model_copy(update={
            "topics": settings.topics.model_copy(update={"retention_ms": 2 * hour})})
        ensure_topics(shorter)
        config = topic_config(admin, names["utterances"])
        assert config["retention.ms"] == str(2 * hour)
        assert config["segment.ms"] == str(2 * hour)  # incremental: other topic settings stay
        assert topic_config(admin, names["dead_letter"])["retention.ms"] == str(2 * hour)
        assert topic_config(admin, names["predictions"])["retention.ms"] == str(9 * hour)
    finally:
        admin.delete_topics([*names.values(), f"ret-g-{unique}-__assignor-__leader"])
        admin.close()
