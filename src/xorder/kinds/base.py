"""What every head kind provides, and the pieces several kinds share.

A kind is what a task's head predicts: a class, a score, one of several choices, an answer span, a tag per word,
masked tokens. It owns everything that differs between kinds — canonical columns and their checks, tokenization,
collation, the head and its loss, predictions, scoring and a synthetic stand-in — so the rest of xorder asks the
kind and never branches on its name. torch and transformers are imported where they are used: validating data
(`xorder prepare`, a grid's skip path) must not pay for them."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError
from xorder.kinds import metrics
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import numpy as np
    import torch
    from torch import nn

Fail = Callable[[str, str], XorderError]  # (source column, problem) -> an error naming file, row and column
Example = dict[str, Any]
Batch = dict[str, list[Any]]
# (gold, predictions) of one evaluation set -> each example's share of a metric that is their mean (Kind.example_scores)
Shares = Callable[["np.ndarray", "np.ndarray"], "np.ndarray"]
IGNORE = -100  # label of positions that carry no loss
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# canonical column -> its Arrow type: "string", "int64", "float64", a list of one type, or a struct
Schema = Mapping[str, Any]
# One-sided level of every "has this head learned?" test: a head no better than its baseline passes it by chance
# in 5% of dev sets. Any lower and a few hundred dev examples could not show a real but modest gain.
LEARNING_ALPHA = 0.05


@dataclass(frozen=True)
class Encoding:
    """What a kind's `encode` needs besides the rows; the same for every batch of one split."""

    tokenizer: Any
    max_length: int
    task: TaskConfig
    train: bool  # training features (extractive QA's evaluation features keep their offsets)
    label_names: list[str]


@dataclass
class Scored:
    """Metrics of one evaluation set, and per example (where the kind has one prediction per example) the id,
    the gold answer and the prediction, for paired tests between runs. `items`: the unit each id belongs to where
    the ids are not the examples' own (MLM's windows); None reads each example's `item`."""

    metrics: dict[str, float]
    ids: list[str] = field(default_factory=list)
    gold: list[Any] = field(default_factory=list)
    prediction: list[Any] = field(default_factory=list)
    items: list[str] | None = None


@dataclass(frozen=True)
class Learning:
    """Whether a head learned, judged on its dev data: its score on a `measure`, what a head that learned nothing
    scores there (`baseline`), and the `margin` by which the score must beat the baseline for that to be more than
    the dev set's sampling noise (a one-sided test at LEARNING_ALPHA over its `examples`)."""

    measure: str  # accuracy (percent), r2, or loss (nats per masked token)
    score: float
    baseline: float
    margin: float
    examples: int
    lower_is_better: bool = False

    @property
    def gain(self) -> float:
        """How far the score is past the baseline, in the direction of better."""
        return self.baseline - self.score if self.lower_is_better else self.score - self.baseline

    @property
    def learned(self) -> bool:
        return self.gain > self.margin

    @property
    def beats_baseline(self) -> bool:
        """Better than the baseline at all (a weaker statement than `learned`)."""
        return self.gain > 0

    def describe(self) -> str:
        """`dev accuracy 36.00 against a majority rate of 36.00 (learned: above 44.00; 100 examples)`."""
        name = BASELINES.get(self.measure, "the baseline")
        bar = self.baseline - self.margin if self.lower_is_better else self.baseline + self.margin
        return (
            f"dev {self.measure} {self.score:.2f} against {name} of {self.baseline:.2f} (learned: "
            f"{'below' if self.lower_is_better else 'above'} {bar:.2f}; {self.examples} examples)"
        )


BASELINES = {"accuracy": "a majority rate", "r2": "the gold mean's R²", "loss": "a step-0 loss"}


def learned(tests: dict[str, dict[str, Any]] | None) -> bool | None:
    """Whether every head of a stage passed its learning test (`tests`: head -> a Learning's fields, as a stage
    summary holds them); None when no head was tested (kinds without a test, or a stage trained before the tests)."""
    if not tests:
        return None
    return all(Learning(**found).learned for found in tests.values())


