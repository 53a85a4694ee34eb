"""FSDP through Accelerate: what `accelerate launch --use_fsdp --fsdp_version 2 ...` (or an `accelerate config`
with FSDP) asks for, made to hold for xorder's loop.

- xorder trains FSDP2 (`fully_shard`: every parameter stays itself, as a sharded DTensor) and refuses FSDP1. The
  optimizer's weight-decay groups and the frozen LM head need nothing special under FSDP2, while FSDP1 flattens
  parameters unless `use_orig_params` is set, and on CPU processes needs two workarounds that bypass Accelerate
  (another device name; its full state dict segfaults under gloo): a CPU test of FSDP1 would not test what users run.
- Accelerate builds FSDP only for GPU-like devices: on CPU processes (gloo) it silently trains DDP. `configure`
  switches such an accelerator to FSDP when FSDP was asked for, so that CPU processes run the GPU code path.
- Every process loads the full weights itself. With `cpu_ram_efficient_loading` (accelerate launch's default) only
  the first process loads them and sends them out after sharding, and Accelerate re-ties tied weights only through
  the prepared model's own `tie_weights`, which xorder's multi-task wrapper does not have: measured on two CPU
  processes, the training loss then left DDP's from the fourth step on.
- torch's FSDP2 optimizer loading is strict: a parameter without AdamW state (a head not sampled yet) would make a
  checkpoint unloadable, so `prime_adamw` gives every parameter the state AdamW would give it at its first step.

Nothing here imports torch or accelerate at module level."""

from __future__ import annotations

import logging
import os
from typing import Any

from xorder.errors import XorderError

log = logging.getLogger("xorder")

USE_FSDP = "ACCELERATE_USE_FSDP"  # set by `accelerate launch --use_fsdp` and by an `accelerate config` with FSDP
VERSION = "FSDP_VERSION"
RAM_EFFICIENT_LOADING = "FSDP_CPU_RAM_EFFICIENT_LOADING"  # read by transformers' from_pretrained, too


def requested() -> bool:
    return os.environ.get(USE_FSDP, "false").lower() == "true"


def check_request() -> None:
    """Before the Accelerator is built (it reads these variables): refuse FSDP1, and have every process load the
    full weights (transformers' from_pretrained reads the loading variable too)."""
    if not requested():
        return
    version = os.environ.get(VERSION, "1")  # Accelerate's default, also under accelerate launch
    if version != "2":
        raise XorderError(
            f"FSDP version {version} was asked for; xorder trains FSDP2 only: add --fsdp_version 2 to accelerate "
            f"launch (or fsdp_version: 2 in the accelerate config, {VERSION}=2 in the environment)"
        )
    os.environ[RAM_EFFICIENT_LOADING] = "false"


def configure(accelerator: Any) -> None:
    """Make a new accelerator train FSDP wherever FSDP was asked for, also on CPU processes."""
    from accelerate import FullyShardedDataParallelPlugin, PartialState
    from accelerate.utils import DistributedType

    if not requested():
        return
    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables, as Accelerator(cpu=False) reads them
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
        # AcceleratorState copies PartialState's attributes whenever it is instantiated: both must say FSDP
        PartialState().distributed_type = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    elif accelerator.distributed_type != DistributedType.FSDP:
        log.warning(
            "%s=true, but this is a single-process run: FSDP needs several processes (torchrun, accelerate "
            "launch --num_processes N); training without it",
            USE_FSDP,
        )


def active(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return bool(accelerator.distributed_type == DistributedType.FSDP)


def describe(accelerator: Any) -> str:
    """How the processes shared the training, for records: FSDP (sharded, FSDP2), DDP (a replica per process),
    DeepSpeed, or none (one process)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    named = {DistributedType.FSDP: "FSDP", DistributedType.DEEPSPEED: "DeepSpeed", DistributedType.NO: "none"}
    if kind in named:
        return named[kind]
    return "DDP" if str(kind.value).startswith("MULTI_") else str(kind.value)


def prime_adamw(optimizer: Any) -> None:
    """Give every trainable parameter without state what torch's Adam/AdamW creates at its first step (step 0,
    zero moments): the updates are unchanged, and every checkpoint holds state for every parameter, which FSDP2's
    strict optimizer loading requires."""
    import torch
    from torch.optim.optimizer import _get_scalar_dtype

    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper
    for group in inner.param_groups:
        for param in group["params"]:
            state = inner.state[param]
            if not param.requires_grad or state:
                continue
            on_device = group.get("capturable") or group.get("fused")
            state["step"] = (
                torch.zeros((), dtype=_get_scalar_dtype(is_fused=group.get("fused")), device=param.device)
                if on_device
                else torch.tensor(0.0, dtype=_get_scalar_dtype())
            )
            for key in ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if group.get("amsgrad") else ())):
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)


def full(tensor: Any) -> Any:
    """A plain tensor of a value FSDP2 computed as a DTensor (the gradient norm of sharded gradients)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def state_dict(accelerator: Any, model: Any) -> dict[str, Any]:
    """`accelerator.get_state_dict(model)` (every process must call it; under FSDP only the main process gets the
    weights), with tied parameters sharing one tensor again: FSDP gathers each name separately, and transformers'
    save_pretrained drops a tied copy only when it shares storage with the weight it is tied to."""
    gathered: dict[str, Any] = accelerator.get_state_dict(model)
    if not gathered or not active(accelerator):
        return gathered
    first: dict[int, str] = {}
    for name, param in accelerator.unwrap_model(model).named_parameters(remove_duplicate=False):
        tied_to = first.setdefault(id(param), name)
        if tied_to != name and tied_to in gathered and name in gathered:
            gathered[name] = gathered[tied_to]
    return gathered


def load_full_state_dict(model: Any, state_dict: dict[str, Any]) -> None:
    """Load a full state dict that only the first process holds into a sharded model (each process receives its
    shards); keys it lacks keep their values."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(
        model, state_dict, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    )
