"""What a stage reads, as a list of (task, source, split, language) needs, and the check that reads every one of
them: `run_cell` checks every split of the stages still to train before the first of them trains, and
`xorder prepare` fetches and checks them ahead of time on a machine with internet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xorder.config import SourceConfig, TaskConfig, XorderConfig
from xorder.data.sources import LoadedSplit, load_split
from xorder.data.stage import reads
from xorder.plan import StageSpec, plan, to_typed


@dataclass(frozen=True)
class DataNeed:
    task: TaskConfig
    source_name: str
    source: SourceConfig
    role: str
    lang: str
    cap: int | None
    cache_dir: str
    synthetic_examples: int

    @property
    def key(self) -> str:
        return json.dumps(
            [
                self.task.name,
                self.task.kind,
                asdict(self.source),
                self.role,
                self.lang,
                self.cap,
                self.cache_dir,
                self.synthetic_examples,
            ],
            sort_keys=True,
            default=str,
        )

    def label(self) -> str:
        return f"{self.task.name} {self.role} {self.lang} ({self.source_name})"


def stage_needs(stage: StageSpec, cache_dir: str, synthetic_examples: int) -> Iterator[DataNeed]:
    """What `data.stage.prepare` reads for one stage, in the same walk (`data.stage.reads`)."""
    for comp, role, lang, cap in reads(stage):
        yield DataNeed(comp.task, comp.source_name, comp.source, role, lang, cap, cache_dir, synthetic_examples)


def validate(cfg: Any, stages: list[StageSpec] | None = None) -> int:
    """Read and check every split that `stages` (default: all of the cell's) will read, before any of them
    trains: a malformed target file then stops a cell before its intermediate stages spend hours. Raises the
    first XorderError (file, row and column); returns the number of splits checked. Checked splits are cached
    canonical Arrow files, so training reads them again for free."""
    typed: XorderConfig = to_typed(cfg)
    cache_dir = str(Path(typed.cache_dir).expanduser())
    seen: set[str] = set()
    for stage in plan(typed) if stages is None else stages:
        for need in stage_needs(stage, cache_dir, typed.data.synthetic_examples):
            if need.key not in seen:
                seen.add(need.key)
                fetch_data(need)
    return len(seen)


def fetch_data(need: DataNeed) -> LoadedSplit | None:
    """Load (download, stream, materialize or just read) one split and validate every row."""
    return load_split(
        need.task,
        need.source,
        need.role,
        need.lang,
        cache_dir=need.cache_dir,
        synthetic_examples=need.synthetic_examples,
        max_examples=need.cap,
    )
