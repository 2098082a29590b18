"""Load the trained CRF (verified first) and tag tokens with per-token label probabilities.

The model is crfsuite's own binary format — weights and feature names, no code — next to a ``manifest.json``
that records its SHA-256, the feature version and how it was trained. :func:`load_model` reads the file once,
checks the digest and opens the checked bytes in memory (so the file cannot change between check and use),
and refuses a model built for other features. :func:`default_model` caches the shipped model per process.

:meth:`CRFModel.label_probabilities` gives, per token, the marginal probability of ``person``, ``time`` and
``O`` (B- and I- summed; ``O`` includes the auxiliary ``title`` and ``place``) from the CRF's forward-backward
pass.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pycrfsuite

from labeling.snips_tagger.corpus import ENTITY_TYPES, TAGS
from labeling.snips_tagger.features import FEATURE_VERSION, gazetteer_fingerprint, read_word, sentence_features

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_FILE = "snips_tagger.crfsuite"
MANIFEST_FILE = "manifest.json"
ENTITY_LABELS: tuple[str, ...] = ("person", "time", "O")


class ModelIntegrityError(RuntimeError):
    """The model file is missing, altered, or built for other features: retrain it or restore it from git."""


@dataclass(frozen=True)
class TokenProbabilities:
    """Marginal probabilities of one token's entity label; they sum to 1."""

    person: float
    time: float
    other: float

    def best(self) -> tuple[str, float]:
        """The most probable label (``person``, ``time`` or ``O``) and its probability."""
        return max((("person", self.person), ("time", self.time), ("O", self.other)), key=lambda pair: pair[1])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CRFModel:
    """A trained linear-chain CRF over :data:`~labeling.snips_tagger.corpus.TAGS`.

    crfsuite keeps the current sequence inside its tagger, so calls are serialised by a lock.
    """

    def __init__(self, model_bytes: bytes, manifest: dict) -> None:
        self.manifest = manifest
        self._lock = threading.Lock()
        self._model_bytes = model_bytes  # crfsuite reads the weights in place, without a copy: keep them alive
        self._tagger = pycrfsuite.Tagger()
        self._tagger.open_inmemory(model_bytes)
        self._labels = tuple(self._tagger.labels())
        unknown = set(self._labels) - set(TAGS)
        if unknown:
            raise ModelIntegrityError(f"model has labels {sorted(unknown)} outside {TAGS}")
        # Words with a learnt weight of their own (seen in training and kept by the L1 penalty).
        self.vocabulary = frozenset(attribute[2:] for attribute, _ in self._tagger.info().state_features
                                    if attribute.startswith("w="))

    def knows(self, token: str) -> bool:
        """Whether the model learnt a weight for this word itself (not only for its shape or neighbours)."""
        return read_word(token)[0] in self.vocabulary

    def tag(self, tokens: Sequence[str]) -> list[str]:
        """The most probable BIO tag sequence (Viterbi), ``person``/``time`` only (``title``/``place`` -> ``O``)."""
        if not tokens:
            return []
        features = sentence_features(tokens)
        with self._lock:
            tags = self._tagger.tag(features)
        return [tag if tag.partition("-")[2] in ENTITY_TYPES else "O" for tag in tags]

    def label_probabilities(self, tokens: Sequence[str]) -> list[TokenProbabilities]:
        """Per token, the marginal probability of each entity label (B- and I- summed)."""
        if not tokens:
            return []
        features = sentence_features(tokens)
        with self._lock:
            self._tagger.set(features)
            rows = [{tag: self._tagger.marginal(tag, index) for tag in self._labels} for index in range(len(tokens))]
        found = []
        for row in rows:
            person = row.get("B-person", 0.0) + row.get("I-person", 0.0)
            time = row.get("B-time", 0.0) + row.get("I-time", 0.0)
            found.append(TokenProbabilities(person, time, max(0.0, 1.0 - person - time)))
        return found


def read_manifest(model_dir: Path) -> dict:
    path = model_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelIntegrityError(f"cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ModelIntegrityError(f"{path} records no sha256 of the model file")
    return manifest


def load_model(model_dir: str | os.PathLike[str] | None = None) -> CRFModel:
    """Open a model folder (``model/`` next to this module by default) after verifying the model file."""
    folder = Path(model_dir) if model_dir is not None else MODEL_DIR
    manifest = read_manifest(folder)
    path = folder / manifest.get("model_file", MODEL_FILE)
    try:
        model_bytes = path.read_bytes()
    except OSError as error:
        raise ModelIntegrityError(f"cannot read {path}: {error}") from error
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != manifest["sha256"]:
        raise ModelIntegrityError(f"{path}: SHA-256 {digest} differs from {manifest['sha256']} in the manifest")
    if manifest.get("feature_version") != FEATURE_VERSION:
        raise ModelIntegrityError(f"{path} was trained with feature version {manifest.get('feature_version')}, "
                                  f"this code extracts version {FEATURE_VERSION}: retrain it")
    if manifest.get("gazetteer_sha256") not in (None, gazetteer_fingerprint()):
        log.warning("%s was trained with other name lists than nlumon.pii now has; it still works, but retrain "
                    "it (python -m labeling.snips_tagger.train) to use the current lists", path)
    return CRFModel(model_bytes, manifest)


@functools.cache
def default_model() -> CRFModel:
    """The shipped model, loaded and verified once per process."""
    return load_model()
