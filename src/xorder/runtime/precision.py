"""Which mixed precision a cell trains in: an explicit `trainer.precision`, else one chosen through Accelerate
(`accelerate launch --mixed_precision`, `accelerate config`), else `auto`'s choice for the machine. And which
precision a stage hash covers: never the machine's own choice, so that a login node and a GPU node agree."""

from __future__ import annotations

import os
from pathlib import Path

PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"


def resolve_precision(setting: str) -> tuple[str, str]:
    """(the mixed precision to train with, where it comes from): an explicit `trainer.precision` wins, then one
    chosen through Accelerate, then `auto`'s choice for this machine (bf16, fp16 on older GPUs, fp32 on CPU)."""
    if setting != "auto":
        return setting, "trainer.precision"
    chosen, source = configured_precision()
    if chosen is not None:
        return chosen, source
    import torch

    if torch.cuda.is_available():  # bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16"), "trainer.precision=auto on this machine"
    return "no", "trainer.precision=auto on this machine"


def hashed_precision(setting: str) -> str:
    """The precision a stage hash covers: the setting, or with `auto` the precision chosen through Accelerate.
    An `auto` left to the hardware stays `auto`: a hash must not depend on the machine that computes it (the skip
    check and `xorder status` run on login nodes and CPUs), and the precision used is in the stage's summary and
    the record's provenance."""
    if setting != "auto":
        return setting
    return configured_precision()[0] or setting


def configured_precision() -> tuple[str | None, str]:
    """(the precision chosen for Accelerate, or None when none was, where it comes from). `Accelerator()` reads
    only ACCELERATE_MIXED_PRECISION, which `accelerate launch` always sets, to `no` when nothing was chosen; so
    under `accelerate launch` the launch's own arguments and config file tell a choice of `no` from its default."""
    value = os.environ.get(PRECISION_ENV)
    if value is None:
        return None, "unset"
    value = value.lower()
    args = _accelerate_launch_args()
    if args is None:
        return value, f"{PRECISION_ENV} in the environment"
    if _option(args, "mixed_precision") is not None:
        return value, "accelerate launch --mixed_precision"
    if _config_file_precision(args) is not None:
        return value, "accelerate config"
    if value == "no":
        return None, "accelerate launch (nothing chosen)"
    return value, "accelerate launch"


def _accelerate_launch_args(pid: int | None = None) -> list[str] | None:
    """The arguments after `launch` of the `accelerate launch` process this process runs under (its parent, or a
    few levels up: the multi-GPU launcher runs torch's elastic agent inside itself), None when there is none.
    Linux only (/proc); elsewhere a set ACCELERATE_MIXED_PRECISION counts as a choice."""
    pid = os.getppid() if pid is None else pid
    for _ in range(4):
        if pid <= 1:
            return None
        argv = _cmdline(pid)
        for index, arg in enumerate(argv[:3]):  # interpreter, then the script or `-m module`
            name = Path(arg).name
            if name == "accelerate-launch" or arg == "accelerate.commands.launch":
                return argv[index + 1 :]
            if name == "accelerate" or arg == "accelerate.commands.accelerate_cli":
                return argv[index + 2 :] if argv[index + 1 : index + 2] == ["launch"] else None
        pid = _parent(pid)
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _option(args: list[str], name: str) -> str | None:
    """The value of `--name X` / `--name=X` (with - or _, as Accelerate's parser accepts). xorder's own arguments
    are Hydra overrides (key=value), so an option of that spelling is the launcher's."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    for index, arg in enumerate(args):
        key, equals, value = arg.partition("=")
        if key in spellings:
            return value if equals else (args[index + 1] if index + 1 < len(args) else None)
    return None


def _config_file_precision(args: list[str]) -> str | None:
    """`mixed_precision` of the config file that `accelerate launch` read: its --config_file, else the default
    file written by `accelerate config`, which the launch ignores under --cpu."""
    path = _option(args, "config_file")
    if path is None:
        if "--cpu" in args:
            return None
        home = os.environ.get("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"))
        path = os.path.join(os.path.expanduser(home), "accelerate", "default_config.yaml")
    if not os.path.isfile(path):
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())  # the JSON variant is YAML too
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("mixed_precision") if isinstance(data, dict) else None
    return None if value is None else str(value).lower()


# ------------------------------------------------------------------------------------------ stop signals
