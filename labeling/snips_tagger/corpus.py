"""The shipped training data: SNIPS slot tags mapped onto the entity types the annotation loop votes on.

SNIPS (CC0 1.0) has 39 slot types; this labeling function needs two. A SNIPS slot becomes

- ``person`` when its value is a person's name: ``artist`` (singers, composers, bands too — SNIPS does not
  tell them apart) and the name inside ``playlist_owner`` ("add this song to *gretchen* s playlist"), whose
  other words — "my", the split possessive "s", "mother" — are no name and stay ``O``;
- ``time`` for ``timeRange`` ("tomorrow evening", "in one minute", "at 5 pm", "sunset");
- ``O`` for everything else, including ``year``, which SNIPS keeps apart from ``timeRange``.

Two groups of ``O`` keep a name of their own in the data, because they are what a person is most often
confused with: ``title`` (``album``, ``track``, ``playlist``, ``entity_name``, ``object_name``, ``movie_name``)
and ``place`` (cities, states, countries, points of interest, restaurant names). Were they plain ``O``, the
tagger would learn that a rare word is no entity unless a SNIPS cue ("by", "s playlist") says otherwise, and
would miss the colleagues' names of store logs, which come without those cues. The tagger learns the two
groups and reports them as ``O`` (:data:`AUXILIARY_TYPES`); they are never voted.

The mapped splits live in ``data/`` as gzip'ed JSON lines (``{"tokens": [...], "tags": [...]}``) with a
``SHA256SUMS`` file; :func:`load_split` refuses a file whose digest differs. :func:`prepare` rebuilds them from
the published corpus (``python -m labeling.snips_tagger.corpus --datasets DIR``, where ``DIR`` holds
``SHA256SUMS`` and ``snips/``), which is the only step that needs the corpus itself.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLITS: tuple[str, ...] = ("train", "dev", "test")
CHECKSUMS = "SHA256SUMS"
ENTITY_TYPES: tuple[str, ...] = ("person", "time")
AUXILIARY_TYPES: tuple[str, ...] = ("title", "place")  # learnt, reported as O
TITLE_SLOTS = ("album", "track", "playlist", "entity_name", "object_name", "movie_name")
PLACE_SLOTS = ("city", "state", "country", "geographic_poi", "poi", "location_name", "restaurant_name",
               "current_location")
#: SNIPS slot -> label; slots not listed are ``O``. ``playlist_owner`` keeps only its name words.
LABEL_OF_SNIPS_SLOT: dict[str, str] = {
    "artist": "person", "playlist_owner": "person", "timeRange": "time",
    **dict.fromkeys(TITLE_SLOTS, "title"), **dict.fromkeys(PLACE_SLOTS, "place"),
}
NOT_A_NAME = frozenset({"my", "your", "our", "his", "her", "their", "s", "'s", "mother", "father", "mom", "dad"})
TAGS: tuple[str, ...] = ("O", *(f"{p}-{kind}" for kind in ENTITY_TYPES + AUXILIARY_TYPES for p in "BI"))
Sentence = tuple[tuple[str, ...], tuple[str, ...]]  # (tokens, tags)


class CorpusIntegrityError(RuntimeError):
    """A shipped data file is missing or does not match ``data/SHA256SUMS``: restore it from version control."""


def map_tags(tokens: Sequence[str], snips_tags: Sequence[str]) -> list[str]:
    """SNIPS BIO tags -> BIO tags over :data:`TAGS` (see the module docstring).

    >>> map_tags("add frank farian to gretchen s playlist".split(),
    ...          ["O", "B-artist", "I-artist", "O", "B-playlist_owner", "I-playlist_owner", "O"])
    ['O', 'B-person', 'I-person', 'O', 'B-person', 'O', 'O']
    >>> map_tags("book it for tomorrow evening in 1990 in paris".split(),
    ...          ["O", "O", "O", "B-timeRange", "I-timeRange", "O", "B-year", "O", "B-city"])
    ['O', 'O', 'O', 'B-time', 'I-time', 'O', 'O', 'O', 'B-place']
    >>> map_tags(["my", "mother", "s"], ["B-playlist_owner", "I-playlist_owner", "I-playlist_owner"])
    ['O', 'O', 'O']
    """
    if len(tokens) != len(snips_tags):
        raise ValueError(f"{len(tokens)} tokens but {len(snips_tags)} tags")
    mapped: list[str] = []
    previous_kept_slot: str | None = None  # the SNIPS span whose last kept word is the previous token
    for token, tag in zip(tokens, snips_tags, strict=True):
        prefix, _, slot = tag.partition("-")
        label = LABEL_OF_SNIPS_SLOT.get(slot) if prefix in {"B", "I"} else None
        if label == "person" and slot == "playlist_owner" and token in NOT_A_NAME:
            label = None
        if label is None:
            mapped.append("O")
            previous_kept_slot = None
            continue
        continues = prefix == "I" and previous_kept_slot == slot
        mapped.append(f"{'I' if continues else 'B'}-{label}")
        previous_kept_slot = slot
    return mapped


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_split(sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> bytes:
    """Gzip'ed JSON lines, byte-for-byte reproducible (no file name or time in the gzip header)."""
    lines = "".join(json.dumps({"tokens": list(tokens), "tags": list(tags)}, ensure_ascii=False) + "\n"
                    for tokens, tags in sentences)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as packed:
        packed.write(lines.encode("utf-8"))
    return buffer.getvalue()


