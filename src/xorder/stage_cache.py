"""The stage cache: `cache_dir/stages/<hash>/` holds a finished stage — encoder weights and tokenizer in `model/`,
or the target's evaluations in `evals/`, plus `summary.json` — and the marker `DONE`, written last, records the
sha256 of every file it vouches for. A reader verifies them before trusting the stage: damaged weights stop the
cell with the folder to delete, never train on silently. While a stage trains, `state/` holds its resumable
checkpoint and its best weights. A file lock makes a second process that needs the same stage wait for it and
reuse it. This module alone knows the folder layout."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xorder.errors import XorderError
from xorder.fileio import damaged, digests, read_json, write_json
from xorder.plan import StageSpec

log = logging.getLogger("xorder")


@dataclass(frozen=True)
class StageDir:
    """The files of one stage."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def done(self) -> Path:
        return self.root / "DONE"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def checkpoint(self) -> Path:
        return self.state / "checkpoint"

    @property
    def best(self) -> Path:
        return self.state / "best"

    @property
    def lock(self) -> Path:
        return self.root.with_name(self.root.name + ".lock")

    def is_complete(self) -> bool:
        return self.done.is_file()

    def checkpoint_step(self) -> int | None:
        """The step of the resumable checkpoint of an unfinished stage, if there is one."""
        loop = read_json(self.checkpoint / "loop.json")
        return loop.get("step") if isinstance(loop, dict) else None

    def verify(self) -> None:
        """Raise if a file the completion marker vouches for is missing or changed."""
        marker = read_json(self.done)
        if not isinstance(marker, dict):  # a stage finished before checksums were recorded: nothing to compare
            return
        bad = damaged(self.root, marker.get("files", {}))
        if bad:
            raise XorderError(
                f"the cached stage {self.root} is damaged ({', '.join(bad[:3])} "
                f"{'is' if len(bad) == 1 else 'are'} missing or changed since it was trained): delete "
                f"that folder to train the stage again"
            )

    def seal(self, stage: StageSpec, summary: dict[str, Any]) -> None:
        """Write the summary, drop the resumable state, then the marker with the checksums: the stage is done."""
        write_json(self.summary, summary)
        shutil.rmtree(self.state, ignore_errors=True)
        files = [str(p.relative_to(self.root)) for p in sorted(self.root.rglob("*")) if p.is_file() and p != self.done]
        write_json(self.done, {"hash": stage.hash, "files": digests(self.root, files)})


class StageCache:
    def __init__(self, root: str | Path, accelerator: Any) -> None:
        self.root = Path(root).expanduser()
        self.accelerator = accelerator

    def dir(self, stage: StageSpec) -> StageDir:
        return StageDir(self.root / stage.hash)

    def summary(self, stage: StageSpec) -> dict[str, Any]:
        return json.loads(self.dir(stage).summary.read_text())

    def _agreed(self, stage: StageSpec) -> bool:
        """Whether the stage is complete (and intact), as the main process sees it: every rank takes the same
        branch even if another job writes the marker between two ranks' looks."""
        folder = self.dir(stage)
        seen: list[Any] = [folder.is_complete()]
        if seen[0] and self.accelerator.is_main_process:
            try:
                folder.verify()
            except XorderError as err:
                seen = [str(err)]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(seen, from_process=0)
        if isinstance(seen[0], str):  # every rank stops, not only the one that looked
            raise XorderError(seen[0])
        return bool(seen[0])

    def obtain(self, stage: StageSpec, train: Callable[[StageDir], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The stage's summary and whether it was reused; trains it (all processes) when not cached.
        Only the main process takes the lock; the others wait for it at a barrier."""
        if self._agreed(stage):
            return self.summary(stage), True
        folder = self.dir(stage)
        acc = self.accelerator
        if acc.is_main_process:
            folder.root.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        lock = FileLock(str(folder.lock)) if acc.is_main_process else contextlib.nullcontext()
        with lock:
            acc.wait_for_everyone()
            if self._agreed(stage):  # another job finished it while this one waited
                log.info("stage %s [%s]: trained by another job meanwhile, reusing it", stage.name, stage.hash[:8])
                return self.summary(stage), True
            summary = train(folder)
            if acc.is_main_process:
                folder.seal(stage, summary)
            acc.wait_for_everyone()
        return summary, False
