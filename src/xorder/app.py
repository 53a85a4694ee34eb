"""The Hydra application behind `xorder run`: one call of `cell` per study cell (many under -m)."""

from __future__ import annotations

import contextlib
import logging
import sys

import hydra
from omegaconf import DictConfig

from xorder import checks, directories
from xorder.config import register_configs
from xorder.errors import EXIT_USER_ERROR, XorderError
from xorder.records import register_resolvers

register_configs()
register_resolvers()

log = logging.getLogger("xorder")

# Set once Hydra has composed a config and handed it to `cell`: an exit status of 1 before that point
# is a composition error (unknown option, misspelt key, wrong type), i.e. a user mistake.
_composed = False
# Cells of a multirun (in this process) that stopped on a user mistake; the others still run.
_failures: list[tuple[str, str]] = []


@hydra.main(version_base="1.3", config_path="pkg://xorder.conf", config_name="config")
def cell(cfg: DictConfig) -> None:
    global _composed
    _composed = True
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from xorder import distributed, records

    distributed.export_submitit_env()  # the tasks of a multi-task submitit job train this cell as one group
    hydra_cfg = HydraConfig.get()
    record_dir = hydra_cfg.runtime.output_dir
    main = distributed.rank() == 0
    try:
        checks.config(cfg)  # this cell's values (a sweep sets them per cell); the callback checked the base config
        directories.writable(cfg)
        _run(cfg, record_dir, main, distributed.parallel_jobs(hydra_cfg.launcher))
    except XorderError as err:
        if not main:
            distributed.exit_failed(err)
        log.error("%s", err)
        with contextlib.suppress(OSError):  # an unwritable results_dir is itself the error being reported
            records.write_error(record_dir, str(err))  # `status` says failed, with the reason, never done
        if hydra_cfg.mode != RunMode.MULTIRUN:
            print(f"xorder: error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        _failures.append((record_dir, str(err)))
    except Exception as err:
        if not main:
            distributed.exit_failed(err)
        raise


def _run(cfg: DictConfig, record_dir: str, main: bool, parallel: int | None) -> None:
    """The cell under its lock, which the first process of a multi-process cell takes and decides under: skip a
    complete record, else train; a stop signal ends the run with a checkpoint that the requeued job resumes."""
    from xorder import distributed, records
    from xorder.errors import Preempted
    from xorder.plan import config_hash

    try:
        with records.cell_lock(record_dir) if main else contextlib.nullcontext():
            if distributed.from_main(lambda: records.completed(record_dir, cfg, config_hash(cfg)) and not cfg.force):
                if main:
                    log.info("skip: complete record at %s (force=true reruns it)", record_dir)
                return
            if main:
                records.clear_error(record_dir)
            distributed.pin_gpus(cfg.gpus_per_job, parallel)  # before anything starts CUDA
            from xorder.run import run_cell

            distributed.install_stop_signals()
            run_cell(cfg, record_dir)
    except Preempted as stopped:
        distributed.leave(stopped)
    finally:
        distributed.restore_signals()


def launch(args: list[str]) -> int:
    """Run the Hydra app on `args` exactly as if they had been given to it on the command line, with xorder's
    callbacks: the checks before Hydra writes or submits anything, and what is said around a grid (summary)."""
    from xorder import summary

    sys.argv = [sys.argv[0], *args, checks.CALLBACK_OVERRIDE, summary.CALLBACK_OVERRIDE]
    try:
        cell()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if code == 1 and not _composed:
            return EXIT_USER_ERROR
        return code
    return 0
