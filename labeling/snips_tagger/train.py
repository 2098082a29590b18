"""Train the SNIPS person/time CRF from the shipped data: ``python -m labeling.snips_tagger.train --out DIR``.

crfsuite's L-BFGS is deterministic: the same sentences in the same order with the same settings give the same
model file, byte for byte. ``--seed`` drives everything random here: the names swapped into copies of the
person sentences (:func:`swap_names`), which tokens train without their neighbours (:func:`drop_context`), and
the subset when ``--limit`` trains on fewer sentences. It is recorded in the manifest, so a run is
reproducible end to end. The model is written next to a ``manifest.json`` that records
its SHA-256, which :func:`labeling.snips_tagger.tagger.load_model` checks before opening it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pycrfsuite
from tqdm import tqdm

from labeling.snips_tagger.corpus import TAGS, Sentence, load_split
from labeling.snips_tagger.features import FEATURE_VERSION, gazetteer_fingerprint, sentence_features
from labeling.snips_tagger.tagger import MANIFEST_FILE, MODEL_DIR, MODEL_FILE, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Chosen on the SNIPS dev split and on generated store text of another seed than the one reported (README)."""

    c1: float = 0.1
    c2: float = 0.01
    max_iterations: int = 150
    seed: int = 13
    limit: int | None = None  # train on this many sentences drawn with ``seed`` (all when None)
    name_copies: int = 1  # per sentence with a person, copies whose person words are other Census names
    context_dropout: float = 0.3  # share of training tokens that see only their own features


class _ProgressTrainer(pycrfsuite.Trainer):
    """Reports each L-BFGS iteration to a progress bar instead of crfsuite's own stdout log."""

    def __init__(self, bar: tqdm | None) -> None:
        super().__init__(verbose=False)
        self.bar = bar
        self.iterations = 0
        self.last_loss = float("nan")

    def message(self, message: str) -> None:
        # pycrfsuite's Trainer sets ``logparser`` before training; its events replace the printed log.
        if self.logparser.feed(message) != "iteration":
            return
        info = self.logparser.last_iteration
        self.iterations = int(info.get("num", self.iterations + 1))
        self.last_loss = float(info.get("loss", self.last_loss))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{self.last_loss:.1f}", features=info.get("active_features"))


def select(sentences: Sequence[Sentence], config: TrainingConfig) -> list[Sentence]:
    """All sentences, or ``config.limit`` of them drawn with ``config.seed`` (kept in corpus order).

    >>> corpus = [((str(i),), ("O",)) for i in range(10)]
    >>> select(corpus, TrainingConfig(limit=3, seed=1)) == select(corpus, TrainingConfig(limit=3, seed=1))
    True
    >>> len(select(corpus, TrainingConfig()))
    10
    """
    if config.limit is None or config.limit >= len(sentences):
        return list(sentences)
    chosen = sorted(random.Random(config.seed).sample(range(len(sentences)), config.limit))
    return [sentences[index] for index in chosen]


def swap_names(sentences: Sequence[Sentence], copies: int, rng: random.Random) -> list[Sentence]:
    """``copies`` variants of each sentence with a person, its person words replaced by Census names.

    SNIPS's people are musicians, many with stage names; store logs name colleagues. Swapping in names drawn
    from the Census lists teaches the model that a given name or surname in a person slot is the cue, not the
    particular artist.

    >>> swapped = swap_names([(("play", "adele"), ("O", "B-person"))], 2, random.Random(0))
    >>> [tokens[0] for tokens, _ in swapped], [tags for _, tags in swapped][0]
    (['play', 'play'], ('O', 'B-person'))
    """
    from nlumon.pii import given_names, surnames

    first_names, last_names = sorted(given_names()), sorted(surnames())
    variants: list[Sentence] = []
    for tokens, tags in sentences:
        if not any(tag.endswith("-person") for tag in tags):
            continue
        for _ in range(copies):
            words = list(tokens)
            for index, tag in enumerate(tags):
                if tag == "B-person":
                    words[index] = rng.choice(first_names)
                elif tag == "I-person":
                    words[index] = rng.choice(last_names)
            variants.append((tuple(words), tags))
    return variants


