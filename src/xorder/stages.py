"""The stage cache: cache_dir/stages/<hash>/ holds a finished stage (encoder weights and tokenizer in
`model/`, or the target's evaluations in `evals/`, plus `summary.json`), with the marker `DONE` written last.
A file lock makes a second process that needs the same stage wait for it and reuse it."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from xorder.plan import StageSpec
from xorder.records import write_json

log = logging.getLogger("xorder")

DONE = "DONE"
SUMMARY = "summary.json"


class StageCache:
    def __init__(self, root: str | Path, accelerator: Any) -> None:
        self.root = Path(root).expanduser()
        self.accelerator = accelerator

    def path(self, stage: StageSpec) -> Path:
        return self.root / stage.hash

    def is_complete(self, stage: StageSpec) -> bool:
        return (self.path(stage) / DONE).is_file()

    def summary(self, stage: StageSpec) -> dict[str, Any]:
        return json.loads((self.path(stage) / SUMMARY).read_text())

    def _agreed(self, stage: StageSpec) -> bool:
        """Whether the stage is complete, as the main process sees it: every rank takes the same branch even
        if another job writes the marker between two ranks' looks."""
        complete = [self.is_complete(stage)]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(complete, from_process=0)
        return complete[0]

    def obtain(self, stage: StageSpec, train: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The stage's summary and whether it was reused; trains it (all processes) when not cached.
        Only the main process takes the lock; the others wait for it at a barrier."""
        if self._agreed(stage):
            return self.summary(stage), True
        work = self.path(stage)
        acc = self.accelerator
        if acc.is_main_process:
            work.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        lock = FileLock(str(work) + ".lock") if acc.is_main_process else contextlib.nullcontext()
        with lock:
            acc.wait_for_everyone()
            if self._agreed(stage):  # another job finished it while this one waited
                log.info("stage %s [%s]: trained by another job meanwhile, reusing it", stage.name, stage.hash[:8])
                return self.summary(stage), True
            summary = train(work)
            if acc.is_main_process:
                write_json(work / SUMMARY, summary)
                shutil.rmtree(work / "state", ignore_errors=True)  # resumable state is no longer needed
                (work / DONE).write_text(stage.hash + "\n")
            acc.wait_for_everyone()
        return summary, False
