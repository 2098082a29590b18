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


def in_checkout(root: Path = PROJECT_ROOT) -> bool:
    """Whether the code runs from a checkout of the repository (``pip install -e .`` or a bare clone), not from
    an installed package (a wheel in site-packages, the container image)."""
    return (root / "pyproject.toml").is_file() and (root / "nlumon" / "settings.py").is_file()


def default_state_dir(root: Path = PROJECT_ROOT) -> Path:
    """Where nlumon keeps its state (services' data, logs, pid files, the alert store, reports) by default.

    From a checkout: ``<checkout>/.run``, as before. Installed: ``$XDG_STATE_HOME/nlumon``, else
    ``~/.local/state/nlumon`` (the XDG base directory for state), else ``./.nlumon`` when the user has no home
    (an arbitrary uid in a container). Never inside site-packages. ``services.run_dir``
    (``NLUMON_SERVICES__RUN_DIR``) overrides it; the image sets it to ``/var/lib/nlumon`` (a volume).

    >>> default_state_dir(Path("/nowhere")).name
    'nlumon'
    """
    if in_checkout(root):
        return root / ".run"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "nlumon"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry
        return Path.cwd() / ".nlumon"
    return home / ".local" / "state" / "nlumon"


def _default_model_path() -> Path:
    """``<checkout>/models/current``, or ``<state dir>/models/current`` for an installed package."""
    return (PROJECT_ROOT if in_checkout() else default_state_dir()) / "models" / "current"


# The environment variable that names a settings file (TOML or YAML) when no path is passed.
CONFIG_ENV = "NLUMON_CONFIG"

DAY_MS = 86_400_000

# The built-in HMAC key of the text hash. Anyone who knows it can test a guessed utterance against a stored
# hash, so workers and the monitor only start with it in these environments (check_secrets).
DEFAULT_PII_HASH_KEY = "change-me"
PII_HASH_KEY_MIN_CHARS = 16
DEFAULT_KEY_ENVIRONMENTS = frozenset({"demo", "test"})


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    bootstrap_servers: str = "127.0.0.1:19092"
    controller_port: int = 19093
    consumer_group: str = "nlumon-worker"
    heap: str = Field("512m", description="JVM heap of the local broker started by `services up`")
    session_timeout_s: float = Field(
        15.0, ge=6, le=300,
        description="a worker that stops heartbeating (killed, machine lost) loses its partitions after this",
    )


class TopicSettings(_Group):
    """Topic names and partition counts. Topics are created explicitly, never auto-created."""

    utterances: str = "utterances"
    predictions: str = "predictions"
    labeling_queue: str = "labeling-queue"
    dead_letter: str = "dead-letter"
    outcomes: str = Field("outcomes", description="outcome events of the assistants (task completed, escalated, ...)")
    partitions: int = Field(4, ge=1, description="partitions of `utterances` (max parallel workers)")
    other_partitions: int = Field(1, ge=1, description="partitions of the other topics")
    replication_factor: int = Field(1, ge=1)
    max_message_bytes: int = Field(
        1_000_000, ge=65_536,
        description="largest record: every topic's max.message.bytes and the producers' max_request_size, set together",
    )
    retention_ms: int = Field(
        3 * DAY_MS, ge=60_000,
        description="retention.ms of the topics that hold raw text (utterances, dead-letter): set on every "
        "`services up` / `services init`, also on topics that exist",
    )
    other_retention_ms: int = Field(
        7 * DAY_MS, ge=60_000,
        description="retention.ms of the other topics (predictions and labeling-queue hold scrubbed text)",
    )

    def all_topics(self) -> dict[str, int]:
        """Topic name -> partition count, for creating them."""
        return {
            self.utterances: self.partitions,
            self.predictions: self.other_partitions,
            self.labeling_queue: self.other_partitions,
            self.dead_letter: self.other_partitions,
            self.outcomes: self.partitions,  # keyed by session like utterances: read in parallel by the workers
        }

    def retention_of(self, topic: str) -> int:
        """``retention.ms`` of ``topic``: ``retention_ms`` for the raw-text topics, else ``other_retention_ms``.

        >>> TopicSettings().retention_of("utterances") < TopicSettings().retention_of("predictions")
        True
        """
        return self.retention_ms if topic in (self.utterances, self.dead_letter) else self.other_retention_ms


class ClickHouseSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(19000, description="native TCP port")
    http_port: int = 18123
    database: str = "nlumon"
    user: str = "default"
    password: str = Field("", repr=False)
    # The debian package's server binary; `services up` starts it with a project-local config.
    server_binary: str = "clickhouse-server"


class ModelSettings(_Group):
    package_path: Path = Field(
        default_factory=_default_model_path,
        description="the model package in service: <checkout>/models/current, installed <state dir>/models/current",
    )
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


class RoutingSettings(_Group):
    """The route decision per utterance (``streams.routing``): clarify, confirm, escalate or fulfil."""

    policy_path: Path | None = Field(
        PROJECT_ROOT / "streams" / "default_routing.yaml",
        description="routing policy YAML (streams/default_routing.yaml); none = no decision (route '')",
    )

    @field_validator("policy_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() in ("", "None", "none") else value


class ShadowSettings(_Group):
    """A challenger package scored beside the champion on live traffic, never published (``streams.shadow``)."""

    package_path: Path | None = Field(None, description="the challenger package folder; none = no shadow")
    share: float = Field(
        1.0, ge=0, le=1, description="share of utterances the challenger also scores (by a hash of the session)")

    @field_validator("package_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() in ("", "None", "none") else value


class ExperimentSettings(_Group):
    """Session A/B experiments (``experiments/``): the running one is a JSON file the workers watch."""

    path: Path | None = Field(
        None, description="the active experiment file that `nlumon experiment start` writes and the workers read; "
        "default <folder of model.package_path>/experiment.json (beside the registry's `current`, which every "
        "worker already reads)",
    )
    poll_s: float = Field(5.0, gt=0, description="how often a worker looks for a started or stopped experiment")

    @field_validator("path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() in ("", "None", "none") else value

    def resolved_path(self, package_path: Path) -> Path:
        """``path``, or ``experiment.json`` beside ``package_path`` (the registry folder) when unset."""
        return self.path if self.path is not None else Path(package_path).parent / "experiment.json"


class StreamSettings(_Group):
    max_batch: int = Field(64, ge=1, description="micro-batch size (stream.take)")
    max_wait_s: float = Field(0.2, gt=0, description="longest wait to fill a micro-batch")
    max_text_chars: int = Field(512, ge=1, description="longer utterances go to dead-letter")
    sink_batch_rows: int = Field(2000, ge=1, description="ClickHouse insert when this many rows wait")
    sink_flush_s: float = Field(1.0, gt=0, description="... or when the oldest waiting row is this old")
    sink_max_pending_rows: int = Field(20000, ge=1, description="back-pressure above this many rows")
    retention_days: int = Field(
        30, ge=1,
        description="`nlumon retention` deletes ClickHouse rows, reports and alert-store entries older than this",
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0,
        description="SIGTERM: drain and leave the group within this, else exit; unacked records are redelivered",
    )
    metrics_port: int = Field(9464, description="Prometheus metrics of the worker; 0 disables")
    pii_hash_key: str = Field(
        DEFAULT_PII_HASH_KEY, repr=False,
        description=f"HMAC key for the raw-text hash; workers and the monitor refuse the default outside the "
        f"demo and the tests, and keys shorter than {PII_HASH_KEY_MIN_CHARS} characters",
    )
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
    outcome_delay_s: int = Field(
        300, ge=0, description="outcomes of a window's utterances are counted this long after the window ends "
        "(a user completes or abandons a task minutes after speaking)",
    )
    conversion_baseline_days: int = Field(
        7, ge=1, description="conversion of an intent is compared with its rate over this many days before")


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
    names_path: Path | None = Field(
        None, description="the name dictionary (staff roster and brands: proposed, accepted, rejected names); "
        "default <run_dir>/names.json. Keep it on a backed-up volume: it is state the monitor writes",
    )

    @field_validator("names_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() in ("", "None", "none") else value


# The short variable names a Label Studio user expects (`nlumon labeling push/pull`); NLUMON_LABEL_STUDIO__URL and
# NLUMON_LABEL_STUDIO__TOKEN (the nested form) and the settings file set the same fields and win over them.
LABEL_STUDIO_URL_ENV, LABEL_STUDIO_TOKEN_ENV = "NLUMON_LABEL_STUDIO_URL", "NLUMON_LABEL_STUDIO_TOKEN"


class LabelStudioSettings(_Group):
    """The Label Studio server that `nlumon labeling push` fills and `nlumon labeling pull` reads."""

    url: str = Field(
        default_factory=lambda: os.environ.get(LABEL_STUDIO_URL_ENV, "http://127.0.0.1:8080"),
        description=f"base URL of Label Studio (default ${LABEL_STUDIO_URL_ENV}, else http://127.0.0.1:8080)",
    )
    token: str = Field(
        default_factory=lambda: os.environ.get(LABEL_STUDIO_TOKEN_ENV, ""), repr=False,
        description=f"API token: a Personal Access Token or a legacy token (default ${LABEL_STUDIO_TOKEN_ENV})",
    )
    project: str = Field("nlumon", min_length=1, description="title of the project that push creates and pull reads")
    timeout_s: float = Field(30.0, gt=0, description="longest wait for one Label Studio API call")


class ServiceSettings(_Group):
    run_dir: Path = Field(
        default_factory=default_state_dir,
        description="state: services' data, logs and pid files, the alert store, reports (default_state_dir())",
    )
    start_timeout_s: float = Field(90.0, gt=0)


class Settings(BaseSettings):
    """All of nlumon's configuration; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="NLUMON_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    environment: str = Field(
        "local",
        description="free text shown in logs, alerts and dashboards; `demo` and `test` also let workers and the "
        "monitor start with the built-in stream.pii_hash_key (check_secrets)",
    )
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
    routing: RoutingSettings = RoutingSettings()
    shadow: ShadowSettings = ShadowSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)

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


class InsecureSettingsError(ValueError):
    """A worker or the monitor was asked to start with a secret that protects nothing (see :func:`check_secrets`)."""


def check_secrets(settings: Settings, program: str = "the worker") -> None:
    """Refuse to run ``program`` with the built-in ``stream.pii_hash_key`` or a short one.

    The key turns utterances into keyed hashes (``text_hash``) that find duplicates without keeping the text;
    whoever knows the key can confirm a guessed utterance against them, and the built-in key is public. The
    demo and the tests (``environment`` ``demo`` or ``test``) may keep it: their traffic is generated.

    >>> check_secrets(Settings(environment="demo", stream={"pii_hash_key": "change-me"}))
    >>> check_secrets(Settings(environment="production", stream={"pii_hash_key": "x" * 32}))
    >>> check_secrets(Settings(environment="production", stream={"pii_hash_key": "change-me"}))
    Traceback (most recent call last):
    ...
    nlumon.settings.InsecureSettingsError: the worker will not start with the built-in stream.pii_hash_key ...
    """
    key = settings.stream.pii_hash_key
    if settings.environment.strip().lower() in DEFAULT_KEY_ENVIRONMENTS:
        return
    how = (f"set a secret random key of at least {PII_HASH_KEY_MIN_CHARS} characters, e.g. "
           f"NLUMON_STREAM__PII_HASH_KEY=$(openssl rand -hex 32) in the environment, or pii_hash_key under "
           f"[stream] in the settings file (--config / $NLUMON_CONFIG); see docs/security.md, Keys and secrets")
    if key == DEFAULT_PII_HASH_KEY:
        raise InsecureSettingsError(
            f"{program} will not start with the built-in stream.pii_hash_key ({DEFAULT_PII_HASH_KEY!r}) in "
            f"environment {settings.environment!r}: {how}")
    if len(key) < PII_HASH_KEY_MIN_CHARS:
        raise InsecureSettingsError(
            f"{program} will not start: stream.pii_hash_key has {len(key)} characters, fewer than "
            f"{PII_HASH_KEY_MIN_CHARS}: {how}")
