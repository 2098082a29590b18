"""The package as a user or the container image gets it: a wheel built from the sources, installed into a fresh
environment, run by an unprivileged user from a folder that is not the checkout.

No Docker engine is needed: the wheel is what the ``Dockerfile`` installs, and the commands are the image's
(``nlumon --help``, ``nlumon worker --help``, ``nlumon services status``, then a real ``nlumon worker``). The
environment reuses this checkout's virtualenv for the dependencies (a ``.pth`` file), never its sources. Run as
root, the commands run as the system user ``nlumontest`` (created when missing); otherwise as the current user.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nlumon.settings import PROJECT_ROOT

TEST_USER = "nlumontest"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = [pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
SOURCES = ["pyproject.toml", "README.md", *PYPROJECT["project"].get("license-files", []), *PACKAGES]
QUIET = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", "PIP_NO_INPUT": "1"}


@dataclass
class Installed:
    root: Path
    venv: Path
    home: Path  # the user's $HOME (their own folder)
    cwd: Path  # an empty folder the user owns: not the checkout
    build_output: str
    uid: int | None  # None: run as the current (unprivileged) user
    gid: int | None

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
                "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}

    def popen_user(self) -> dict:
        return {} if self.uid is None else {"user": self.uid, "group": self.gid, "extra_groups": []}

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.cwd, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, **self.popen_user())

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "nlumon"


def unprivileged_user() -> tuple[int | None, int | None]:
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("running as root without useradd: no unprivileged user to run the package as")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid


def base_interpreter(uid: int | None, gid: int | None) -> str:
    """A Python of this minor version (the dependencies are compiled for it) that the user may execute."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
                  f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    user = {} if uid is None else {"user": uid, "group": gid, "extra_groups": []}
    for candidate in dict.fromkeys(candidates):
        if not os.path.isfile(candidate):
            continue
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, cwd="/", **user)
        except OSError:  # e.g. an interpreter under /root
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    pytest.skip(f"no Python {version} that the unprivileged user may run (tried {candidates})")


def setuptools_is_recent() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        return False


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    uid, gid = unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="nlumon-install-"))
    root.chmod(0o755)
    try:
        source = root / "src"
        for name in SOURCES:
            origin = PROJECT_ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                                dirs_exist_ok=True)
            else:
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, source / name)
        # offline with this environment's setuptools when it is new enough for the pyproject (>= 77), else the
        # way pip builds for a user: in an isolated environment with the build requirements from the index
        offline = ["--no-build-isolation", "--no-index"] if setuptools_is_recent() else []
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-w", str(root / "wheels"), str(source)],
            capture_output=True, text=True, cwd=root, env={**os.environ, **QUIET}, timeout=600)
        assert build.returncode == 0, build.stdout + build.stderr
        (wheel,) = (root / "wheels").glob("nlumon-*.whl")
        venv = root / "venv"
        subprocess.run([base_interpreter(uid, gid), "-m", "venv", "--without-pip", str(venv)], check=True,
                       capture_output=True)
        site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                    "print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
        # the dependencies from this checkout's virtualenv (its .pth files, e.g. the editable nlumon, stay unread)
        (site / "_nlumon_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
                                  str(wheel)], capture_output=True, text=True, env={**os.environ, **QUIET},
                                 timeout=300)
        assert install.returncode == 0, install.stdout + install.stderr
        home, cwd = root / "home", root / "elsewhere"
        for folder in (home, cwd):
            folder.mkdir()
            if uid is not None:
                os.chown(folder, uid, gid)
        yield Installed(root, venv, home, cwd, build.stdout + build.stderr, uid, gid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_dockerfile_runs_as_a_user_with_a_writable_state_volume():
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (run_dir,) = re.findall(r"NLUMON_SERVICES__RUN_DIR=(\S+)", text)
    assert re.search(rf'^VOLUME \["{re.escape(run_dir)}"\]', text, re.MULTILINE)
    assert re.search(rf"install -d -o nlumon -g nlumon .*{re.escape(run_dir)}", text)
    assert "useradd" in text and re.search(r"^WORKDIR " + re.escape(run_dir), text, re.MULTILINE)
    copied = {source for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE) for source in line.split()[:-1]}
    assert set(PACKAGES) | {"pyproject.toml", "README.md", "LICENSE"} <= copied


