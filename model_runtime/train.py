"""Training loop of the joint model: seeded, resumable, CPU or CUDA, dev-selected, temperature-calibrated.

Each epoch's batch order is a function of (seed, epoch), so a run resumed from a checkpoint skips the
batches it already saw and continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from model_runtime.batching import collate, length_sorted_batches, loss_weights
from model_runtime.calibration import fit_temperature
from model_runtime.config import ModelConfig, TrainConfig
from model_runtime.data.example import Example
from model_runtime.encoding import TOKENIZER_FILE, WordpieceEncoder
from model_runtime.model import JointModel, MultiTaskLoss, default_encoder_path, gradient_cosine, load_encoder
from model_runtime.predictions import SlotDecoder, UtterancePrediction, build_predictions

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


class CheckpointMismatchError(RuntimeError):
    """--resume found a checkpoint written for another model configuration."""


@dataclass
class TrainResult:
    model: JointModel
    config: ModelConfig
    temperature: float
    calibration: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    encoder_path: Path = field(default_factory=default_encoder_path)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(model: JointModel, loss_fn: MultiTaskLoss, cfg: TrainConfig, total_steps: int):
    encoder_params = list(model.encoder.parameters())
    encoder_ids = {id(p) for p in encoder_params}
    head_params = [p for p in model.parameters() if id(p) not in encoder_ids] + [loss_fn.log_vars]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": cfg.learning_rate},
            {"params": head_params, "lr": cfg.head_learning_rate},
        ],
        weight_decay=cfg.weight_decay,
    )
    warmup = max(1, int(cfg.warmup_ratio * total_steps))

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def iterate_outputs(
    model: JointModel, examples: Sequence[Example], encoder: WordpieceEncoder, batch_size: int, device: torch.device
) -> Iterator[tuple[list[int], Any, dict[str, np.ndarray]]]:
    """(indices, encoded batch, numpy outputs) over length-sorted eval batches, in eval mode."""
    names = ["intent_logits", "slot_logits", "embedding", *(f"head_{h.name}" for h in model.config.heads)]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].tokens))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encoded = encoder.encode_words([examples[i].tokens for i in indices])
            outputs = model(
                torch.from_numpy(encoded.input_ids).to(device), torch.from_numpy(encoded.attention_mask).to(device)
            )
            yield indices, encoded, {n: o.float().cpu().numpy() for n, o in zip(names, outputs, strict=True)}


def predict_examples(
    model: JointModel,
    examples: Sequence[Example],
    encoder: WordpieceEncoder,
    temperature: float = 1.0,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> tuple[list[UtterancePrediction], np.ndarray]:
    """Torch predictions (same decoding as the runtimes) and the raw intent logits, in input order."""
    from model_runtime.encoding import whitespace_words

    device = device or next(model.parameters()).device
    decoder = SlotDecoder(model.config.slot_tags)
    predictions: list[UtterancePrediction | None] = [None] * len(examples)
    logits = np.zeros((len(examples), len(model.config.intents)), dtype=np.float32)
    for indices, encoded, outputs in iterate_outputs(model, examples, encoder, batch_size, device):
        texts = [examples[i].text for i in indices]
        words = [whitespace_words(t) for t in texts]
        batch = build_predictions(texts, words, encoded, outputs, model.config, temperature, decoder)
        for index, prediction, row in zip(indices, batch, outputs["intent_logits"], strict=True):
            predictions[index] = prediction
            logits[index] = row
    return predictions, logits  # type: ignore[return-value]


def frame_scores(examples: Sequence[Example], predictions: Sequence[UtterancePrediction]) -> dict[str, float]:
    """Intent accuracy and sentence (exact frame: intent and every tag right) accuracy; dev selection uses both."""
    intent = np.mean([p.intent == e.intent for e, p in zip(examples, predictions, strict=True)])
    frame = np.mean([p.intent == e.intent and p.tags == e.tags for e, p in zip(examples, predictions, strict=True)])
    return {"intent_accuracy": float(intent), "sentence_accuracy": float(frame)}


def calibrate(
    model: JointModel, dev: Sequence[Example], encoder: WordpieceEncoder, batch_size: int = 64
) -> tuple[float, dict[str, float]]:
    """Fit the intent temperature on dev; report ECE before and after."""
    from model_runtime.metrics import expected_calibration_error

    _, logits = predict_examples(model, dev, encoder, 1.0, batch_size)
    index = {name: i for i, name in enumerate(model.config.intents)}
    labels = np.array([index.get(e.intent, -1) for e in dev])
    temperature = fit_temperature(logits, labels)
    keep = labels >= 0
    report = {"temperature": temperature}
    for key, t in (("ece_before", 1.0), ("ece_after", temperature)):
        scaled = logits[keep] / t
        probs = np.exp(scaled - scaled.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        correct = probs.argmax(1) == labels[keep]
        report[key] = float(expected_calibration_error(probs.max(1), correct))
    return temperature, report


def train(
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    model_config: ModelConfig,
    train_config: TrainConfig,
    work_dir: Path,
    *,
    resume: bool = False,
    encoder_path: Path | None = None,
    progress: bool = True,
    example_weights: Sequence[float] | None = None,
) -> TrainResult:
    """Fine-tune the joint model; keeps the best dev epoch (sentence accuracy) and calibrates it.

    ``example_weights`` (one per train example, > 0; e.g. extra examples' weights) multiply each example's loss
    weight, on top of the domain balance when ``model_config.domain_balance`` is set.
    """
    started = time.perf_counter()
    cfg = train_config
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    encoder_path = Path(encoder_path or model_config.encoder or default_encoder_path())
    config = model_config.with_labels(list(train_examples))
    tokenizer = WordpieceEncoder(encoder_path / TOKENIZER_FILE, config.max_length)
    model = JointModel(config, load_encoder(encoder_path)).to(device)
    loss_fn = MultiTaskLoss(config).to(device)
    lengths = [tokenizer.piece_length(e.tokens) for e in train_examples]
    weights = loss_weights(train_examples, example_weights, config.domain_balance)
    steps_per_epoch = math.ceil(len(train_examples) / cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer, scheduler = _optimizer(model, loss_fn, cfg, total_steps)
    state: dict[str, Any] = {"step": 0, "history": [], "best_score": -1.0, "best_state": None}
    checkpoint_path = Path(work_dir) / CHECKPOINT
    if resume and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, model, loss_fn, optimizer, scheduler, config)
        log.info("resumed from %s at step %d of %d", checkpoint_path, state["step"], total_steps)
    epoch_batches: dict[int, list[list[int]]] = {}
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step", disable=not progress)
    model.train()
    first_step = state["step"]
    for step in range(first_step, total_steps):
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if epoch not in epoch_batches:
            epoch_batches[epoch] = length_sorted_batches(lengths, cfg.batch_size, cfg.seed + epoch)
        indices = epoch_batches[epoch][in_epoch]
        _, batch = collate([train_examples[i] for i in indices], tokenizer, config, weights[indices])
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = model(batch["input_ids"], batch["attention_mask"])
        losses = loss_fn.task_losses(outputs, batch)
        record: dict[str, Any] = {"step": step, **{f"loss_{k}": round(float(v.detach()), 5) for k, v in losses.items()}}
        if cfg.grad_cosine_every and step % cfg.grad_cosine_every == 0:
            record["grad_cosine_intent_slots"] = round(gradient_cosine(model, losses), 4)
            log.info(
                "step %d: cos(grad intent, grad slots) on the encoder = %.3f", step, record["grad_cosine_intent_slots"]
            )
        total = loss_fn.combine(losses)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if "grad_cosine_intent_slots" in record:
            state["history"].append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{float(total.detach()):.3f}", epoch=epoch)
        state["step"] = step + 1
        epoch_end = state["step"] % steps_per_epoch == 0 or state["step"] == total_steps
        if epoch_end:
            _select(model, dev_examples, tokenizer, state, epoch)
            model.train()
        stopping = bool(cfg.stop_after_steps) and state["step"] - first_step >= cfg.stop_after_steps
        if epoch_end or stopping or (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0):
            _save_checkpoint(checkpoint_path, model, loss_fn, optimizer, scheduler, config, state)
        if stopping:
            log.info("stopping after %d steps as asked; resume from %s", cfg.stop_after_steps, checkpoint_path)
            break
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    temperature, calibration = calibrate(model, dev_examples, tokenizer) if dev_examples else (1.0, {})
    if config.loss_weighting == "uncertainty":
        calibration_tasks = dict(zip(loss_fn.task_names, loss_fn.log_vars.detach().cpu().tolist(), strict=True))
        state["history"].append({"uncertainty_log_vars": calibration_tasks})
    return TrainResult(
        model=model,
        config=config,
        temperature=temperature,
        calibration=calibration,
        history=state["history"],
        seconds=time.perf_counter() - started,
        device=str(device),
        encoder_path=encoder_path,
    )


def _select(model: JointModel, dev: Sequence[Example], tokenizer: WordpieceEncoder, state: dict, epoch: int) -> None:
    if not dev:
        state["best_state"] = None
        return
    predictions, _ = predict_examples(model, dev, tokenizer)
    scores = frame_scores(dev, predictions)
    score = scores["sentence_accuracy"] + 1e-3 * scores["intent_accuracy"]
    state["history"].append({"epoch": epoch, "step": state["step"], **{f"dev_{k}": v for k, v in scores.items()}})
    log.info("epoch %d dev: %s", epoch, scores)
    if score > state["best_score"]:
        state["best_score"] = score
        state["best_state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, model, loss_fn, optimizer, scheduler, config: ModelConfig, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config.to_dict(),
        "model": model.state_dict(),
        "loss_fn": loss_fn.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": copy.copy(state),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_rng_state()},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash mid-save leaves the previous checkpoint intact


def _load_checkpoint(path: Path, model, loss_fn, optimizer, scheduler, config: ModelConfig) -> dict:
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings), never code to unpickle
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointMismatchError(
            f"{path} holds more than plain data (weights_only=True refused it): a checkpoint of an older format, "
            "or not one of ours; delete it or drop --resume"
        ) from None
    if payload["config"] != config.to_dict():
        raise CheckpointMismatchError(f"{path} was written for another model config; delete it or drop --resume")
    model.load_state_dict(payload["model"])
    loss_fn.load_state_dict(payload["loss_fn"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate(payload["rng"]["python"])
    _set_numpy_rng_state(payload["rng"]["numpy"])
    return payload["state"]


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's legacy global RNG state as plain values (a weights_only checkpoint holds no numpy arrays)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    key = state["key"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], key, state["pos"], state["has_gauss"], state["gauss"]))
