"""Export the joint model to ONNX (fp32), check parity with torch, quantise to int8 (dynamic, per channel).

export_onnx(model, out / "model.onnx")           # dynamic batch and sequence axes, opset 17
parity = onnx_parity(model, out / "model.onnx", encoded_batches)   # {"max_abs_diff": ..., per output}
quantize_int8(out / "model.onnx", out / "model.int8.onnx")
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from model_runtime.encoding import EncodedBatch
from model_runtime.model import JointModel, output_names

INPUT_NAMES = ["input_ids", "attention_mask"]
OPSET = 17


class ExportError(RuntimeError):
    """The ONNX export failed or disagrees with torch beyond the tolerance."""


def export_onnx(model: JointModel, path: Path, opset: int = OPSET) -> Path:
    """Trace the model (TorchScript exporter, ``dynamo=False``) on CPU in fp32 with dynamic batch/length axes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").float().eval()
    names = output_names(model.config)
    dynamic = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
    dynamic.update({name: {0: "batch"} for name in names})
    dynamic["slot_logits"] = {0: "batch", 1: "length"}
    dummy_ids = torch.full((2, 16), 1000, dtype=torch.long)
    dummy_mask = torch.ones_like(dummy_ids)
    dummy_mask[1, 10:] = 0  # a padded row, so the traced graph keeps the masking path
    # eager attention traces to the MatMul/Softmax pattern that ONNX Runtime's optimizer fuses into one
    # Attention op (the SDPA trace is not recognised); restored afterwards so training keeps SDPA
    attention = model.encoder.config._attn_implementation
    model.encoder.set_attn_implementation("eager")
    # the tracer warns about Python-side shape checks inside transformers; shapes stay dynamic (parity is checked)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy_ids, dummy_mask),
            str(path),
            input_names=INPUT_NAMES,
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model.encoder.set_attn_implementation(attention)
    return path


def optimize_onnx(path: Path, out_path: Path | None = None, *, num_heads: int = 0, hidden_size: int = 0) -> Path:
    """Fuse the BERT encoder (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) in place.

    Uses onnxruntime.transformers' offline optimizer; the result holds com.microsoft ops, which ONNX
    Runtime's CPU and CUDA providers implement. Returns the list of fusions via the log.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_root_logger():
        optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    logging.getLogger(__name__).info("ONNX fusions: %s", fused)
    target = Path(out_path or path)
    optimized.save_model_to_file(str(target))
    return target


def onnx_parity(
    model: JointModel, onnx_path: Path, batches: Iterable[EncodedBatch], tolerance: float = 1e-3
) -> dict[str, float]:
    """Max |torch - onnx| per output over the batches (and overall); raises ExportError above ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = output_names(model.config)
    model = model.to("cpu").float().eval()
    worst = dict.fromkeys(names, 0.0)
    with torch.inference_mode():
        for batch in batches:
            expected = model(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask))
            got = session.run(names, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
            for name, want, have in zip(names, expected, got, strict=True):
                worst[name] = max(worst[name], float(np.abs(want.numpy() - have).max()))
    worst["max_abs_diff"] = max(worst.values())
    if worst["max_abs_diff"] > tolerance:
        raise ExportError(f"ONNX output differs from torch by {worst['max_abs_diff']:.2e} (> {tolerance}): {worst}")
    return worst


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul/Gemm weights, per output channel (activations stay fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            model_input=str(fp32_path),
            model_output=str(int8_path),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm", "Attention", "EmbedLayerNormalization"],
            # fused com.microsoft ops defeat ONNX shape inference; their tensors are float32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return Path(int8_path)


@contextmanager
def _quiet_root_logger():
    """ORT's quantiser and optimizer log a line per tensor/fusion on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # incl. its generic "consider pre-processing" warning
    try:
        yield
    finally:
        root.setLevel(level)


def export_all(model: JointModel, folder: Path, batches: Iterable[EncodedBatch], optimize: bool = True) -> dict:
    """``model.onnx`` (exported, fused when ``optimize``), parity-checked, and ``model.int8.onnx`` from it.

    Returns the export section of the manifest: opset, whether fused, and the parity figures.
    """
    folder = Path(folder)
    fp32 = export_onnx(model, folder / "model.onnx")
    if optimize:
        encoder_config = model.encoder.config
        optimize_onnx(fp32, num_heads=encoder_config.num_attention_heads, hidden_size=encoder_config.hidden_size)
    parity = onnx_parity(model, fp32, list(batches))
    quantize_int8(fp32, folder / "model.int8.onnx")
    return {"opset": OPSET, "optimized": optimize, "parity": parity}