def test_every_data_file_of_the_packages_is_package_data():
    """A file the code reads at run time but the wheel lacks fails only once installed (the image, a user's pip)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            relative = path.relative_to(PROJECT_ROOT / package)
            if (not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in relative.parts
                    or relative.as_posix() == "README.md"):  # a package's README is documentation
                continue
            if not any(relative.match(pattern) for pattern in patterns.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"


@pytest.mark.e2e
def test_a_build_prints_no_warnings(installed):
    assert not re.search(r"warning|deprecat", installed.build_output, re.IGNORECASE), installed.build_output


@pytest.mark.e2e
def test_the_command_line_runs_from_the_wheel_as_an_unprivileged_user(installed):
    for args in (["nlumon", "--help"], ["nlumon", "worker", "--help"], ["nlumon", "monitor", "--help"]):
        result = installed.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Usage" in result.stdout
    status = installed.run("nlumon", "services", "status", "--json")
    assert status.returncode in (0, 1), status.stderr  # 1: nothing of ours runs in this user's state dir
    logs = [Path(row["log"]) for row in json.loads(status.stdout)]
    assert all(log.is_relative_to(installed.state_dir) for log in logs), logs

    refused = installed.run("nlumon", "worker", NLUMON_ENVIRONMENT="production")
    assert refused.returncode == 2 and "NLUMON_STREAM__PII_HASH_KEY=" in refused.stderr, refused.stderr

    probe = installed.run("python", "-c", "import json, nlumon, model_runtime.data.clinc150 as c\n"
                          "from nlumon.settings import Settings, in_checkout\n"
                          "s = Settings()\n"
                          "print(json.dumps([nlumon.__file__, in_checkout(), str(s.services.run_dir),\n"
                          "  str(s.model.package_path), str(s.alerts.rules_path), s.alerts.rules_path.is_file(),\n"
                          "  len(c.load_oos_queries())]))")
    assert probe.returncode == 0, probe.stderr
    module, checkout, run_dir, model, rules, rules_exist, queries = json.loads(probe.stdout)
    assert Path(module).is_relative_to(installed.venv) and not checkout  # the wheel, not this checkout
    assert Path(run_dir) == installed.state_dir and Path(model) == installed.state_dir / "models" / "current"
    assert Path(rules).is_relative_to(installed.venv) and rules_exist  # package data shipped
    assert queries == 1100  # the out-of-scope queries ship with the package

    xdg = installed.run("python", "-c", "from nlumon.settings import Settings; print(Settings().services.run_dir)",
                        XDG_STATE_HOME="/srv/state")
    assert xdg.stdout.strip() == "/srv/state/nlumon"
    assert list(installed.cwd.iterdir()) == []  # nothing written where the user happens to be


@pytest.mark.e2e
def test_a_worker_from_the_wheel_stores_rows_and_keeps_its_state_in_the_state_dir(installed, services):
    from model_runtime.testing import cached_tiny_package
    from streams.replay import send_records
    from streams.scenarios import scenario_events
    from tests.integration.workers import isolated, stored_ids, wait_until

    unique = uuid.uuid4().hex[:10]
    settings = isolated(services, unique)
    package = cached_tiny_package()
    env = installed.env(
        NLUMON_ENVIRONMENT="test", NLUMON_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        NLUMON_KAFKA__CONSUMER_GROUP=settings.kafka.consumer_group,
        NLUMON_CLICKHOUSE__PORT=str(settings.clickhouse.port), NLUMON_CLICKHOUSE__DATABASE=settings.clickhouse.database,
        NLUMON_MODEL__PACKAGE_PATH=str(package), NLUMON_STREAM__METRICS_PORT="0", NLUMON_STREAM__SINK_FLUSH_S="0.3",
        **{f"NLUMON_TOPICS__{name.upper()}": getattr(settings.topics, name)
           for name in ("utterances", "predictions", "labeling_queue", "dead_letter")})
    log_path = installed.root / f"worker-{unique}.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([str(installed.venv / "bin" / "nlumon"), "worker", "--worker-id", "installed"],
                                  cwd=installed.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, **installed.popen_user())

    class Process:  # what wait_until needs to report a dead worker
        name = "installed"

        def alive(self) -> bool:
            return worker.poll() is None

        def output(self) -> str:
            text = log_path.read_text(errors="replace")
            return text if len(text) < 8000 else f"{text[:4000]}\n...\n{text[-4000:]}"

    try:
        events = list(scenario_events("stable", 30, seed=int(unique[:7], 16)))  # ids of their own
        outcome = send_records(settings, ((event.key, event.value) for event in events))
        assert outcome.ok
        ids = [json.loads(event.value)["id"] for event in events]
        wait_until(lambda: all(count == 1 for count in stored_ids(settings, ids).values()), 180,
                   "the installed worker's rows in ClickHouse", (Process(),))
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    assert (installed.state_dir / "alerts.db").is_file()  # the alert store the app opens at start
    assert (installed.state_dir / "faust" / f"{settings.kafka.consumer_group}-data").is_dir()
    assert list(installed.cwd.iterdir()) == []
