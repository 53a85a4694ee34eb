"""`xorder cache list|clean`: what the stage cache (cache_dir/stages/) keeps, and freeing its disk.

Each trained stage keeps its encoder (XLM-R Large: about 2.2 GB) until it is deleted, so a grid's cache grows
by one encoder per distinct intermediate stage. `list` shows every stage with what it trained, its size, its
age, its state and the records that name it; `clean` deletes stages chosen by --unused, --older-than DAYS or
--all (given together, a stage must match each), as a dry run unless --yes. A stage whose lock is held (a job
is training or reading it) is never deleted. A deleted stage is trained again by the next cell that needs it."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from xorder.config import XorderConfig
from xorder.errors import XorderError
from xorder.pipeline.stage_cache import StageDir
from xorder.records import METRICS, is_locked, read_metrics

DAY_S = 86400.0


@dataclass
class Stage:
    folder: StageDir
    what: str  # "english: mnli", or "-" for a stage that never finished
    size: int  # bytes
    modified: float  # when its files were last written (epoch seconds)
    state: str  # complete | partial@STEP | partial | training
    records: list[str] = field(default_factory=list)  # record directories (relative) that name it

    @property
    def name(self) -> str:
        return self.folder.root.name

    def age_days(self, now: float) -> float:
        return max(0.0, now - self.modified) / DAY_S


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one XorderError line (exit status 2) instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        raise XorderError(f"{self.prog}: {message} (--help lists the options)")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="xorder cache",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="action", required=True, metavar="{list,clean}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--cache-dir",
        default=XorderConfig.cache_dir,
        help="the cache_dir of the runs (default: %(default)s, as in conf/config.yaml)",
    )
    common.add_argument(
        "--results",
        action="append",
        metavar="DIR",
        help="a results_dir whose records count as users of stages; repeatable (default: results)",
    )
    sub.add_parser("list", parents=[common], help="every stage: hash, what it trained, size, age, state, records")
    clean = sub.add_parser("clean", parents=[common], help="delete stages (a dry run unless --yes)")
    clean.add_argument(
        "--unused",
        action="store_true",
        help="complete stages that no record under --results names (a record elsewhere may!)",
    )
    clean.add_argument("--older-than", type=float, metavar="DAYS", help="stages last written more than DAYS ago")
    clean.add_argument("--all", action="store_true", help="every stage")
    clean.add_argument("--yes", action="store_true", help="delete; without it, only say what would be deleted")
    return top


def main(args: list[str]) -> int:
    options = parser().parse_args(args)
    root = Path(options.cache_dir).expanduser() / "stages"
    results = [Path(r).expanduser() for r in options.results or ["results"]]
    stages = scan(root, results)
    if options.action == "list":
        print(listing(stages, root))
        return 0
    if not (options.unused or options.older_than is not None or options.all):
        raise XorderError("cache clean needs --unused, --older-than DAYS or --all (then --yes to delete)")
    if options.older_than is not None and options.older_than < 0:
        raise XorderError(f"--older-than {options.older_than:g}: give a number of days, 0 or more")
    chosen = select(stages, options.unused, options.older_than, time.time())
    busy = [s for s in chosen if s.state == "training"]
    chosen = [s for s in chosen if s.state != "training"]
    total = sum(s.size for s in chosen)
    if not options.yes:
        for stage in chosen:
            print(f"would delete {stage.name}  {stage.what}  {human(stage.size)}")
        print(
            f"would delete {len(chosen)} stage{'s' * (len(chosen) != 1)}, {human(total)}"
            f"{_busy(busy)}; run again with --yes to delete"
        )
        return 0
    deleted = [s for s in chosen if delete(s.folder)]
    kept = [s for s in chosen if s not in deleted]
    print(
        f"deleted {len(deleted)} stage{'s' * (len(deleted) != 1)}, {human(sum(s.size for s in deleted))} freed"
        f"{_busy(busy + kept)}"
    )
    return 0


def scan(root: Path, results: list[Path]) -> list[Stage]:
    """Every stage folder under `root`, with the records under `results` that name it."""
    users = stage_users(results)
    stages = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not entry.is_dir():
            continue  # lock files
        folder = StageDir(entry)
        summary = folder.read_summary()
        what = f"{summary.name}: {'+'.join(summary.tasks)}" if summary is not None else "-"
        size, modified = _usage(entry)
        if is_locked(folder.lock):
            state = "training"
        elif folder.is_complete():
            state = "complete"
        else:
            step = folder.checkpoint_step()
            state = "partial" if step is None else f"partial@{step}"
        stages.append(Stage(folder, what, size, modified, state, users.get(entry.name, [])))
    return stages


def stage_users(results: list[Path]) -> dict[str, list[str]]:
    """Stage hash -> the record directories (relative to their results dir) whose metrics.json names it."""
    users: dict[str, list[str]] = {}
    for base in results:
        for top, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if METRICS not in files:
                continue
            metrics = read_metrics(top)
            for stage in metrics.get("stages", []) if isinstance(metrics, dict) else []:
                users.setdefault(str(stage.get("hash")), []).append(Path(top).relative_to(base).as_posix())
    return users


def select(stages: list[Stage], unused: bool, older_than: float | None, now: float) -> list[Stage]:
    """The stages that match every given condition (--all alone matches every stage)."""
    return [
        s
        for s in stages
        if (not unused or (s.state == "complete" and not s.records))
        and (older_than is None or s.age_days(now) > older_than)
    ]


def delete(folder: StageDir) -> bool:
    """Delete a stage under its lock; False when a job holds the lock (it is training or about to read it)."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(folder.lock), timeout=0):
            shutil.rmtree(folder.root)
    except Timeout:
        return False
    return True


def listing(stages: list[Stage], root: Path) -> str:
    now = time.time()
    rows = [("stage", "trained", "size", "age", "state", "records")]
    for s in stages:
        used = "-" if not s.records else f"{len(s.records)} ({s.records[0]}{' ...' if len(s.records) > 1 else ''})"
        rows.append((s.name, s.what, human(s.size), f"{s.age_days(now):.1f} d", s.state, used))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[5] for row in rows]
    others = (
        [f"{p.name} {human(_usage(p)[0])}" for p in sorted(root.parent.iterdir()) if p.is_dir() and p != root]
        if root.parent.is_dir()
        else []
    )
    lines.append(
        f"{len(stages)} stage{'s' * (len(stages) != 1)}, {human(sum(s.size for s in stages))} in {root}"
        + (f"; also in {root.parent}: {', '.join(others)}" if others else "")
    )
    return "\n".join(lines)


def _usage(path: Path) -> tuple[int, float]:
    """(bytes of every file under `path`, the latest time one of them or a folder was written)."""
    size, modified = 0, path.stat().st_mtime
    for top, _dirs, files in os.walk(path):
        modified = max(modified, os.stat(top).st_mtime)
        for name in files:
            info = os.lstat(os.path.join(top, name))
            size += info.st_size
            modified = max(modified, info.st_mtime)
    return size, modified


def human(size: float) -> str:
    """Decimal units, as disks are sold: 2.2 GB."""
    units = ["B", "KB", "MB", "GB", "TB"]
    power = 0
    while size >= 1000 and power < len(units) - 1:
        size /= 1000
        power += 1
    return f"{size:.0f} B" if power == 0 else f"{size:.1f} {units[power]}"


def _busy(busy: list[Stage]) -> str:
    return f" ({len(busy)} in use by a running job, left alone)" if busy else ""
