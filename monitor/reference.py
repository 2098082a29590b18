"""What the monitor compares a window with: fitted detector suites, built once per model version and period.

Three references (``monitor.reference``):

- ``package``: the model package's reference statistics. Rows are the held-out (dev) sample whose embeddings
  the package keeps (features, 32-d sketch, Mahalanobis OOD score, all aligned; older packages: the training
  sample); the predicted intent mix is drawn from the package's per-assistant mixes, whatever assistants the
  package's examples carry (``shopper``/``associate`` for retail, one ``snips`` or ``clinc150`` assistant for
  those corpora, any other names). Packages that keep per-row columns for that sample (``<split>/assistant``,
  ``intent``, ``slot_types``, ``slot_confidences``; see ``model_runtime.reference``) give each row its assistant,
  its predicted intent and its slots instead, so the suite scores every detector — slot-type mix and slot
  confidence included — per assistant, as it does with the ClickHouse references. Older packages have no
  per-row assistant or slot column: the reference then scores drift of the whole traffic only, without the slot
  detectors (per-assistant OOD rate and accuracy are still computed), and the provider logs it once per version.
- ``rolling``: predictions of the same model version stored in ClickHouse over the ``rolling_days`` before
  the window's day (rebuilt once a day).
- ``seasonal``: predictions of the same model version, same hour one week earlier (± one hour).

ClickHouse references are bounded to ``reference_rows`` rows and fall back to the package when they hold
too few rows (a fresh install has no history). The OOD threshold and the reference accuracy always come from
the package, so ``is_ood`` means the same in the worker and in the monitor, and so does the slot-value
vocabulary (:attr:`Reference.vocabulary`, None for packages built before it) that the unseen-value detector
compares with. A reference that cannot be had raises :class:`ReferenceUnavailableError` (no package) or
:class:`NotEnoughReferenceError` (too few rows to calibrate on); the job stores such a window as ``not_scored``
with the message as its reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.slot_values import SlotValueVocabulary
from detectors.suite import MonitorSuite
from monitor.storage import WINDOW_COLUMNS, read_predictions

log = logging.getLogger(__name__)

MIN_REFERENCE_ROWS = 200  # a ClickHouse reference with fewer rows falls back to the package
MIN_PACKAGE_ROWS = 20  # below this the package's sample cannot calibrate a window (fit_suite's 10-row floor x 2)
SEASON = timedelta(days=7)
FAILURE_TTL_S = 30.0  # a reference that failed to build is not rebuilt for every window of one run


class ReferenceUnavailableError(RuntimeError):
    """No model package to take the reference (or the OOD threshold) from."""

    code = "no_reference"


class NotEnoughReferenceError(ReferenceUnavailableError):
    """The reference has too few rows to calibrate the detectors on."""

    code = "reference_too_small"


@dataclass(frozen=True)
class Reference:
    """A fitted suite and the rows it was fitted on (for the Evidently report)."""

    suite: MonitorSuite
    rows: pd.DataFrame
    kind: str  # package | rolling | seasonal | package (fallback)
    window_size: int  # rows per window the thresholds were calibrated for: read this many
    vocabulary: SlotValueVocabulary | None = None  # the package's slot values seen in training (None: too old)


def package_dir_for(package_path: Path, model_version: str) -> Path:
    """The package of ``model_version``: a sibling folder of the registry's ``current`` link, else the
    configured package (a window served by an older version that is no longer on disk uses the current one)."""
    from model_runtime.package import is_valid_version  # a version read from rows must not be a path

    sibling = Path(package_path).parent / model_version
    if model_version and is_valid_version(model_version) and (sibling / "manifest.json").is_file():
        return sibling
    return Path(package_path)


def package_stats(package: Any, reference: Any, ood_fpr: float) -> dict[str, float]:
    """The OOD threshold the worker applies and the package's measured intent accuracy."""
    from model_runtime.reference import ood_threshold_of

    stats = {"ood_threshold": ood_threshold_of(package, reference, ood_fpr)}
    accuracy = package.metrics.get("onnx-cpu", {}).get("intent_accuracy")
    if accuracy is not None:
        stats["accuracy"] = float(accuracy)
    return stats


