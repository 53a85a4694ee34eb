"""Run records: one directory per cell named from its axes, holding metrics.json (written last, atomically),
the resolved config, per-example predictions and the log. Tables are built from these alone."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from xorder.config import DataConfig, ModelConfig, MultilingualConfig, OrderConfig, TaskConfig, TrainerConfig
from xorder.errors import XorderError
from xorder.fileio import write_atomic

SCHEMA = "xorder.run/1"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
CONFIG = "config.yaml"
ERROR = "error.txt"
LOCK = ".xorder.lock"
NOT_APPLICABLE = "-"

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
                },
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "files": {"type": "object", "additionalProperties": {"type": "string"}},
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


# Keys that change where or how verbosely a cell runs, not what it computes.
_NOT_SCIENCE = ("results_dir", "cache_dir", "force", "hydra")
_NOT_SCIENCE_TRAINER = ("log_every", "save_every", "trackers", "num_workers", "eval_batch_size")
# Keys of an option that change no number: names and prose, logging, and which source is read (`sources` names it).
_NOT_NUMBERS = frozenset(
    {
        "name",
        "description",
        "citation",
        "source",
        "translation_source",
        "default_source",
        "default_translation_source",
        *_NOT_SCIENCE_TRAINER,
    }
)
_SCHEMAS = {
    "trainer": TrainerConfig,
    "model": ModelConfig,
    "order": OrderConfig,
    "target": TaskConfig,
    "task": TaskConfig,
    "multilingual": MultilingualConfig,
}
SETTINGS_HASH = 8  # hex digits of the settings hash in a record path


def uses_tasks(cfg: DictConfig) -> bool:
    """Whether the cell's numbers depend on its intermediate tasks: not for the baseline, nor for an MLM-only
    multilingual stage (its text does not depend on the task)."""
    stages = list(cfg.order.stages)
    return any(s in ("english", "joint") for s in stages) or (
        "multilingual" in stages and cfg.multilingual.kind != "mlm"
    )


def uses_multilingual(cfg: DictConfig) -> bool:
    return any(stage in ("multilingual", "joint") for stage in cfg.order.stages)


def task_names(cfg: DictConfig) -> list[str]:
    """The intermediate tasks that a cell trains on (sorted: a multi-task stage has no task order)."""
    return sorted(cfg.task.keys()) if uses_tasks(cfg) else []


def axes(cfg: DictConfig) -> dict[str, Any]:
    """The study axes of a cell; an axis that the order does not use is '-' so equal cells share a record.
    `variant` names what else the numbers depend on (see `variant`)."""
    return {
        "target": cfg.target.name,
        "order": cfg.order.name,
        "tasks": task_names(cfg),
        "multilingual": cfg.multilingual.name if uses_multilingual(cfg) else NOT_APPLICABLE,
        "model": cfg.model.name,
        "variant": variant(cfg),
        "seed": int(cfg.seed),
    }


def cell_path(cfg: DictConfig) -> str:
    """results_dir-relative record directory: <target>/<order>/<tasks>/<multilingual>/<model>/<variant>/seed<k>."""
    a = axes(cfg)
    tasks = "+".join(a["tasks"]) or "none"
    return f"{a['target']}/{a['order']}/{tasks}/{a['multilingual']}/{a['model']}/{a['variant']}/seed{a['seed']}"


def variant(cfg: DictConfig) -> str:
    """The data sources the cell reads (`sources`), then, only when some setting differs from xorder's own
    config files (`settings`), a short hash of those differences: `hub`, `synthetic-1a2b3c4d`. Two cells that
    differ in anything that changes their numbers but is not an axis get different record directories."""
    differences = settings(cfg)
    if not differences:
        return sources(cfg)
    digest = hashlib.sha256(json.dumps(sorted(differences.items()), default=str).encode()).hexdigest()
    return f"{sources(cfg)}-{digest[:SETTINGS_HASH]}"


def sources(cfg: DictConfig) -> str:
    """The names of the data sources the cell reads, the target's first: `hub`, `synthetic`, `xtreme+synthetic`."""
    from xorder.plan import resolved_source

    def name(spec: Any, translations: bool = False) -> str:
        try:
            return resolved_source(spec, cfg.data.source, translations)
        except XorderError:  # no source to read: the cell stops with that message when it plans its stages
            return "none"

    stages = set(cfg.order.stages)
    read = {name(cfg.task[t]) for t in cfg.task} if stages & {"english", "joint"} else set()
    if uses_multilingual(cfg) and cfg.multilingual.kind == "mlm" and cfg.multilingual.text is not None:
        read.add(name(cfg.multilingual.text))
    elif uses_multilingual(cfg) and cfg.multilingual.kind != "mlm":
        read |= {name(cfg.task[t], translations=True) for t in cfg.task}
    target = name(cfg.target)
    return "+".join([target, *sorted(read - {target})])


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings of a cell that change its numbers and differ from xorder's own files: `trainer` against
    conf/trainer/default.yaml, each option the axes name (model, order, target; the tasks and the multilingual
    variant where the order uses them) against its file in conf/ (an option xorder does not ship counts whole),
    and `data.synthetic_examples` against its default. Which source is read is left to `sources`; prose, names
    and logging are left out. Pure: the shipped files are read, never composed."""
    nodes = [
        ("trainer", cfg.trainer, _shipped("trainer", "default")),
        ("model", cfg.model, _shipped("model", cfg.model.name)),
        ("order", cfg.order, _shipped("order", cfg.order.name)),
        ("target", cfg.target, _shipped("target", cfg.target.name)),
    ]
    if uses_tasks(cfg):
        nodes += [(f"task.{name}", cfg.task[name], _shipped("task", name)) for name in cfg.task]
    if uses_multilingual(cfg):
        nodes.append(("multilingual", cfg.multilingual, _shipped("multilingual", cfg.multilingual.name)))
    differences: dict[str, Any] = {}
    for prefix, node, shipped in nodes:
        mine = flatten(_science(plain(node)), f"{prefix}.")
        theirs = flatten(_science(shipped or {}), f"{prefix}.")
        differences.update({k: mine.get(k) for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)})
    if cfg.data.synthetic_examples != DataConfig.synthetic_examples:
        differences["data.synthetic_examples"] = cfg.data.synthetic_examples
    return differences


def _science(node: dict[str, Any]) -> dict[str, Any]:
    """An option's keys minus those that change no number (also inside the MLM text of multilingual=mlm)."""
    kept = {k: v for k, v in node.items() if k not in _NOT_NUMBERS}
    if isinstance(kept.get("text"), dict):
        kept["text"] = _science(kept["text"])
    return kept


