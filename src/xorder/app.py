"""The Hydra application behind `xorder run`: one call of `cell` per study cell (many under -m)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from functools import partial

import hydra
from omegaconf import DictConfig

from xorder import checks, console
from xorder.cell import register_resolvers
from xorder.config import register_configs
from xorder.errors import EXIT_USER_ERROR, XorderError
from xorder.runtime import directories

register_configs()
register_resolvers()

log = logging.getLogger("xorder")
FULL_ERROR = "HYDRA_FULL_ERROR"

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

    from xorder import records
    from xorder.runtime import distributed

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
    from xorder import records
    from xorder.cell import identify
    from xorder.data.identity import plan_cell
    from xorder.errors import Preempted
    from xorder.runtime import distributed

    try:
        identity = identify(cfg)
        with records.cell_lock(record_dir) if main else contextlib.nullcontext():
            if distributed.from_main(
                lambda: (
                    records.completed(record_dir, identity, plan_cell(identity.config)) and not _wanted(cfg, record_dir)
                )
            ):
                if main:
                    log.info("skip: complete record at %s (force=true reruns it)", record_dir)
                return
            if main:
                records.clear_error(record_dir)
            peak = partial(records.peak_gpu_memory, cfg.results_dir, cfg.model.name)
            distributed.pin_gpus(cfg.gpus_per_job, parallel, cfg.cells_per_gpu, peak)  # before anything starts CUDA
            from xorder.pipeline.run import run_cell

            distributed.install_stop_signals()
            with console.progress_logging():
                run_cell(identity, record_dir)
    except Preempted as stopped:
        distributed.leave(stopped)
    finally:
        distributed.restore_signals()


def _wanted(cfg: DictConfig, record_dir: str) -> bool:
    """Whether a complete record is to be written again: force=true, or a target model asked for and not there."""
    from xorder import records

    missing = cfg.trainer.save_target_model and not os.path.isdir(os.path.join(record_dir, records.TARGET_MODEL))
    return bool(cfg.force or missing)


def launch(args: list[str]) -> int:
    """Run the Hydra app on `args` exactly as if they had been given to it on the command line (xorder's callbacks,
    the checks and what is said around a grid, come from conf/config.yaml's hydra.callbacks). Hydra's errors
    are let through to here (HYDRA_FULL_ERROR) so that a composition mistake is said as xorder says it."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    sys.argv = [sys.argv[0], *args]
    previous = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"
    try:
        cell()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if code == 1 and not _composed:
            return EXIT_USER_ERROR
        return code
    except (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        OmegaConfBaseException,
        YAMLError,
    ) as err:
        if _composed and isinstance(err, (OmegaConfBaseException, YAMLError)):
            raise  # inside a cell: not a composition mistake
        if isinstance(err, YAMLError):  # a config file of one's own that is not yaml
            print(f"xorder: error: a config file does not parse: {' '.join(str(err).split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        known = checks.composition_error(err)
        if known is not None:
            print(f"xorder: error: {known}", file=sys.stderr)
        else:  # Hydra's own words, as it prints them (an unknown option comes with the list of valid ones)
            cause = f"\n{err.__cause__}" if isinstance(err.__cause__, OmegaConfBaseException) else ""
            print(f"xorder: error: {err}{cause}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = previous
    return 0
