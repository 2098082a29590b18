"""Sticky session assignment (experiments.definition): same session, same arm; split accuracy; salts; the file."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats as sps

from experiments.definition import (
    Arm,
    Experiment,
    ExperimentFileError,
    StopRule,
    load_experiment,
    save_experiment,
    unit_hash,
)

SESSIONS = [f"session-{uuid.UUID(int=i, version=4)}" for i in range(100_000)]


def experiment(shares=(0.5, 0.5), name="ab1", salt="") -> Experiment:
    names = ["control", "challenger", "third"][: len(shares)]
    arms = [Arm(name=n, package_path=f"models/{n}", share=s) for n, s in zip(names, shares, strict=True)]
    return Experiment(name=name, salt=salt, arms=arms)


def split(exp: Experiment) -> dict[str, float]:
    arms = [exp.arm_of(session) for session in SESSIONS]
    return {arm.name: arms.count(arm.name) / len(arms) for arm in exp.arms}


def test_a_session_always_gets_the_same_arm_also_after_a_reload(tmp_path):
    exp = experiment()
    path = tmp_path / "experiment.json"
    save_experiment(path, exp)
    again = load_experiment(path)
    assert again == exp
    assert all(exp.arm_of(s) == exp.arm_of(s) == again.arm_of(s) for s in SESSIONS[:2000])


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.9, 0.1), (0.2, 0.3, 0.5)])
def test_the_split_matches_the_shares_within_one_point_on_100k_sessions(shares):
    observed = split(experiment(shares))
    for arm, share in zip(observed, shares, strict=True):
        assert abs(observed[arm] - share) < 0.01


def test_the_hash_is_uniform():
    points = np.array([unit_hash("ab1", s) for s in SESSIONS[:20_000]])
    assert sps.kstest(points, "uniform").pvalue > 0.001


def test_another_salt_reshuffles_the_sessions():
    first, second = experiment(salt=""), experiment(salt="rerun-2")
    moved = np.mean([first.arm_of(s) != second.arm_of(s) for s in SESSIONS[:20_000]])
    assert 0.45 < moved < 0.55  # independent assignments of a 50/50 split disagree half the time
    named = experiment(name="ab2")
    assert 0.45 < np.mean([first.arm_of(s) != named.arm_of(s) for s in SESSIONS[:20_000]]) < 0.55


def test_the_salt_defaults_to_the_name():
    assert experiment(name="x", salt="").arm_of("s1") == experiment(name="y", salt="x").arm_of("s1")


def test_shares_must_add_up_and_names_differ():
    with pytest.raises(ValidationError, match="add up to 1"):
        experiment((0.5, 0.6))
    with pytest.raises(ValidationError, match="must differ"):
        Experiment(name="a", arms=[Arm(name="x", package_path="m", share=0.5), Arm(name="x", package_path="m",
                                                                                    share=0.5)])
    with pytest.raises(ValidationError, match="experiment name"):
        experiment(name="no spaces")


def test_a_file_without_the_effect_field_still_loads(tmp_path):
    path = tmp_path / "experiment.json"
    data = json.loads(experiment().model_dump_json())
    del data["stop"]["effect"]
    path.write_text(json.dumps(data))
    assert load_experiment(path).stop == StopRule()


def test_a_missing_file_is_none_and_a_broken_one_an_error(tmp_path):
    assert load_experiment(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExperimentFileError, match="not a valid experiment"):
        load_experiment(tmp_path / "bad.json")
