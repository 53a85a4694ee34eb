"""`xorder status [-m] [--config-dir DIR] OVERRIDES`: where each cell of a run or grid stands (done, running,
failed, stale, missing) and which of its stages are cached, read from the run records and the stage cache alone.

Takes the overrides of `xorder run` (and -m for a grid). One line per cell (cells that are one record count
once): its record directory under results_dir, its state, and each stage as name[hash]:cached, partial@STEP
(a resumable checkpoint), training (its lock is held) or missing. The last line counts cells and stages.

  done     a complete record of this very config
  running  another process holds the cell's lock
  failed   the cell stopped on a mistake; the reason (its error.txt) is printed below it
  stale    a complete record of a different config under the same directory (force=true replaces it)
  damaged  a record whose predictions or config are missing or changed (running the cell again repairs it)
  missing  no record yet

exit status: 0 every cell done; 1 work remains (cells missing, running, stale or damaged, none failed); 3 some cell
failed; 2 the command itself is wrong (unknown option, bad override)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xorder import configs, records
from xorder.errors import XorderError
from xorder.plan import StageSpec, config_hash, plan
from xorder.stage_cache import StageDir

USAGE = "usage: xorder status [-m] [--config-dir DIR] [OVERRIDE ...]   (the overrides of `xorder run`)"
EXIT_INCOMPLETE = 1  # some cells missing, running or stale
EXIT_FAILED = 3  # some cell failed (2 is a mistake in the command itself)


@dataclass
class CellStatus:
    path: str  # record directory relative to results_dir
    state: str  # done | running | failed | stale | damaged | missing
    stages: list[tuple[str, str, str]]  # (stage name, hash, cached | partial@N | training | missing)
    detail: str = ""


def stage_state(cache_root: Path, stage: StageSpec) -> str:
    folder = StageDir(cache_root / stage.hash)
    if folder.is_complete():
        return "cached"
    if records.is_locked(folder.lock):
        return "training"
    step = folder.checkpoint_step()
    return "missing" if step is None else f"partial@{step}"


def cell_status(overrides: list[str]) -> CellStatus:
    cfg = configs.compose(overrides)
    relative = records.cell_path(cfg)
    record_dir = Path(cfg.results_dir).expanduser() / relative
    cache_root = Path(cfg.cache_dir).expanduser() / "stages"
    stages = [(s.name, s.hash, stage_state(cache_root, s)) for s in plan(cfg)]
    detail = ""
    if records.is_running(record_dir):
        state = "running"
    elif (metrics := records.read_metrics(record_dir)) is not None and (bad := records.damaged(record_dir, metrics)):
        state, detail = (
            "damaged",
            f"{', '.join(bad)} missing or changed since the record was written: run the cell "
            "again (no force needed; its stages are cached)",
        )
    elif metrics is not None:
        try:
            state = "done" if records.completed(record_dir, cfg, config_hash(cfg)) else "missing"
        except XorderError as err:
            state, detail = "stale", str(err)
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
    cells = configs.expand(args, "status")
    statuses = [cell_status(overrides) for overrides in cells]
    unique = {s.path: s for s in statuses}  # cells that are one and the same record count once
    width = max(len(p) for p in unique)
    print(f"{'cell':<{width}}  {'state':<8} stages")
    for status in unique.values():
        stages = "  ".join(f"{name}[{h[:8]}]:{state}" for name, h, state in status.stages)
        print(f"{status.path:<{width}}  {status.state:<8} {stages}")
        if status.detail:
            print(f"{'':<{width}}  {'':<8} {status.detail}")
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
