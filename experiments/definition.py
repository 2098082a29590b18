"""What an experiment is, where the workers find it, and which arm a session belongs to.

The running experiment is one JSON file (``experiments.path``, by default ``experiment.json`` beside the model
registry's ``current`` link, a folder every worker already reads). ``nlumon experiment start`` writes it,
``stop``/``conclude`` mark it stopped; it is replaced with one rename, so a worker reads either the old or the
new definition, never half of one. A worker that finds a running experiment loads every arm's package and
serves each session with the package of its arm.

Assignment is sticky and needs no state: a session's arm is a pure function of the experiment's ``salt`` and
the ``session_id`` (SHA-256 to a number in [0, 1), compared with the cumulative shares), so every worker, and
any process that replays the traffic, puts a session in the same arm.

    >>> exp = Experiment(name="ab1", arms=[Arm(name="control", package_path="models/current", share=0.5),
    ...                                    Arm(name="challenger", package_path="models/new", share=0.5)])
    >>> exp.arm_of("session-1") == exp.arm_of("session-1")
    True
    >>> exp.control.name
    'control'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PRIMARY_METRICS = ("task_completed", "converted", "escalated", "abandoned", "rephrased", "satisfaction")


def plain_name(what: str, value: str) -> str:
    """``value`` if it is a plain name (it becomes a folder, a metric label and a ClickHouse value as it is)."""
    if not _NAME.match(value):
        raise ValueError(f"{what} name {value!r} must be 1-64 letters, digits, '_', '.', '-'")
    return value


class StopRule(BaseModel):
    """When the experiment ends: the first of a decision of the sequential test, ``max_sessions`` or
    ``max_days``. ``alpha`` is the test's error rate; ``min_sessions`` per arm before any decision; ``effect``
    the size of difference the test is most sensitive to (it stays valid for any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=0.5)
    max_sessions: int | None = Field(None, ge=1, description="sessions over all arms")
    max_days: float | None = Field(None, gt=0)
    min_sessions: int = Field(200, ge=1, description="per arm, before the test may decide")
    effect: float | None = Field(
        None, gt=0, description="the absolute difference of the primary metric the test is tuned for (the mSPRT "
        "mixing scale tau, experiments.stats); none = 0.03 for a rate, 0.15 for satisfaction")


class Arm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    package_path: Path = Field(description="the package this arm serves; the control arm usually names models/current")
    share: float = Field(gt=0, le=1)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_name("arm", value)


class Experiment(BaseModel):
    """One experiment; the first arm is the control."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    arms: list[Arm] = Field(min_length=2)
    salt: str = Field("", description="hash salt of the assignment; empty = the experiment's name")
    primary_metric: Literal[PRIMARY_METRICS] = "task_completed"  # type: ignore[valid-type]
    stop: StopRule = StopRule()
    status: Literal["running", "stopped", "concluded"] = "running"
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    stopped_at: datetime | None = None
    stop_reason: str = ""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_name("experiment", value)

    @model_validator(mode="after")
    def _arms_add_up(self) -> Experiment:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}")
        total = sum(arm.share for arm in self.arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm shares must add up to 1 (they add up to {total:g})")
        return self

    @property
    def control(self) -> Arm:
        return self.arms[0]

    @property
    def running(self) -> bool:
        return self.status == "running"

    def arm_of(self, session_id: str) -> str:
        """The arm of ``session_id``: sticky (a pure function of salt and session) and split by the shares."""
        point = unit_hash(self.salt or self.name, session_id)
        edge = 0.0
        for arm in self.arms:
            edge += arm.share
            if point < edge:
                return arm.name
        return self.arms[-1].name  # rounding at the top edge

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)


def unit_hash(salt: str, key: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of ``salt`` and ``key`` (the first 8 bytes).

    >>> 0 <= unit_hash("exp", "s1") < 1, unit_hash("exp", "s1") == unit_hash("exp", "s1")
    (True, True)
    """
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ExperimentFileError(ValueError):
    """The experiment file exists but does not hold a valid experiment."""


def load_experiment(path: Path) -> Experiment | None:
    """The experiment in ``path``, or None when there is no file. Raises :class:`ExperimentFileError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ExperimentFileError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return Experiment.model_validate(json.loads(text))
    except Exception as error:
        raise ExperimentFileError(f"{path}: not a valid experiment: {error}") from None


def save_experiment(path: Path, experiment: Experiment) -> None:
    """Write ``experiment`` to ``path`` atomically (a temporary file in the same folder, then one rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(experiment.model_dump_json(indent=2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
