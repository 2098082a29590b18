"""The serving runtime over a real (tiny) model package: API contract, backends, provider fallback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp

from model_runtime.data.bio import is_valid_bio
from model_runtime.runtime import ProviderFallbackError, UnknownBackendError, UtterancePrediction, load_runtime
from model_runtime.testing import cached_tiny_package

TEXTS = [
    "add two jordan sneakers to my cart",
    "  is   jordan on shift tomorrow ",
    "x",
    "where can i find nike running shoes in aisle seven please i have been looking forever",
]


@pytest.fixture(scope="module")
def package_dir():
    return cached_tiny_package()


@pytest.fixture(scope="module")
def runtime(package_dir):
    rt = load_runtime(package_dir, "onnx-cpu", intra_op_threads=1)
    yield rt
    rt.close()


def test_runtime_import_and_predict_do_not_load_torch(package_dir):
    code = (
        "import sys; from model_runtime.runtime import load_runtime; "
        f"load_runtime({str(package_dir)!r}).predict(['add milk to my cart']); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_predictions_keep_the_contract(runtime):
    predictions = runtime.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    config = runtime.package.config
    for text, p in zip(TEXTS, predictions, strict=True):
        assert isinstance(p, UtterancePrediction)
        assert len(p.tags) == len(text.split()) and is_valid_bio(p.tags)
        assert p.intent == p.top_intents[0] and p.confidence == pytest.approx(p.top_scores[0])
        assert len(p.top_intents) == 3 and list(p.top_scores) == sorted(p.top_scores, reverse=True)
        assert p.margin == pytest.approx(p.top_scores[0] - p.top_scores[1])
        assert 0 <= p.entropy <= np.log(len(config.intents)) + 1e-9
        assert p.embedding.dtype == np.float32 and np.linalg.norm(p.embedding) == pytest.approx(1.0, abs=1e-4)
        assert set(p.heads) == {h.name for h in config.heads}
        assert all(0.0 <= prob <= 1.0 for _, prob in p.heads.values())
        assert 0.0 <= p.unk_rate <= 1.0 and p.token_count >= len(text.split())
        for span in p.slots:  # char offsets point into the original text
            assert text[span.start : span.end] == span.text and 0 < span.confidence <= 1


def test_energy_matches_raw_logits_and_package_temperature(runtime):
    logits = runtime.raw_outputs(TEXTS[:1])["intent_logits"][0].astype(np.float64)
    t = runtime.package.temperature
    assert runtime.predict(TEXTS[:1])[0].energy == pytest.approx(-t * logsumexp(logits / t), rel=1e-5)


def test_batched_and_single_predictions_agree(runtime):
    batched = runtime.predict(TEXTS)  # length-bucketed, re-ordered internally
    for text, p in zip(TEXTS, batched, strict=True):
        single = runtime.predict([text])[0]
        assert (single.intent, single.tags) == (p.intent, p.tags)
        assert single.confidence == pytest.approx(p.confidence, abs=1e-5)


def test_empty_batch_and_whitespace_text(runtime):
    assert runtime.predict([]) == []
    (p,) = runtime.predict(["   "])
    assert p.tags == () and p.slots == () and p.token_count == 0


def test_int8_backend_runs_on_cpu_and_agrees_on_most_intents(package_dir, runtime):
    int8 = load_runtime(package_dir, "onnx-int8")
    assert int8.backend == "onnx-int8" and int8.providers == ("CPUExecutionProvider",)
    assert int8.package.onnx_path("int8").name == "model.int8.onnx"
    same = [a.intent == b.intent for a, b in zip(int8.predict(TEXTS), runtime.predict(TEXTS), strict=True)]
    assert sum(same) >= len(TEXTS) - 1


@pytest.mark.parametrize("backend", ["onnx-cuda", "torch-cuda"])
def test_gpu_backend_without_gpu_raises_instead_of_silently_using_cpu(package_dir, backend):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    with pytest.raises(ProviderFallbackError, match=backend):
        load_runtime(package_dir, backend)


@pytest.mark.parametrize("backend", ["onnx-cuda", "torch-cuda"])
def test_gpu_backend_with_fallback_allowed_runs_and_reports_cpu(package_dir, backend):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    rt = load_runtime(package_dir, backend, allow_cpu_fallback=True)
    assert rt.providers == ("CPUExecutionProvider",)
    assert len(rt.predict(TEXTS)) == len(TEXTS)


def test_unknown_backend_is_refused(package_dir):
    with pytest.raises(UnknownBackendError, match="onnx-gpu"):
        load_runtime(package_dir, "onnx-gpu")


def test_torch_weights_in_the_package_reproduce_the_onnx_outputs(package_dir, runtime):
    torch = pytest.importorskip("torch")
    from model_runtime.runtime_torch import load_torch_model

    model = load_torch_model(runtime.package, "cpu")  # the torch-cuda backend rebuilds the model the same way
    encoded = runtime.encode(TEXTS)
    onnx_outputs = runtime.engine.run(encoded.input_ids, encoded.attention_mask)
    with torch.inference_mode():
        torch_outputs = model(torch.from_numpy(encoded.input_ids), torch.from_numpy(encoded.attention_mask))
    for name, value in zip(("intent_logits", "slot_logits", "embedding"), torch_outputs, strict=False):
        assert np.abs(onnx_outputs[name] - value.numpy()).max() < 1e-3, name


@pytest.mark.parametrize("spin_wait", [False, True])
def test_spin_waiting_is_off_unless_asked_for(package_dir, spin_wait):
    runtime = load_runtime(package_dir, "onnx-cpu", spin_wait=spin_wait)
    options = runtime.engine.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin_wait else "0")
    runtime.close()


def test_cpu_backends_cut_batches_into_exactly_padded_sub_batches(package_dir):
    from model_runtime.runtime import PAD_MULTIPLE, SUB_BATCH

    default = load_runtime(package_dir, "onnx-cpu")
    assert (default.sub_batch, default.pad_multiple) == (SUB_BATCH["onnx-cpu"], 1)
    assert default.encode(["add milk"]).input_ids.shape[1] == 4  # [CLS] add milk [SEP], no rounding up
    assert PAD_MULTIPLE["torch-cuda"] == 8  # few shapes for CUDA graphs
    calls = []
    small = load_runtime(package_dir, "onnx-cpu", sub_batch=2)
    run = small.engine.run
    small.engine.run = lambda ids, mask: calls.append(ids.shape) or run(ids, mask)
    texts = [*TEXTS, "add milk", "is aisle seven open"]
    got = small.predict(texts)
    assert [rows for rows, _ in calls] == [2, 2, 2]  # 6 texts, calls of 2
    assert [length for _, length in calls] == sorted(length for _, length in calls)  # shortest texts first
    for text, p in zip(texts, got, strict=True):  # input order and the same answers as one call per text
        alone = default.predict([text])[0]
        assert (alone.intent, alone.tags) == (p.intent, p.tags)
        assert alone.confidence == pytest.approx(p.confidence, abs=1e-5)


def test_the_worker_caps_numpy_blas_threads():
    code = (
        "from threadpoolctl import threadpool_info; from streams.model_service import limit_blas_threads; "
        "limit_blas_threads(1); print({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "{1}"
