"""What a stage keeps while it trains: the resumable checkpoint (Accelerate's state, the scheduler, the loop's own
state, and for the target the running sum of averaged weights), the best weights of early stopping, and the
checkpoint average itself.

A checkpoint is written into a temporary folder with a manifest of every file's sha256, then swapped in; a
resumed run verifies the manifest before loading, so a damaged RNG or optimizer state stops with the folder to
delete instead of the run going on differently (Accelerate itself only logs a failed RNG load)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from xorder import fsdp
from xorder.errors import XorderError
from xorder.fileio import damaged, digests, read_json, recover_dir, swap_dir, write_json

LOOP_STATE = "loop.json"
MANIFEST = "manifest.json"
SCHEDULER = "scheduler.pt"
AVERAGE = "average.pt"
BEST = "backbone.pt"


def save(
    accelerator: Any, scheduler: Any, loop_state: dict[str, Any], average: Averager | None, checkpoint: Path
) -> None:
    """Every rank writes its part (RNG states) into a temporary folder; the main process adds the rest and the
    manifest, then swaps it in for the previous checkpoint."""
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's RNG state is in tmp before it is renamed
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / SCHEDULER)
        if average is not None:
            torch.save(average.state(), tmp / AVERAGE)
        (tmp / LOOP_STATE).write_text(json.dumps(loop_state))
        write_json(tmp / MANIFEST, digests(tmp))
        swap_dir(tmp, checkpoint)
    accelerator.wait_for_everyone()


def loop_state(checkpoint: Path) -> dict[str, Any] | None:
    """The loop's saved state, or None when there is no checkpoint to resume from."""
    recover_dir(checkpoint)
    state = read_json(checkpoint / LOOP_STATE)
    return state if isinstance(state, dict) else None


def load(accelerator: Any, scheduler: Any, average: Averager | None, checkpoint: Path) -> None:
    """Restore what `save` wrote, after checking that none of it changed since."""
    manifest = read_json(checkpoint / MANIFEST)
    problem = "it has no manifest" if not isinstance(manifest, dict) else None
    if isinstance(manifest, dict):
        bad = damaged(checkpoint, manifest)
        problem = f"{', '.join(bad[:3])} {'is' if len(bad) == 1 else 'are'} missing or changed" if bad else None
    if problem is not None:
        raise XorderError(
            f"the resumable checkpoint {checkpoint} is damaged ({problem}): delete that folder to "
            "train the stage from its beginning"
        )
    accelerator.load_state(str(checkpoint))
    scheduler.load_state_dict(torch.load(checkpoint / SCHEDULER, weights_only=True))
    if average is not None and (checkpoint / AVERAGE).is_file():
        average.load(
            torch.load(checkpoint / AVERAGE, map_location="cpu", weights_only=True),
            weights=accelerator.is_main_process or not fsdp.active(accelerator),
        )


def save_best(model: torch.nn.Module, accelerator: Any, path: Path) -> None:
    """The backbone at the best evaluation so far (every rank takes part: FSDP gathers shards here)."""
    accelerator.wait_for_everyone()
    state_dict = fsdp.state_dict(accelerator, model)
    if accelerator.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({k: v for k, v in state_dict.items() if k.startswith("backbone.")}, tmp / BEST)
        swap_dir(tmp, path)
    accelerator.wait_for_everyone()


def best_backbone(path: Path) -> dict[str, torch.Tensor]:
    """The backbone weights saved at the best evaluation (keys start with 'backbone.')."""
    weights: dict[str, torch.Tensor] = torch.load(path / BEST, map_location="cpu", weights_only=True)
    return weights


class Averager:
    """The running sum of the model's weights at every evaluation of the target (checkpoint averaging,
    Schmidt et al. 2023): the averaged model needs no target-language dev set to be chosen. Kept in float32 on
    the CPU, so it costs host memory, not accelerator memory. Under FSDP only the main process holds it (the
    gathered weights reach that process alone) and sends each process its shards of the mean."""

    def __init__(self) -> None:
        self.total: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, model: torch.nn.Module, accelerator: Any) -> None:
        state_dict = accelerator.get_state_dict(model)  # every rank: FSDP gathers shards here (to the main one)
        for key, value in state_dict.items():
            if value.is_floating_point():
                value = value.detach().to("cpu", torch.float32)
                self.total[key] = value.clone() if key not in self.total else self.total[key].add_(value)
        self.count += 1

    def apply(self, model: torch.nn.Module, accelerator: Any) -> None:
        """Load the mean of the added weights into `model` (floating-point tensors; the rest stays as is)."""
        target = accelerator.unwrap_model(model)
        dtypes = {key: value.dtype for key, value in target.state_dict().items()}  # under FSDP: local shards
        mean = {key: (value / self.count).to(dtypes[key]) for key, value in self.total.items()}
        if fsdp.active(accelerator):
            fsdp.load_full_state_dict(target, mean)
        else:
            target.load_state_dict(mean, strict=False)

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count}

    def load(self, state: dict[str, Any], weights: bool = True) -> None:
        """What `state()` returned; without `weights` only the count (a process that holds no sum under FSDP)."""
        self.total, self.count = state["total"] if weights else {}, int(state["count"])
