"""`nlumon retention` drops whole old days and nothing else (its own database: it deletes data)."""

from datetime import UTC, datetime, timedelta

import pytest

from nlumon.schema import connect, ensure_schema
from streams.retention import DAY_PARTITIONED, drop_partitions, expired_partitions
from tests.helpers import fill_clickhouse

pytestmark = pytest.mark.integration


def test_old_day_partitions_are_dropped_and_recent_ones_kept(services, unique):
    settings = services.model_copy(update={
        "clickhouse": services.clickhouse.model_copy(update={"database": f"nlumon_retention_{unique}"})})
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
