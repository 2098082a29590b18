"""The ClickHouse schema, created by the project with idempotent DDL.

Every statement runs on Debian's ClickHouse 18.16 (used by the tests) and on current ClickHouse
(compose.yaml). That rules out DateTime64, Map, TTL, CODEC and LowCardinality: times are DateTime
(seconds) plus millisecond latencies as floats; retention drops day partitions.

Rows that may be written twice (a re-delivered Kafka batch) live in ``ReplacingMergeTree`` tables
keyed by their natural id, with a ``row_version`` column; queries that must not double count use
``FINAL`` or ``argMax``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # clickhouse_driver is imported lazily so `nlumon --help` stays fast
    from clickhouse_driver import Client

    from nlumon.settings import ClickHouseSettings

# One row per utterance the model saw (issue 5 fills every column).
PREDICTIONS = """
CREATE TABLE IF NOT EXISTS {db}.predictions (
    id String,
    ts DateTime,
    ingested_at DateTime,
    assistant Enum8('shopper' = 1, 'associate' = 2),
    session_id String,
    channel String,
    locale String,
    model_version String,
    text_scrubbed String,
    text_hash String,
    intent String,
    confidence Float32,
    top_intents Array(String),
    top_scores Array(Float32),
    margin Float32,
    entropy Float32,
    energy Float32,
    ood_score Float32,
    is_ood UInt8,
    token_count UInt16,
    unk_rate Float32,
    slot_types Array(String),
    slot_values Array(String),
    slot_confidences Array(Float32),
    asr_confidence Nullable(Float32),
    frustration Float32,
    batch_size UInt16,
    inference_ms Float32,
    e2e_ms Float32,
    embedding_sketch Array(Float32),
    kafka_partition UInt16,
    kafka_offset UInt64,
    row_version UInt64,
    route String DEFAULT '',
    route_heads Array(String),
    route_scores Array(Float32),
    experiment String DEFAULT '',
    arm String DEFAULT ''
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (assistant, ts, id)
"""

# Records that broke the wire contract. The original bytes stay on the Kafka dead-letter topic
# (they may hold personal data); here only what dashboards and alerts need.
DEAD_LETTERS = """
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    ts DateTime,
    source_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    reason String,
    original_bytes UInt32,
    original_hash String,
    experiment String DEFAULT '',
    arm String DEFAULT ''
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (source_topic, kafka_partition, kafka_offset)
"""

# Every accepted utterance event, whether or not a model is loaded: the audit trail that shows
# nothing was lost between Kafka and ClickHouse. No text, only its keyed hash and length.
UTTERANCE_LOG = """
CREATE TABLE IF NOT EXISTS {db}.utterance_log (
    id String,
    ts DateTime,
    ingested_at DateTime,
    assistant Enum8('shopper' = 1, 'associate' = 2),
    session_id String,
    channel String,
    asr_confidence Nullable(Float32),
    text_chars UInt16,
    text_hash String,
    kafka_partition UInt16,
    kafka_offset UInt64,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (assistant, ts, id)
"""

# Model packages the workers have loaded (for "model version in service").
MODEL_VERSIONS = """
CREATE TABLE IF NOT EXISTS {db}.model_versions (
    model_version String,
    loaded_at DateTime,
    worker String,
    package_sha256 String,
    backend String
) ENGINE = ReplacingMergeTree()
ORDER BY (model_version, worker, loaded_at)
"""

# One row per (window, assistant) the monitor scored; assistant 'all' is the whole traffic. A window the
# monitor could not score has only its 'all' row, with status 'not_scored' or 'failed', the reason and the
# unsuccessful attempts in a row (docs/monitoring.md); the three columns came later (ADDED_COLUMNS).
MONITOR_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.monitor_windows (
    window_start DateTime,
    window_end DateTime,
    assistant String,
    model_version String,
    rows UInt32,
    mean_confidence Float32,
    ood_rate Float32,
    accuracy_estimate Float32,
    accuracy_low Float32,
    accuracy_high Float32,
    dead_letters UInt32,
    drifted UInt8,
    drifted_features Array(String),
    report_path String,
    scored_at DateTime,
    row_version UInt64,
    status String DEFAULT 'scored',
    reason String DEFAULT '',
    attempts UInt16 DEFAULT 0
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant)
"""

# One row per detector result: (window, assistant, feature, method).
DRIFT_RESULTS = """
CREATE TABLE IF NOT EXISTS {db}.drift_results (
    window_start DateTime,
    window_end DateTime,
    assistant String,
    feature String,
    method String,
    score Float64,
    threshold Float64,
    drifted UInt8,
    details String,
    scored_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant, feature, method)
"""

# Emerging clusters of OOD / low-confidence utterances, as seen in each window.
OOD_CLUSTERS = """
CREATE TABLE IF NOT EXISTS {db}.ood_clusters (
    window_start DateTime,
    cluster_id String,
    assistant String,
    size UInt32,
    growth Float32,
    first_seen DateTime,
    examples Array(String),
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, cluster_id)
"""

# Unseen slot values per (window, assistant, slot type) (detectors/slot_values.py): slot values in the window,
# those not in the package's training vocabulary, those stored scrubbed (placeholders, left out of the rate),
# the package's dev-split rate, and the new values that >= N sessions used (scrubbed values never appear there).
# A window the detector could not score has one row: assistant 'all', slot_type '', status 'not_scored' (a package
# without a vocabulary) or 'failed', and the reason. Rows of one scoring share row_version.
SLOT_VALUE_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.slot_value_windows (
    window_start DateTime,
    window_end DateTime,
    model_version String,
    assistant String,
    slot_type String,
    values UInt32,
    unseen UInt32,
    unseen_rate Float32,
    reference_rate Float32,
    scrubbed UInt32,
    new_values Array(String),
    status String,
    reason String,
    scored_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant, slot_type)
"""

# Alert lifecycle events (firing, repeat, resolved), mirrored from the alert store for dashboards.
ALERT_EVENTS = """
CREATE TABLE IF NOT EXISTS {db}.alert_events (
    event_id String,
    ts DateTime,
    rule String,
    metric String,
    assistant String,
    severity String,
    state String,
    value Float64,
    threshold Float64,
    window_start DateTime,
    window_end DateTime,
    summary String,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, event_id)
"""

# Webhook delivery state, mirrored from the outbox: one row per (webhook id, receiver), latest wins.
ALERT_DELIVERIES = """
CREATE TABLE IF NOT EXISTS {db}.alert_deliveries (
    webhook_id String,
    receiver String,
    event_id String,
    state String,
    attempts UInt32,
    last_error String,
    updated_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY (webhook_id, receiver)
"""

# Samples flagged for labelers; one row per normalised text (text_hash), latest flag wins.
LABELING_QUEUE = """
CREATE TABLE IF NOT EXISTS {db}.labeling_queue (
    item_id String,
    text_hash String,
    flagged_at DateTime,
    window_start DateTime,
    assistant String,
    model_version String,
    text_scrubbed String,
    intent String,
    slot_types Array(String),
    slot_values Array(String),
    reasons Array(String),
    priority Float32,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY text_hash
"""

# Outcome events of the assistants (topic ``outcomes``): what happened after the model's decision. Joined to
# predictions by session_id and, when the assistant knows it, utterance_id. One row per outcome id.
OUTCOMES = """
CREATE TABLE IF NOT EXISTS {db}.outcomes (
    id String,
    ts DateTime,
    ingested_at DateTime,
    session_id String,
    utterance_id String,
    kind String,
    satisfaction Nullable(UInt8),
    value Nullable(Float64),
    kafka_partition UInt16,
    kafka_offset UInt64,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (session_id, id)
"""

# What a shadow challenger said about an utterance the champion served (never published), with the champion's
# answer beside it so disagreement needs no join. One row per (utterance, challenger version).
SHADOW_PREDICTIONS = """
CREATE TABLE IF NOT EXISTS {db}.shadow_predictions (
    id String,
    ts DateTime,
    ingested_at DateTime,
    assistant Enum8('shopper' = 1, 'associate' = 2),
    session_id String,
    role String,
    model_version String,
    champion_version String,
    intent String,
    confidence Float32,
    ood_score Float32,
    is_ood UInt8,
    route String,
    slot_types Array(String),
    slot_values Array(String),
    champion_intent String,
    champion_route String,
    champion_slot_types Array(String),
    intent_agrees UInt8,
    slots_agree UInt8,
    route_agrees UInt8,
    inference_ms Float32,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (assistant, ts, id, model_version)
"""

# The route mix of each window (monitor): one row per (window, assistant, route); assistant 'all' is the whole.
ROUTE_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.route_windows (
    window_start DateTime,
    window_end DateTime,
    assistant String,
    model_version String,
    route String,
    rows UInt32,
    share Float32,
    scored_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant, route)
"""

# Shadow disagreement per window (monitor): one row per (window, assistant, champion intent); intent '' is the
# whole window, assistant 'all' the whole traffic.
SHADOW_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.shadow_windows (
    window_start DateTime,
    window_end DateTime,
    assistant String,
    intent String,
    champion_version String,
    shadow_version String,
    rows UInt32,
    intent_disagreement Float32,
    slot_disagreement Float32,
    route_disagreement Float32,
    scored_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant, intent)
"""

# Conversion per window and subject (monitor/conversion.py, scored outcome_delay_s + grace_s after the window):
# subject_kind 'intent' (the model's intent, rows it took as in distribution) or 'ood' (subject 'ood': the rows it
# flagged OOD); traffic = predictions, converted = utterances with a converting outcome (docs/alerts.md).
CONVERSION_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.conversion_windows (
    window_start DateTime,
    window_end DateTime,
    assistant String,
    subject_kind String,
    subject String,
    traffic UInt32,
    converted UInt32,
    rate Float32,
    baseline_rate Float32,
    baseline_traffic UInt32,
    scored_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, assistant, subject_kind, subject)
"""

# Experiments (``nlumon experiment``): the definition and state of each, latest row wins.
EXPERIMENTS = """
CREATE TABLE IF NOT EXISTS {db}.experiments (
    name String,
    status String,
    arms Array(String),
    shares Array(Float32),
    model_versions Array(String),
    started_at DateTime,
    stopped_at DateTime,
    definition String,
    updated_at DateTime,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY name
"""

# Each look at a running experiment (`nlumon experiment status`, the monitor): per arm and metric, the rate, its
# interval, and the always-valid p-value against the control arm. One row per (experiment, look, arm, metric).
EXPERIMENT_RESULTS = """
CREATE TABLE IF NOT EXISTS {db}.experiment_results (
    experiment String,
    ts DateTime,
    arm String,
    metric String,
    sessions UInt32,
    value Float64,
    low Float64,
    high Float64,
    p_value Float64,
    srm_p_value Float64,
    decision String,
    row_version UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(ts)
ORDER BY (experiment, ts, arm, metric)
"""

TABLES: dict[str, str] = {
    "predictions": PREDICTIONS,
    "dead_letters": DEAD_LETTERS,
    "utterance_log": UTTERANCE_LOG,
    "model_versions": MODEL_VERSIONS,
    "monitor_windows": MONITOR_WINDOWS,
    "drift_results": DRIFT_RESULTS,
    "ood_clusters": OOD_CLUSTERS,
    "slot_value_windows": SLOT_VALUE_WINDOWS,
    "alert_events": ALERT_EVENTS,
    "alert_deliveries": ALERT_DELIVERIES,
    "labeling_queue": LABELING_QUEUE,
    "outcomes": OUTCOMES,
    "shadow_predictions": SHADOW_PREDICTIONS,
    "route_windows": ROUTE_WINDOWS,
    "shadow_windows": SHADOW_WINDOWS,
    "conversion_windows": CONVERSION_WINDOWS,
    "experiments": EXPERIMENTS,
    "experiment_results": EXPERIMENT_RESULTS,
}


# Columns added to a table after it first shipped: (name, type and default), in order. CREATE TABLE above
# already has them; an older table gets them from ensure_columns. ClickHouse 18.16 has no
# `ADD COLUMN IF NOT EXISTS`, so the missing ones are read from system.columns first.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "monitor_windows": (
        ("status", "String DEFAULT 'scored'"),  # every row written before the column was a scored window
        ("reason", "String DEFAULT ''"),
        ("attempts", "UInt16 DEFAULT 0"),
    ),
    "predictions": (  # the route decision and the experiment arm (issue 16)
        ("route", "String DEFAULT ''"),
        ("route_heads", "Array(String)"),
        ("route_scores", "Array(Float32)"),
        ("experiment", "String DEFAULT ''"),
        ("arm", "String DEFAULT ''"),
    ),
    "dead_letters": (
        ("experiment", "String DEFAULT ''"),
        ("arm", "String DEFAULT ''"),
    ),
}
_COLUMN_EXISTS = 44  # ClickHouse error code: "Cannot add column ...: column with this name already exists"


def ensure_columns(client: Client, database: str, table: str) -> list[str]:
    """Add the :data:`ADDED_COLUMNS` of ``table`` that it lacks; return the names added. Idempotent, and safe
    when two processes migrate at once (the loser's "already exists" is ignored)."""
    wanted = ADDED_COLUMNS.get(table, ())
    if not wanted:
        return []
    present = {name for (name,) in client.execute(
        "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
        {"db": database, "table": table})}
    if not present:  # no such table: nothing to migrate
        return []
    added = []
    for name, definition in wanted:
        if name in present:
            continue
        try:
            client.execute(f"ALTER TABLE {database}.{table} ADD COLUMN {name} {definition}")
        except Exception as error:
            if getattr(error, "code", None) != _COLUMN_EXISTS:
                raise
            continue
        added.append(name)
    return added


def migrate_columns(settings: ClickHouseSettings, tables: tuple[str, ...]) -> dict[str, list[str]]:
    """:func:`ensure_columns` for ``tables`` of the configured database: what a process that writes them runs at
    start, so an upgraded worker never writes a column an older table lacks. Returns table -> columns added."""
    client = connect(settings)
    try:
        return {table: ensure_columns(client, settings.database, table) for table in tables}
    finally:
        client.disconnect()


def connect(settings: ClickHouseSettings, *, database: str | None = None) -> Client:
    """A native-protocol client for the configured server (``database`` overrides the setting)."""
    from clickhouse_driver import Client

    return Client(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=database if database is not None else settings.database,
        connect_timeout=5,
        send_receive_timeout=60,
        settings={"max_block_size": 100_000},
    )


def ensure_schema(settings: ClickHouseSettings) -> list[str]:
    """Create the database and every table that is missing, add the columns an older table lacks
    (:data:`ADDED_COLUMNS`); return the table names. Idempotent."""
    server = connect(settings, database="default")
    try:
        server.execute(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
        for table, ddl in TABLES.items():
            server.execute(ddl.format(db=settings.database))
            ensure_columns(server, settings.database, table)
    finally:
        server.disconnect()
    return list(TABLES)
