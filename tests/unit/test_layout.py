"""The direction of imports between the top-level packages (docs/architecture.md, "Packages").

Command-line modules (``cli.py``) mount other packages' commands and test helpers (``testing.py``) build
fixtures from any package, so they are exempt; every other module may import only the packages listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nlumon", "streams", "monitor", "model_runtime", "detectors", "alerts", "labeling", "dashboards",
            "experiments")
ALLOWED = {
    "nlumon": {"nlumon"},
    "model_runtime": {"model_runtime"},
    "detectors": {"detectors"},
    "alerts": {"alerts"},
    "labeling": {"labeling", "model_runtime", "nlumon"},
    "dashboards": {"dashboards", "nlumon"},
    "streams": {"streams", "model_runtime", "nlumon", "experiments"},  # workers serve each arm's model
    "experiments": {"experiments", "nlumon"},
    "monitor": {"monitor", "detectors", "alerts", "labeling", "model_runtime", "nlumon"},
}
# Modules that wire programs together: the Faust app attaches the monitor's leader timer; the demo runs it all.
WIRING = {
    "streams/app.py": {"monitor"},
    "streams/demo.py": {"monitor", "alerts", "dashboards"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name not in {"cli.py", "testing.py"}:
                yield path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("module", list(modules()))
def test_imports_flow_one_way(module: str) -> None:
    package = module.split("/")[0]
    allowed = ALLOWED[package] | WIRING.get(module, set())
    wrong = imported_packages(ROOT / module) - allowed
    assert not wrong, f"{module} imports {sorted(wrong)}; {package} may import only {sorted(allowed)}"


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "job.py"
    module.write_text("from streams.sink import ClickHouseSink\nimport numpy\n")
    assert imported_packages(module) - ALLOWED["monitor"] == {"streams"}
