"""Serving runtime: one interface over several backends, chosen by a string. Never imports torch.

    runtime = load_runtime(Path("models/current"), backend="onnx-int8", intra_op_threads=2)
    predictions = runtime.predict(["add two jordans to my cart", "is jordan on shift tomorrow"])
    runtime.providers   # what really ran, e.g. ('CPUExecutionProvider',)

Backends: ``onnx-cpu`` (fp32), ``onnx-int8`` (dynamic int8), ``onnx-cuda`` (fp32 on the CUDA
provider of onnxruntime-gpu), ``torch-cuda`` (fp16 + CUDA graphs, :mod:`model_runtime.runtime_torch`).
A GPU backend that cannot get a GPU raises :class:`ProviderFallbackError` instead of quietly running
on CPU, unless ``allow_cpu_fallback=True`` (then ``providers`` says CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from model_runtime.encoding import EncodedBatch, WordpieceEncoder, whitespace_words
from model_runtime.package import ModelPackage, load_package
from model_runtime.predictions import SlotDecoder, SlotSpan, UtterancePrediction, build_predictions

__all__ = [
    "BACKENDS",
    "ProviderFallbackError",
    "Runtime",
    "SlotSpan",
    "UnknownBackendError",
    "UtterancePrediction",
    "load_runtime",
]

log = logging.getLogger(__name__)
BACKENDS = ("onnx-cpu", "onnx-int8", "onnx-cuda", "torch-cuda")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Per backend: utterances per engine call, and what padded lengths are rounded up to. On CPU a micro-batch
# of short utterances pads mostly [PAD] (retail traffic: 9 tokens on average, a batch of 64 pads to 16-24),
# so it is cut into length-sorted sub-batches padded exactly: 1.2-1.4x the utterances/s of one padded call
# of 64 (benchmarks/runtime.py, its sub_batches rows). GPUs want big calls and few shapes (CUDA graphs, kernels).
SUB_BATCH = {"onnx-cpu": 32, "onnx-int8": 32, "onnx-cuda": 64, "torch-cuda": 64}
PAD_MULTIPLE = {"onnx-cpu": 1, "onnx-int8": 1, "onnx-cuda": 8, "torch-cuda": 8}


class ProviderFallbackError(RuntimeError):
    """A GPU backend was asked for but the session would run on CPU."""


class UnknownBackendError(ValueError):
    """The backend string is not one of :data:`BACKENDS`."""


class Backend(Protocol):
    """What a runtime backend does: padded ids in, named numpy outputs out."""

    providers: tuple[str, ...]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class OrtBackend:
    """An ONNX Runtime session over one of the package's ONNX files."""

    def __init__(
        self, onnx_path: Path, providers: Sequence[str], intra_op_threads: int = 0, spin_wait: bool = False
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1  # the graph is a chain; extra inter-op threads only contend
        # Busy-waiting intra-op threads keep every core at 100 % between ops. Beside a Kafka broker, ClickHouse
        # and the worker's own event loop on 2 cores that stole ~17 % of the pipeline's throughput
        # (benchmarks/stream.py: 185 -> 224 utt/s with spinning off; the bare model is as fast either way).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=list(providers))
        self.providers = tuple(self.session.get_providers())
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {"input_ids": input_ids, "attention_mask": attention_mask})
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


