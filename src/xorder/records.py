"""Run records: one directory per cell named from its axes, holding metrics.json (written last, atomically),
the resolved config, per-example predictions and the log. Tables are built from these alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xorder.cell import NOT_APPLICABLE as NOT_APPLICABLE
from xorder.cell import SETTINGS_HASH as SETTINGS_HASH
from xorder.cell import CellIdentity, flatten, plain
from xorder.errors import XorderError
from xorder.plan import StageSpec, stages_hash
from xorder.storage.fileio import write_atomic
from xorder.storage.integrity import Digests, changed_phrase, of_document

SCHEMA = "xorder.run/1"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
CONFIG = "config.yaml"
ERROR = "error.txt"
TARGET_MODEL = "target_model"  # trainer.save_target_model: the target as a Hugging Face model folder
LOCK = ".xorder.lock"
# What a record's notes say of predictions that show no learned model (record_writer writes them, the tables read
# them): one split/language whose zero-shot predictions are a single value, and a target head that did not learn.
CONSTANT_NOTE = "a constant prediction: the model learned nothing there"
UNLEARNED_NOTE = "head has not learned"

_SCORES = {
    "type": "object",
    "additionalProperties": {  # split
        "type": "object",
        "additionalProperties": {  # language
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "number"},
        },
    },
}  # metric -> percent
_STEPS = {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}
_LEARNING = {  # one head's learning test (xorder.kinds.base.Learning)
    "type": "object",
    "required": ["measure", "score", "baseline", "margin", "examples"],
    "properties": {
        "measure": {"type": "string"},
        "score": {"type": "number"},
        "baseline": {"type": "number"},
        "margin": {"type": "number"},
        "examples": {"type": "integer"},
        "lower_is_better": {"type": "boolean"},
    },
}
SELECTIONS = ("en_dev", "oracle", "last", "average")
REQUIRED_SELECTIONS = SELECTIONS[:3]  # records written before checkpoint averaging have no `average`

# The documented schema of metrics.json (README, "Run records").
METRICS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "schema",
        "target",
        "order",
        "tasks",
        "multilingual",
        "model",
        "seed",
        "primary_metric",
        "scores",
        "stages",
        "provenance",
    ],
    "properties": {
        "schema": {"const": SCHEMA},
        "target": {"type": "string"},
        "order": {"type": "string"},
        "tasks": {"type": "array", "items": {"type": "string"}},
        "multilingual": {"type": "string"},
        "model": {"type": "string"},
        "seed": {"type": "integer"},
        "primary_metric": {"type": "string"},
        "scores": {
            "type": "object",
            "required": list(REQUIRED_SELECTIONS),
            "properties": {s: _SCORES for s in SELECTIONS},
            "additionalProperties": False,
        },
        "selected_steps": {"type": "object", "properties": {s: _STEPS for s in SELECTIONS}},
        "stages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "hash", "tasks", "languages", "steps", "seconds", "reused"],
                "properties": {
                    "name": {"enum": ["english", "multilingual", "joint", "target"]},
                    "hash": {"type": "string"},
                    "tasks": {"type": "array", "items": {"type": "string"}},
                    "languages": {"type": "array", "items": {"type": "string"}},
                    "steps": {"type": "integer", "minimum": 0},
                    "seconds": {"type": "number", "minimum": 0},
                    "total_steps": {"type": "integer", "minimum": 0},
                    "examples": {"type": "integer", "minimum": 0},
                    "throughput": {
                        "type": "object",
                        "properties": {
                            k: {"type": ["number", "null"]}
                            for k in (
                                "samples_per_second",
                                "tokens_per_second",
                                "padding_fraction",
                                "peak_memory_mb",
                                "mfu",
                                "gpu_hours",
                                "steady_samples_per_second",
                                "steady_mfu",
                            )
                        },
                    },
                    "reused": {"type": "boolean"},
                    "data": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["read", "where", "digest"],
                            "properties": {k: {"type": "string"} for k in ("read", "where", "digest")},
                        },
                    },
                    # whether every tested head of the stage beat its baseline on its dev data (null: none tested)
                    "learned": {"type": ["boolean", "null"]},
                    "learning": {"type": ["object", "null"], "additionalProperties": _LEARNING},
                },
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        # why the selected model is useless (one value predicted everywhere, R² <= 0), or null
        "degenerate": {"type": ["string", "null"]},
        "files": {"type": "object", "additionalProperties": {"type": "string"}},
        "digest": {"type": "string"},
        "provenance": {
            "type": "object",
            "required": [
                "xorder",
                "git_commit",
                "torch",
                "transformers",
                "device",
                "started",
                "finished",
                "config_hash",
            ],
        },
    },
}


def validate(metrics: Any) -> list[str]:
    """Problems of a metrics.json document against METRICS_SCHEMA (empty when it is valid). A non-finite score is
    no JSON (metrics.json is written strictly); `xorder report` names one found in a record from elsewhere."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(METRICS_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(metrics)]