@functools.cache
def _shipped(group: str, option: str) -> dict[str, Any] | None:
    """conf/<group>/<option>.yaml as xorder ships it, merged onto its schema as Hydra merges it; None when
    xorder ships no such option. A task file that only includes a target (task/pawsx) is that target's."""
    folder = resources.files("xorder.conf")
    file = folder.joinpath(group, f"{option}.yaml")
    if not file.is_file():
        return None
    raw = cast(DictConfig, OmegaConf.create(file.read_text()))
    if group == "task":
        if option not in raw:
            included = [str(e) for e in raw.get("defaults", [])]
            return _shipped("target", option) if included == [f"/target/{option}@{option}"] else None
        raw = raw[option]
    return plain(OmegaConf.merge(OmegaConf.structured(_SCHEMAS[group]), raw))


def register_resolvers() -> None:
    """`${xorder.cell:}` names Hydra's run and sweep directories after the cell's axes."""
    if not OmegaConf.has_resolver("xorder.cell"):
        OmegaConf.register_new_resolver("xorder.cell", lambda *, _root_: cell_path(_root_))


def science_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus what does not change the numbers; data_root is kept symbolic so that
    the same data read from another mount point is the same cell."""
    science = plain(cfg)
    for key in _NOT_SCIENCE:
        science.pop(key, None)
    for key in _NOT_SCIENCE_TRAINER:
        science["trainer"].pop(key, None)
    science["data_root"] = "<data_root>"
    return plain(OmegaConf.create(science), resolve=True)


def plain(node: Any, resolve: bool = False) -> dict[str, Any]:
    """A config node as plain dicts and lists."""
    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=resolve))


def read_metrics(record_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(record_dir) / METRICS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def file_digests(record_dir: str | os.PathLike) -> dict[str, str]:
    """sha256 of the record's predictions and config, kept in metrics.json so a damaged record is recognised."""
    from xorder.fileio import digests

    return digests(Path(record_dir), [PREDICTIONS, CONFIG])


def damaged(record_dir: str | os.PathLike, metrics: dict[str, Any]) -> list[str]:
    """The files of a complete record that are missing or changed since it was written (records written before
    checksums were kept: only whether they are there)."""
    from xorder.fileio import damaged as changed

    recorded = metrics.get("files")
    if not isinstance(recorded, dict):
        return [name for name in (PREDICTIONS, CONFIG) if not (Path(record_dir) / name).is_file()]
    return changed(Path(record_dir), recorded)


def completed(record_dir: str | os.PathLike, cfg: DictConfig, config_hash: str) -> bool:
    """True when the directory holds a complete record of this very config (`config_hash`: `plan.config_hash`).
    A complete record of a different config (say another learning rate under the same axes) is an error, never
    silently reused."""
    metrics = read_metrics(record_dir)
    if metrics is None or metrics.get("schema") != SCHEMA or damaged(record_dir, metrics):
        return False  # a damaged record is rerun (the stage cache makes that cheap), never trusted
    if metrics.get("provenance", {}).get("config_hash") == config_hash or cfg.force:
        return True
    differs = _differing_keys(_load_yaml(Path(record_dir) / CONFIG), science_config(cfg))
    raise XorderError(
        f"{record_dir} holds a record of a different config (differs in: {', '.join(differs[:5]) or 'unknown'}); "
        "pass force=true to replace it, or choose another results_dir"
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        return plain(OmegaConf.load(path))
    except (OSError, ValueError):
        return {}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


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
