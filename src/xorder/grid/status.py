"""`xorder status [-m] [--config-dir DIR] OVERRIDES`: where each cell of a run or grid stands (done, running,
failed, stale, missing) and which of its stages are cached, read from the run records and the stage cache alone.

Takes the overrides of `xorder run` (and -m for a grid). One line per cell (cells that are one record count
once): its record directory under results_dir, its state, and each stage as name[hash]:cached, partial@STEP
(a resumable checkpoint), training (its lock is held) or missing; a cached stage whose heads did not beat
their baselines on their dev data says unlearned instead of cached. The last line counts cells and stages.

  done        a complete record of this very config
  degenerate  a complete record whose selected model is useless: one value predicted in every evaluation set,
              or a regression head no closer to the gold than its mean (R² <= 0); the reason is printed below it
  running     another process holds the cell's lock
  failed      the cell stopped on a mistake; the reason (its error.txt) is printed below it
  stale       a complete record of a different config, or of data whose content changed since (the file is
              named), under the same directory (force=true replaces it)
  damaged     a record whose scores, predictions or config changed since it was written (force=true replaces it)
  missing     no record yet

exit status: 0 every cell done; 1 some cell is not done (missing, running, stale, damaged or degenerate; none
failed); 3 some cell failed; 2 the command itself is wrong (unknown option, bad override)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xorder import config_tree, records
from xorder.cell import identify
from xorder.data.identity import plan_cell
from xorder.errors import XorderError
from xorder.kinds.base import learned
from xorder.pipeline.stage_cache import StageDir
from xorder.plan import StageSpec

USAGE = "usage: xorder status [-m] [--config-dir DIR] [OVERRIDE ...]   (the overrides of `xorder run`)"
EXIT_INCOMPLETE = 1  # some cells missing, running, stale, damaged or degenerate
EXIT_FAILED = 3  # some cell failed (2 is a mistake in the command itself)


@dataclass
class CellStatus:
    path: str  # record directory relative to results_dir
    state: str  # done | degenerate | running | failed | stale | damaged | missing
    stages: list[tuple[str, str, str]]  # (stage name, hash, cached | unlearned | partial@N | training | missing)
    detail: str = ""


def stage_state(cache_root: Path, stage: StageSpec) -> str:
    folder = StageDir(cache_root / stage.hash)
    if folder.is_complete():
        summary = folder.read_summary()
        return "unlearned" if summary is not None and learned(summary.learning) is False else "cached"
    if records.is_locked(folder.lock):
        return "training"
    step = folder.checkpoint_step()
    return "missing" if step is None else f"partial@{step}"


def cell_status(overrides: list[str]) -> CellStatus:
    cell = identify(config_tree.compose(overrides))
    cfg = cell.config
    relative = cell.path
    record_dir = Path(cfg.results_dir).expanduser() / relative
    cache_root = Path(cfg.cache_dir).expanduser() / "stages"
    planned = plan_cell(cfg)
    stages = [(s.name, s.hash, stage_state(cache_root, s)) for s in planned]
    detail = ""
    metrics = records.read_metrics(record_dir)
    if records.is_running(record_dir):
        state = "running"
    elif bad := records.damaged(record_dir, metrics):
        state, detail = "damaged", records.damage_message(record_dir, bad)
    elif metrics is not None:
        try:
            state = "done" if records.completed(record_dir, cell, planned) else "missing"
        except XorderError as err:
            state, detail = "stale", str(err)
        if state == "done" and metrics.get("degenerate"):
            state, detail = "degenerate", str(metrics["degenerate"])
    elif (error := records.read_error(record_dir)) is not None:
        state, detail = "failed", error
    else:
        state = "missing"
    return CellStatus(relative, state, stages, detail)


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        print(__doc__.split("\n\n", 1)[1].rstrip())
        return 0
    cells = config_tree.expand(args, "status")
    statuses = [cell_status(overrides) for overrides in cells]
    unique = {s.path: s for s in statuses}  # cells that are one and the same record count once
    width = max(len(p) for p in unique)
    print(f"{'cell':<{width}}  {'state':<10} stages")
    for status in unique.values():
        stages = "  ".join(f"{name}[{h[:8]}]:{state}" for name, h, state in status.stages)
        print(f"{status.path:<{width}}  {status.state:<10} {stages}")
        if status.detail:
            print(f"{'':<{width}}  {'':<10} {status.detail}")
    counts: dict[str, int] = {}
    for status in unique.values():
        counts[status.state] = counts.get(status.state, 0) + 1
    distinct = {h: state for status in unique.values() for _, h, state in status.stages}
    stage_counts: dict[str, int] = {}
    for state in distinct.values():
        key = "partial" if state.startswith("partial") else state
        stage_counts[key] = stage_counts.get(key, 0) + 1
    print(
        f"cells: {len(unique)} ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}); "
        f"distinct stages: {len(distinct)} ({', '.join(f'{n} {k}' for k, n in sorted(stage_counts.items()))})"
    )
    if counts.get("failed"):
        return EXIT_FAILED
    return 0 if counts.get("done", 0) == len(unique) else EXIT_INCOMPLETE
