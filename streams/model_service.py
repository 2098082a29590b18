"""The model in service, and its hot reload.

``settings.model.package_path`` names a model package folder or a registry's ``current`` link
(``nlumon model promote`` swaps that link with one rename). ``ModelService.poll`` notices when the
path resolves somewhere new, loads the new package beside the old one (hashes verified by
``load_runtime``), runs a smoke prediction, and only then becomes the new model; the agent swaps
between batches, so every row names the version that really produced it. A package that fails to
load or check is logged and counted, and the old model keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.reference import DEFAULT_OOD_FPR, ood_threshold_of
from nlumon.settings import ModelSettings

log = logging.getLogger(__name__)

SMOKE_TEXTS = ("add two cartons of milk to my cart", "is jordan on shift tomorrow")


def limit_blas_threads(threads: int) -> None:
    """Cap numpy/scipy's BLAS thread pool for this process (0 leaves it alone).

    The worker's own matrix work is small (Mahalanobis scores and sketches of 64 embeddings), but OpenBLAS
    threads busy-wait after every call, and on a small machine they take cores from ONNX Runtime's next batch:
    on 2 cores ``BatchPipeline.process`` cost 2.2 ms per utterance with 2 BLAS threads and 1.6 ms with 1, for
    a model that alone takes 1.5 ms."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


class ModelUnavailableError(RuntimeError):
    """No usable model package at the configured path."""


@dataclass(frozen=True)
class LoadedModel:
    runtime: Any  # model_runtime.runtime.Runtime
    path: Path  # the resolved package folder
    version: str
    backend: str
    reference: Any  # model_runtime.reference.ReferenceStats, loaded once
    ood_threshold: float
    # the labels of each extra head: the routing policy then knows both probabilities of a binary head
    head_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def ood_scores(self, embeddings: np.ndarray) -> np.ndarray:
        return self.reference.mahalanobis(embeddings)

    def sketches(self, embeddings: np.ndarray) -> np.ndarray:
        return self.reference.sketch(embeddings)


class ModelService:
    """Loads the configured package and hot-reloads a newly promoted one."""

    def __init__(self, settings: ModelSettings, *, ood_fpr: float = DEFAULT_OOD_FPR) -> None:
        self.settings = settings
        self.ood_fpr = ood_fpr
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()
        self._last_failed: Path | None = None

    def resolved_path(self) -> Path | None:
        path = Path(self.settings.package_path)
        return path.resolve() if path.exists() else None

    def load(self, path: Path) -> LoadedModel:
        """Load and smoke-test the package at ``path`` (not yet in service)."""
        from model_runtime.runtime import load_runtime

        runtime = load_runtime(
            path, self.settings.backend, allow_cpu_fallback=self.settings.allow_cpu_fallback,
            intra_op_threads=self.settings.intra_op_threads,
            spin_wait=self.settings.spin_wait, sub_batch=self.settings.sub_batch,
        )
        try:
            predictions = runtime.predict(list(SMOKE_TEXTS))
            if len(predictions) != len(SMOKE_TEXTS) or not all(np.isfinite(p.confidence) for p in predictions):
                raise ModelUnavailableError(f"package {path} failed its smoke prediction")
            reference = runtime.package.reference()
            model = LoadedModel(runtime, path, runtime.model_version, runtime.backend, reference,
                                ood_threshold_of(runtime.package, reference, self.ood_fpr),
                                {head.name: tuple(head.labels) for head in runtime.package.config.heads})
        except Exception:
            runtime.close()
            raise
        return model

    def start(self) -> LoadedModel:
        path = self.resolved_path()
        if path is None:
            raise ModelUnavailableError(
                f"no model package at {self.settings.package_path}: train one with "
                "`nlumon model train --quick --out models/quick` and promote it, or set NLUMON_MODEL__PACKAGE_PATH"
            )
        self.current = self.load(path)
        log.info("serving model %s from %s (%s)", self.current.version, path, self.current.backend)
        return self.current

    def poll(self) -> LoadedModel | None:
        """Load a newly promoted package if there is one; return it once it is ready, else None."""
        path = self.resolved_path()
        if path is None or self.current is None or path == self.current.path or path == self._last_failed:
            return None
        started = time.perf_counter()
        try:
            candidate = self.load(path)
        except Exception as error:
            self._last_failed = path
            log.error("new model package at %s was NOT loaded (still serving %s): %s", path,
                      self.current.version, error)
            raise
        log.info("loaded model %s from %s in %.1f s; swapping after the current batch",
                 candidate.version, path, time.perf_counter() - started)
        return candidate

    def swap(self, candidate: LoadedModel) -> LoadedModel:
        """Put ``candidate`` in service (call between batches); the old runtime is closed."""
        with self._lock:
            old, self.current = self.current, candidate
        if old is not None:
            old.runtime.close()
        return candidate
