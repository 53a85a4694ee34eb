"""What a stage keeps while it trains: the resumable checkpoint (Accelerate's state, the scheduler, the loop's own
state, and for the target the running sum of averaged weights), the best weights of early stopping, and the
checkpoint average itself.

A checkpoint, and the best weights, are written into a temporary folder with a manifest of every file's sha256
(`xorder.storage.integrity`), then swapped in; a resumed run verifies both manifests and that every RNG state loads
before it loads anything, so a damaged RNG, optimizer or best-weights file stops with the folder to delete instead of
the run going on differently (Accelerate itself only logs a failed RNG load and goes on with other randomness)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from xorder.errors import XorderError
from xorder.runtime import fsdp
from xorder.storage.fileio import read_json, recover_dir, swap_dir
from xorder.storage.integrity import MANIFEST, Digests, changed_phrase, of_bytes

LOOP_STATE = "loop.json"
RNG_STATES = "random_states_*.pkl"  # Accelerate's, one per process
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
        Digests(None).seal(tmp)
        swap_dir(tmp, checkpoint)
    accelerator.wait_for_everyone()


def loop_state(checkpoint: Path) -> dict[str, Any] | None:
    """The loop's saved state, or None when there is no checkpoint to resume from (a checkpoint is swapped in
    whole: one without a readable loop state is damaged)."""
    recover_dir(checkpoint)
    if not checkpoint.is_dir():
        return None
    state = read_json(checkpoint / LOOP_STATE)
    if not isinstance(state, dict):
        raise XorderError(
            f"the resumable checkpoint {checkpoint} is damaged ({LOOP_STATE} is missing or unreadable): delete that "
            "folder to train the stage from its beginning"
        )
    return state


def load(accelerator: Any, scheduler: Any, average: Averager | None, checkpoint: Path, best: Path) -> None:
    """Restore what `save` wrote, after checking that none of it (nor the best weights beside it) changed since and
    that every RNG state loads."""
    bad = Digests(None).unsealed(checkpoint)
    if bad is not None:
        raise XorderError(
            f"the resumable checkpoint {checkpoint} is damaged ({changed_phrase(bad)}): delete that folder to "
            "train the stage from its beginning"
        )
    recover_dir(best)
    if best.exists():
        verify_best(best)
    _check_rng_states(checkpoint)
    accelerator.load_state(str(checkpoint))
    scheduler.load_state_dict(torch.load(checkpoint / SCHEDULER, weights_only=True))
    if average is not None and (checkpoint / AVERAGE).is_file():
        average.load(
            torch.load(checkpoint / AVERAGE, map_location="cpu", weights_only=True),
            weights=accelerator.is_main_process or not fsdp.active(accelerator),
        )


def _check_rng_states(checkpoint: Path) -> None:
    """Every process's RNG state loads as Accelerate loads it: one that does not (a foreign pickle, refused by
    torch's restricted loader even when its manifest entry matches) would resume with other randomness."""
    from accelerate.utils import load as accelerate_load

    for path in sorted(checkpoint.glob(RNG_STATES)):
        try:
            states = accelerate_load(path)
            problem = None if isinstance(states, dict) and "random_state" in states else "it holds no RNG state"
        except Exception as err:  # torch's unpickler raises many types for a file it refuses
            problem = f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
        if problem is not None:
            raise XorderError(
                f"the resumable checkpoint {checkpoint} cannot be resumed: {path.name} does not load ({problem}): "
                "delete that folder to train the stage from its beginning"
            )


def save_best(model: torch.nn.Module, accelerator: Any, path: Path, heads: bool = False) -> None:
    """The backbone (`heads`: the whole model) at the best evaluation so far, or whichever weights the caller
    keeps (every rank takes part: FSDP gathers shards here), with a manifest of its digest."""
    accelerator.wait_for_everyone()
    state_dict = fsdp.state_dict(accelerator, model)
    if accelerator.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({k: v for k, v in state_dict.items() if heads or k.startswith("backbone.")}, tmp / BEST)
        Digests(None).seal(tmp)
        swap_dir(tmp, path)
    accelerator.wait_for_everyone()


def verify_best(path: Path) -> bytes:
    """The best weights' file, read once and checked against its manifest."""
    manifest = read_json(path / MANIFEST)
    recorded = manifest.get(BEST) if isinstance(manifest, dict) else None
    data = (path / BEST).read_bytes() if (path / BEST).is_file() else None
    if recorded is None or data is None or of_bytes(data) != recorded:
        what = MANIFEST if recorded is None else BEST
        raise XorderError(
            f"the best weights in {path} are damaged ({what} is missing or changed since they were saved): delete "
            f"{path.parent} to train the stage from its beginning"
        )
    return data


def best_backbone(path: Path) -> dict[str, torch.Tensor]:
    """The weights `save_best` saved (keys start with 'backbone.', and 'heads.' where it kept them), checked
    before use."""
    weights: dict[str, torch.Tensor] = torch.load(io.BytesIO(verify_best(path)), map_location="cpu", weights_only=True)
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
