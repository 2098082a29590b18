from pathlib import Path

import pytest
from pydantic import ValidationError

from nlumon.settings import ConfigFileError, Settings, load_settings


def test_defaults_listen_on_loopback_only():
    settings = load_settings(None)
    assert settings.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert settings.clickhouse.host == "127.0.0.1"


def test_environment_overrides_nested_groups(monkeypatch):
    monkeypatch.setenv("NLUMON_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.5:9092")
    monkeypatch.setenv("NLUMON_STREAM__MAX_BATCH", "128")
    settings = load_settings(None)
    assert settings.kafka.bootstrap_servers == "10.0.0.5:9092"
    assert settings.stream.max_batch == 128
    assert settings.stream.max_wait_s == Settings().stream.max_wait_s  # untouched siblings keep defaults


def test_toml_file_is_read_and_environment_wins_over_it(tmp_path: Path, monkeypatch):
    config = tmp_path / "nlumon.toml"
    config.write_text('[topics]\nutterances = "utt-eu"\npartitions = 8\n[stream]\nmax_batch = 16\n')
    monkeypatch.setenv("NLUMON_STREAM__MAX_BATCH", "32")
    settings = load_settings(config)
    assert settings.topics.utterances == "utt-eu"
    assert settings.topics.partitions == 8
    assert settings.stream.max_batch == 32


def test_yaml_file_named_by_environment_variable(tmp_path: Path, monkeypatch):
    config = tmp_path / "nlumon.yaml"
    config.write_text("monitor:\n  window_s: 60\n")
    monkeypatch.setenv("NLUMON_CONFIG", str(config))
    assert load_settings().monitor.window_s == 60


def test_settings_are_frozen():
    settings = load_settings(None)
    with pytest.raises(ValidationError):
        settings.stream.max_batch = 3  # type: ignore[misc]