@dataclass
class Runtime:
    """Predicts with one model package on one backend; safe to call from one thread at a time per instance."""

    package: ModelPackage
    backend: str
    engine: Backend
    sub_batch: int = 64  # utterances per engine call
    pad_multiple: int = 8  # padded lengths are rounded up to a multiple of this
    _encoder: WordpieceEncoder = field(init=False, repr=False)
    _decoder: SlotDecoder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._encoder = WordpieceEncoder(self.package.tokenizer_file, self.package.config.max_length,
                                         pad_multiple=self.pad_multiple)
        self._decoder = SlotDecoder(self.package.config.slot_tags)

    @property
    def model_version(self) -> str:
        return self.package.version

    @property
    def providers(self) -> tuple[str, ...]:
        return self.engine.providers

    def predict(self, texts: Sequence[str]) -> list[UtterancePrediction]:
        """Predictions in input order. Texts are sorted by length and cut into ``sub_batch``-sized engine calls,
        so each call pads to similar lengths."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[UtterancePrediction | None] = [None] * len(texts)
        for start in range(0, len(order), self.sub_batch):
            indices = order[start : start + self.sub_batch]
            batch_texts = [texts[i] for i in indices]
            for index, prediction in zip(indices, self._predict_batch(batch_texts), strict=True):
                results[index] = prediction
        return results  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        return self._encoder.encode_words([[w.text for w in whitespace_words(t)] for t in texts])

    def raw_outputs(self, texts: Sequence[str]) -> Mapping[str, np.ndarray]:
        """The backend's raw outputs for one batch (for benchmarks and parity checks)."""
        encoded = self.encode(texts)
        return self.engine.run(encoded.input_ids, encoded.attention_mask)

    def _predict_batch(self, texts: Sequence[str]) -> list[UtterancePrediction]:
        words = [whitespace_words(t) for t in texts]
        encoded = self._encoder.encode_words([[w.text for w in ws] for ws in words])
        outputs = self.engine.run(encoded.input_ids, encoded.attention_mask)
        return build_predictions(
            texts, words, encoded, outputs, self.package.config, self.package.temperature, self._decoder
        )

    def close(self) -> None:
        self.engine.close()


def _onnx_engine(
    package: ModelPackage, backend: str, allow_cpu_fallback: bool, threads: int, spin_wait: bool = False
) -> OrtBackend:
    import onnxruntime as ort

    if backend == "onnx-cuda":
        available = ort.get_available_providers()
        # ask only for what is installed: ORT would warn and drop the rest anyway; get_providers() tells the truth
        wanted = [p for p in ("CUDAExecutionProvider",) if p in available]
        engine = OrtBackend(package.onnx_path("fp32"), [*wanted, "CPUExecutionProvider"], threads, spin_wait)
        if not any(p in GPU_PROVIDERS for p in engine.providers):
            message = (
                f"backend onnx-cuda asked for, but ONNX Runtime runs on {engine.providers} (available: {available})"
            )
            if not allow_cpu_fallback:
                engine.close()
                raise ProviderFallbackError(message + "; install onnxruntime-gpu or pass allow_cpu_fallback=True")
            log.warning("%s; falling back to CPU as allowed", message)
        return engine
    variant = "int8" if backend == "onnx-int8" else "fp32"
    return OrtBackend(package.onnx_path(variant), ["CPUExecutionProvider"], threads, spin_wait)


def load_runtime(
    package_dir: Path,
    backend: str = "onnx-cpu",
    *,
    allow_cpu_fallback: bool = False,
    intra_op_threads: int = 0,
    spin_wait: bool = False,
    sub_batch: int = 0,
) -> Runtime:
    """Load and verify a model package and open it on ``backend`` (see :data:`BACKENDS`). ``spin_wait`` lets ONNX
    Runtime's threads busy-wait between ops (a little faster on an otherwise idle machine); ``sub_batch`` is the
    most utterances per engine call (0 = the backend's :data:`SUB_BATCH`)."""
    if backend not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    package = load_package(Path(package_dir))
    engine: Backend
    if backend == "torch-cuda":
        from model_runtime.runtime_torch import torch_cuda_engine  # imports torch only for this backend

        engine = torch_cuda_engine(package, allow_cpu_fallback=allow_cpu_fallback, intra_op_threads=intra_op_threads)
    else:
        engine = _onnx_engine(package, backend, allow_cpu_fallback, intra_op_threads, spin_wait)
    return Runtime(package=package, backend=backend, engine=engine, sub_batch=sub_batch or SUB_BATCH[backend],
                   pad_multiple=PAD_MULTIPLE[backend])
