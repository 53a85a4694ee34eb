"""The stage cache: `cache_dir/stages/<hash>/` holds a finished stage — encoder weights and tokenizer in `model/`,
or the target's evaluations in `evals/`, plus `summary.json` — and the marker `DONE`, written last, records the
sha256 of every file it vouches for. A reader verifies them before trusting the stage (through the digest memo of
`xorder.storage.integrity`: an untouched stage is not read again): damaged weights stop the cell with the folder to
delete, never train on silently. While a stage trains, `state/` holds its resumable checkpoint and its best weights. A
file lock makes a second process that needs the same stage wait for it and reuse it. This module alone knows the folder
layout."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from xorder.errors import XorderError
from xorder.kinds.base import learned
from xorder.plan import StageSpec
from xorder.storage.fileio import read_json, write_json
from xorder.storage.integrity import Digests, changed_phrase

log = logging.getLogger("xorder")


_MAY_LACK = ("target_model", "evaluated", "learning")


@dataclass(kw_only=True)
class StageSummary:
    """What a trained stage hands on: its `summary.json` (`to_dict`/`from_dict` keep that file's keys, in its
    order) and the source of the record's entry for the stage (`record_entry`)."""

    target_model: dict[str, Any] | None = None  # the target saved as a Hugging Face folder: path, auto_class
    name: str
    hash: str
    tasks: list[str]
    languages: list[str]
    steps: int
    total_steps: int
    seconds: float
    examples: int
    # examples scored over every evaluation; None: trained by an xorder that did not count them
    evaluated: int | None = None
    tokens: int
    throughput: dict[str, Any]  # throughput.Throughput's fields
    best_step: int
    best_score: float | None
    stopped_early: bool
    hparams: dict[str, Any]  # plan.StageHParams' fields
    losses: list[list[float]]  # [step, mean training loss]
    history: list[dict[str, Any]]  # every evaluation, in order
    # head -> kinds.base.Learning's fields at the weights handed on; None: trained by an xorder that did not test it
    learning: dict[str, dict[str, Any]] | None = None
    average: dict[str, Any] | None  # the target's averaged checkpoint: its evaluation
    label_names: dict[str, list[str]]
    notes: list[str]
    processes: int
    distributed: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        """summary.json's content; the keys a summary may lack (target_model: not saved; evaluated, learning: an
        older xorder) are left out when None, so a summary read and written again is the same file."""
        data = asdict(self)
        return {key: value for key, value in data.items() if value is not None or key not in _MAY_LACK}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageSummary:
        """A summary.json's content; keys of a newer xorder are ignored, TypeError when a required one is missing."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def record_entry(self, reused: bool, data: list[dict[str, Any]]) -> dict[str, Any]:
        """The stage's entry in the record's `stages` (metrics.json); `data`: records.data_entries of the stage."""
        return {
            "name": self.name,
            "hash": self.hash,
            "tasks": self.tasks,
            "languages": self.languages,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "examples": self.examples,
            "seconds": self.seconds,
            "throughput": self.throughput,
            "reused": reused,
            "data": data,
            "learned": learned(self.learning),
            "learning": self.learning,  # None: trained by an xorder that did not test it
        }


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

    @property
    def digests(self) -> Digests:
        """The digest memo of the cache_dir this stage lives in (cache_dir/stages/<hash>)."""
        return Digests(self.root.parent.parent)

    def is_complete(self) -> bool:
        return self.done.is_file()

    def checkpoint_step(self) -> int | None:
        """The step of the resumable checkpoint of an unfinished stage, if there is one."""
        loop = read_json(self.checkpoint / "loop.json")
        return loop.get("step") if isinstance(loop, dict) else None

    def verify(self) -> None:
        """Raise if a file the completion marker vouches for is missing or changed."""
        marker = read_json(self.done)
        files = marker.get("files") if isinstance(marker, dict) else None
        bad = self.digests.changed(self.root, files) if isinstance(files, dict) else [self.done.name]
        if bad:
            raise XorderError(
                f"the cached stage {self.root} is damaged ({changed_phrase(bad)} since it was trained): delete "
                f"that folder to train the stage again"
            )

    def read_summary(self) -> StageSummary | None:
        """The summary of a complete stage; None when it is not complete or its summary.json is unreadable."""
        data = read_json(self.summary) if self.is_complete() else None
        try:
            return StageSummary.from_dict(data) if isinstance(data, dict) else None
        except TypeError:
            return None

    def seal(self, stage: StageSpec, summary: StageSummary) -> None:
        """Write the summary, drop the resumable state, then the marker with the checksums: the stage is done."""
        write_json(self.summary, summary.to_dict())
        shutil.rmtree(self.state, ignore_errors=True)
        files = [str(p.relative_to(self.root)) for p in sorted(self.root.rglob("*")) if p.is_file() and p != self.done]
        write_json(self.done, {"hash": stage.hash, "files": self.digests.files(self.root, files)})


class StageCache:
    def __init__(self, root: str | Path, accelerator: Any) -> None:
        self.root = Path(root).expanduser()
        self.accelerator = accelerator

    def dir(self, stage: StageSpec) -> StageDir:
        return StageDir(self.root / stage.hash)

    def summary(self, stage: StageSpec) -> StageSummary:
        folder = self.dir(stage)
        try:
            return StageSummary.from_dict(json.loads(folder.summary.read_text()))
        except TypeError as err:  # a key this xorder needs is missing
            raise XorderError(
                f"the cached stage {folder.root} has a summary.json this xorder cannot read ({err}): delete that "
                "folder to train the stage again"
            ) from None

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

    def obtain(self, stage: StageSpec, train: Callable[[StageDir], StageSummary]) -> tuple[StageSummary, bool]:
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
