"""Tagging (CCG supertags): a tag per word on the word's first sub-token, the other sub-tokens ignored; a linear
layer per token, cross-entropy, accuracy over tagged words. Without `label_names` the tag set is read off the
training data. Synthetic stand-in: part-of-speech-like tags of the synthetic lexicon."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xorder.config import SourceConfig, TaskConfig
from xorder.kinds import lexicon
from xorder.kinds.base import IGNORE, MODEL_KEYS, Batch, Encoding, Example, Fail, Kind, Scored, Shares, finish
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn


class Tagging(Kind):
    name = "tagging"
    schema = {"tokens": ["string"], "tags": ["string"]}
    token_level = True

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        tokens, tags = item["tokens"], item["tags"]
        tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
        tags = tags.split() if isinstance(tags, str) else list(tags)
        if not tokens:
            raise fail(column["tokens"], "no tokens")
        if len(tokens) != len(tags):
            raise fail(column["tags"], f"{len(tags)} tags for {len(tokens)} tokens")
        if task.label_names:
            bad = next((str(t) for t in tags if str(t) not in task.label_names), None)
            if bad is not None:
                raise fail(column["tags"], f"tag {bad!r} is not in the task's label set")
        item["tokens"], item["tags"] = [str(t) for t in tokens], [str(t) for t in tags]

    def label_names(self, task: TaskConfig, train: datasets.Dataset) -> list[str]:
        if task.label_names:
            return list(task.label_names)
        import pyarrow.compute as pc

        return sorted(pc.unique(pc.list_flatten(train.with_format("arrow")["tags"])).to_pylist())

    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        index = {name: i for i, name in enumerate(how.label_names)}
        enc = how.tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=how.max_length)
        labels = []
        for i, tags in enumerate(batch["tags"]):
            previous, row = None, []
            for word in enc.word_ids(i):
                # a tag the training data never showed (possible in dev sets) cannot be predicted: it is not scored
                row.append(IGNORE if word is None or word == previous else index.get(tags[word], IGNORE))
                previous = word
            labels.append(row)
        out = finish(enc, rows)
        out["labels"] = labels
        return out

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return TagCollator(tokenizer, multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_labels))

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        from torch.nn import functional as F

        logits = head(states)
        loss = None
        if "labels" in batch:
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)
        return loss, logits

    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.argmax(-1).masked_fill(batch["labels"] == IGNORE, IGNORE)

    def example_scores(self, metric: str) -> Shares | None:
        """None: its accuracy and f1 count tokens, not examples (no per-example shares to resample)."""
        return None

    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        gold, pred = [], []
        for labels, predicted in zip(features["labels"], predictions.tolist()):
            pairs = [(g, q) for g, q in zip(labels, predicted) if g != IGNORE]
            gold += [g for g, _ in pairs]
            pred += [q for _, q in pairs]
        return Scored(self.compute(task.metrics, gold, pred))

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        concepts = [c for c in first.clause(*lexicon.random_clause(rng)) if c is not None]
        return {"tokens": first.tokens(concepts), "tags": [lexicon.tag(c) for c in concepts]}


class TagCollator:
    def __init__(self, tokenizer: Any, multiple: int | None = None) -> None:
        from transformers import DataCollatorForTokenClassification

        self.inner = DataCollatorForTokenClassification(
            tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=multiple
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keep = [k for k in (*MODEL_KEYS, "labels") if k in features[0]]
        return dict(self.inner([{k: f[k] for k in keep} for f in features]))


KIND = Tagging()
