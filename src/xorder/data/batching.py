"""Batches: dynamic padding per head kind (each kind's collator), length-grouped batch
sampling, and the choice of task for each batch of a multi-task stage."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from xorder.errors import XorderError
from xorder.kinds.base import Kind


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length (transformers' megabatch grouping) in a random order fixed by (seed, epoch), so a
    resumed run draws the same batches and a run shorter than an epoch sees a random sample of the data, not its
    longest rows; without grouping, a seeded shuffle; without shuffling (evaluation), longest first."""

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True, shuffle: bool = True
    ) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.group_by_length, self.shuffle, self.epoch = group_by_length, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        if not self.shuffle:
            order = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])
        elif self.group_by_length:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if self.shuffle and self.group_by_length:
            # grouping sorts each megabatch longest first: with fewer than 50 batches per epoch that is one fixed
            # longest-to-shortest walk, so the batches themselves are drawn in random order
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        yield from batches


class Collator:
    """Pads a list of features into tensors the way their head kind needs; `row` (the example index) and, in
    evaluation, `feature` (the feature's position) ride along."""

    def __init__(
        self, kind: Kind, tokenizer: Any, mlm_probability: float | None = None, multiple: int | None = None
    ) -> None:
        self.inner = kind.collator(tokenizer, mlm_probability, multiple)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.inner(features)
        batch["row"] = torch.tensor([f["row"] for f in features])
        if "feature" in features[0]:
            batch["feature"] = torch.tensor([f["feature"] for f in features])
        return batch


def sampling_weights(sizes: list[int], strategy: str, temperature: float) -> np.ndarray:
    """Probability of drawing each task's next batch: proportional to size, tempered, or uniform."""
    sizes_ = np.asarray(sizes, dtype=float)
    if strategy == "proportional":
        weights = sizes_
    elif strategy == "temperature":
        weights = sizes_ ** (1.0 / temperature)
    elif strategy == "uniform":
        weights = np.ones_like(sizes_)
    else:
        raise XorderError(f"unknown trainer.sampling {strategy!r} (valid: proportional, temperature, uniform)")
    return weights / weights.sum()
