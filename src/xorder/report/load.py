"""Loading run records: every valid metrics.json under a results directory as tidy frames, plus what was
skipped (unusable records) and what was kept but is malformed (non-finite scores), with the reasons."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from xorder.records import CONFIG, CONSTANT_NOTE, METRICS, SETTINGS_HASH, UNLEARNED_NOTE, damaged, validate
from xorder.report import catalog
from xorder.report.grid import NO_TASKS, ROW, SLICE
from xorder.storage.integrity import changed_phrase

STAGE_COLUMNS = [
    *ROW,
    "seed",
    "path",
    "position",
    "name",
    "hash",
    "languages",
    "steps",
    "examples",
    "seconds",
    "reused",
    "gpu_hours",
    "processes",
]
NOTE_COLUMNS = [*SLICE, "path", "note"]
UNLEARNED_COLUMNS = [*ROW, "seed", "split", "language"]  # split and language `*`: the whole record
_CONSTANT = re.compile(
    rf"^(?P<split>[^/\s]+)/(?P<language>\S+): every en_dev prediction is .*\({re.escape(CONSTANT_NOTE)}\)$"
)
_PROCESSES = re.compile(r" x(\d+)$")  # provenance.device of a multi-process run: "NVIDIA H100 80GB HBM3 x4"
_VARIANT = re.compile(rf"^(?P<sources>.*?)(?:-[0-9a-f]{{{SETTINGS_HASH}}})?$")  # xorder.cell's variant shape


@dataclass(frozen=True)
class Target:
    """What the tables need to know about a target beyond its scores."""

    train_language: str = "en"
    classes: int = 0  # number of labels (0: unknown or not a classification target)
    kind: str = ""  # its head kind ("": unknown), whose metrics have paired tests where it says so


CELL_COLUMNS = [*ROW, "seed", "path", "primary_metric", "git_commit", "device", "degenerate", "unlearned"]


@dataclass
class Records:
    """Every usable record as tidy frames, plus what was skipped or is malformed and why. A degenerate record
    (`degenerate`: why its selected model is useless) is a cell like any other, but its scores stay out of
    `scores`, hence out of every mean, unless `include_degenerate`."""

    cells: pd.DataFrame  # CELL_COLUMNS: one row per record (ROW: target, data, model, ...); degenerate and unlearned
    # "" where there is nothing to say
    scores: pd.DataFrame  # ROW + seed, selection, split, language, metric, value (NaN: not finite in the record)
    stages: pd.DataFrame  # STAGE_COLUMNS: one row per stage of each record
    notes: pd.DataFrame  # NOTE_COLUMNS: the records' notes (e.g. evaluation pairs left out)
    targets: dict[str, Target]
    unlearned: pd.DataFrame  # UNLEARNED_COLUMNS: where a record's notes say its predictions show no learned model
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason): not used
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason): used, cells marked
    include_degenerate: bool = False

    def target(self, name: str) -> Target:
        return self.targets.get(name, Target())

    @property
    def counted(self) -> pd.DataFrame:
        """The records whose scores the tables use: all but the degenerate ones, unless include_degenerate."""
        return self.cells if self.include_degenerate else self.cells[self.cells["degenerate"] == ""]

    def no_learned_model(
        self, slice_: tuple[str, str, str], split: str, row: tuple[str, str, str], languages: list[str]
    ) -> bool:
        """Whether every counted seed of the cell `row` (tasks, multilingual, order) shows no learned model in every
        one of `languages` of `split`: constant zero-shot predictions there, or a head that did not learn at all
        (the records' notes say which). `slice_`: (target, data, model). False for a cell without records."""
        tasks, multilingual, order = row
        cell = {**dict(zip(SLICE, slice_)), "tasks": tasks, "multilingual": multilingual, "order": order}
        seeds = set(_of(self.counted, cell)["seed"])
        marks = _of(self.unlearned, cell)
        whole = set(marks[marks["split"] == "*"]["seed"])
        there = marks[marks["split"] == split].groupby("seed")["language"].agg(set)
        return bool(seeds and languages) and all(
            seed in whole or set(languages) <= there.get(seed, set()) for seed in seeds
        )


def _of(frame: pd.DataFrame, cell: dict[str, str]) -> pd.DataFrame:
    """The rows of `frame` whose columns equal `cell`'s values."""
    return frame[(frame[list(cell)] == pd.Series(cell)).all(axis=1)]


def find_records(results: Path, exclude: Path | None = None) -> list[Path]:
    """Every metrics.json below `results` (hidden folders such as .hydra and the output folder left out)."""
    found = []
    for root, dirs, files in os.walk(results):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or Path(root, d).resolve() != exclude)
        )
        if METRICS in files:
            found.append(Path(root) / METRICS)
    return sorted(found)


