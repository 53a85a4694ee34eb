"""Regression on a text pair (semantic similarity): one score from the first token's state, mean squared error,
Pearson/Spearman. Scores are checked against the task's `score_range`. Synthetic stand-in: STS-shaped pairs."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from xorder import lexicon, metrics
from xorder.config import SourceConfig, TaskConfig
from xorder.kinds.base import Batch, Example, Fail, Kind, Padded, Scored, encode_texts, loss_or_none, per_example, text
from xorder.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn


class Regression(Kind):
    name = "regression"
    schema = {"text_a": "string", "label": "float64"}
    optional = {"text_b": "string"}
    metrics = metrics.SCORES

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        item["text_a"] = text(item["text_a"], column["text_a"], fail)
        if "text_b" in item:
            item["text_b"] = text(item["text_b"], column["text_b"], fail)
        raw = item["label"]
        try:
            if isinstance(raw, bool) or raw is None:
                raise ValueError
            score = float(str(raw).strip()) * view.score_scale
        except ValueError:
            raise fail(column["label"], f"score {raw!r} is not a number") from None
        low, high = task.score_range if task.score_range else (-math.inf, math.inf)
        if not math.isfinite(score):
            raise fail(column["label"], f"score {raw!r} is not a finite number")
        if not low <= score <= high:
            scaled = f" (after score_scale {view.score_scale:g})" if view.score_scale != 1 else ""
            raise fail(column["label"], f"score {score:g}{scaled} is outside {low:g}..{high:g}")
        item["label"] = score

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
        return encode_texts(batch, rows, tokenizer, max_length)

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return Padded(tokenizer, ("labels",), float_labels=True, multiple=multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from xorder.heads import PooledHead

        return PooledHead(hidden, 1, dropout)

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        from torch.nn import functional as F

        scores = head(states).squeeze(-1)
        return loss_or_none(F.mse_loss, scores, batch, float_labels=True), scores

    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.float()

    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        return per_example(self, task, examples, rows, predictions.numpy().tolist())

    def unlearned(self, gold: Sequence[Any], pred: Sequence[Any]) -> str | None:
        """No closer to the gold than the gold's mean (R² ≤ 0): correlations of such near-constant outputs are
        artifacts (it happened: 32 STS steps predicted about 1.0 on a 0-5 scale, and English test Pearson came out
        -35 where dev said +44)."""
        if len(set(gold)) < 2:  # R² needs gold scores that vary
            return None
        from sklearn.metrics import r2_score

        r2 = float(r2_score([float(g) for g in gold], [float(p) for p in pred]))
        if r2 > 0:
            return None
        return f"no closer to the gold scores than their mean is (R² {r2:.2f}); its correlations are artifacts"

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        """A positive sentence about a living being; the second earns 2.5 for keeping the polarity and 2.5 for
        keeping the category, plus a little noise."""
        adj, noun = rng.choice(lexicon.ADJ_POSITIVE), rng.choice(lexicon.NOUNS_LIVING)
        same_pol, same_cat = rng.randint(0, 1), rng.randint(0, 1)
        adj2 = lexicon.same(rng, adj) if same_pol else lexicon.opposite(rng, adj)
        noun2 = rng.choice(lexicon.NOUNS_LIVING if same_cat else lexicon.NOUNS_OBJECT)
        score = min(5.0, max(0.0, 2.5 * same_pol + 2.5 * same_cat + rng.gauss(0.0, 0.25)))
        verb, obj = rng.choice(lexicon.VERBS), rng.choice(lexicon.NOUNS_OBJECT)
        return {
            "text_a": first.text(first.clause(adj, noun, verb, None, obj)),
            "text_b": second.text(second.clause(adj2, noun2, verb, None, obj)),
            "label": round(score, 3),
        }


KIND = Regression()
