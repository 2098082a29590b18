"""SNIPS and CLINC150 loaders: published sizes, aligned labels, and checksum enforcement.

Tampering tests edit a copy under tmp_path; the shared files are read-only and never touched.
"""

from __future__ import annotations

import shutil
import stat
from collections import Counter
from pathlib import Path

import pytest

from model_runtime.data.bio import is_valid_bio
from model_runtime.data.clinc150 import OOS_INTENT, clinc150_domains, load_clinc150
from model_runtime.data.integrity import DATASETS_ENV, DatasetIntegrityError, datasets_root
from model_runtime.data.snips import load_snips, snips_labels
from tests.datasets import public_datasets

ROOT = public_datasets() or Path("/no-public-datasets")
pytestmark = pytest.mark.skipif(public_datasets() is None, reason=f"no public datasets (set ${DATASETS_ENV})")


@pytest.fixture(autouse=True)
def datasets_env(monkeypatch):
    """The loaders read $NLUMON_DATASETS when no root is given; there is no default folder."""
    monkeypatch.setenv(DATASETS_ENV, str(ROOT))


def writable_copy(tmp_path: Path, dataset: str) -> Path:
    """Copy SHA256SUMS and one dataset to tmp_path, with write permission (the originals are read-only)."""
    root = tmp_path / "datasets"
    shutil.copytree(ROOT / dataset, root / dataset)
    shutil.copy(ROOT / "SHA256SUMS", root / "SHA256SUMS")
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return root


@pytest.mark.parametrize(("split", "size"), [("train", 13084), ("dev", 700), ("test", 700)])
def test_snips_splits_have_the_published_sizes_and_seven_intents(split, size):
    examples = load_snips(split)
    assert len(examples) == size
    assert len({ex.intent for ex in examples}) == 7
    assert {ex.assistant for ex in examples} == {"snips"}


def test_snips_tokens_and_tags_line_up_despite_uneven_whitespace():
    train = load_snips("train")
    intents, tags = snips_labels()
    assert len(intents) == 7 and len(tags) == 72  # README: 72 BIO tags (39 slot types), O included
    assert set(intents) == {ex.intent for ex in train}
    for example in train:
        assert len(example.tokens) == len(example.tags)
        assert all(token == token.strip() and token for token in example.tokens)
        assert set(example.tags) <= set(tags)
    # The first line of train/seq.in is "listen to westbam alumb allergic on google music".
    assert train[0].tokens == ("listen", "to", "westbam", "alumb", "allergic", "on", "google", "music")
    assert train[0].intent == "PlayMusic"
    # Measured: every gold SNIPS tag sequence is valid BIO (no stray I-), so gold spans are unambiguous.
    assert all(is_valid_bio(ex.tags) for ex in train)


CLINC_SIZES = [("train", 15000, 100), ("val", 3000, 100), ("test", 4500, 1000)]


@pytest.mark.parametrize(("split", "in_scope", "oos"), CLINC_SIZES)
def test_clinc150_has_150_in_scope_intents_and_the_published_oos_counts(split, in_scope, oos):
    examples = load_clinc150(split)
    counts = Counter(ex.intent for ex in examples)
    assert counts.pop(OOS_INTENT) == oos
    assert len(counts) == 150 and sum(counts.values()) == in_scope
    assert all(set(ex.tags) == {"O"} and len(ex.tags) == len(ex.tokens) for ex in examples)
    without = load_clinc150(split, include_oos=False)
    assert len(without) == in_scope and OOS_INTENT not in {ex.intent for ex in without}


def test_clinc150_domains_cover_every_in_scope_intent():
    domains = clinc150_domains()
    assert len(set(domains.values())) == 10
    assert set(domains) == {ex.intent for ex in load_clinc150("val", include_oos=False)}


def test_a_tampered_copy_fails_the_checksum(tmp_path):
    root = writable_copy(tmp_path, "snips")
    assert len(load_snips("dev", root=root)) == 700  # the untouched copy loads
    label = root / "snips" / "dev" / "label"
    label.write_text(label.read_text().replace("PlayMusic", "PlayMovie", 1))
    with pytest.raises(DatasetIntegrityError, match="snips/dev/label"):
        load_snips("dev", root=root)


def test_a_missing_file_or_checksum_list_is_an_integrity_error(tmp_path):
    root = writable_copy(tmp_path, "clinc150")
    (root / "clinc150" / "domains.json").unlink()
    with pytest.raises(DatasetIntegrityError, match="missing"):
        load_clinc150("val", root=root)
    (root / "SHA256SUMS").unlink()
    with pytest.raises(DatasetIntegrityError, match="SHA256SUMS"):
        load_clinc150("val", root=root)


def test_the_root_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    assert datasets_root() == tmp_path
    assert datasets_root(ROOT) == ROOT
    with pytest.raises(DatasetIntegrityError):
        load_snips("dev")  # tmp_path has no SHA256SUMS
    monkeypatch.delenv(DATASETS_ENV)
    with pytest.raises(DatasetIntegrityError, match=DATASETS_ENV):  # no default folder, e.g. next to the checkout
        datasets_root()


def test_unknown_splits_are_rejected():
    with pytest.raises(ValueError, match="split"):
        load_snips("validation")
    with pytest.raises(ValueError, match="split"):
        load_clinc150("dev")


def test_the_clinc150_training_corpus_has_no_oos_label_and_a_subset_keeps_every_intent():
    from model_runtime.pipeline import load_corpus

    train, dev, test = load_corpus("clinc150", 0, 13)
    assert (len(train), len(dev), len(test)) == (15000, 3000, 4500)
    assert OOS_INTENT not in {ex.intent for split in (train, dev, test) for ex in split}
    subset, _, _ = load_corpus("clinc150", 1500, 13)
    assert len(subset) == 1500 and len({ex.intent for ex in subset}) == 150