def nonfinite_scores(obj: Any) -> list[tuple[str, str]]:
    """(key, value) of every score that is NaN, infinite or null: a malformed record, never a number to average."""
    scores = obj.get("scores") if isinstance(obj, dict) else None
    found = []
    for selection, splits in scores.items() if isinstance(scores, dict) else []:
        for split, langs in splits.items() if isinstance(splits, dict) else []:
            for lang, values in langs.items() if isinstance(langs, dict) else []:
                for metric, value in values.items() if isinstance(values, dict) else []:
                    if value is None or (isinstance(value, float) and not math.isfinite(value)):
                        found.append((f"scores/{selection}/{split}/{lang}/{metric}", json.dumps(value)))
    return found


def _with_nan(obj: Any) -> Any:
    """The document with null scores read as NaN, so the schema judges everything else about it."""
    if isinstance(obj, dict):
        return {k: math.nan if v is None else _with_nan(v) for k, v in obj.items()}
    return obj


def check_record(obj: Any) -> str | None:
    """Why a parsed metrics.json cannot be used, or None when it can: the documented schema
    (xorder.records.METRICS_SCHEMA), plus what a schema cannot say (named tasks, a primary metric that is scored).
    Non-finite scores are not a reason here: such a record is kept and its cells marked (nonfinite_scores)."""
    if isinstance(obj, dict) and isinstance(obj.get("scores"), dict):
        obj = {**obj, "scores": _with_nan(obj["scores"])}
    problems = sorted(validate(obj))
    if problems:
        return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    if not all(obj["tasks"]) or not all(obj[k] for k in ("target", "order", "multilingual", "model")):
        return "an axis (target, order, tasks, multilingual, model) is empty"
    if not any(
        obj["primary_metric"] in values
        for splits in obj["scores"].values()
        for langs in splits.values()
        for values in langs.values()
    ):
        return f"primary metric {obj['primary_metric']!r} appears in no score"
    return None


