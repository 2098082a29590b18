"""Tiny model packages for tests: a 2-layer random-init BERT with the real MiniLM tokenizer.

Building one takes a few seconds on 2 cores, so unit tests of any package (streams, detectors) can
run the real ONNX runtime on a real package without the 90 MB encoder. Imports torch.

    package_dir = tiny_package(tmp_path / "pkg")          # trained a few steps on generated retail data
    runtime = load_runtime(package_dir)                    # serves like any package
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from model_runtime.encoding import TOKENIZER_FILE
from model_runtime.package import TOKENIZER_FILES

TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """Write a random-init tiny BERT (HF format) plus the bundled tokenizer files into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    from model_runtime.model import default_encoder_path

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / TOKENIZER_FILE).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, **TINY_BERT), add_pooling_layer=False).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        source = default_encoder_path() / name
        if source.is_file():
            shutil.copy2(source, folder / name)
    return folder


def tiny_package(
    out_dir: Path, *, size: int = 300, epochs: float = 1.0, seed: int = 0, encoder_dir: Path | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    """Train the tiny encoder briefly on generated retail data (plus ``extra`` example files) into a package."""
    from model_runtime.config import TrainConfig
    from model_runtime.pipeline import TrainRequest, default_model_config, train_to_package

    out_dir = Path(out_dir)
    encoder = tiny_encoder(encoder_dir or out_dir.parent / f".{out_dir.name}.encoder", seed)
    request = TrainRequest(corpus="retail", size=size, epochs=epochs, seed=seed, device="cpu", max_length=32,
                           extra=tuple(str(path) for path in extra))
    model_config = replace(default_model_config(request), encoder=str(encoder))
    train_config = TrainConfig(
        epochs=epochs,
        batch_size=32,
        learning_rate=1e-3,
        seed=seed,
        device="cpu",
        grad_cosine_every=0,
        checkpoint_every=0,
    )
    train_to_package(request, out_dir, model_config=model_config, train_config=train_config, progress=False)
    return out_dir


def _source_key() -> str:
    """Hash of model_runtime's Python sources and data files: a cached package is rebuilt when they change."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".jsonl") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_tiny_package(cache_root: Path | None = None) -> Path:
    """A tiny package built once per source version and shared by test files (file-locked). Treat as read-only."""
    import fcntl
    import tempfile

    root = Path(cache_root or Path(tempfile.gettempdir()) / "nlumon-test-packages")
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"tiny-{_source_key()}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes must not build into the same folder
        if not (target / "manifest.json").is_file():
            tiny_package(target)
    return target
