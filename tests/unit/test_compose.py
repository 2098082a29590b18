"""compose.yaml is what users with Docker run: check it holds together without a Docker engine."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nlumon.settings import PROJECT_ROOT, load_settings

COMPOSE = PROJECT_ROOT / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_it_runs_kafka_clickhouse_grafana_and_the_worker(compose):
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert services["worker"]["build"] == "."
    assert (PROJECT_ROOT / "Dockerfile").is_file()


def test_topics_are_never_auto_created(compose):
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_mounted_folders_exist(compose):
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./models":  # models are trained by the user
                assert (PROJECT_ROOT / source).exists(), source


def test_worker_environment_names_real_settings(compose, monkeypatch):
    for name, value in compose["services"]["worker"]["environment"].items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None)  # an unknown NLUMON_* group would be refused here
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.clickhouse.host == "clickhouse"
    assert settings.model.package_path == Path("/models/current")


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here",
)
def test_docker_compose_accepts_the_file():
    subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], check=True)
