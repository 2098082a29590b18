"""Which model answers which utterance: the champion, an experiment's arms, and a shadow challenger.

A worker always serves the champion (``model.package_path``, hot-reloaded by ``streams.model_service``). Two more
things can be configured while it runs, and this module keeps their models:

- a **session A/B experiment** (``experiments.path``, written by ``nlumon experiment start``): while it runs, each
  session is served by the package of its arm (``experiments.definition.Experiment.arm_of``: sticky by a hash of
  the session id), and every row records the experiment and the arm. An arm that names the champion's own path
  (``model.package_path``, the usual control: ``models/current``) is served by the champion itself, so a
  promotion during the experiment reaches that arm too; an arm that names a version folder keeps that version.
- a **shadow challenger** (``shadow.package_path``): a package that also scores a share of the traffic
  (``shadow.share``, by a hash of the session id, so a session is shadowed whole) and whose answers are stored in
  ``shadow_predictions`` beside the served answer. It never changes what is published.

:class:`Challengers` reads both (the experiment file every ``experiments.poll_s``), loads the packages that are
new in a thread (beside the ones in service, like a hot reload) and hands over a new :class:`Lineup`; the agent
swaps it in the model thread between two batches, then closes the runtimes nothing uses any more. A package that
fails to load is logged and the previous line-up keeps serving; an experiment file that does not parse is logged
and treated as no change.

:class:`Serving` is what one batch sees: the champion of that moment plus the line-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from experiments.definition import Experiment, ExperimentFileError, load_experiment, unit_hash
from nlumon.settings import Settings
from streams.model_service import LoadedModel, ModelService

log = logging.getLogger(__name__)

SHADOW_SALT = "nlumon-shadow"
RETRY_FAILED_S = 60.0  # a challenger package that failed to load is tried again after this


@dataclass(frozen=True)
class Lineup:
    """The models beside the champion: a running experiment's arms and a shadow challenger.

    ``arms`` maps an arm name to its model, or to None for an arm that the champion serves."""

    experiment: Experiment | None = None
    arms: Mapping[str, LoadedModel | None] = field(default_factory=dict)
    shadow: LoadedModel | None = None
    shadow_share: float = 1.0

    def models(self) -> list[LoadedModel]:
        """Every model this line-up holds (each once)."""
        found = {id(m): m for m in [*self.arms.values(), self.shadow] if m is not None}
        return list(found.values())


@dataclass(frozen=True)
class Serving:
    """What answers one batch."""

    champion: LoadedModel
    lineup: Lineup = Lineup()

    @property
    def experiment(self) -> Experiment | None:
        experiment = self.lineup.experiment
        return experiment if experiment is not None and experiment.running else None

    def arm_of(self, session_id: str) -> str:
        """The session's arm in the running experiment ('' when none runs)."""
        experiment = self.experiment
        return experiment.arm_of(session_id) if experiment is not None else ""

    def model_of_arm(self, arm: str) -> LoadedModel:
        """The model that serves ``arm`` ('' = outside an experiment: the champion)."""
        model = self.lineup.arms.get(arm) if arm else None
        return model if model is not None else self.champion

    def shadowed(self, session_id: str) -> bool:
        """Does the shadow challenger also score this session's utterances?"""
        if self.lineup.shadow is None or self.lineup.shadow_share <= 0:
            return False
        return self.lineup.shadow_share >= 1 or unit_hash(SHADOW_SALT, session_id) < self.lineup.shadow_share


