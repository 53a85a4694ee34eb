"""What `xorder run` says around a grid. A Hydra callback, so it runs in the launching process whatever the
launcher (in this process, joblib workers, Slurm jobs):

- a config that defines a grid (`hydra.sweeper.params`, as the grid presets do) run without -m: a warning,
  before the one cell runs, that only one cell runs and how to run the grid;
- the end of a grid: one line counting its cells (trained, reused, skipped, failed) and naming what to run
  next; when cells failed, an error naming each with its reason, and exit status 2;
- the console shows a cell's mistake once: as the `xorder: error:` line of a single run, or in the grid's
  error; the cell's log file keeps its own log line.

The counts are read from the records: Hydra writes each job's `.hydra/overrides.yaml` before the cell runs, so
the cells of this grid are the record directories where that file is newer than the grid's start, and a
record or an error newer than it was written by this grid."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xorder import console, records
from xorder.errors import EXIT_USER_ERROR
from xorder.storage.fileio import read_json

CLOCK_SLACK_S = 2.0  # file times on a shared filesystem may lag this machine's clock a little


@dataclass
class Outcome:
    """The record directories (relative to the results) of a grid's cells, by what happened to them."""

    trained: list[str] = field(default_factory=list)  # trained at least one stage
    reused: list[str] = field(default_factory=list)  # ran with every stage from the stage cache
    skipped: list[str] = field(default_factory=list)  # a complete record was there: nothing ran
    failed: list[str] = field(default_factory=list)  # stopped on a mistake (error.txt)
    unfinished: list[str] = field(default_factory=list)  # no record and no error: stopped from outside

    def line(self) -> str:
        counts = [
            f"{len(self.trained)} trained",
            f"{len(self.reused)} reused",
            f"{len(self.skipped)} skipped",
            f"{len(self.failed)} failed",
        ] + ([f"{len(self.unfinished)} unfinished"] if self.unfinished else [])
        total = sum(len(group) for group in (self.trained, self.reused, self.skipped, self.failed, self.unfinished))
        return f"{total} cell{'s' * (total != 1)}: {', '.join(counts)}"


def outcome(results: Path, since: float) -> Outcome:
    """The cells under `results` that a grid started at `since` ran or skipped: those whose job wrote its
    `.hydra/overrides.yaml` since then. A record or an error newer than that file was written by this job."""
    out = Outcome()
    for root, dirs, _ in os.walk(results):
        started = _mtime(Path(root, ".hydra", "overrides.yaml"))
        if started is not None and started >= since - CLOCK_SLACK_S:
            cell, rel = Path(root), Path(root).relative_to(results).as_posix()
            metrics = read_json(cell / records.METRICS)
            if (_mtime(cell / records.ERROR) or 0.0) >= started:
                out.failed.append(rel)
            elif isinstance(metrics, dict) and (_mtime(cell / records.METRICS) or 0.0) >= started:
                reused = all(stage.get("reused") for stage in metrics.get("stages", []))
                (out.reused if reused else out.trained).append(rel)
            elif isinstance(metrics, dict):
                out.skipped.append(rel)
            else:
                out.unfinished.append(rel)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return out


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class Summary(Callback):
    """The Hydra callback (conf/config.yaml registers it under hydra.callbacks)."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        params = OmegaConf.select(config, "hydra.sweeper.params") or {}
        if params:
            print(
                f"xorder: warning: this config defines a grid over {', '.join(params)} (hydra.sweeper.params), "
                f"but without -m only one cell runs; for the grid: {_command('run -m', config)}",
                file=sys.stderr,
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        for handler in logging.getLogger().handlers:  # Hydra has just set up this job's logging
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(_not_echoed)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = Path(str(config.hydra.sweep.dir))
        done = outcome(results, self.started)
        if done.failed:
            step = "fix what failed (below) and run the same command again: finished cells are skipped"
        elif done.unfinished:
            step = "run the same command again to finish them"
        else:
            step = f"xorder report --results {results}"
        console.say(f"grid: {done.line()}; next: {step}")
        if done.failed:
            print(
                f"xorder: error: {len(done.failed)} cell{'s' * (len(done.failed) != 1)} of the grid failed "
                "(the others ran):",
                file=sys.stderr,
            )
            for rel in done.failed:
                print(f"  {rel}: {records.read_error(results / rel)}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR)  # Hydra turns a callback's exceptions into warnings


def _not_echoed(record: logging.LogRecord) -> bool:
    """Console filter: xorder's own error records are said once, by the `xorder: error:` lines."""
    return not (record.name == "xorder" and record.levelno >= logging.ERROR)


def _command(verb: str, config: DictConfig) -> str:
    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task") or []]
    return f"xorder {verb} {shlex.join(overrides)}".rstrip()
