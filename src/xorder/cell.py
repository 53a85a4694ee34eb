"""The cell's identity, derived once from its composed config: its study axes, the data sources its stages read,
the settings in which it differs from xorder's own config files, its record's folder and its science config.
This is the one module below the app that reads the composed (Hydra) config: what runs, records and reports a
cell takes the `CellIdentity` (and its typed config) instead."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf, flag_override

from xorder.checks import names
from xorder.config import (
    DataConfig,
    ModelConfig,
    MultilingualConfig,
    OrderConfig,
    TaskConfig,
    TrainerConfig,
    XorderConfig,
)
from xorder.errors import XorderError
from xorder.plan import Read, reads, to_typed

NOT_APPLICABLE = "-"
SETTINGS_HASH = 8  # hex digits of the settings hash in a record path

# Keys that change where or how verbosely a cell runs, not what it computes.
_NOT_SCIENCE = ("results_dir", "cache_dir", "force", "hydra", "cells_per_gpu")
_NOT_SCIENCE_TRAINER = (
    "log_every",
    "save_every",
    "trackers",
    "num_workers",
    "eval_batch_size",
    "save_target_model",
    "target_model_selection",
    "test_every_eval",
)
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


@dataclass(frozen=True)
class CellIdentity:
    """What names a cell and its record. An axis that the order does not use is '-' (the multilingual variant) or
    empty (the tasks), so that equal cells share a record; `variant` names what else the numbers depend on."""

    target: str
    order: str
    tasks: tuple[str, ...]  # sorted: a multi-task stage has no task order
    multilingual: str
    model: str
    variant: str
    seed: int
    sources: str  # the data sources the stages read, the target's first: `hub`, `xtreme+synthetic`
    settings: dict[str, Any] = field(compare=False)  # settings that change the numbers and differ from conf/
    science: dict[str, Any] = field(compare=False)  # the resolved config minus what changes no number
    config: XorderConfig = field(compare=False, repr=False)

    @property
    def path(self) -> str:
        """results_dir-relative record directory: <target>/<order>/<tasks>/<multilingual>/<model>/<variant>/seed<k>."""
        tasks = "+".join(self.tasks) or "none"
        return f"{self.target}/{self.order}/{tasks}/{self.multilingual}/{self.model}/{self.variant}/seed{self.seed}"

    def axes(self) -> dict[str, Any]:
        """The study axes as metrics.json records them."""
        return {
            "target": self.target,
            "order": self.order,
            "tasks": list(self.tasks),
            "multilingual": self.multilingual,
            "model": self.model,
            "variant": self.variant,
            "seed": self.seed,
        }


def identify(raw: DictConfig) -> CellIdentity:
    """The cell's identity. Its tasks and sources come from what its stages read (`plan.reads`, the rules `plan`
    builds the stages from), resolved here without planning: a cell whose plan fails (no source to read) still
    has a record folder, where a grid writes why it failed. Each name of the path is checked to be one folder
    (`checks.names`): no name leads outside results_dir.

    Args:
        raw: the composed config: the settings and the science config compare and keep `${data_root}` symbolic,
            which only it still has; the rest is read from its typed form (`identity.config`).
    """
    cfg = to_typed(raw)
    names(cfg)
    read = [r for stage in [*cfg.order.stages, "target"] for r in reads(cfg, stage)]
    uses_tasks = any(r.variant in ("english", "translate_train") for r in read)
    uses_multilingual = any(stage in ("multilingual", "joint") for stage in cfg.order.stages)
    differences = settings(raw, uses_tasks, uses_multilingual)
    sources = _sources(cfg, read)
    if differences:
        digest = hashlib.sha256(json.dumps(sorted(differences.items()), default=str).encode()).hexdigest()
        variant = f"{sources}-{digest[:SETTINGS_HASH]}"
    else:
        variant = sources
    return CellIdentity(
        target=cfg.target.name,
        order=cfg.order.name,
        tasks=tuple(sorted(cfg.task)) if uses_tasks else (),
        multilingual=cfg.multilingual.name if uses_multilingual else NOT_APPLICABLE,
        model=cfg.model.name,
        variant=variant,
        seed=int(cfg.seed),
        sources=sources,
        settings=differences,
        science=science_config(raw),
        config=cfg,
    )


def _sources(cfg: XorderConfig, read: list[Read]) -> str:
    """The names of the sources read, the target's first; `none` where a read has none (the cell stops with that
    message when it plans its stages)."""

    def name(r: Read) -> str:
        try:
            return r.source(cfg.data.source)
        except XorderError:
            return "none"

    target = name(read[-1])
    return "+".join([target, *sorted({name(r) for r in read[:-1]} - {target})])


def settings(cfg: DictConfig, uses_tasks: bool, uses_multilingual: bool) -> dict[str, Any]:
    """The settings of a cell that change its numbers and differ from xorder's own files: `trainer` against
    conf/trainer/default.yaml, each option the axes name (model, order, target; the tasks and the multilingual
    variant where the order uses them) against its file in conf/ (an option xorder does not ship counts whole),
    and `data.synthetic_examples` against its default. Which source is read is left to the sources; prose, names
    and logging are left out. Pure: the shipped files are read, never composed."""
    nodes = [
        ("trainer", cfg.trainer, _shipped("trainer", "default")),
        ("model", cfg.model, _shipped("model", cfg.model.name)),
        ("order", cfg.order, _shipped("order", cfg.order.name)),
        ("target", cfg.target, _shipped("target", cfg.target.name)),
    ]
    if uses_tasks:
        nodes += [(f"task.{name}", cfg.task[name], _shipped("task", name)) for name in cfg.task]
    if uses_multilingual:
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


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def register_resolvers() -> None:
    """`${xorder.cell:}` names Hydra's run and sweep directories after the cell's identity."""
    if not OmegaConf.has_resolver("xorder.cell"):
        OmegaConf.register_new_resolver("xorder.cell", lambda *, _root_: identify(_without_hydra(_root_)).path)


def _without_hydra(root: DictConfig) -> DictConfig:
    """The cell's config out of the root Hydra resolves its directories in (its own node holds them)."""
    cfg = copy.deepcopy(root)
    with flag_override(cfg, ["readonly", "struct"], False):
        cfg.pop("hydra", None)
    return cfg