def drop_context(features: list[list[str]], share: float, rng: random.Random) -> list[list[str]]:
    """Keep only a token's own features for ``share`` of tokens, so that a word it knows counts without the
    SNIPS sentence around it (store logs put times and names in sentences SNIPS never had)."""
    if share <= 0:
        return features
    return [[f for f in token if not f.startswith(_CONTEXT_PREFIXES)] if rng.random() < share else token
            for token in features]


_CONTEXT_PREFIXES = ("w-", "w+", "f-", "f+", "w|w+1")


def train(sentences: Sequence[Sentence], out_dir: str | os.PathLike[str], config: TrainingConfig = TrainingConfig(),
          *, progress: bool = False) -> dict:
    """Train on ``sentences`` (``(tokens, tags)``), write the model and its manifest into ``out_dir``.

    Returns the manifest. The model is written under a temporary name and renamed, so a reader never sees half.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = select(sentences, config)
    rng = random.Random(config.seed)
    variants = swap_names(chosen, config.name_copies, rng)
    bar = tqdm(total=config.max_iterations, desc="L-BFGS", unit="it", disable=not progress)
    trainer = _ProgressTrainer(bar)
    for tokens, tags in tqdm([*chosen, *variants], desc="features", unit="sent", disable=not progress):
        unknown = set(tags) - set(TAGS)
        if unknown or len(tokens) != len(tags):
            raise ValueError(f"bad training sentence {tokens!r}: tags {tags!r}")
        trainer.append(drop_context(sentence_features(tokens), config.context_dropout, rng), list(tags))
    trainer.select("lbfgs")
    trainer.set_params({"c1": config.c1, "c2": config.c2, "max_iterations": config.max_iterations,
                        "feature.possible_transitions": True})
    partial = folder / f".{MODEL_FILE}.partial"
    started = time.perf_counter()
    trainer.train(str(partial))
    bar.close()
    seconds = time.perf_counter() - started
    os.replace(partial, folder / MODEL_FILE)
    manifest = {
        "model_file": MODEL_FILE,
        "sha256": sha256_file(folder / MODEL_FILE),
        "size_bytes": (folder / MODEL_FILE).stat().st_size,
        "format": "crfsuite",
        "tags": list(TAGS),
        "feature_version": FEATURE_VERSION,
        "gazetteer_sha256": gazetteer_fingerprint(),
        "training": {**asdict(config), "sentences": len(chosen), "name_variants": len(variants),
                     "iterations": trainer.iterations, "final_loss": round(trainer.last_loss, 3)},
        "source": "SNIPS (CC0 1.0), mapped to person/time: labeling/snips_tagger/data",
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("trained on %d sentences (+%d with swapped names) in %.1f s (%d iterations, final loss %.1f): %s",
             len(chosen), len(variants), seconds, trainer.iterations, trainer.last_loss, folder / MODEL_FILE)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(
        prog="python -m labeling.snips_tagger.train",
        description="Train the SNIPS person/time CRF labeling function from the shipped data "
                    "(labeling/snips_tagger/data/train.jsonl.gz). Deterministic: same data and flags, same model.")
    parser.add_argument("--out", default=str(MODEL_DIR),
                        help="folder for the model and manifest (default: %(default)s)")
    parser.add_argument("--c1", type=float, default=defaults.c1, help="L1 weight (default: %(default)s)")
    parser.add_argument("--c2", type=float, default=defaults.c2, help="L2 weight (default: %(default)s)")
    parser.add_argument("--max-iterations", type=int, default=defaults.max_iterations,
                        help="L-BFGS iterations at most (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed for --limit (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="train on this many sentences (default: all)")
    parser.add_argument("--name-copies", type=int, default=defaults.name_copies,
                        help="copies of each person sentence with Census names swapped in (default: %(default)s)")
    parser.add_argument("--context-dropout", type=float, default=defaults.context_dropout,
                        help="share of tokens trained without neighbour features (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainingConfig(args.c1, args.c2, args.max_iterations, args.seed, args.limit, args.name_copies,
                            args.context_dropout)
    log.info("training %s", config)
    started = time.perf_counter()
    manifest = train(load_split("train"), args.out, config, progress=not args.quiet)
    log.info("done in %.1f s; model %s bytes, sha256 %s", time.perf_counter() - started, manifest["size_bytes"],
             manifest["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
