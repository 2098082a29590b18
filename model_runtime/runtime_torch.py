"""The ``torch-cuda`` backend: fp16 weights and one CUDA graph per (batch, length) bucket.

Imported only when that backend is asked for (it pulls in torch). Batches are padded up to a batch
bucket (1, 2, 4, ... 64) and the encoder already pads lengths to multiples of 8, so a few dozen graphs
cover all traffic; a graph replays a whole forward pass with one launch, which removes the Python and
kernel-launch overhead that dominates small batches of short utterances.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from model_runtime.model import JointModel, load_encoder, output_names
from model_runtime.package import ENCODER_CONFIG, TORCH_WEIGHTS, ModelPackage, PackageIntegrityError

log = logging.getLogger(__name__)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def load_torch_model(package: ModelPackage, device: str = "cpu") -> JointModel:
    """Rebuild the torch model from a package's encoder config + safetensors weights."""
    from safetensors.torch import load_file

    if not package.has_file(TORCH_WEIGHTS):
        raise PackageIntegrityError(package.path / TORCH_WEIGHTS, "package has no torch weights")
    encoder_config = json.loads((package.path / ENCODER_CONFIG).read_text())
    model = JointModel(package.config, load_encoder(encoder_config=encoder_config))
    model.load_state_dict(load_file(str(package.path / TORCH_WEIGHTS)))
    return model.to(device).eval()


class TorchCudaBackend:
    """fp16 forward passes replayed from CUDA graphs captured lazily per (batch bucket, length)."""

    def __init__(self, package: ModelPackage, use_graphs: bool = True) -> None:
        self.device = torch.device("cuda")
        self.model = load_torch_model(package, "cuda").half()
        self.names = output_names(package.config)
        self.use_graphs = use_graphs
        self.providers = ("torch-cuda", torch.cuda.get_device_name(self.device))
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, tuple]] = {}

    def _capture(self, batch: int, length: int):
        ids = torch.zeros((batch, length), dtype=torch.long, device=self.device)
        mask = torch.ones_like(ids)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):  # warm-up outside the graph (cuBLAS workspaces, lazy init)
                self.model(ids, mask)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            outputs = self.model(ids, mask)
        return graph, ids, mask, outputs

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        rows, length = input_ids.shape
        bucket = next((b for b in BATCH_BUCKETS if b >= rows), rows)
        ids = torch.from_numpy(input_ids).to(self.device, non_blocking=True)
        mask = torch.from_numpy(attention_mask).to(self.device, non_blocking=True)
        if not self.use_graphs:
            with torch.inference_mode():
                outputs = self.model(ids, mask)
        else:
            key = (bucket, length)
            if key not in self._graphs:
                try:
                    self._graphs[key] = self._capture(bucket, length)
                except RuntimeError as error:  # capture is fragile across library versions: serve eagerly instead
                    log.warning("CUDA graph capture failed (%s); running without graphs", error)
                    self.use_graphs = False
                    return self.run(input_ids, attention_mask)
            graph, static_ids, static_mask, outputs = self._graphs[key]
            static_ids.zero_()
            static_mask.zero_()
            static_mask[:, 0] = 1  # padded rows attend to one token: keeps their (ignored) outputs finite
            static_ids[:rows].copy_(ids)
            static_mask[:rows].copy_(mask)
            graph.replay()
        return {n: o[:rows].float().cpu().numpy() for n, o in zip(self.names, outputs, strict=True)}

    def close(self) -> None:
        self._graphs.clear()
        self.model = None  # type: ignore[assignment]
        torch.cuda.empty_cache()


def torch_cuda_engine(package: ModelPackage, *, allow_cpu_fallback: bool, intra_op_threads: int = 0):
    """A TorchCudaBackend, or (no CUDA and fallback allowed) the ONNX CPU engine; else ProviderFallbackError."""
    from model_runtime.runtime import OrtBackend, ProviderFallbackError

    if torch.cuda.is_available():
        return TorchCudaBackend(package)
    message = "backend torch-cuda asked for, but torch sees no CUDA device"
    if not allow_cpu_fallback:
        raise ProviderFallbackError(message + "; pass allow_cpu_fallback=True to run on CPU")
    log.warning("%s; falling back to ONNX Runtime on CPU as allowed", message)
    return OrtBackend(package.onnx_path("fp32"), ["CPUExecutionProvider"], intra_op_threads)
