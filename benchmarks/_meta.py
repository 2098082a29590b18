"""What every benchmark's JSON starts with: the command, the date, the machine and library versions.

    >>> sorted(header(["--epochs", "1"], ["numpy"]))
    ['command', 'date', 'machine', 'versions']
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The public datasets the SNIPS and CLINC150 benchmarks measure against: ../shared/datasets next to the checkout
# unless $NLUMON_DATASETS names another folder (the package itself has no default; tests/unit/test_no_shared_paths.py)
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
os.environ.setdefault("NLUMON_DATASETS", str(SHARED_DATASETS))


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


def parameters(args: argparse.Namespace) -> dict:
    """The parsed arguments as JSON values (paths as strings)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def save(result: dict, path: Path) -> None:
    """Write the benchmark's JSON and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: float, max_length: int, subset_help: str):
    """The training options the corpus benchmarks share (``train_request`` turns them into a request)."""
    parser.add_argument("--epochs", type=float, default=epochs, help="training epochs")
    parser.add_argument("--subset", type=int, default=0, help=subset_help)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="encoder learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--max-length", type=int, default=max_length, help="max wordpieces")
    parser.add_argument("--seed", type=int, default=13, help="seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def train_request(args: argparse.Namespace, corpus: str):
    """A CPU ``TrainRequest`` for ``corpus`` from the options of :func:`add_training_arguments`."""
    from model_runtime.pipeline import TrainRequest

    return TrainRequest(
        corpus=corpus, size=args.subset, epochs=args.epochs, seed=args.seed, device="cpu",
        max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.learning_rate,
        threads=args.threads,
    )
