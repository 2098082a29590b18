"""What every benchmark's JSON starts with: the command, the date, the machine and library versions.

    >>> sorted(header(["--epochs", "1"], ["numpy"]))
    ['command', 'date', 'machine', 'versions']
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Cores, CPU model, Python and the load average (a busy machine explains slow figures)."""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def versions(names: Sequence[str]) -> dict[str, str]:
    """Installed version of each distribution (``not installed`` when missing)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def header(argv: Sequence[str] | None, libraries: Sequence[str]) -> dict:
    """``command`` (script name + arguments), ``date`` (UTC), ``machine`` and ``versions``."""
    args = list(argv) if argv is not None else sys.argv[1:]
    return {
        "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *args]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(libraries),
    }
