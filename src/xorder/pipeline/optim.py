"""The optimizer and the step budget of a stage: AdamW with the reference study's weight-decay groups, and how
many optimizer steps a stage takes and how often each of its training sets is drawn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from xorder.data.batching import sampling_weights
from xorder.data.stage import StageData
from xorder.plan import StageHParams, group


def optimizer(model: torch.nn.Module, hp: StageHParams, accelerator: Any) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and norms; frozen parameters get no optimizer state. The fused
    kernel (one pass over all parameters, CPU and CUDA) where sharding does not rule it out."""
    from accelerate.utils import DistributedType

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    return torch.optim.AdamW(groups, lr=hp.lr, eps=hp.adam_epsilon, fused=fused or None)


def step_count(epochs: float, batches: int, max_steps: int | None, grad_accum: int) -> int:
    total = math.ceil(epochs * batches / grad_accum)
    return min(total, max_steps) if max_steps is not None else total


def schedule(hp: StageHParams, data: StageData, batches: list[int]) -> tuple[int, np.ndarray]:
    """Optimizer steps of the stage and the probability of drawing each training set's next batch. Under a joint
    budget each group of sets (English, multilingual) gets the steps its sequential stage would have, and is
    drawn in proportion to them."""
    sizes = [len(ts.features) for ts in data.train]
    if hp.budget is None:
        total = step_count(hp.epochs, sum(batches), hp.max_steps, hp.grad_accum)
        return max(total, 1), sampling_weights(sizes, hp.sampling, hp.sampling_temperature)
    weights = np.zeros(len(sizes))
    steps = {}
    for budget in hp.budget:
        members = [i for i, ts in enumerate(data.train) if group(ts.variant) == budget.group]
        if not members:
            continue
        steps[budget.group] = step_count(
            budget.epochs, sum(batches[i] for i in members), budget.max_steps, hp.grad_accum
        )
        within = sampling_weights([sizes[i] for i in members], hp.sampling, hp.sampling_temperature)
        weights[members] = within * steps[budget.group]
    total = max(sum(steps.values()), 1)
    return total, weights / weights.sum()
