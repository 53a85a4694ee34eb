"""Regression on a text pair (semantic similarity): one score from the first token's state, mean squared error,
Pearson/Spearman. Scores are checked against the task's `score_range`. Synthetic stand-in: STS-shaped pairs."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from xorder.config import SourceConfig, TaskConfig
from xorder.kinds import lexicon, metrics
from xorder.kinds.base import (
    LEARNING_ALPHA,
    Batch,
    Encoding,
    Example,
    Fail,
    Kind,
    Learning,
    Padded,
    Scored,
    encode_texts,
    loss_or_none,
    per_example,
    text,
)
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn


class Regression(Kind):
    name = "regression"
    schema = {"text_a": "string", "label": "float64"}
    optional = {"text_b": "string"}
    metrics = metrics.SCORES
    correlations = ("pearson", "spearman")
    auto_class = "AutoModelForSequenceClassification"  # num_labels 1: a regression head

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

    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        return encode_texts(batch, rows, how.tokenizer, how.max_length)

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return Padded(tokenizer, ("labels",), float_labels=True, multiple=multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from xorder.kinds.heads import PooledHead

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

    def learning(
        self, gold: Sequence[Any], pred: Sequence[Any], start: tuple[Sequence[Any], Sequence[Any]] | None = None
    ) -> Learning | None:
        """R² against 0, the R² of predicting the gold scores' mean. R² is the mean over examples of
        (gold - mean)² - (gold - prediction)², over the gold variance: the margin is a one-sided t bound on that
        mean, so a head no closer to the gold than the mean clears it in only LEARNING_ALPHA of dev sets."""
        import numpy as np
        from scipy.stats import t

        g, p = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
        variance = float(np.mean((g - g.mean()) ** 2)) if len(g) else 0.0
        if len(g) < 3 or variance == 0:  # R² needs gold scores that vary; a bound needs a few of them
            return None
        gains = ((g - g.mean()) ** 2 - (g - p) ** 2) / variance
        margin = float(t.ppf(1 - LEARNING_ALPHA, len(g) - 1) * gains.std(ddof=1) / np.sqrt(len(g)))
        return Learning("r2", float(gains.mean()), 0.0, margin, len(g))

    def unlearned(self, gold: Sequence[Any], pred: Sequence[Any]) -> str | None:
        """No closer to the gold than the gold's mean (R² ≤ 0): correlations of such near-constant outputs are
        artifacts (it happened: 32 STS steps predicted about 1.0 on a 0-5 scale, and English test Pearson came out
        -35 where dev said +44)."""
        learning = self.learning(gold, pred)
        if learning is None or learning.beats_baseline:
            return None
        return (
            f"no closer to the gold scores than their mean is (R² {learning.score:.2f}); its correlations are artifacts"
        )

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
