"""Masked language modelling on plain text (the `mlm` multilingual stage): long documents become consecutive
windows of max_length tokens, 15% of tokens masked as BERT does, the model's own LM head scored on masked
positions only; accuracy of the masked tokens. Synthetic stand-in: sentences of the synthetic lexicon."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xorder import lexicon, metrics
from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError
from xorder.kinds.base import IGNORE, MODEL_KEYS, Batch, Example, Fail, Kind, Scored, finish, text
from xorder.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn


class MaskedLM(Kind):
    name = "mlm"
    schema = {"text": "string"}
    metrics = {"accuracy": metrics.accuracy}  # of the masked tokens (scored in `score`, not through the table)

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        item["text"] = text(item["text"], column["text"], fail)

    def encode(
        self,
        batch: Batch,
        rows: list[int],
        *,
        tokenizer: Any,
        max_length: int,
        task: TaskConfig,
        train: bool,
        label_names: list[str],
    ) -> dict[str, list[Any]]:
        """Every token of the (capped) corpus is trained on: a document longer than max_length is several windows."""
        enc = tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_overflowing_tokens=True,
        )
        return finish(
            {k: v for k, v in enc.items() if k != "overflow_to_sample_mapping"},
            [rows[i] for i in enc["overflow_to_sample_mapping"]],
        )

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return MaskingCollator(tokenizer, mlm_probability or 0.15, multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        if lm_head is None:
            raise XorderError("this model has no masked-LM head, so it cannot train multilingual=mlm")
        return lm_head  # shared with the backbone, so it travels to later stages

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Only the masked positions are scored: never the whole vocabulary at every position."""
        from torch.nn import functional as F

        labels = batch["labels"]
        masked = labels != IGNORE
        logits = head(states[masked])
        loss = F.cross_entropy(logits.float(), labels[masked]) if masked.any() else states.sum() * 0.0
        return loss, logits

    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per feature: (masked tokens predicted right, masked tokens)."""
        import torch

        labels = batch["labels"]
        masked = labels != IGNORE
        feature = masked.nonzero()[:, 0]
        right = (outputs.argmax(-1) == labels[masked]).long()
        counts = torch.zeros(labels.shape[0], 2, dtype=torch.long, device=labels.device)
        counts[:, 0].index_add_(0, feature, right)
        counts[:, 1].index_add_(0, feature, torch.ones_like(right))
        return counts

    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        right, total = (int(x) for x in predictions.sum(0))
        return Scored({} if total == 0 else {"accuracy": 100.0 * right / total})  # no masked token: no score, not 0

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        sentences = [first.text(first.clause(*lexicon.random_clause(rng))) for _ in range(rng.randint(1, 3))]
        return {"text": ("" if first.lang in ("ja", "zh") else " ").join(sentences)}


class MaskingCollator:
    """BERT's masking (transformers' collator) with a generator seeded by the batch's own tokens: the same batch
    gets the same masks whenever it is collated (Accelerate collates one batch ahead, so a checkpoint's RNG state
    would otherwise already include the next batch's masks), and training's random stream is untouched."""

    def __init__(self, tokenizer: Any, mlm_probability: float, multiple: int | None = None) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.inner = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=mlm_probability, pad_to_multiple_of=multiple
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import torch

        keep = [k for k in (*MODEL_KEYS, "special_tokens_mask") if k in features[0]]
        tokens = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in features])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(tokens.tobytes()))
            return dict(self.inner([{k: f[k] for k in keep} for f in features]))


KIND = MaskedLM()
