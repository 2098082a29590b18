"""ONNX export of the joint model: parity with torch (tiny random BERT and the real MiniLM), int8 runs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_runtime.config import HeadConfig, ModelConfig  # noqa: E402
from model_runtime.encoding import TOKENIZER_FILE, WordpieceEncoder  # noqa: E402
from model_runtime.export import export_all, export_onnx, onnx_parity, quantize_int8  # noqa: E402
from model_runtime.model import JointModel, default_encoder_path, load_encoder, output_names  # noqa: E402
from model_runtime.testing import TINY_BERT  # noqa: E402

CONFIG = ModelConfig(
    max_length=32,
    intents=("add_to_cart", "check_shift", "store_hours"),
    slot_tags=("O", "B-brand", "I-brand", "B-person"),
    heads=(
        HeadConfig("frustration", "heads.frustration", labels=("calm", "frustrated")),
        HeadConfig("multi_intent", "heads.multi", kind="sigmoid", labels=("a", "b", "c")),
    ),
)
UTTERANCES = [
    ["add", "two", "jordan", "sneakers", "to", "my", "cart"],
    ["hi"],  # much shorter: padded rows must match too
    ["is", "jordan", "on", "shift", "tomorrow", "at", "the", "downtown", "store", "or", "not"] * 2,
]


def _batches(max_length: int = 32):
    encoder = WordpieceEncoder(default_encoder_path() / TOKENIZER_FILE, max_length)
    return [encoder.encode_words(UTTERANCES), encoder.encode_words(UTTERANCES[:1])]


def test_tiny_model_exports_with_dynamic_axes_and_parity(tmp_path):
    torch.manual_seed(0)
    model = JointModel(CONFIG, load_encoder(encoder_config={"model_type": "bert", "vocab_size": 30522, **TINY_BERT}))
    path = export_onnx(model, tmp_path / "model.onnx")
    parity = onnx_parity(model, path, _batches(), tolerance=1e-4)
    assert set(parity) == {*output_names(CONFIG), "max_abs_diff"}
    assert parity["max_abs_diff"] < 1e-4  # two batch sizes and two lengths through one graph


def test_int8_model_runs_and_stays_close_to_fp32(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = JointModel(CONFIG, load_encoder(encoder_config={"model_type": "bert", "vocab_size": 30522, **TINY_BERT}))
    fp32 = export_onnx(model, tmp_path / "model.onnx")
    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx")
    batch = _batches()[0]
    feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    want = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(["embedding"], feeds)[0]
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(["embedding"], feeds)[0]
    cosine = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.95
    assert int8.stat().st_size < fp32.stat().st_size


def test_fused_export_keeps_parity_and_holds_fused_attention(tmp_path):
    import onnx

    torch.manual_seed(0)
    model = JointModel(CONFIG, load_encoder(encoder_config={"model_type": "bert", "vocab_size": 30522, **TINY_BERT}))
    section = export_all(model, tmp_path, _batches())
    assert section["optimized"] and section["parity"]["max_abs_diff"] < 1e-4
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert "Attention" in ops  # fused: one op per layer instead of the MatMul/Softmax chain
    assert (tmp_path / "model.int8.onnx").is_file()


@pytest.mark.timeout(120)
def test_real_minilm_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    model = JointModel(CONFIG, load_encoder())
    section = export_all(model, tmp_path, _batches())
    assert section["parity"]["max_abs_diff"] < 1e-4
