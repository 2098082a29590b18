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
    assert set(topics.all_topics()) == {"utterances", "predictions", "labeling-queue", "dead-letter"}
