"""A clone of this repository runs alone: nothing but the benchmarks reads ``../shared`` next to the checkout.

The demo and the tests replay out-of-scope queries shipped with the package (``model_runtime/data/clinc150_oos``);
the full public datasets are read only from ``$NLUMON_DATASETS`` (training on SNIPS or CLINC150), by the benchmarks
(which default it to ``../shared/datasets``) and by the loader tests, through ``tests/datasets.py``, which skip
without them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model_runtime.data.integrity import DATASETS_ENV, DatasetIntegrityError, datasets_root
from nlumon.settings import PROJECT_ROOT

# Files that may name the shared folder, and why.
ALLOWED = {
    "tests/datasets.py": "the loader tests use the public datasets when at hand and skip otherwise",
    "tests/unit/test_no_shared_paths.py": "this test",
}
ALLOWED_FOLDERS = ("benchmarks/",)  # they measure against the public datasets, and say so
SKIPPED_FOLDERS = {".git", ".venv", ".run", "build", "dist", "__pycache__", "node_modules", ".pytest_cache",
                   ".ruff_cache", ".hypothesis", "models", "reports"}
# '../shared', 'shared/datasets', a path join with a 'shared' component (`/ "shared"`, `"shared" /`, join(.., "shared"))
SHARED_PATH = re.compile(r"""\.\./shared\b|\bshared/datasets|/\s*["']shared["']|["']shared["']\s*/|"""
                         r"""join\([^)]*["']shared["']""")


def project_files() -> list[Path]:
    found = []
    for path in sorted(PROJECT_ROOT.rglob("*")):
        relative = path.relative_to(PROJECT_ROOT)
        if (any(part in SKIPPED_FOLDERS or part.endswith((".egg-info", "-data")) for part in relative.parts[:-1])
                or not path.is_file()):
            continue
        if path.suffix in {".py", ".sh", ".toml", ".cfg", ".yaml", ".yml"} or path.name in {"dev", "Dockerfile"}:
            found.append(path)
    return found


def test_only_the_benchmarks_reference_the_shared_folder() -> None:
    offenders = []
    for path in project_files():
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if relative in ALLOWED or relative.startswith(ALLOWED_FOLDERS):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if SHARED_PATH.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "these read ../shared, which a clone of the repository does not have:\n" + "\n".join(
        offenders)


@pytest.mark.parametrize("line", [
    'root = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"',
    "DEFAULT = '../shared/datasets/clinc150'",
    'os.path.join(ROOT, "..", "shared", "datasets")',
    'data="$(dirname "$0")/../shared"',
])
def test_the_pattern_catches_the_usual_spellings(line: str) -> None:
    assert SHARED_PATH.search(line)


def test_the_pattern_leaves_other_uses_of_the_word_alone() -> None:
    for line in ('"""Helpers shared by integration tests."""', 'skip = {".venv", ".git", "shared"}',
                 "a shared covariance", "shared_memory = True"):
        assert not SHARED_PATH.search(line), line


def test_there_is_no_default_datasets_folder(monkeypatch) -> None:
    monkeypatch.delenv(DATASETS_ENV, raising=False)
    with pytest.raises(DatasetIntegrityError, match=DATASETS_ENV):
        datasets_root()


def test_the_demo_scenario_replays_out_of_scope_queries_without_a_datasets_folder(monkeypatch) -> None:
    from model_runtime.data import integrity
    from streams.scenarios import scenario_events

    monkeypatch.delenv(DATASETS_ENV, raising=False)
    monkeypatch.setattr(integrity, "read_checksums", lambda root: pytest.fail(f"read the datasets at {root}"))
    events = list(scenario_events("ood-burst", 600, seed=5, shift_at=0.2, burst_len=0.5))
    ood = [event for event in events if event.truth["kind"] == "ood"]
    assert len(ood) > 40
    assert all(event.truth["intent"] == "oos" for event in ood)


def test_the_package_data_lists_the_shipped_queries() -> None:
    import tomllib

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["model_runtime"]
    shipped = {path.relative_to(PROJECT_ROOT / "model_runtime").as_posix()
               for path in (PROJECT_ROOT / "model_runtime" / "data" / "clinc150_oos").iterdir()}
    assert shipped == {"data/clinc150_oos/queries.txt", "data/clinc150_oos/LICENSE", "data/clinc150_oos/README.md"}
    covered = {name for name in shipped for pattern in patterns if Path(name).match(pattern)}
    assert covered == shipped, f"package-data {patterns} misses {shipped - covered}"