def read_metrics(record_dir: str | os.PathLike) -> dict[str, Any] | None:
    """metrics.json's document, or None when there is none (or it is no JSON object: `damaged` names that)."""
    path = Path(record_dir) / METRICS
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return metrics if isinstance(metrics, dict) else None


def seal(record_dir: str | os.PathLike, metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's document with its seal: the sha256 of the record's predictions and config (`files`), then
    of the document itself (`digest`), which covers its scores, its stages, its notes and those file digests."""
    sealed = {**metrics, "files": Digests(None).files(Path(record_dir), [PREDICTIONS, CONFIG])}
    sealed.pop("digest", None)
    as_read = json.loads(json.dumps(sealed, allow_nan=False))  # the digest of what a reader parses (keys as text)
    return {**sealed, "digest": of_document(as_read)}


def peak_gpu_memory(results_dir: str | os.PathLike, model: str) -> tuple[float, str] | None:
    """The largest peak GPU memory of any stage a cell of `model` trained on a GPU (stages with GPU-hours) among
    the records under results_dir, and the record it comes from: what a GPU shared by several cells must hold."""
    found: tuple[float, str] | None = None
    for path in Path(results_dir).expanduser().rglob(METRICS):
        metrics = read_metrics(path.parent)
        if metrics is None or metrics.get("model") != model:
            continue
        for stage in metrics.get("stages", []):
            speed = stage.get("throughput") or {}
            if speed.get("gpu_hours") is not None and (found is None or speed["peak_memory_mb"] > found[0]):
                found = (float(speed["peak_memory_mb"]), f"{stage['name']} stage of {path.parent}")
    return found


def damaged(record_dir: str | os.PathLike, metrics: dict[str, Any] | None) -> list[str]:
    """The files of a complete record that are missing or changed since it was written: metrics.json itself when
    its content no longer matches its digest (a score edited by hand) or it is unreadable, the predictions and the
    config when they no longer match theirs. A record written before digests is only checked for its files."""
    if metrics is None:
        return [METRICS] if (Path(record_dir) / METRICS).is_file() else []
    recorded = metrics.get("files")
    if not isinstance(recorded, dict):
        return [name for name in (PREDICTIONS, CONFIG) if not (Path(record_dir) / name).is_file()]
    bad = Digests(None).changed(Path(record_dir), recorded)
    digest = metrics.get("digest")
    if digest is not None and digest != of_document({k: v for k, v in metrics.items() if k != "digest"}):
        bad.insert(0, METRICS)
    return bad


def damage_message(record_dir: str | os.PathLike, bad: list[str]) -> str:
    return (
        f"the record {record_dir} is damaged ({changed_phrase(bad)} since it was written): run the cell again with "
        "force=true to replace it"
    )


def completed(record_dir: str | os.PathLike, cell: CellIdentity, stages: list[StageSpec]) -> bool:
    """True when the directory holds a complete record of this very cell (`stages`: its plan, with the digests of
    its data). A damaged record, a record of other data (a data file changed since) or of a different config
    (say another learning rate under the same axes) is an error, never silently reused nor silently replaced;
    with force=true a damaged record is rerun and any other counts as complete (the caller reruns it)."""
    metrics = read_metrics(record_dir)
    bad = damaged(record_dir, metrics)
    if bad:
        if cell.config.force:
            return False
        raise XorderError(damage_message(record_dir, bad))
    if metrics is None or metrics.get("schema") != SCHEMA:
        return False
    if metrics.get("provenance", {}).get("config_hash") == stages_hash(stages) or cell.config.force:
        return True
    changed = data_changes(metrics, stages)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise XorderError(
            f"{record_dir} holds a record of other data ({', '.join(changed[:3])}{more} changed since the record was "
            "written); pass force=true to rerun the cell on the current data, or choose another results_dir"
        )
    differs = _differing_keys(_load_yaml(Path(record_dir) / CONFIG), cell.science)
    moved = data_moves(metrics, stages)
    if not differs and moved:
        raise XorderError(
            f"{record_dir} holds a record of the same data read from other paths ({moved[0]}): stages are identified "
            "by their files' paths too; pass the data_root the record was made with, or force=true to rerun the cell"
        )
    raise XorderError(
        f"{record_dir} holds a record of a different config (differs in: {', '.join(differs[:5]) or 'unknown'}); "
        "pass force=true to replace it, or choose another results_dir"
    )


def data_entries(stage: StageSpec) -> list[dict[str, str]]:
    """A stage's data as the record lists it: each file (or hub dataset) read, with its digest."""
    return [{"read": f.read, "where": f.where, "digest": f.digest} for f in stage.data]


def data_changes(metrics: dict[str, Any], stages: list[StageSpec]) -> list[str]:
    """The files a record read whose digest is not the one they have now (compared by what they were read as)."""
    recorded = _recorded_data(metrics, "digest")
    return sorted({f.where for s in stages for f in s.data if recorded.get(f.read, f.digest) != f.digest})


def _recorded_data(metrics: dict[str, Any], key: str) -> dict[Any, Any]:
    """What a record's stages say of each file they read (`digest` or `where`), by what it was read as."""
    return {
        entry.get("read"): entry.get(key)
        for stage in metrics.get("stages", [])
        if isinstance(stage, dict)
        for entry in stage.get("data", [])
        if isinstance(entry, dict)
    }


def data_moves(metrics: dict[str, Any], stages: list[StageSpec]) -> list[str]:
    """The files a record read, by what they were read as, that the cell now reads from another path: `was -> now`."""
    recorded = _recorded_data(metrics, "where")
    return sorted(
        {f"{recorded[f.read]} -> {f.where}" for s in stages for f in s.data if recorded.get(f.read, f.where) != f.where}
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        return plain(OmegaConf.load(path))
    except (OSError, ValueError):
        return {}


def _differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def cell_lock(record_dir: str | os.PathLike, timeout: float = -1):
    """Held while a cell runs: a second job for the same cell waits, then finds the record complete;
    `xorder status` reports a cell whose lock is held as running."""
    from filelock import FileLock

    Path(record_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(record_dir) / LOCK), timeout=timeout)


def is_locked(path: str | os.PathLike) -> bool:
    """Whether another process holds the lock file at `path` right now (a dead holder's lock is free)."""
    from filelock import FileLock, Timeout

    if not Path(path).exists():
        return False
    try:
        with FileLock(str(path), timeout=0):
            return False
    except Timeout:
        return True


def is_running(record_dir: str | os.PathLike) -> bool:
    return is_locked(Path(record_dir) / LOCK)


def write_error(record_dir: str | os.PathLike, message: str) -> None:
    """Why a cell of a grid failed; the grid goes on, and `xorder status` shows the reason."""
    write_atomic(Path(record_dir) / ERROR, message.rstrip() + "\n")


def read_error(record_dir: str | os.PathLike) -> str | None:
    path = Path(record_dir) / ERROR
    return path.read_text().strip() if path.is_file() else None


def clear_error(record_dir: str | os.PathLike) -> None:
    (Path(record_dir) / ERROR).unlink(missing_ok=True)
