"""`xorder status [-m] OVERRIDES`: where each cell of a run or grid stands (done, running, failed, missing)
and which of its stages are cached, read from the run records and the stage cache alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xorder import configs, records
from xorder.errors import XorderError
from xorder.plan import StageSpec, config_hash, plan
from xorder.stage_cache import StageDir


@dataclass
class CellStatus:
    path: str  # record directory relative to results_dir
    state: str  # done | running | failed | stale | missing
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
    elif records.read_metrics(record_dir) is not None:
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
    cells = configs.expand(args)
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
    print(f"cells: {len(unique)} ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}); "
          f"distinct stages: {len(distinct)} ({', '.join(f'{n} {k}' for k, n in sorted(stage_counts.items()))})")
    return 0
