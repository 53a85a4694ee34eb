"""The directories a run writes to, checked before any work: `results_dir` and `cache_dir` can be created and
written; under a submitit launcher (Slurm, or its local stand-in) `results_dir`, where job files are pickled and
later unpickled, must not be writable by other users. Pure checks: nothing is created or written."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xorder.errors import XorderError


def writable(cfg: Any, hydra: Any = None) -> None:
    """results_dir and cache_dir can be created and written; under a submitit launcher results_dir is
    private (see `private`). `hydra`: Hydra's own config node; default: cfg.hydra, else the running app's."""
    for key in ("results_dir", "cache_dir"):
        _writable_dir(key, str(getattr(cfg, key)))
    hydra = hydra if hydra is not None else _hydra_node(cfg)
    if hydra is None:
        return
    target = str(OmegaConf.select(hydra, "launcher._target_", default="") or "")
    single_run = str(OmegaConf.select(hydra, "mode", default="")).split(".")[-1] == "RUN"  # no launcher involved
    if "submitit" in target and not single_run:
        private(cfg, hydra)


def _hydra_node(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig) and "hydra" in cfg:
        return cfg.hydra
    module = sys.modules.get("hydra.core.hydra_config")  # only inside a running Hydra app; never imported here
    if module is not None and module.HydraConfig.initialized():
        return module.HydraConfig.get()
    return None


def _nearest(path: Path) -> Path:
    """The path itself if it exists, else its nearest existing ancestor (where it would be created)."""
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _writable_dir(key: str, value: str) -> None:
    path = Path(os.path.abspath(os.path.expanduser(value)))
    probe = _nearest(path)
    rule = f"choose a directory you can write to ({key}=PATH)"
    if not probe.is_dir():
        what = "is not a directory" if probe == path else f"cannot be created: {probe} is not a directory"
        raise XorderError(f"{key}={value} {what}; {rule}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise XorderError(f"{key}={value} {what}; {rule}")


def private(cfg: Any, hydra: Any = None) -> None:
    """Under a submitit launcher, the folder where job files are pickled (results_dir/.submitit by default)
    must not be writable by other users: a job file another user can replace runs their code as you.
    Checked on results_dir and the submitit folder, or their nearest existing ancestor (where they will be
    created): group/other write bits, or an owner other than you (or root), stop the run."""
    value = str(cfg.results_dir)
    paths = [Path(os.path.abspath(os.path.expanduser(value)))]
    try:
        folder = str(OmegaConf.select(hydra, "launcher.submitit_folder", throw_on_resolution_failure=True) or "")
    except Exception:  # noqa: BLE001 - an interpolation only the running app can resolve: results_dir covers it
        folder = ""
    if folder:
        static = folder.split("%", 1)[0]
        paths.append(
            Path(os.path.abspath(os.path.expanduser(static if static.endswith("/") else os.path.dirname(static))))
        )
    for path in paths:
        probe = _nearest(path)
        try:
            info = probe.stat()
        except OSError:
            continue
        shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if shared:
            who = {stat.S_IWGRP: "its group", stat.S_IWOTH: "all users"}.get(shared, "its group and all users")
            why = f"{probe} is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
            fix = f"chmod go-w {probe}" if probe == path else f"mkdir -p -m 700 {path}"
        elif info.st_uid not in (os.getuid(), 0):
            why, fix = f"{probe} belongs to another user (uid {info.st_uid})", "use a directory of your own"
        else:
            continue
        raise XorderError(
            f"results_dir={value} is unsafe for the submitit (Slurm) launcher: {why}; submitit pickles every job "
            f"into it and the job unpickles that file, so a job file another user can replace runs their code as "
            f"you; fix: {fix}, or choose a private results_dir=PATH"
        )
