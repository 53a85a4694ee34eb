"""What a stage's data is: every file it reads with the sha256 of its content, and every hub dataset with the
revision it is pinned to. Computed once per run (an untouched file's digest is remembered per stamp by
`xorder.storage.integrity`, so it is not read again) and handed to the pure `plan`, whose stage hashes then cover the
data's content: a stage trained on other data is never reused, while `touch` alone retrains nothing. The run record
lists them, and `xorder status` names the file whose content changed since a record was written.

Synthetic data has no files here: its identity is its generator's version, already in the stage hash."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from xorder.config import SourceConfig, TaskConfig, XorderConfig
from xorder.data.hub import folder_digests, hub_location, local_folder
from xorder.data.readers import fill, local_files
from xorder.data.stage import reads
from xorder.errors import XorderError
from xorder.plan import DataFile, StageSpec, plan, stages_hash, to_typed
from xorder.splits import parse_split, split_config
from xorder.storage.integrity import Digests

COMMIT = re.compile(r"[0-9a-f]{40}")  # a hub revision that names one commit, not a branch or tag that moves


def source_files(task: TaskConfig, source: SourceConfig, role: str, lang: str, cache_dir: str) -> list[DataFile]:
    """The files (and hub datasets) that split `role` of a source reads in `lang`, with their digests: what a
    stage's hash covers, for anything that wants to record what data it read (`xorder rank`)."""
    view = split_config(source, role)
    if view is None or view.format == "synthetic":
        return []
    spec = view.splits[role].split
    digests = Digests(cache_dir)
    out = []
    for part in parse_split(str(spec)):
        read = f"{task.name} {role}/{lang}/{part.name}"
        if view.format == "hub":
            path, name, _ = hub_location(view, part.name, lang)
            folder = local_folder(path)
            if folder is not None:
                out += [
                    DataFile(f"{read}/{rel}", str(folder / rel), f"sha256:{digest}")
                    for rel, digest in folder_digests(folder, digests).items()
                ]
            else:
                where = f"hub:{path}{'/' + name if name else ''}"
                out.append(DataFile(read, where, f"revision:{view.revision or 'null'}"))
            continue
        try:
            files = local_files(task, view, part.name, lang, role)
        except XorderError:  # not there: a run stops on it with its own message; `status` still plans the cell
            out.append(DataFile(read, fill(str(view.path), lang, part.name), "missing"))
            continue
        for file in files:
            label = read if len(files) == 1 else f"{read}/{file.name}"
            out.append(DataFile(label, str(file), f"sha256:{digests.file(file)}"))
    return out


def stage_data(stage: StageSpec, cache_dir: str) -> tuple[DataFile, ...]:
    """Every file and hub dataset the stage reads (`data.stage.reads`: the walk that `prepare` loads)."""
    found: set[DataFile] = set()
    for comp, role, lang, _ in reads(stage):
        for item in source_files(comp.task, comp.source, role, lang, cache_dir):
            found.add(replace(item, read=f"{comp.variant} {item.read}"))  # a task's English data and translations
    return tuple(sorted(found))


def plan_cell(cfg: Any, processes: int | None = None) -> list[StageSpec]:
    """The cell's stages (`plan.plan`), their hashes covering the content of the data they read."""
    typed: XorderConfig = to_typed(cfg)
    cache_dir = str(Path(typed.cache_dir).expanduser())
    return plan(typed, processes, data=lambda stage: stage_data(stage, cache_dir))


def config_hash(cfg: Any, processes: int | None = None) -> str:
    """What a record's numbers depend on: the content hashes of the cell's stages (base model, data and its
    content, hyperparameters, seed, processes; the target's evaluation sets). Cells that differ only in an axis
    the order does not use (the task of the baseline) have the same hash and share one record."""
    return stages_hash(plan_cell(cfg, processes))


def unpinned(stages: list[StageSpec]) -> list[str]:
    """A warning per hub dataset whose revision names no commit: its stages follow whatever the hub serves."""
    revisions = {
        f.where: f.digest.removeprefix("revision:") for s in stages for f in s.data if f.where.startswith("hub:")
    }
    return [
        f"{where[4:]} is read at revision {revision}, not a pinned commit: its stages follow the hub's latest data "
        "under the same hash (pin one with the source's revision: <commit sha>)"
        for where, revision in sorted(revisions.items())
        if not COMMIT.fullmatch(revision)
    ]