def package_rows(package: Any, reference: Any, seed: int = 0) -> pd.DataFrame:
    """Reference rows from the package: the held-out sample with embeddings (older packages: the training one)."""
    from model_runtime.reference import FEATURES

    # Held-out (dev) rows when the package has them: they look like live traffic; training rows are
    # over-confident and sit close to the intent means, so they make every live window look drifted.
    split = "dev" if "dev/embedding_sample" in reference.arrays else "train"
    embeddings = np.asarray(reference.arrays[f"{split}/embedding_sample" if split == "dev" else "embedding_sample"],
                            dtype=np.float32)
    n = min(len(embeddings), *(len(reference.values(f, split)) for f in FEATURES))
    frame = pd.DataFrame({feature: reference.values(feature, split)[:n].astype(float) for feature in FEATURES})
    frame["ood_score"] = reference.mahalanobis(embeddings[:n])
    frame["embedding_sketch"] = list(reference.sketch(embeddings[:n]))
    columns = _row_columns(reference, split, n)
    if columns is not None:  # each row's own assistant, predicted intent and slots
        for name, column in columns.items():
            frame[name] = column
        return frame
    intents = _draw_intents(package, reference, n, seed)
    if intents is not None:
        frame["intent"] = intents
    else:  # no intent mix in the package: the other detectors still run, chi2 on the intent mix does not
        log.warning("package %s has no predicted-intent mix: the intent-mix drift test is off",
                    getattr(package, "version", "?"))
    return frame


def _row_columns(reference: Any, split: str, n: int) -> dict[str, list[Any]] | None:
    """The first ``n`` rows of the package's per-row columns; None when it keeps none (older packages) or they do
    not line up with the ``n`` feature rows (then the package is read like an older one, with a warning)."""
    has_rows = getattr(reference, "has_rows", None)
    if not callable(has_rows) or not has_rows(split):
        return None
    try:
        columns = reference.row_columns(split)
    except KeyError as error:  # ReferenceMissingError: arrays that do not line up
        log.warning("package reference rows ignored: %s", error)
        return None
    if any(len(column) < n for column in columns.values()):
        log.warning("package reference rows ignored: %d per-row values for %d feature rows",
                    min(len(column) for column in columns.values()), n)
        return None
    return {name: list(column[:n]) for name, column in columns.items()}


def _intent_mixes(reference: Any, split: str) -> dict[str, Mapping[str, float]]:
    """``{assistant: {intent: share}}`` of a split, for every assistant the package's examples carry
    (the split asked for, else any split that has one)."""
    splits = (getattr(reference, "summary", None) or {}).get("splits", {})
    for name in (split, *sorted(splits)):
        mixes = (splits.get(name) or {}).get("intent_mix") or {}
        mixes = {str(assistant): mix for assistant, mix in mixes.items() if mix}
        if mixes:
            return mixes
    return {}


def _draw_intents(package: Any, reference: Any, n: int, seed: int) -> np.ndarray | None:
    """Predicted intents drawn from the package's mix (dev split when it has held-out rows), over every
    assistant in it, each weighted by its test-set share (equal weights when the package lacks the counts);
    None when the package has no intent mix at all."""
    split = "dev" if "dev/embedding_sample" in reference.arrays else "train"
    mixes = _intent_mixes(reference, split)
    if not mixes or n <= 0:
        return None
    per_assistant = (getattr(package, "metrics", None) or {}).get("onnx-cpu", {}).get("per_assistant", {}) or {}
    counts = {assistant: float((per_assistant.get(assistant) or {}).get("n", 0) or 0) for assistant in mixes}
    if not all(count > 0 for count in counts.values()):
        counts = dict.fromkeys(mixes, 1.0)  # a partial count would weigh the others as if they had one example
    mix: dict[str, float] = {}
    for assistant, shares in mixes.items():
        total = float(sum(shares.values()))
        for intent, share in shares.items():
            if total > 0 and share > 0:
                mix[str(intent)] = mix.get(str(intent), 0.0) + counts[assistant] * float(share) / total
    if not mix:
        return None
    names = sorted(mix)
    shares = np.array([mix[name] for name in names])
    return np.random.default_rng(seed).choice(names, size=n, p=shares / shares.sum())


