"""A background process that we started, tracked by a pid file so we stop exactly it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service could not be installed, started, reached or stopped."""


@dataclass(frozen=True)
class ManagedProcess:
    """One daemon: ``<home>/<name>.pid`` holds its pid, ``<home>/<name>.out`` its console output.

    ``marker`` is a string that must appear in the process's command line; it guards against
    signalling an unrelated process that reused a stale pid.
    """

    name: str
    home: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def console_log(self) -> Path:
        return self.home / f"{self.name}.out"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        command_line = _cmdline(pid)
        if command_line is None or self.marker not in command_line:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, command: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> int:
        """Start ``command`` detached (own session, so it outlives the CLI) and record its pid."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.console_log, "ab") as console:
            process = subprocess.Popen(
                list(command),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        # Until the child has exec'ed, /proc shows our own command line: wait for the marker so that
        # pid() recognises the process from the first poll on.
        deadline = time.monotonic() + 10
        while self.marker not in (_cmdline(process.pid) or "") and time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceError(f"{self.name} exited at once (code {process.returncode}):\n{self.tail()}")
            time.sleep(0.05)
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def wait_until(self, ready: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail early (with the log tail) if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise ServiceError(f"{self.name} exited while starting; last output:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.5)
        raise ServiceError(f"{self.name} did not {what} within {timeout_s:.0f} s; last output:\n{self.tail()}")

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns whether a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no output)"


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def refuse_foreign_listener(name: str, host: str, ports: list[int]) -> None:
    """Before starting ``name``: a port already taken means another program (or another checkout) owns it."""
    taken = [port for port in ports if port_in_use(host, port)]
    if taken:
        raise ServiceError(
            f"cannot start {name}: {host}:{', '.join(map(str, taken))} already in use by a process this checkout "
            "did not start (another checkout's services?). Stop it, or choose other ports in the settings."
        )


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:  # a zombie has an empty command line
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie counts as gone (and is reaped when it is our child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of our own child so no zombie is left behind (no-op for others)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
