"""Multiple choice (HellaSwag, CommonsenseQA, Cosmos QA): one (context, question + choice) pair per choice, a score
per choice from the first token's state, cross-entropy over the choices of an example, accuracy. Every example of
a split must have the same number of choices. Synthetic stand-in: HellaSwag-shaped endings."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError
from xorder.kinds import lexicon
from xorder.kinds.base import MODEL_KEYS, Batch, Encoding, Example, Fail, OneOfMany, class_label, loss_or_none, text
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn


class MultipleChoice(OneOfMany):
    name = "multiple_choice"
    schema = {"context": "string", "choices": ["string"], "label": "int64"}
    optional = {"question": "string"}

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        item["context"] = text(item["context"], column["context"], fail)
        if "question" in item:
            item["question"] = text(item["question"], column["question"], fail, allow_empty=True)
        choices = item["choices"]
        if not isinstance(choices, (list, tuple)) or len(choices) < 2:
            raise fail(
                column["choices"],
                "expected a list of at least two answer texts "
                "(map several fields as a list: choices: [answer0, answer1, ...])",
            )
        item["choices"] = [text(c, column["choices"], fail) for c in choices]
        item["label"] = class_label(
            task, view, item["label"], column["label"], fail, len(choices), f"{len(choices)} choices"
        )

    def check_split(self, dataset: datasets.Dataset, where: str) -> None:
        import pyarrow.compute as pc

        counts = pc.unique(pc.list_value_length(dataset.with_format("arrow")["choices"])).to_pylist()
        if len(counts) > 1:
            raise XorderError(
                f"{where}: rows have different numbers of choices ({sorted(counts)}); "
                "a multiple-choice task needs the same number in every row"
            )

    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        questions = batch.get("question") or [None] * len(batch["context"])
        firsts, seconds, counts = [], [], []
        for context, question, choices in zip(batch["context"], questions, batch["choices"]):
            counts.append(len(choices))
            for choice in choices:
                firsts.append(context)
                seconds.append(f"{question} {choice}" if question else choice)
        flat = how.tokenizer(firsts, seconds, truncation=True, max_length=how.max_length)
        out: dict[str, list[Any]] = {key: [] for key in flat}
        at = 0
        for n in counts:
            for key in flat:
                out[key].append(flat[key][at : at + n])
            at += n
        out["labels"] = batch["label"]
        out["row"] = rows
        out["length"] = [sum(len(ids) for ids in choice_ids) for choice_ids in out["input_ids"]]
        return out

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return ChoiceCollator(tokenizer, multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from xorder.kinds.heads import PooledHead

        return PooledHead(hidden, 1, dropout)

    def encoder_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """[examples, choices, tokens] -> [examples x choices, tokens]: every choice is one sequence."""
        return {key: batch[key].flatten(0, 1) for key in MODEL_KEYS if key in batch}

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        from torch.nn import functional as F

        logits = head(states).view(-1, batch["input_ids"].shape[1])
        return loss_or_none(F.cross_entropy, logits, batch), logits

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        """A positive context; the right ending keeps it positive."""
        return ending_choice(rng, first)


def ending_choice(rng: random.Random, r: Renderer, n_choices: int = 4) -> Example:
    adj = rng.choice(lexicon.ADJ_POSITIVE)
    clause = lexicon.random_clause(rng, adj)
    label = rng.randrange(n_choices)
    endings = [
        r.text(r.predicate(clause[1], lexicon.same(rng, adj) if i == label else lexicon.opposite(rng, adj)))
        for i in range(n_choices)
    ]
    return {"context": r.text(r.clause(*clause)), "choices": endings, "label": label}


class ChoiceCollator:
    """Every choice padded as one sequence, then viewed back as [examples, choices, tokens]."""

    def __init__(self, tokenizer: Any, multiple: int | None = None) -> None:
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        n_choices = len(features[0]["input_ids"])
        keys = [k for k in MODEL_KEYS if k in features[0]]
        padded = self.inner([{k: f[k][c] for k in keys} for f in features for c in range(n_choices)])
        batch = {k: v.view(len(features), n_choices, -1) for k, v in padded.items()}
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


KIND = MultipleChoice()