class ReferenceProvider:
    """Builds and caches one :class:`Reference` per (kind, model version, period)."""

    def __init__(
        self,
        kind: str,
        package_path: Path,
        *,
        fpr: float,
        ood_fpr: float,
        max_sample: int,
        rolling_days: int = 7,
        reference_rows: int = 5000,
        n_windows: int = 100,
        seed: int = 0,
        load_package: Callable[[Path], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if kind not in ("package", "rolling", "seasonal"):
            raise ValueError(f"unknown reference {kind!r}; use package, rolling or seasonal")
        self.kind = kind
        self.package_path = Path(package_path)
        self.fpr, self.ood_fpr, self.max_sample = fpr, ood_fpr, max_sample
        self.rolling_days, self.reference_rows = rolling_days, reference_rows
        self.n_windows, self.seed = n_windows, seed
        self._load_package = load_package or _load_package
        self._cache: dict[tuple, Reference] = {}
        self._failures: dict[tuple, tuple[float, Exception]] = {}  # key -> (when, error): not rebuilt at once
        self._clock = clock
        self._packages: dict[str, tuple[Any, Any, dict[str, float]]] = {}
        self._vocabularies: dict[str, SlotValueVocabulary | None] = {}
        self._told: set[tuple[str, str]] = set()  # (package version, what) logged once
        self._tracker: Any = None  # one cluster tracker across suites: clusters outlive a reference change

    def reference_for(self, client: Any, model_version: str, window_start: datetime) -> Reference:
        """The fitted reference for a window of ``model_version`` starting at ``window_start``."""
        period = self._period(window_start)
        key = (self.kind, model_version, period)
        if key not in self._cache:
            failed = self._failures.get(key)
            if failed is not None and self._clock() - failed[0] < FAILURE_TTL_S:
                raise failed[1]  # the same reference failed moments ago (an earlier window of this run)
            try:
                built = self._build(client, model_version, period)
            except Exception as error:
                now = self._clock()
                self._failures = {k: v for k, v in self._failures.items() if now - v[0] < FAILURE_TTL_S}
                self._failures[key] = (now, error)
                raise
            self._failures.pop(key, None)
            self._cache = {k: v for k, v in self._cache.items() if k[1] == model_version}  # keep memory flat
            self._cache[key] = built
        return self._cache[key]

    def _period(self, window_start: datetime) -> tuple[datetime, datetime] | None:
        if self.kind == "rolling":
            day = window_start.replace(hour=0, minute=0, second=0, microsecond=0)
            return day - timedelta(days=self.rolling_days), day
        if self.kind == "seasonal":
            hour = (window_start - SEASON).replace(minute=0, second=0, microsecond=0)
            return hour - timedelta(hours=1), hour + timedelta(hours=2)
        return None

    def _package(self, model_version: str) -> tuple[Any, Any, dict[str, float]]:
        if model_version not in self._packages:
            directory = package_dir_for(self.package_path, model_version)
            try:
                package = self._load_package(directory)
                reference = package.reference()
            except (OSError, KeyError, RuntimeError) as error:
                raise ReferenceUnavailableError(f"no usable model package at {directory}: {error}") from error
            if package.version != model_version:
                log.warning("window served by %s scored against package %s (that version is not on disk)",
                            model_version, package.version)
            self._packages[model_version] = (package, reference, package_stats(package, reference, self.ood_fpr))
        return self._packages[model_version]

    def _build(self, client: Any, model_version: str, period: tuple[datetime, datetime] | None) -> Reference:
        package, reference, stats = self._package(model_version)
        kind, rows, why = self.kind, None, ""
        if period is not None:
            # the same model version only: another model's confidences are not a reference for this one
            rows = read_predictions(client, period[0], period[1], self.reference_rows, WINDOW_COLUMNS,
                                    where="AND model_version = %(version)s", params={"version": model_version})
            if len(rows) < MIN_REFERENCE_ROWS:
                why = (f"{self.kind} reference {period[0]:%Y-%m-%d %H:%M}..{period[1]:%Y-%m-%d %H:%M} has "
                       f"{len(rows)} rows of {model_version} (< {MIN_REFERENCE_ROWS}); ")
                log.warning("%susing the package's", why)
                kind, rows = "package (fallback)", None
        if rows is None:
            try:
                rows = package_rows(package, reference, self.seed)
            except KeyError as error:  # ReferenceMissingError: a package without the arrays the monitor reads
                raise ReferenceUnavailableError(f"{why}package {package.version} has no usable reference: "
                                                f"{error}") from error
            if len(rows) < MIN_PACKAGE_ROWS:
                raise NotEnoughReferenceError(
                    f"{why}package {package.version} has {len(rows)} reference rows (< {MIN_PACKAGE_ROWS})")
            if "assistant" not in rows.columns:
                self._tell_once(package.version, "rows", "package %s keeps no per-row assistant or slot columns (built "
                                "before they were kept): drift is scored on the whole traffic only, without slot-mix "
                                "and slot-confidence drift; retrain to score them per assistant")
        suite, window_size = fit_suite(rows, stats, fpr=self.fpr, n_windows=self.n_windows, ood_fpr=self.ood_fpr,
                                       max_sample=self.max_sample, seed=self.seed)
        if self._tracker is not None:
            suite.tracker = self._tracker
        self._tracker = suite.tracker
        log.info("monitor reference %s for %s: %d rows, windows of %d rows", kind, model_version, len(rows),
                 window_size)
        return Reference(suite, rows, kind, window_size, self.vocabulary(model_version))

    def vocabulary(self, model_version: str) -> SlotValueVocabulary | None:
        """The slot-value vocabulary of ``model_version``'s package (None, logged once, for older packages)."""
        if model_version not in self._vocabularies:
            package, reference, _ = self._package(model_version)
            try:
                vocabulary = SlotValueVocabulary.from_summary(getattr(reference, "summary", None))
            except (TypeError, ValueError, KeyError, AttributeError) as error:  # a malformed section: like none
                log.error("package %s: slot-value vocabulary unreadable (%s: %s)", package.version,
                          type(error).__name__, error)
                vocabulary = None
            if vocabulary is None:
                self._tell_once(package.version, "vocabulary", "package %s has no slot-value vocabulary (built before "
                                "it was kept): unseen slot values are not scored; retrain to score them")
            self._vocabularies[model_version] = vocabulary
        return self._vocabularies[model_version]

    def _tell_once(self, version: str, what: str, message: str) -> None:
        if (version, what) not in self._told:
            self._told.add((version, what))
            log.warning(message, version)


def fit_suite(
    rows: pd.DataFrame, stats: dict[str, float], *, fpr: float, n_windows: int, ood_fpr: float, max_sample: int,
    seed: int = 0,
) -> tuple[MonitorSuite, int]:
    """The monitor's suite on reference ``rows``, and the window size it reads (at most ``max_sample`` rows).

    ``benchmarks/detection.py`` calls this too, so the benchmark scores exactly what the monitor runs.
    """
    window_size = max(10, min(max_sample, len(rows) // 2))
    suite = MonitorSuite.from_reference(
        rows, stats, window_size=window_size, fpr=fpr, n_windows=n_windows, ood_fpr=ood_fpr,
        max_sample=max_sample, seed=seed,
    )
    return suite, window_size


def _load_package(directory: Path) -> Any:
    from model_runtime.package import load_package

    # Verified like the worker's load: the reference statistics and the OOD threshold the windows are judged by
    # must be the ones the package was shipped with (hashing a package costs ~0.5 s, once per model version).
    return load_package(directory, verify=True)