def decode_split(data: bytes) -> list[Sentence]:
    """The inverse of :func:`encode_split`.

    >>> decode_split(encode_split([(["play", "adele"], ["O", "B-person"])]))
    [(('play', 'adele'), ('O', 'B-person'))]
    """
    sentences = []
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        row = json.loads(line)
        sentences.append((tuple(row["tokens"]), tuple(row["tags"])))
    return sentences


def _recorded_sums(data_dir: Path) -> dict[str, str]:
    from model_runtime.data.integrity import DatasetIntegrityError, read_checksums  # the same SHA256SUMS format

    if not (data_dir / CHECKSUMS).is_file():
        raise CorpusIntegrityError(f"{data_dir / CHECKSUMS} is missing")
    try:
        return read_checksums(data_dir)
    except DatasetIntegrityError as error:
        raise CorpusIntegrityError(str(error)) from None


def load_split(split: str, data_dir: str | os.PathLike[str] | None = None) -> list[Sentence]:
    """The mapped sentences ``(tokens, tags)`` of one shipped split, after checking its SHA-256."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    folder = Path(data_dir) if data_dir is not None else DATA_DIR
    name = f"{split}.jsonl.gz"
    expected = _recorded_sums(folder).get(name)
    path = folder / name
    if expected is None or not path.is_file():
        raise CorpusIntegrityError(f"{path}: missing, or not listed in {folder / CHECKSUMS}")
    data = path.read_bytes()
    if _sha256(data) != expected:
        raise CorpusIntegrityError(f"{path}: SHA-256 {_sha256(data)} differs from the recorded {expected}")
    return decode_split(data)


def prepare(datasets: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] = DATA_DIR) -> dict[str, int]:
    """Map the published SNIPS splits (checksums verified) into ``data_dir``; returns sentences per split."""
    from model_runtime.data.snips import load_snips  # only this rebuild step needs the corpus

    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    counts, sums = {}, []
    for split in SPLITS:
        examples = load_snips(split, datasets)
        data = encode_split((example.tokens, map_tags(example.tokens, example.tags)) for example in examples)
        (folder / f"{split}.jsonl.gz").write_bytes(data)
        sums.append(f"{_sha256(data)}  {split}.jsonl.gz\n")
        counts[split] = len(examples)
    (folder / CHECKSUMS).write_text("".join(sums), encoding="utf-8")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labeling.snips_tagger.corpus",
        description="Rebuild labeling/snips_tagger/data/ from the published SNIPS corpus (person/time tags only).")
    parser.add_argument("--datasets", default=None,
                        help="folder holding SHA256SUMS and snips/ (default: $NLUMON_DATASETS)")
    parser.add_argument("--out", default=str(DATA_DIR), help="where to write the mapped splits (default: %(default)s)")
    args = parser.parse_args(argv)
    counts = prepare(args.datasets, args.out)
    print(json.dumps({"written": args.out, "sentences": counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