def test_unknown_key_in_file_is_a_clear_error(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[stream]\nmax_bach = 16\n")
    with pytest.raises(ConfigFileError, match=r"(?s)bad\.toml.*max_bach"):
        load_settings(config)


def test_missing_or_unsupported_file_is_refused(tmp_path: Path):
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    other = tmp_path / "settings.ini"
    other.write_text("x=1")
    with pytest.raises(ConfigFileError, match=r"use \.toml"):
        load_settings(other)


def test_invalid_value_is_refused(monkeypatch):
    monkeypatch.setenv("NLUMON_STREAM__MAX_BATCH", "0")
    with pytest.raises(ValidationError, match="max_batch"):
        load_settings(None)


def test_topics_list_their_partition_counts():
    topics = load_settings(None, topics={"partitions": 6}).topics
    assert topics.all_topics()[topics.utterances] == 6
    assert topics.all_topics()[topics.outcomes] == 6  # keyed by session like the utterances, read in parallel
    assert set(topics.all_topics()) == {"utterances", "predictions", "labeling-queue", "dead-letter", "outcomes"}


# -- secrets ------------------------------------------------------------------------------------------------------
SECRET_WORDS = ("key", "password", "token", "secret")


def secret_fields():
    """(group, field) of every settings field whose name says it holds a secret."""
    for group_name, group_field in Settings.model_fields.items():
        group_type = group_field.annotation
        for name in getattr(group_type, "model_fields", {}):
            if any(word in name.lower() for word in SECRET_WORDS):
                yield group_name, name


def test_every_secret_field_stays_out_of_repr():
    fields = list(secret_fields())
    assert ("stream", "pii_hash_key") in fields and ("clickhouse", "password") in fields
    settings = load_settings(None, stream={"pii_hash_key": "k3y-that-must-not-leak"},
                             clickhouse={"password": "pa55-that-must-not-leak"})
    for group, name in fields:
        assert type(getattr(settings, group)).model_fields[name].repr is False, f"{group}.{name} shows in repr"
    for text in (repr(settings), str(settings), repr(settings.stream), repr(settings.clickhouse)):
        assert "must-not-leak" not in text


def test_the_built_in_key_is_refused_outside_the_demo_and_the_tests(monkeypatch):
    from nlumon.settings import InsecureSettingsError, check_secrets

    monkeypatch.delenv("NLUMON_STREAM__PII_HASH_KEY", raising=False)

    for environment in ("local", "production", "staging"):
        with pytest.raises(InsecureSettingsError, match=r"built-in stream\.pii_hash_key") as refused:
            check_secrets(load_settings(None, environment=environment), "the worker")
        assert "NLUMON_STREAM__PII_HASH_KEY=" in str(refused.value) and "[stream]" in str(refused.value)
    for environment in ("demo", "test", " Demo "):
        check_secrets(load_settings(None, environment=environment))
    check_secrets(load_settings(None, environment="production", stream={"pii_hash_key": "0123456789abcdef"}))


def test_a_short_key_is_refused(monkeypatch):
    from nlumon.settings import PII_HASH_KEY_MIN_CHARS, InsecureSettingsError, check_secrets

    monkeypatch.setenv("NLUMON_STREAM__PII_HASH_KEY", "x" * (PII_HASH_KEY_MIN_CHARS - 1))
    with pytest.raises(InsecureSettingsError, match=f"fewer than {PII_HASH_KEY_MIN_CHARS}"):
        check_secrets(load_settings(None, environment="production"), "the monitor")


def test_worker_and_monitor_commands_refuse_to_start_with_the_built_in_key(monkeypatch):
    from typer.testing import CliRunner

    from nlumon.cli import app

    monkeypatch.delenv("NLUMON_STREAM__PII_HASH_KEY", raising=False)
    monkeypatch.setenv("NLUMON_ENVIRONMENT", "production")
    for command in (["worker"], ["monitor", "run-once"], ["monitor", "run"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "NLUMON_STREAM__PII_HASH_KEY=" in result.output, result.output


def test_the_demo_runs_as_environment_demo_with_the_built_in_key(monkeypatch):
    from typer.testing import CliRunner

    import streams.demo
    from nlumon.cli import app

    seen = []
    monkeypatch.setattr(streams.demo, "run_demo", lambda settings, **_: seen.append(settings))
    monkeypatch.delenv("NLUMON_STREAM__PII_HASH_KEY", raising=False)
    monkeypatch.delenv("NLUMON_ENVIRONMENT", raising=False)
    assert CliRunner().invoke(app, ["demo"]).exit_code == 0
    assert seen[-1].environment == "demo"
    monkeypatch.setenv("NLUMON_ENVIRONMENT", "production")  # an explicit environment is kept, and checked
    refused = CliRunner().invoke(app, ["demo"])
    assert refused.exit_code == 2 and "pii_hash_key" in refused.output and len(seen) == 1


# -- where state lives ----------------------------------------------------------------------------------------------
def test_from_a_checkout_state_stays_in_dot_run(monkeypatch):
    from nlumon.settings import PROJECT_ROOT, in_checkout

    monkeypatch.delenv("NLUMON_SERVICES__RUN_DIR", raising=False)
    monkeypatch.delenv("NLUMON_MODEL__PACKAGE_PATH", raising=False)

    assert in_checkout()
    settings = load_settings(None)
    assert settings.services.run_dir == PROJECT_ROOT / ".run"
    assert settings.model.package_path == PROJECT_ROOT / "models" / "current"


def test_an_installed_package_keeps_state_in_the_xdg_state_dir(tmp_path, monkeypatch):
    from nlumon.settings import default_state_dir

    site_packages = tmp_path / "site-packages"  # what PROJECT_ROOT is for a wheel: no pyproject.toml there
    (site_packages / "nlumon").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_state_dir(site_packages) == tmp_path / "home" / ".local" / "state" / "nlumon"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_state_dir(site_packages) == tmp_path / "state" / "nlumon"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    assert default_state_dir(site_packages) == tmp_path / "home" / ".local" / "state" / "nlumon"


def test_the_run_dir_setting_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NLUMON_SERVICES__RUN_DIR", str(tmp_path / "state"))
    assert load_settings(None).services.run_dir == tmp_path / "state"


# -- topic retention ---------------------------------------------------------------------------------------------
def test_raw_text_topics_keep_records_shorter_and_both_retentions_are_settings(monkeypatch):
    from nlumon.services.kafka import topic_configs

    topics = load_settings(None).topics
    assert topics.retention_ms == 3 * 86_400_000 and topics.other_retention_ms == 7 * 86_400_000
    assert {name: topics.retention_of(name) for name in topics.all_topics()} == {
        "utterances": topics.retention_ms, "dead-letter": topics.retention_ms,
        "predictions": topics.other_retention_ms, "labeling-queue": topics.other_retention_ms,
        "outcomes": topics.other_retention_ms}
    monkeypatch.setenv("NLUMON_TOPICS__RETENTION_MS", "3600000")
    monkeypatch.setenv("NLUMON_TOPICS__DEAD_LETTER", "dlq-eu")
    settings = load_settings(None)
    assert topic_configs(settings, "dlq-eu") == {"max.message.bytes": str(settings.topics.max_message_bytes),
                                                 "retention.ms": "3600000"}
    assert topic_configs(settings, "predictions")["retention.ms"] == str(7 * 86_400_000)
    monkeypatch.setenv("NLUMON_TOPICS__RETENTION_MS", "-1")  # "forever" is not a retention
    with pytest.raises(ValidationError, match="retention_ms"):
        load_settings(None)
