"""The worker's line-up beside the champion (streams.serving.Challengers), with packages loaded by a fake."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from experiments.definition import Arm, Experiment, save_experiment
from nlumon.settings import load_settings
from streams.serving import Challengers


class FakeRuntime:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeModels:
    """ModelService's ``current`` and ``load``: a package loads unless its folder is named ``next-broken``."""

    def __init__(self, champion: Path) -> None:
        self.loads: list[Path] = []
        self.runtimes: list[FakeRuntime] = []
        self.current = self._model(champion)

    def _model(self, path: Path) -> SimpleNamespace:
        runtime = FakeRuntime()
        self.runtimes.append(runtime)
        return SimpleNamespace(path=path.resolve(), version=path.name, runtime=runtime, backend="fake")

    def load(self, path: Path) -> SimpleNamespace:
        self.loads.append(path)
        if path.name == "next-broken":
            raise RuntimeError("bad package")
        return self._model(path)


def setup(tmp_path: Path, shadow: str | None = None):
    for name in ("champion", "challenger", "next-broken"):
        (tmp_path / name).mkdir()
    settings = load_settings(None, model={"package_path": tmp_path / "champion"},
                             shadow={"package_path": tmp_path / shadow if shadow else ""},
                             experiments={"path": tmp_path / "experiment.json"})
    models = FakeModels(tmp_path / "champion")
    return settings, models, Challengers(settings, models)


def experiment(tmp_path: Path, treatment: str, status: str = "running") -> Experiment:
    arms = [Arm(name="control", package_path=tmp_path / "champion", share=0.5),
            Arm(name="treatment", package_path=tmp_path / treatment, share=0.5)]
    return Experiment(name="ab", status=status, arms=arms)


def test_nothing_configured_changes_nothing(tmp_path):
    _, models, challengers = setup(tmp_path)
    assert challengers.refresh() is None and models.loads == []


def test_an_arm_naming_the_champion_path_is_served_by_the_champion_and_one_model_serves_shadow_and_arm(tmp_path):
    settings, models, challengers = setup(tmp_path, shadow="challenger")
    save_experiment(settings.experiments.path, experiment(tmp_path, "challenger"))
    lineup, retired = challengers.refresh()
    challengers.adopt(lineup)
    assert retired == [] and lineup.arms["control"] is None
    assert lineup.arms["treatment"] is lineup.shadow and models.loads == [(tmp_path / "challenger").resolve()]
    assert challengers.refresh() is None  # nothing changed: nothing loaded again

    save_experiment(settings.experiments.path, experiment(tmp_path, "challenger", status="stopped"))
    lineup, retired = challengers.refresh()
    assert lineup.experiment is None and lineup.shadow is not None and retired == []  # the shadow keeps its model


def test_a_line_up_that_cannot_load_keeps_the_old_one_and_leaks_nothing(tmp_path):
    settings, models, challengers = setup(tmp_path, shadow="challenger")
    save_experiment(settings.experiments.path, experiment(tmp_path, "next-broken"))
    for _ in range(3):
        assert challengers.refresh() is None
    opened = models.runtimes[1:]  # the champion's is the first; packages load in path order: the shadow first
    assert len(opened) == 3 and all(runtime.closed for runtime in opened)
    assert models.loads.count((tmp_path / "next-broken").resolve()) == 1  # retried only after RETRY_FAILED_S
    assert challengers.lineup.shadow is None  # the old (empty) line-up still serves
