"""Batches: dynamic padding per head kind (transformers' collators where one fits), length-grouped batch
sampling, and the choice of task for each batch of a multi-task stage."""

from __future__ import annotations

import math
import zlib
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from xorder.data.encode import IGNORE

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length (transformers' megabatch grouping) in an order fixed by (seed, epoch), so a
    resumed run draws the same batches; without grouping, a seeded shuffle."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 shuffle: bool = True) -> None:
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
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


class Collator:
    """Pads a list of features of one head kind into tensors; `row` (the example index) rides along."""

    def __init__(self, kind: str, tokenizer: Any, mlm_probability: float | None = None) -> None:
        from transformers import DataCollatorForLanguageModeling, DataCollatorForTokenClassification, DataCollatorWithPadding

        self.kind, self.tokenizer = kind, tokenizer
        if kind == "tagging":
            self.inner = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)
        elif kind == "mlm":
            self.inner = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability or 0.15)
        else:
            self.inner = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = torch.tensor([f["row"] for f in features])
        if self.kind == "multiple_choice":
            batch = self._multiple_choice(features)
        else:
            keep = [k for k in (*MODEL_KEYS, "labels", "start_positions", "end_positions", "special_tokens_mask")
                    if k in features[0]]
            batch = self._masked(features, keep) if self.kind == "mlm" else dict(
                self.inner([{k: f[k] for k in keep} for f in features]))
            if "offset_mapping" in features[0]:  # extractive QA evaluation: which tokens may start or end an answer
                width = batch["input_ids"].shape[1]
                batch["context_mask"] = torch.tensor(
                    [[int(o[0] >= 0) for o in f["offset_mapping"]] + [0] * (width - len(f["offset_mapping"]))
                     for f in features])
            if self.kind == "regression":
                batch["labels"] = batch["labels"].float()
        batch["row"] = rows
        if "feature" in features[0]:
            batch["feature"] = torch.tensor([f["feature"] for f in features])
        return batch

    def _masked(self, features: list[dict[str, Any]], keep: list[str]) -> dict[str, torch.Tensor]:
        """MLM masks drawn from a generator seeded by the batch's own tokens: the same batch gets the same
        masks whenever it is collated (Accelerate collates one batch ahead, so a checkpoint's RNG state
        would otherwise already include the next batch's masks), and training's random stream is untouched."""
        tokens = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in features])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(tokens.tobytes()))
            return dict(self.inner([{k: f[k] for k in keep} for f in features]))

    def _multiple_choice(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n_choices = len(features[0]["input_ids"])
        keys = [k for k in MODEL_KEYS if k in features[0]]
        flat = [{k: f[k][c] for k in keys} for f in features for c in range(n_choices)]
        padded = self.inner(flat)
        batch = {k: v.view(len(features), n_choices, -1) for k, v in padded.items()}
        batch["labels"] = torch.tensor([f["labels"] for f in features])
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
        from xorder.errors import XorderError

        raise XorderError(f"unknown trainer.sampling {strategy!r} (valid: proportional, temperature, uniform)")
    return weights / weights.sum()