class Kind(ABC):
    """The interface; subclasses set the class attributes, provide every @abstractmethod hook (a kind that misses
    one fails when it loads: kinds.get) and override what differs from the defaults."""

    name: ClassVar[str]
    schema: ClassVar[Schema]  # required canonical columns
    optional: ClassVar[Schema] = {}  # canonical columns a source may have
    metrics: ClassVar[Mapping[str, metrics.Metric]] = metrics.CLASSES
    token_level: ClassVar[bool] = False  # predictions per token, padded across processes before gathering
    user_metrics: ClassVar[bool] = True  # scores through `compute`, so `evaluate:` metrics apply (not MLM's)
    # the transformers Auto class a target of this kind is saved as (trainer.save_target_model); None: not saved
    auto_class: ClassVar[str | None] = None

    # --- canonical rows ---------------------------------------------------------------------------------
    @abstractmethod
    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        """Check the raw values of one row (`item`, canonical column -> value; `column`: the source column each
        came from, for messages) and convert them in place into canonical values."""

    def check_split(self, dataset: datasets.Dataset, where: str) -> None:
        """Checks across the rows of a whole split (after every row passed `check`); most kinds have none."""
        return None

    def label_names(self, task: TaskConfig, train: datasets.Dataset) -> list[str]:
        """The head's output classes; a kind may read them off its training data."""
        return list(task.label_names)

    # --- features and batches ---------------------------------------------------------------------------
    @abstractmethod
    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        """Canonical rows -> model features; every feature keeps `row` (its example) and `length` (its tokens)."""

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Pads a list of features into tensors (model inputs and what the loss and predictions need), to a length
        that is a multiple of `multiple` where one is given (the few shapes a compiled encoder sees)."""
        return Padded(tokenizer, ("labels",), multiple=multiple)

    # --- head, loss, predictions ------------------------------------------------------------------------
    @abstractmethod
    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        """The kind's head over the encoder's hidden states (`lm_head`: the pretrained one, where MLM reuses it)."""

    def encoder_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: batch[key] for key in MODEL_KEYS if key in batch}

    @abstractmethod
    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(loss, outputs) from the encoder's last hidden states; the loss is None without labels."""

    @abstractmethod
    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per feature, a tensor of fixed shape (so that it gathers across processes)."""

    @abstractmethod
    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        """Metrics of one evaluation set from one prediction per feature (`rows`: each feature's example)."""

    # the kind's learning test compares the end of a stage with its step 0: the loop evaluates before training
    measured_from_start: ClassVar[bool] = False

    def learning(
        self, gold: Sequence[Any], pred: Sequence[Any], start: tuple[Sequence[Any], Sequence[Any]] | None = None
    ) -> Learning | None:
        """How these dev predictions (one per example, pooled over a head's dev sets) compare with what a head
        that learned nothing scores on the same examples; `start`: (gold, pred) of the same examples at step 0,
        for kinds that are `measured_from_start`. None: the kind has no such test (or the dev data cannot
        show learning)."""
        return None

    def unlearned(self, gold: Sequence[Any], pred: Sequence[Any]) -> str | None:
        """Why these predictions on the training language's own dev set show a head that has not learned at all,
        or None (the default: a kind with no such test; constant predictions are caught for every kind)."""
        return None

    # --- order-effect tests (report/paired.py) over the per-example predictions --------------------------
    # metrics that are correlations over an evaluation set: the paired tests recompute them on every resample
    correlations: ClassVar[tuple[str, ...]] = ()

    def example_scores(self, metric: str) -> Shares | None:
        """How `metric` splits into per-example shares whose mean (x100) it is, for the paired tests to resample:
        (gold, predictions) -> shares (accuracy: 1 right, 0 wrong). None: it does not (no test, unless a
        correlation)."""
        return right_answers if metric == "accuracy" else None

    # --- synthetic stand-in -----------------------------------------------------------------------------
    @abstractmethod
    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        """One example of the kind's default synthetic task, drawn from `rng` and rendered in the languages of
        `first` (and `second`, the second text of a pair)."""

    # --- shared -----------------------------------------------------------------------------------------
    def columns(self) -> dict[str, Any]:
        return {**self.schema, **self.optional}

    def compute(self, names: Sequence[str], gold: Sequence[Any], pred: Sequence[Any]) -> dict[str, float]:
        """Each named metric on one evaluation set: a built-in one (percent to 1e-4: no float noise) or a metric the
        user brings (`evaluate:...`, on its own scale)."""
        unknown = [n for n in names if n not in self.metrics and not metrics.is_external(n)]
        if unknown:
            raise XorderError(f"unknown metric {unknown[0]!r} for {self.name} (valid: {', '.join(self.metrics)})")
        return {
            name: metrics.external(name)(gold, pred)
            if metrics.is_external(name)
            else round(self.metrics[name](gold, pred), 4)
            for name in names
        }


class OneOfMany(Kind):
    """Kinds whose prediction per example is the highest of several logits: a class, or a choice."""

    def learning(
        self, gold: Sequence[Any], pred: Sequence[Any], start: tuple[Sequence[Any], Sequence[Any]] | None = None
    ) -> Learning | None:
        """Accuracy against the majority rate of the same dev examples (always answering the commonest class
        or choice). The margin is binomial: a head that is right with the majority rate's probability gets more
        than `majority + margin` right in only LEARNING_ALPHA of dev sets of this size (100 examples at a 36%
        majority: 44%; 500: 40%)."""
        from collections import Counter

        from scipy.stats import binom

        n = len(gold)
        counts = Counter(gold)
        if n == 0 or len(counts) < 2:  # one class in the dev data: nothing to tell a head that learned from one
            return None
        majority = max(counts.values()) / n
        right = sum(g == p for g, p in zip(gold, pred))
        bar = float(binom.isf(LEARNING_ALPHA, n, majority))  # P(right > bar) <= alpha at the majority rate
        # the margin ends half an example above the bar, so that no rounding can count `bar` right answers as more
        return Learning("accuracy", 100.0 * right / n, 100.0 * majority, 100.0 * ((bar + 0.5) / n - majority), n)

    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.argmax(-1)

    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        return per_example(self, task, examples, rows, predictions.tolist())


def right_answers(gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Accuracy's share of each example: 1.0 right, 0.0 wrong."""
    return (pred == gold).astype(float)


def text(value: Any, column: str, fail: Fail, allow_empty: bool = False) -> str:
    """A text field: numbers become text, null and NaN become empty, empty text is an error unless allowed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = ""
    if isinstance(value, (dict, list, tuple)):
        raise fail(column, f"expected text, found a {type(value).__name__} (map a text field with columns)")
    if not isinstance(value, str):
        value = str(value)
    if not value.strip() and not allow_empty:
        raise fail(column, "empty text")
    return value


def class_label(
    task: TaskConfig, view: SourceConfig, value: Any, column: str, fail: Fail, n_classes: int, what: str
) -> int:
    """A class id from a raw label: through the source's `labels` mapping, or a whole number in range."""
    if view.labels:
        key = str(value).strip()
        if key not in view.labels:
            raise fail(column, f"label {key!r} is not one of {', '.join(map(str, view.labels))}")
        label = view.labels[key]
    else:
        if isinstance(value, bool) or value is None:
            raise fail(column, f"label {value!r} is not a class number")
        try:
            as_float = float(str(value).strip())
        except ValueError:
            raise fail(
                column, f"label {value!r} is not a class number (map names to ids with labels: {{name: id}})"
            ) from None
        if not as_float.is_integer():
            raise fail(column, f"label {value!r} is not a whole class number")
        label = int(as_float)
    if not 0 <= label < n_classes:
        raise fail(column, f"label {label} is outside 0..{n_classes - 1} ({what})")
    return label


def finish(encoded: Any, rows: list[int]) -> dict[str, list[Any]]:
    """Tokenizer output -> a features batch with the example index and the token count of every feature."""
    out = dict(encoded)
    out["row"] = rows
    out["length"] = [len(ids) for ids in out["input_ids"]]
    return out


def encode_texts(batch: Batch, rows: list[int], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
    """One text or a pair (`text_a`, `text_b`) per example, truncated to max_length, with the labels."""
    pairs = batch.get("text_b")
    if pairs is not None and all(p is None for p in pairs):
        pairs = None
    elif pairs is not None:
        pairs = [p or "" for p in pairs]
    out = finish(tokenizer(batch["text_a"], pairs, truncation=True, max_length=max_length), rows)
    out["labels"] = batch["label"]
    return out


def per_example(kind: Kind, task: TaskConfig, examples: datasets.Dataset, rows: list[int], values: list[Any]) -> Scored:
    """Scoring for kinds with one feature and one prediction per example, in example order."""
    gold_column = examples["label"]
    ids_column = examples["id"]
    gold = [gold_column[i] for i in rows]
    return Scored(kind.compute(task.metrics, gold, values), [ids_column[i] for i in rows], gold, values)


class Padded:
    """Dynamic padding of the model inputs plus the listed per-feature keys (transformers' collator)."""

    def __init__(
        self, tokenizer: Any, keys: tuple[str, ...], float_labels: bool = False, multiple: int | None = None
    ) -> None:
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
        self.keys, self.float_labels = keys, float_labels

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keep = [k for k in (*MODEL_KEYS, *self.keys) if k in features[0]]
        batch = dict(self.inner([{k: f[k] for k in keep} for f in features]))
        if self.float_labels and "labels" in batch:
            batch["labels"] = batch["labels"].float()
        return batch


def loss_or_none(
    fn: Callable[..., torch.Tensor], outputs: torch.Tensor, batch: dict[str, torch.Tensor], float_labels: bool = False
) -> torch.Tensor | None:
    """fn(outputs, labels) in float32 when the batch has labels."""
    if "labels" not in batch:
        return None
    labels = batch["labels"].float() if float_labels else batch["labels"]
    return fn(outputs.float(), labels)
