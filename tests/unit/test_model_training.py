"""Training of the joint model on a tiny random BERT: targets, losses, resumption, config files."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_runtime.batching import collate, domain_weights  # noqa: E402
from model_runtime.config import ConfigError, HeadConfig, ModelConfig, TrainConfig, configs_from_file  # noqa: E402
from model_runtime.data.example import Example  # noqa: E402
from model_runtime.encoding import TOKENIZER_FILE, WordpieceEncoder  # noqa: E402
from model_runtime.model import JointModel, MultiTaskLoss, gradient_cosine, load_encoder  # noqa: E402
from model_runtime.testing import TINY_BERT, tiny_encoder  # noqa: E402
from model_runtime.train import train  # noqa: E402

EXAMPLES = [
    Example(
        ("add", "two", "jordan", "sneakers"),
        ("O", "B-quantity", "B-brand", "B-product"),
        "add_to_cart",
        "shopper",
        {"frustration": "calm", "multi": "add_to_cart+ask_price"},
    ),
    Example(
        ("is", "jordan", "working"), ("O", "B-person", "O"), "check_shift", "associate", {"frustration": "frustrated"}
    ),
    Example(("store", "hours"), ("O", "O"), "store_hours", "shopper", {}),
]
HEADS = (
    HeadConfig("frustration", "heads.frustration"),
    HeadConfig("multi", "heads.multi", kind="sigmoid"),
    HeadConfig("assistant", "assistant"),
)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def _model(config: ModelConfig) -> JointModel:
    torch.manual_seed(0)
    return JointModel(config, load_encoder(encoder_config={"model_type": "bert", "vocab_size": 30522, **TINY_BERT}))


def test_labels_come_from_the_data_and_targets_align_to_first_wordpieces(encoder_dir):
    config = ModelConfig(max_length=16, heads=HEADS).with_labels(EXAMPLES)
    assert config.slot_tags[0] == "O" and "B-brand" in config.slot_tags
    assert config.heads[1].labels == ("add_to_cart", "ask_price")
    encoder = WordpieceEncoder(encoder_dir / TOKENIZER_FILE, 16)
    encoded, batch = collate(EXAMPLES, encoder, config)
    labelled = batch["slot_labels"][0] != -100
    assert int(labelled.sum()) == 4  # one label per word, even where a word splits into several pieces
    positions = encoded.first_piece[0, :4]
    assert [config.slot_tags[int(batch["slot_labels"][0, p])] for p in positions] == list(EXAMPLES[0].tags)
    assert batch["has_frustration"].tolist() == [1.0, 1.0, 0.0]  # the third example has no frustration label
    assert batch["head_multi"][0].tolist() == [1.0, 1.0] and batch["head_multi"][2].tolist() == [0.0, 0.0]


def test_uncertainty_weighting_learns_task_weights_and_static_does_not(encoder_dir):
    for weighting, trainable in (("static", False), ("uncertainty", True)):
        config = ModelConfig(max_length=16, heads=HEADS, loss_weighting=weighting).with_labels(EXAMPLES)
        model, loss_fn = _model(config), MultiTaskLoss(config)
        _, batch = collate(EXAMPLES, WordpieceEncoder(encoder_dir / TOKENIZER_FILE, 16), config)
        losses = loss_fn.task_losses(model(batch["input_ids"], batch["attention_mask"]), batch)
        assert set(losses) == {"intent", "slots", "frustration", "multi", "assistant"}
        total = loss_fn.combine(losses)
        total.backward()
        assert (loss_fn.log_vars.grad is not None) == trainable
        if weighting == "uncertainty":  # at s = 0 the total is the plain weighted sum plus zero
            static = sum(loss_fn.static[name] * value for name, value in losses.items())
            assert float(total.detach()) == pytest.approx(float(static.detach()), rel=1e-5)
        cosine = gradient_cosine(model, loss_fn.task_losses(model(batch["input_ids"], batch["attention_mask"]), batch))
        assert -1.0 <= cosine <= 1.0


def test_domain_balance_gives_each_assistant_equal_weight():
    weights = domain_weights(EXAMPLES)
    shopper = sum(w for w, e in zip(weights, EXAMPLES, strict=True) if e.assistant == "shopper")
    associate = sum(w for w, e in zip(weights, EXAMPLES, strict=True) if e.assistant == "associate")
    assert shopper == pytest.approx(associate)


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(encoder_dir, tmp_path):
    data = EXAMPLES * 8
    config = ModelConfig(encoder=str(encoder_dir), max_length=16, heads=HEADS[:1])
    settings = {"epochs": 2, "batch_size": 4, "seed": 5, "device": "cpu", "grad_cosine_every": 0, "checkpoint_every": 0}
    straight = train(data, data[:3], config, TrainConfig(**settings), tmp_path / "a", progress=False)
    train(data, data[:3], config, TrainConfig(**settings, stop_after_steps=7), tmp_path / "b", progress=False)
    resumed = train(data, data[:3], config, TrainConfig(**settings), tmp_path / "b", resume=True, progress=False)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert straight.temperature == pytest.approx(resumed.temperature)


def test_config_file_round_trip_and_validation(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(
        "model:\n  max_length: 48\n  loss_weighting: uncertainty\n"
        "  heads:\n    - {name: frustration, source: heads.frustration, weight: 0.3, positive_label: frustrated}\n"
        "train:\n  epochs: 1.5\n  batch_size: 16\n"
    )
    model_config, train_config = configs_from_file(path)
    assert model_config.max_length == 48 and model_config.heads[0].weight == 0.3
    assert train_config.epochs == 1.5 and train_config.batch_size == 16
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({"max_lenght": 10})
    with pytest.raises(ConfigError, match="unique"):
        ModelConfig.from_dict({"heads": [{"name": "intent", "source": "assistant"}]})


def test_embeddings_are_unit_length_and_ignore_padding(encoder_dir):
    config = ModelConfig(max_length=32).with_labels(EXAMPLES)
    model = _model(config).eval()
    encoder = WordpieceEncoder(encoder_dir / TOKENIZER_FILE, 32)
    alone = encoder.encode_words([EXAMPLES[2].tokens])
    padded = encoder.encode_words([EXAMPLES[2].tokens, ("a",) * 20])
    with torch.inference_mode():
        e1 = model(torch.from_numpy(alone.input_ids), torch.from_numpy(alone.attention_mask))[2][0].numpy()
        e2 = model(torch.from_numpy(padded.input_ids), torch.from_numpy(padded.attention_mask))[2][0].numpy()
    assert np.linalg.norm(e1) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(e1, e2, atol=1e-5)  # the same sentence, padded to 24 instead of 8: same embedding