def _target(record_dir: Path, name: str) -> Target:
    """The target's training language, classes and kind from the record's resolved config, else its packaged
    file."""
    try:
        config = yaml.safe_load((record_dir / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # an unreadable config only costs the defaults
        config = None
    own = config.get("target") if isinstance(config, dict) else None
    own = own if isinstance(own, dict) else {}
    packaged = catalog.task_config(name) or {}
    language = own.get("train_language", packaged.get("train_language"))
    labels = own["label_names"] if isinstance(own.get("label_names"), list) else catalog.label_names(name)
    kind = own.get("kind", packaged.get("kind"))
    return Target(
        language if isinstance(language, str) and language else "en", len(labels), kind if isinstance(kind, str) else ""
    )


def _stage_rows(key: tuple[Any, ...], rel: str, obj: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per stage; `examples`, `throughput` and `processes` are newer than some records (NaN there)."""
    match = _PROCESSES.search(str((obj.get("provenance") or {}).get("device") or ""))
    rows = []
    for position, stage in enumerate(obj["stages"]):
        throughput = stage.get("throughput") if isinstance(stage.get("throughput"), dict) else {}
        gpu_hours = throughput.get("gpu_hours")
        processes = stage.get("processes", int(match.group(1)) if match else 1)
        rows.append(
            (
                *key,
                rel,
                position,
                stage["name"],
                stage["hash"],
                tuple(stage["languages"]),
                stage["steps"],
                _number(stage.get("examples")),
                float(stage["seconds"]),
                bool(stage["reused"]),
                _number(gpu_hours),
                processes if isinstance(processes, int) and processes > 0 else 1,
            )
        )
    return rows


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def target_data(variant: Any) -> str:
    """The target's data source from a record's variant (`xtreme+synthetic-1a2b3c4d` -> `xtreme`); "" without one."""
    if not isinstance(variant, str):
        return ""
    match = _VARIANT.match(variant)
    return match.group("sources").split("+", 1)[0] if match else ""


def _parse(path: Path, results: Path) -> tuple[str, dict[str, Any] | str]:
    """(relative folder, the document or why it cannot be used)."""
    rel = path.parent.relative_to(results).as_posix()
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return rel, f"unreadable metrics.json ({type(err).__name__}: {err})"
    reason = check_record(obj)
    bad = damaged(path.parent, obj) if reason is None and "files" in obj else []  # a sealed record (`records.seal`)
    if bad:
        reason = f"damaged: {changed_phrase(bad)} since it was written (run the cell again with force=true)"
    return rel, obj if reason is None else reason


def load_records(results: Path, exclude: Path | None = None, include_degenerate: bool = False) -> Records:
    """Parse and validate every record; unusable ones are skipped with a reason. A cell is its axes and the
    target's data source (`data`); two records of one cell (a copied folder, or two settings variants) keep the
    one at the cell's own path <target>/<order>/<tasks>/<multilingual>/<model>/<variant>/seed<k>, else the first
    by path; the other is skipped as a duplicate. The scores of degenerate records are left out unless
    `include_degenerate`."""
    parsed, skipped, malformed = [], [], []
    for path in find_records(results, exclude):
        rel, obj = _parse(path, results)
        if isinstance(obj, str):
            skipped.append((rel, obj))
            continue
        tasks = "+".join(obj["tasks"]) or NO_TASKS
        data = target_data(obj.get("variant"))
        key = (obj["target"], data, obj["model"], obj["multilingual"], obj["order"], tasks, obj["seed"])
        variant = f"/{obj['variant']}" if isinstance(obj.get("variant"), str) else ""
        home = f"{obj['target']}/{obj['order']}/{tasks}/{obj['multilingual']}/{obj['model']}{variant}/seed{obj['seed']}"
        parsed.append((rel != home, rel, key, obj))
    cells, rows, stages, notes, unlearned = [], [], [], [], []
    seen: dict[tuple[Any, ...], str] = {}
    targets: dict[str, Target] = {}
    for _, rel, key, obj in sorted(parsed, key=lambda item: item[:2]):
        if key in seen:
            skipped.append((rel, f"duplicate of the record in {seen[key]}"))
            continue
        seen[key] = rel
        bad = nonfinite_scores(obj)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            malformed.append((rel, f"{METRICS}: {bad[0][0]} is {bad[0][1]}{more}"))
        if obj["target"] not in targets:
            targets[obj["target"]] = _target(results / rel, obj["target"])
        provenance = obj.get("provenance") or {}
        commit, device = provenance.get("git_commit"), provenance.get("device")
        degenerate = obj.get("degenerate") or ""
        cells.append(
            (
                *key,
                rel,
                obj["primary_metric"],
                commit if isinstance(commit, str) else "",
                device if isinstance(device, str) else "",
                degenerate,
                ",".join(stage["name"] for stage in obj["stages"] if stage.get("learned") is False),
            )
        )
        for selection, splits in obj["scores"].items() if include_degenerate or not degenerate else []:
            for split, langs in splits.items():
                for lang, values in langs.items():
                    for metric, value in values.items():
                        finite = value is not None and math.isfinite(value)
                        rows.append((*key, selection, split, lang, metric, float(value) if finite else math.nan))
        stages += _stage_rows(key, rel, obj)
        mine = _notes(obj, rel, malformed)
        notes += [(*key[:3], rel, note) for note in mine]
        unlearned += [(*key, *where) for where in _no_learned_model(mine)]
    skipped.sort()
    return Records(
        pd.DataFrame(cells, columns=CELL_COLUMNS),
        pd.DataFrame(rows, columns=[*ROW, "seed", "selection", "split", "language", "metric", "value"]),
        pd.DataFrame(stages, columns=STAGE_COLUMNS),
        pd.DataFrame(notes, columns=NOTE_COLUMNS),
        targets,
        pd.DataFrame(unlearned, columns=UNLEARNED_COLUMNS),
        skipped,
        sorted(malformed),
        include_degenerate,
    )


def _no_learned_model(notes: list[str]) -> list[tuple[str, str]]:
    """(split, language) of every constant-prediction note, and (`*`, `*`) when the head did not learn at all."""
    out = []
    for note in notes:
        match = _CONSTANT.match(note)
        if match:
            out.append((match["split"], match["language"]))
        elif UNLEARNED_NOTE in note:
            out.append(("*", "*"))
    return out


def _notes(obj: dict[str, Any], rel: str, malformed: list[tuple[str, str]]) -> list[str]:
    """The record's `notes` (a list of strings); anything else there is reported as malformed."""
    notes = obj.get("notes", [])
    if isinstance(notes, list) and all(isinstance(n, str) for n in notes):
        return notes
    malformed.append((rel, f"{METRICS}: notes is not a list of strings; left out of the tables"))
    return []
