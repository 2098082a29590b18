"""A real Label Studio server for tests: installed from PyPI into its own virtualenv, started on a free local port.

Label Studio cannot share nlumon's virtualenv (it pins Django's world and an older numpy), so it gets one of its own
under ``~/.cache/nlumon/label-studio-venv-<version>`` (``$XDG_CACHE_HOME`` respected), built once and reused; a new
pinned version makes a new folder. pip's own cache (``~/.cache/pip``) makes a rebuild cheap. A build writes a marker
file last, so a build cut short is thrown away and redone, and a lock file keeps two test runs from building at once.
The build also keeps an empty, fully migrated database as a template: applying Label Studio's Django migrations to
a new SQLite file took ~100 s of a ~110 s start on 2 busy cores; a copy of the template starts in seconds.

The server runs with a temporary data folder (SQLite), bound to 127.0.0.1, no browser, no telemetry, no update check,
with an admin user and a known legacy API token created from environment variables (Label Studio's
``LABEL_STUDIO_USERNAME``/``_PASSWORD``/``_USER_TOKEN``; ``--enable-legacy-api-token`` lets the organization accept
it). It runs in its own process group, which :meth:`LabelStudioServer.stop` ends.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

LABEL_STUDIO_VERSION = "1.23.2"
MARKER = ".nlumon-complete"
DATABASE = "label_studio.sqlite3"  # Label Studio's SQLite file in its data folder
TEMPLATE = "template-data"  # in the venv: a data folder whose database has every migration applied
USERNAME, PASSWORD = "annotator@nlumon.test", "nlumon-test-password"
# A legacy token is 40 hex characters; a fixed one is fine for a throwaway local server.
TOKEN = "5eb0cafe5eb0cafe5eb0cafe5eb0cafe5eb0cafe"
QUIET_PIP = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", "PIP_NO_INPUT": "1"}


class LabelStudioInstallError(RuntimeError):
    """pip could not install Label Studio (no network, no wheel for this Python...); the message has pip's words."""


def cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "nlumon"


def venv_path(version: str = LABEL_STUDIO_VERSION) -> Path:
    return cache_root() / f"label-studio-venv-{version}"


def ensure_venv(version: str = LABEL_STUDIO_VERSION, timeout_s: float = 900) -> tuple[Path, float, bool]:
    """The virtualenv with ``label-studio==version``: (path, seconds spent, whether it was built now)."""
    venv = venv_path(version)
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same venv: wait for it, then reuse
        built = not ((venv / MARKER).is_file() and (venv / "bin" / "label-studio").is_file())
        if built:
            shutil.rmtree(venv, ignore_errors=True)  # a build that was cut short
            # The venv's scripts name their interpreter by absolute path: build in place, never build-then-rename.
            base_python = getattr(sys, "_base_executable", None) or sys.executable
            env = {**os.environ, **QUIET_PIP}
            _run([base_python, "-m", "venv", str(venv)], env, timeout_s)
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", f"label-studio=={version}"], env, timeout_s)
            (venv / MARKER).write_text(f"label-studio=={version}\n")
        if not (venv / TEMPLATE / DATABASE).is_file():
            _make_template(venv, timeout_s)
            built = True
    return venv, time.monotonic() - started, built


def _make_template(venv: Path, timeout_s: float) -> None:
    """``<venv>/template-data/label_studio.sqlite3``: every migration applied, no user, no project."""
    building = venv / f"{TEMPLATE}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    # any label-studio command migrates the database first; `version` then only prints
    _run([str(venv / "bin" / "label-studio"), "version", "--data-dir", str(building)],
         _server_env(venv, building), timeout_s)
    if not (building / DATABASE).is_file():
        raise RuntimeError(f"label-studio made no {DATABASE} in {building}")
    shutil.rmtree(venv / TEMPLATE, ignore_errors=True)
    building.rename(venv / TEMPLATE)  # plain data, no absolute paths inside: safe to rename


def _run(command: list[str], env: dict[str, str], timeout_s: float) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LabelStudioInstallError(f"{' '.join(command)} took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise LabelStudioInstallError(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")


def _server_env(venv: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing leaves the machine (no update check, no analytics, no Sentry)."""
    home = data_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "DO_NOT_TRACK": "1",
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LabelStudioServer:
    url: str
    token: str
    process: subprocess.Popen
    log_path: Path
    start_s: float

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def start_server(venv: Path, data_dir: Path, port: int | None = None, timeout_s: float = 240) -> LabelStudioServer:
    """``label-studio start`` on 127.0.0.1:``port``; returns once ``/health`` is UP and the token is accepted."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    template = venv / TEMPLATE / DATABASE
    if template.is_file() and not (data_dir / DATABASE).exists():
        shutil.copyfile(template, data_dir / DATABASE)
    env = _server_env(venv, data_dir, LABEL_STUDIO_USERNAME=USERNAME, LABEL_STUDIO_PASSWORD=PASSWORD,
                      LABEL_STUDIO_USER_TOKEN=TOKEN)
    command = [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--port", str(port),
               "--internal-host", "127.0.0.1", "--data-dir", str(data_dir), "--enable-legacy-api-token"]
    log_path = data_dir / "label-studio.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=data_dir)
    server = LabelStudioServer(f"http://127.0.0.1:{port}", TOKEN, process, log_path, 0.0)
    try:
        _wait_until_up(server, started + timeout_s)
    except BaseException:
        server.stop()
        raise
    server.start_s = time.monotonic() - started
    return server


def _wait_until_up(server: LabelStudioServer, deadline: float) -> None:
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"label-studio exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            health = requests.get(f"{server.url}/health", timeout=2)
            if health.status_code == 200 and health.json().get("status") == "UP":
                projects = requests.get(f"{server.url}/api/projects", timeout=10,
                                        headers={"Authorization": f"Token {server.token}"})
                if projects.status_code == 200:
                    return
                if projects.status_code in (401, 403):
                    raise RuntimeError(f"label-studio is up but refused the test token ({projects.status_code}: "
                                       f"{projects.text[:200]}):\n{server.log_tail()}")
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"label-studio did not come up at {server.url}:\n{server.log_tail()}")
        time.sleep(0.5)
