"""The encoder carried from stage to stage, and one fresh head per task and stage.

The backbone is loaded as a masked-LM model wherever the architecture has one, so the pretrained LM head
travels with the encoder through every stage and a later MLM stage continues from it rather than from
random weights. Task heads never travel: each stage starts new ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from xorder import kinds
from xorder.config import TaskConfig
from xorder.errors import XorderError


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
            model = AutoModelForMaskedLM.from_pretrained(path, **options)
        except ValueError:  # an architecture without a masked-LM class
            model = AutoModel.from_pretrained(path, **options)
    except OSError as err:
        raise _load_error(path, err) from err
    _check_finite(model, path)
    return model


def _check_finite(model: nn.Module, path: str) -> None:
    """Stop on weights that are NaN or infinite as loaded: training would diverge at its first step and blame the
    learning rate. One pass over the weights (a fraction of a second for XLM-R Large on a CPU)."""
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise XorderError(
            f"the model in {path} has weights that are not finite (NaN or infinite) in {', '.join(bad[:3])}{more}: "
            "its files are damaged or were saved from a diverged run; replace them (a built or cached model: delete "
            "that folder and run again)"
        )


def length_range(path: str, revision: str | None, tokenizer: Any) -> tuple[int, int]:
    """The max_length values a model can train with: room for a text pair's special tokens and one token of each
    text (below that the tokenizer silently stops truncating), up to the positions its embeddings have (RoBERTa's
    family counts positions from after the padding index: XLM-R's 514 hold 512 tokens, the tiny model's 258 256)."""
    from transformers import AutoConfig

    _quiet()
    config = AutoConfig.from_pretrained(path, revision=revision)
    limits = [tokenizer.model_max_length] if tokenizer.model_max_length < 1_000_000 else []  # else: unset
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int):
        offset = config.pad_token_id + 1 if "roberta" in config.model_type and config.pad_token_id is not None else 0
        limits.append(positions - offset)
    low = tokenizer.num_special_tokens_to_add(pair=True) + 2
    return low, min(limits) if limits else 1_000_000


def _load_error(path: str, err: Exception) -> XorderError:
    """What is missing and the command that provides it. transformers' own text (a link cut mid-sentence, advice
    to go offline) is left out where xorder knows better."""
    from huggingface_hub import constants

    from xorder.data.hub import offline

    if os.path.isdir(path):
        return XorderError(f"cannot load the model in {path}: {' '.join(str(err).split())[:300]}")
    causes = [err]
    while causes[-1].__cause__ is not None or causes[-1].__context__ is not None:
        causes.append(cast(Exception, causes[-1].__cause__ or causes[-1].__context__))
    names = {type(c).__name__ for c in causes}
    elsewhere = (
        "run `xorder prepare` with the same overrides on a machine with internet and the same HF_HOME, or set "
        "model.path to a local model directory (one written by save_pretrained)"
    )
    wrong = names & {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError", "GatedRepoError"}
    if wrong:
        return XorderError(
            f"cannot load model {path!r} from the Hugging Face hub ({min(wrong)}): check model.path and model.revision"
        )
    if offline():
        return XorderError(
            f"model {path!r} is not in the Hugging Face cache (HF_HOME={constants.HF_HOME}) and this machine is "
            f"offline (HF_HUB_OFFLINE=1): {elsewhere}"
        )
    return XorderError(
        f"cannot reach the Hugging Face hub for model {path!r}, and it is not in the cache (HF_HOME="
        f"{constants.HF_HOME}): {elsewhere}; then set HF_HUB_OFFLINE=1 on the machine without internet"
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


# The target's head (heads.PooledHead: dense + tanh + out on the first token) in the two layouts transformers'
# sequence classifiers have: RoBERTa's own classification head (XLM-R, the tiny model), and BERT's pooler then a
# linear classifier (all-MiniLM, multilingual-E5); dropout, the only other part, does nothing at inference.
_HEAD_LAYOUTS = (
    {"dense": "classifier.dense", "out": "classifier.out_proj"},
    {"dense": "{base}.pooler.dense", "out": "classifier"},
)


def save_target(
    model: MultiTaskModel,
    head: str,
    label_names: list[str],
    tokenizer: Any,
    weights: dict[str, torch.Tensor],
    out: Path,
) -> str:
    """The target as one Hugging Face model of its head's Auto class, with `weights` (a MultiTaskModel state dict:
    the selected checkpoint): `AutoModelFor...from_pretrained(out)` and `AutoTokenizer.from_pretrained(out)` load
    it without xorder, predicting what xorder's model predicts. Written whole or not at all; returns the class."""
    import copy

    import transformers

    from xorder.storage.fileio import swap_dir

    kind = model.kinds[head]
    assert kind.auto_class is not None, "checks.config refuses save_target_model for such a target"
    config = copy.deepcopy(model.backbone.config)
    config.num_labels = len(label_names) or 1
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    config.problem_type = "single_label_classification" if label_names else "regression"
    exported = getattr(transformers, kind.auto_class).from_config(config)
    base = exported.base_model_prefix
    own = f"backbone.{model.backbone.base_model_prefix}."
    mapped = {f"{base}.{k[len(own) :]}": v for k, v in weights.items() if k.startswith(own)}
    wanted = set(exported.state_dict())
    for layout in _HEAD_LAYOUTS:
        names = {part: where.format(base=base) for part, where in layout.items()}
        if all(f"{name}.weight" in wanted for name in names.values()):
            for part, name in names.items():
                for suffix in ("weight", "bias"):
                    mapped[f"{name}.{suffix}"] = weights[f"heads.{head}.{part}.{suffix}"]
            break
    missing = sorted(wanted - set(mapped) - {k for k, _ in exported.named_buffers()})
    if missing:
        raise XorderError(
            f"cannot save the {config.model_type} {kind.name} target as {kind.auto_class}: no weights for "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    exported.load_state_dict(mapped, strict=False)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    exported.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    swap_dir(tmp, out)
    return str(kind.auto_class)
