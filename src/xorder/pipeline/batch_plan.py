"""Micro-batch planning for `trainer.batch_size=auto`: the effective batch (`trainer.effective_batch_size`, 32 as in
the reference study) is reached with the largest micro-batch that fits the device, and gradient accumulation
fills the rest, so an H100 is not starved by micro-batches of 4. The micro-batch is found once per model, head
kinds, length, device and precision, by training steps on the stage's longest rows, and kept in
`cache_dir/batch_sizes.json`. On a CPU memory is not the limit: the micro-batch is the whole effective batch.

Only the split of the batch depends on the device, not the numbers (beyond floating-point summation order and
dropout draws): the stage hash covers the effective batch, so stages trained on different GPUs are shared."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xorder.errors import XorderError
from xorder.storage.fileio import read_json, write_json

log = logging.getLogger("xorder")
CACHE = "batch_sizes.json"


def split(effective: int, processes: int, fits: Callable[[int], bool]) -> tuple[int, int]:
    """(micro-batch per process, accumulation steps) with micro × accumulation × processes = effective: the
    largest micro-batch that divides the per-process share and fits."""
    if effective % processes:
        raise XorderError(
            f"trainer.effective_batch_size={effective} cannot be split over {processes} processes: "
            "choose a multiple of the number of processes"
        )
    share = effective // processes
    micro = share
    while micro > 1 and (share % micro or not fits(micro)):
        micro -= 1
    if not fits(micro):
        raise XorderError(
            "not even one example of this stage fits the device: lower trainer.max_length (or use a smaller model)"
        )
    return micro, share // micro


def plan(
    effective: int, accelerator: Any, key: list[Any], cache_dir: str, probe: Callable[[int], None]
) -> tuple[int, int]:
    """The (micro-batch, accumulation) of a stage; `probe(n)` trains one step on n of its longest rows and raises
    the device's out-of-memory error when they do not fit; `key` names what the answer depends on."""
    import torch

    if accelerator.device.type != "cuda":
        return split(effective, accelerator.num_processes, lambda n: True)
    name = hashlib.sha256(
        json.dumps([*key, torch.cuda.get_device_name(accelerator.device), accelerator.mixed_precision]).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir).expanduser() / CACHE
    known = read_json(path) or {}
    if name in known:
        return split(effective, accelerator.num_processes, lambda n: n <= known[name])

    def fits(n: int) -> bool:
        try:
            probe(n)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    micro, accumulation = split(effective, accelerator.num_processes, fits)
    if accelerator.num_processes > 1:  # every rank trains with the main process's split, whatever it measured
        from accelerate.utils import broadcast_object_list

        agreed = [micro, accumulation]
        broadcast_object_list(agreed, from_process=0)
        micro, accumulation = agreed
    if accelerator.is_main_process:
        write_json(path, {**(read_json(path) or {}), name: micro})
    log.info(
        "batch_size=auto: micro-batch %d x %d accumulation steps x %d processes = %d",
        micro,
        accumulation,
        accelerator.num_processes,
        effective,
    )
    return micro, accumulation


def longest_rows_probe(
    model: Any, train_sets: list[Any], tokenizer: Any, device: Any, multiple: int | None = None
) -> Callable[[int], None]:
    """`probe(n)`: forward and backward on the n longest rows of each training set (padded as training pads them),
    with optimizer-state-sized buffers held (AdamW keeps two fp32 tensors per trainable parameter), on `device`."""
    import torch

    from xorder.data.batching import Collator

    def probe(n: int) -> None:
        model.to(device)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        state = torch.empty(2 * trainable, dtype=torch.float32, device=device)
        try:
            for ts in train_sets:
                lengths = ts.features["length"]
                longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:n]
                batch = Collator(ts.kind, tokenizer, ts.mlm_probability, multiple)([ts.features[i] for i in longest])
                batch.pop("row")
                loss, _ = model(ts.head, {k: v.to(device) for k, v in batch.items()})
                loss.backward()
        finally:
            model.zero_grad(set_to_none=True)
            del state

    return probe
