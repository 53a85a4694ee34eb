"""Classification of one text or a pair (NLI, paraphrase, sentiment, ...): the first token's state through
RoBERTa's classification head, cross-entropy, accuracy/F1. Synthetic stand-in: PAWS-X-shaped paraphrase pairs."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError
from xorder.kinds import lexicon
from xorder.kinds.base import Batch, Encoding, Example, Fail, OneOfMany, class_label, encode_texts, loss_or_none, text
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import torch
    from torch import nn


class Classification(OneOfMany):
    name = "classification"
    schema = {"text_a": "string", "label": "int64"}
    optional = {"text_b": "string"}
    auto_class = "AutoModelForSequenceClassification"

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        item["text_a"] = text(item["text_a"], column["text_a"], fail)
        if "text_b" in item:
            item["text_b"] = text(item["text_b"], column["text_b"], fail)
        if not task.label_names:
            raise XorderError(f"{task.name}: a classification task needs label_names")
        item["label"] = class_label(
            task, view, item["label"], column["label"], fail, len(task.label_names), ", ".join(task.label_names)
        )

    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        return encode_texts(batch, rows, how.tokenizer, how.max_length)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from xorder.kinds.heads import PooledHead

        return PooledHead(hidden, n_labels, dropout)

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        from torch.nn import functional as F

        logits = head(states)
        return loss_or_none(F.cross_entropy, logits, batch), logits

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        """The first sentence is positive; the second keeps its meaning (a positive synonym) or flips it."""
        adj, label = rng.choice(lexicon.ADJ_POSITIVE), rng.randint(0, 1)
        _, noun, verb, adj2, obj = lexicon.random_clause(rng, adj)
        other = lexicon.same(rng, adj) if label else lexicon.opposite(rng, adj)
        return {
            "text_a": first.text(first.clause(adj, noun, verb, adj2, obj)),
            "text_b": second.text(second.clause(other, noun, rng.choice(lexicon.VERBS), adj2, obj)),
            "label": label,
        }


KIND = Classification()
