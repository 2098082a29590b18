"""The one settings object of nlumon.

Every knob lives here, grouped by the part of the system that reads it. Values come from (highest
precedence first): keyword arguments, ``NLUMON_*`` environment variables (nested groups use a double
underscore: ``NLUMON_KAFKA__BOOTSTRAP_SERVERS``), an optional TOML or YAML file, then the defaults
below. The object is frozen: build it once at a boundary (CLI, test fixture) and pass it down.

    >>> s = Settings()
    >>> s.kafka.bootstrap_servers
    '127.0.0.1:19092'
    >>> s.topics.utterances
    'utterances'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The environment variable that names a settings file (TOML or YAML) when no path is passed.
CONFIG_ENV = "NLUMON_CONFIG"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    bootstrap_servers: str = "127.0.0.1:19092"
    controller_port: int = 19093
    consumer_group: str = "nlumon-worker"
    heap: str = Field("512m", description="JVM heap of the local broker started by `services up`")


class TopicSettings(_Group):
    """Topic names and partition counts. Topics are created explicitly, never auto-created."""

    utterances: str = "utterances"
    predictions: str = "predictions"
    labeling_queue: str = "labeling-queue"
    dead_letter: str = "dead-letter"
    partitions: int = Field(4, ge=1, description="partitions of `utterances` (max parallel workers)")
    other_partitions: int = Field(1, ge=1, description="partitions of the other topics")
    replication_factor: int = Field(1, ge=1)

    def all_topics(self) -> dict[str, int]:
        """Topic name -> partition count, for creating them."""
        return {
            self.utterances: self.partitions,
            self.predictions: self.other_partitions,
            self.labeling_queue: self.other_partitions,
            self.dead_letter: self.other_partitions,
        }


class ClickHouseSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(19000, description="native TCP port")
    http_port: int = 18123
    database: str = "nlumon"
    user: str = "default"
    password: str = ""
    # The debian package's server binary; `services up` starts it with a project-local config.
    server_binary: str = "clickhouse-server"


class ModelSettings(_Group):
    package_path: Path = Field(PROJECT_ROOT / "models" / "current")
    backend: Literal["onnx-cpu", "onnx-int8", "onnx-cuda", "torch-cuda"] = "onnx-cpu"
    allow_cpu_fallback: bool = Field(
        False, description="a GPU backend that cannot get a GPU falls back to CPU instead of failing"
    )
    intra_op_threads: int = Field(0, ge=0, description="0 = ONNX Runtime's default")
    spin_wait: bool = Field(
        False, description="ONNX Runtime threads busy-wait between ops: faster only on a machine with idle cores"
    )
    blas_threads: int = Field(
        1, ge=0, description="numpy/scipy BLAS threads in the worker (0 = the library's default); OpenBLAS threads "
        "spin after each small matmul (OOD score, sketch) and took ~25 % of ONNX Runtime's time on 2 cores",
    )
    sub_batch: int = Field(
        0, ge=0, description="most utterances per model call; a micro-batch is length-sorted and cut into such calls "
        "(0 = the backend's default: 32 on CPU, 64 on GPU)",
    )


class StreamSettings(_Group):
    max_batch: int = Field(64, ge=1, description="micro-batch size (stream.take)")
    max_wait_s: float = Field(0.2, gt=0, description="longest wait to fill a micro-batch")
    max_text_chars: int = Field(512, ge=1, description="longer utterances go to dead-letter")
    sink_batch_rows: int = Field(2000, ge=1, description="ClickHouse insert when this many rows wait")
    sink_flush_s: float = Field(1.0, gt=0, description="... or when the oldest waiting row is this old")
    sink_max_pending_rows: int = Field(20000, ge=1, description="back-pressure above this many rows")
    retention_days: int = Field(30, ge=1)
    metrics_port: int = Field(9464, description="Prometheus metrics of the worker; 0 disables")
    pii_hash_key: str = Field("change-me", description="HMAC key for the raw-text hash", repr=False)
    pii_name_gazetteer: bool = Field(
        True, description="also scrub Census given names (+ surname) the model did not tag as a person"
    )
    pii_keep_slot_confidence: float = Field(
        0.9, ge=0, le=1.01,
        description="a name inside a non-person slot at least this confident stays (a brand called jordan); >1 = never",
    )


class MonitorSettings(_Group):
    window_s: int = Field(300, ge=1, description="length of one monitoring window")
    grace_s: int = Field(60, ge=0, description="late data within this delay still updates a window")
    reference: Literal["package", "rolling", "seasonal"] = "package"
    rolling_days: int = Field(7, ge=1)
    drift_false_alarm_rate: float = Field(0.01, gt=0, lt=1)
    ood_in_distribution_fpr: float = Field(0.05, gt=0, lt=1)
    max_sample: int = Field(2000, ge=10, description="bound on rows per window for O(n^2) tests")


class AlertSettings(_Group):
    """Alert rules, webhook receivers and the durable outbox (see ``alerts/``)."""

    rules_path: Path = Field(PROJECT_ROOT / "alerts" / "default_rules.yaml", description="alert rules YAML")
    receivers_path: Path | None = Field(None, description="webhook receivers YAML; none = alerts stay queued")
    store_path: Path | None = Field(None, description="SQLite alert state + outbox; default <run_dir>/alerts.db")
    retry_base_s: float = Field(1.0, gt=0, description="first webhook retry backoff")
    retry_cap_s: float = Field(300.0, gt=0, description="longest backoff between two webhook attempts")
    retry_horizon_s: float = Field(86400.0, gt=0, description="give a webhook up (dead) this long after queueing")
    lease_s: float = Field(60.0, gt=0, description="a claimed delivery is retried by another sender after this")
    report_base_url: str = Field("", description="URL prefix for Evidently reports in alerts; empty = file path")
    dashboard_url: str = Field("", description="dashboard link put into alert evidence; empty = none")

    @field_validator("receivers_path", "store_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # environment variables cannot say None: "" and "None" (what str(None) gives) mean unset
        return None if isinstance(value, str) and value.strip() in ("", "None", "none") else value

    def resolved_store_path(self, run_dir: Path) -> Path:
        """``store_path``, or ``<run_dir>/alerts.db`` when unset."""
        return self.store_path if self.store_path is not None else Path(run_dir) / "alerts.db"


class LabelingSettings(_Group):
    """Which predictions the monitor sends to the labeling queue, and how many per day."""

    daily_budget: int = Field(500, ge=0, description="items queued per (UTC) day of traffic")
    max_per_window: int = Field(100, ge=0, description="items queued from one monitoring window at most")
    low_confidence: float = Field(0.5, ge=0, le=1, description="confidence below this flags a prediction")
    small_margin: float = Field(0.1, ge=0, le=1, description="top-1 minus top-2 probability below this flags")
    candidates_per_window: int = Field(5000, ge=1, description="flag candidates read from one window at most")


class ServiceSettings(_Group):
    run_dir: Path = Field(PROJECT_ROOT / ".run", description="data, logs and pid files of local services")
    start_timeout_s: float = Field(90.0, gt=0)


class Settings(BaseSettings):
    """All of nlumon's configuration; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="NLUMON_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    environment: str = Field("local", description="free text shown in logs, alerts and dashboards")
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines for people, or one JSON object per line for log shippers"
    )
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    model: ModelSettings = ModelSettings()
    stream: StreamSettings = StreamSettings()
    monitor: MonitorSettings = MonitorSettings()
    services: ServiceSettings = ServiceSettings()
    alerts: AlertSettings = AlertSettings()
    labeling: LabelingSettings = LabelingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE_IN_USE.get("path")
        if path is not None:
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @field_validator("environment")
    @classmethod
    def _no_blank_environment(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("environment must not be blank")
        return value


# pydantic-settings builds sources from the class, so the file in use is handed over here for the
# duration of one load_settings() call.
_CONFIG_FILE_IN_USE: dict[str, Path | None] = {"path": None}


class ConfigFileError(ValueError):
    """The settings file is missing, has an unknown suffix, or does not parse."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a file (or ``$NLUMON_CONFIG``), the environment and ``overrides``.

    ``overrides`` take groups as dicts or models, e.g. ``load_settings(kafka={"bootstrap_servers": ...})``.
    """
    path_text = config_file if config_file is not None else os.environ.get(CONFIG_ENV)
    path = Path(path_text).expanduser() if path_text else None
    if path is not None:
        if not path.is_file():
            raise ConfigFileError(f"settings file {path} does not exist")
        if path.suffix not in {".toml", ".yaml", ".yml"}:
            raise ConfigFileError(f"settings file {path}: use .toml, .yaml or .yml")
    _CONFIG_FILE_IN_USE["path"] = path
    try:
        return Settings(**overrides)
    except Exception as error:
        if path is not None:
            raise ConfigFileError(f"settings from {path} are invalid: {error}") from error
        raise
    finally:
        _CONFIG_FILE_IN_USE["path"] = None