class Challengers:
    """Keeps the :class:`Lineup` in line with the settings and the experiment file.

    ``refresh`` runs in a worker thread (it may load packages); ``adopt`` in the model thread (between batches).
    """

    def __init__(self, settings: Settings, champion: ModelService) -> None:
        self.settings = settings
        self.champion = champion
        self.experiment_path = settings.experiments.resolved_path(settings.model.package_path)
        self.lineup = Lineup(shadow_share=settings.shadow.share)
        self._failed: dict[Path, float] = {}  # package -> when it failed to load (retried after RETRY_FAILED_S)
        self._last_experiment_error = ""
        self._warned_shadow: Path | None = None

    def refresh(self) -> tuple[Lineup, list[LoadedModel]] | None:
        """A new line-up and the models the old one held that it no longer needs; None when nothing changed, or
        when a package of the new line-up cannot be loaded (then the old one keeps serving)."""
        experiment = self._read_experiment()
        running = experiment if experiment is not None and experiment.running else None
        arms = {arm.name: self._arm_path(arm.package_path) for arm in running.arms} if running else {}
        shadow = self._resolve(self.settings.shadow.package_path)
        if shadow is not None and shadow == self._champion_path():
            if shadow != self._warned_shadow:
                log.warning("the shadow package %s is the champion itself: nothing to compare, no shadow", shadow)
            self._warned_shadow, shadow = shadow, None
        if not self._changed(running, arms, shadow):
            return None
        in_service = {m.path: m for m in self.lineup.models()}  # resolved package folder -> model
        loaded: dict[Path, LoadedModel] = {}
        for path in sorted({*arms.values(), shadow} - {None}):  # in path order: the same order every time
            model = in_service.get(path) or self._load(path)
            if model is None:  # cannot serve this line-up: close what this call loaded, keep the old one
                for fresh in loaded.values():
                    if in_service.get(fresh.path) is not fresh:
                        fresh.runtime.close()
                return None
            loaded[path] = model
        lineup = Lineup(
            experiment=running,
            arms={name: loaded[path] if path is not None else None for name, path in arms.items()},
            shadow=loaded[shadow] if shadow is not None else None,
            shadow_share=self.settings.shadow.share,
        )
        kept = {id(m) for m in lineup.models()}
        retired = [m for m in self.lineup.models() if id(m) not in kept]
        return lineup, retired

    def adopt(self, lineup: Lineup) -> Lineup:
        """Put ``lineup`` in service (call in the model thread, between batches)."""
        self.lineup = lineup
        experiment = lineup.experiment
        if experiment is not None:
            log.info("experiment %s running: arms %s", experiment.name,
                     ", ".join(f"{arm.name}={self.describe(lineup.arms.get(arm.name))} ({arm.share:.0%})"
                               for arm in experiment.arms))
        else:
            log.info("no experiment running")
        if lineup.shadow is not None:
            log.info("shadow challenger %s scores %.0f%% of sessions", lineup.shadow.version,
                     100 * lineup.shadow_share)
        return lineup

    def describe(self, model: LoadedModel | None) -> str:
        return model.version if model is not None else "champion"

    # -- helpers ---------------------------------------------------------------------------------------

    def _champion_path(self) -> Path | None:
        current = self.champion.current
        return current.path if current is not None else None

    def _read_experiment(self) -> Experiment | None:
        try:
            experiment = load_experiment(self.experiment_path)
        except ExperimentFileError as error:
            if str(error) != self._last_experiment_error:
                log.error("experiment file not read (the line-up stays as it is): %s", error)
            self._last_experiment_error = str(error)
            return self.lineup.experiment
        self._last_experiment_error = ""
        return experiment

    @staticmethod
    def _resolve(path: Path | None) -> Path | None:
        if path is None:
            return None
        path = Path(path)
        return path.resolve() if path.exists() else path

    def _arm_path(self, path: Path) -> Path | None:
        """The package folder an arm serves, or None when the arm names the champion's own path (usually
        ``models/current``): the champion serves it, and a promotion reaches it. An arm that names a version
        folder keeps that version, even when it is the champion of the moment."""
        if Path(path).absolute() == Path(self.settings.model.package_path).absolute():
            return None
        return self._resolve(path)

    def _changed(self, running: Experiment | None, arms: dict[str, Path | None], shadow: Path | None) -> bool:
        old = self.lineup
        if old.experiment != running:
            return True
        if {name: (m.path if m is not None else None) for name, m in old.arms.items()} != arms:
            return True
        return (old.shadow.path if old.shadow is not None else None) != shadow

    def _load(self, path: Path) -> LoadedModel | None:
        failed_at = self._failed.get(path)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_S:
            return None
        try:
            model = self.champion.load(path)
        except Exception as error:  # logged; the old line-up keeps serving
            self._failed[path] = time.monotonic()
            log.error("challenger package at %s was NOT loaded (the line-up stays as it is): %s", path, error)
            return None
        log.info("loaded challenger %s from %s (%s)", model.version, path, model.backend)
        return model
