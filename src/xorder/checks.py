"""Every value of a composed config checked before any work: one `XorderError` (one line naming the key,
the value and what is valid) for the first problem found.

- `config(cfg)`: keys the schema does not know (`+trainer.lrr=1` gets past Hydra's struct mode, since `+`
  opens the node for the new key), values out of range, unknown names (precision, sampling, trackers, head
  kinds, metrics, sources) and languages no chosen source has. `cfg` is the composed `DictConfig` (with or
  without Hydra's own `hydra` node, which is left alone); a typed `XorderConfig` is accepted as well, minus
  the unknown-key check (the typed object has already dropped them).
- `writable(cfg)`: `results_dir` and `cache_dir` can be created and written; under a submitit launcher
  (Slurm, or its local stand-in) `results_dir`, where job files are pickled and later unpickled, must not
  be writable by other users.
- `HydraCallback`: both run in the launching process through Hydra's `on_run_start` /
  `on_multirun_start`, i.e. after composition but before Hydra creates any output directory or a
  launcher submits a job (conf/config.yaml registers it under hydra.callbacks).

Pure checks: nothing is created or written. Only the standard library, omegaconf and the schema are
imported here (`xorder run` of a finished cell must stay fast and never import torch).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import sys
import typing
from collections.abc import Iterable
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from xorder import config as schema
from xorder.config import ALIGNMENTS, XorderConfig
from xorder.errors import EXIT_USER_ERROR, XorderError
from xorder.plan import MLM, reads

TRACKERS = schema.choices(schema.TrainerConfig, "trackers")
STAGES = schema.choices(schema.OrderConfig, "stages")
MIN_SYNTHETIC_EXAMPLES = 16  # the synthetic generator's smallest split (data/synthetic.py)
# Integer settings that count something (steps, examples, tokens): at least 1, at trainer level and in every
# phase (trainer.intermediate / multilingual / target) that sets its own.
COUNTS = ("batch_size", "grad_accum", "eval_every", "save_every", "max_length", "eval_batch_size", "log_every")
PHASES = ("intermediate", "multilingual", "target")


# ----------------------------------------------------------------------------------------------- config

FORBIDDEN = ("/", "\\", "\0")  # a name with these would not be one folder of the record path


def config(cfg: DictConfig | XorderConfig) -> None:
    """Raise XorderError for the first problem of the composed config (see the module docstring)."""
    if isinstance(cfg, DictConfig):
        _keys(cfg, XorderConfig, "")
    names(cfg)
    _trainer(cfg)
    _top(cfg)
    _specs(cfg)
    _languages(cfg)
    _model(cfg)


def _model(cfg: Any) -> None:
    """A built-in model whose weights come from a package needs that package before any work, not after the run's
    first log lines."""
    if cfg.model.path == "builtin:me5_small":
        from xorder.encoders import me5

        me5.source_file()


def _show(value: Any) -> str:
    """A value as it would be written in an override."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _bad(key: str, value: Any, rule: str) -> XorderError:
    return XorderError(f"{key}={_show(value)} is invalid: {rule}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(key, value, "must be a finite number")
    return value


def _greater(key: str, value: Any, low: float, hint: str = "") -> None:
    if not _number(key, value) > low:
        raise _bad(key, value, f"must be > {low:g}{hint}")


def _at_least(key: str, value: Any, low: float, hint: str = "") -> None:
    if not _number(key, value) >= low:
        raise _bad(key, value, f"must be >= {low:g}{hint}")


def _interval(key: str, value: Any, low: float, high: float, closed_low: bool) -> None:
    value_ = _number(key, value)
    inside = (low <= value_ if closed_low else low < value_) and value_ < high
    if not inside:
        raise _bad(key, value, f"must be in {'[' if closed_low else '('}{low:g}, {high:g})")


def _choice(key: str, value: Any, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise _bad(key, value, f"must be one of {', '.join(choices)}")


def _opt(node: Any, key: str) -> Any:
    """node.key, or None where the node has no such key (phases set only some)."""
    try:
        return getattr(node, key, None)
    except Exception:  # noqa: BLE001 - a missing mandatory value reads as unset here; _keys reports it
        return None


# ------------------------------------------------------------------------------------------- names


def names(cfg: Any) -> None:
    """Every name that becomes a folder of a record's path (results_dir/<target>/<order>/<tasks>/<multilingual>/
    <model>/<variant>/seed<k>, the variant built from source names) is one plain folder name: no separator, not
    `.` or `..`, so that no override can make a record land outside results_dir."""
    found = [
        ("model.name", cfg.model.name),
        ("order.name", cfg.order.name),
        ("multilingual.name", cfg.multilingual.name),
        *((f"task.{key}", key) for key in cfg.task),
    ]
    for key, spec in _tables(cfg):
        found.append((f"{key}.name", spec.name))
        found += [(f"{key}.sources.{name}", name) for name in spec.sources]
        found += [(f"{key}.translations.{name}", name) for name in spec.translations]
    if cfg.data.source is not None:
        found.append(("data.source", cfg.data.source))
    for key, name in found:
        name = str(name)
        if not name or name in (".", "..") or any(ch in name for ch in FORBIDDEN):
            raise _bad(key, name, "it names a folder of the record path: no / or \\, and not . or .. (e.g. my_model)")


# ------------------------------------------------------------------------------------- unknown keys


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


def _keys(node: DictConfig, cls: type, path: str) -> None:
    """Every key of `node` is a field of the dataclass `cls` (recursively, through Dict[str, dataclass])."""
    fields = _fields(cls)
    for key in node.keys():
        key = str(key)
        if not path and key == "hydra":
            continue  # Hydra's own settings: validated by Hydra
        if key not in fields:
            raise unknown_key(path, key, cls, f" (given as +{path}{key}=...)")
        _descend(node._get_node(key), fields[key], f"{path}{key}")


def unknown_key(path: str, key: str, cls: type, given: str = "") -> XorderError:
    """One line for a key the schema does not know: the key (`path` is its parent's, dotted), where it was given,
    the closest valid keys and every valid key of its parent."""
    fields = _fields(cls)
    where = path.rstrip(".") or "the top level"
    close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(path + c for c in close)}? " if close else ""
    return XorderError(f"unknown key {path}{key}{given}: {hint}valid keys of {where}: {', '.join(fields)}")


# OmegaConf's words for a key its structured config lacks; Hydra prefixes "In 'group/option':" when a yaml file
# holds it, and says "To append to your config use +KEY" (wrong advice here: the schema has no such key) otherwise
_UNKNOWN = re.compile(r"Key '([^']+)' not in '(\w+)'\s+full_key: (\S+)")
_IN_FILE = re.compile(r"^In '([^']+)':")


def composition_error(err: BaseException) -> XorderError | None:
    """xorder's line for a composition error that is a key the schema does not know (a misspelt override, or a
    misspelt key in a yaml file of one's own); None for any other error (Hydra's own message then stands)."""
    text = "\n".join(str(e) for e in (err, err.__cause__) if e is not None)
    match = _UNKNOWN.search(text)
    cls = getattr(schema, match.group(2), None) if match else None
    if match is None or not dataclasses.is_dataclass(cls):
        return None
    key, full = match.group(1), match.group(3)
    source = _IN_FILE.search(str(err))
    return unknown_key(full[: -len(key)], key, cast(type, cls), f" (in {source.group(1)}.yaml)" if source else "")


def _descend(child: Any, tp: Any, path: str) -> None:
    tp = _unwrap(tp)
    if not isinstance(child, DictConfig) or child._is_none() or child._is_missing() or child._is_interpolation():
        return
    if dataclasses.is_dataclass(tp):
        _keys(child, cast(type, tp), path + ".")
    elif typing.get_origin(tp) is dict:
        value_type = _unwrap(typing.get_args(tp)[1])
        if dataclasses.is_dataclass(value_type):
            for key in child.keys():
                _descend(child._get_node(key), value_type, f"{path}.{key!s}")


# ------------------------------------------------------------------------------------------- values


def _trainer(cfg: Any) -> None:
    trainer = cfg.trainer
    _greater("trainer.lr", trainer.lr, 0, " (e.g. 1e-5)")
    for key in COUNTS:
        if not (key == "batch_size" and trainer.batch_size == "auto"):
            _at_least(
                f"trainer.{key}", getattr(trainer, key), 1, " (batch_size may also be auto)" * (key == "batch_size")
            )
    _at_least("trainer.effective_batch_size", trainer.effective_batch_size, 1)
    _greater("trainer.adam_epsilon", trainer.adam_epsilon, 0)
    _interval("trainer.warmup_ratio", trainer.warmup_ratio, 0, 1, closed_low=True)
    _at_least("trainer.weight_decay", trainer.weight_decay, 0)
    _at_least("trainer.max_grad_norm", trainer.max_grad_norm, 0, " (0: no clipping)")
    _at_least("trainer.patience", trainer.patience, 1, " (evaluations without improvement)")
    _choice("trainer.precision", trainer.precision, schema.choices(schema.TrainerConfig, "precision"))
    _choice("trainer.sampling", trainer.sampling, schema.choices(schema.TrainerConfig, "sampling"))
    _greater("trainer.sampling_temperature", trainer.sampling_temperature, 0)
    for key in ("max_examples_per_task", "eval_examples"):
        if getattr(trainer, key) is not None:
            _at_least(f"trainer.{key}", getattr(trainer, key), 1, " (or null: no cap)")
    _at_least("trainer.num_workers", trainer.num_workers, 0)
    for key in ("joint_budget", "target_model_selection", "compile", "attention"):  # compile, attention: or None
        if getattr(trainer, key) is not None:
            _choice(f"trainer.{key}", getattr(trainer, key), schema.choices(schema.TrainerConfig, key))
    for tracker in trainer.trackers:
        if tracker not in TRACKERS:
            raise _bad("trainer.trackers", trainer.trackers, f"{tracker!r} is not one of {', '.join(TRACKERS)}")
    for name in PHASES:
        phase, prefix = getattr(trainer, name), f"trainer.{name}"
        # epochs bounds training even when max_steps is set (the run stops at the smaller of the two); the
        # target's may be null: the target's own epochs then apply
        if phase.epochs is not None or name != "target":
            _greater(f"{prefix}.epochs", phase.epochs, 0, " (max_steps only stops earlier)")
        if phase.max_steps is not None:
            _at_least(f"{prefix}.max_steps", phase.max_steps, 1, " (or null: epochs decide)")
        if _opt(phase, "lr") is not None:
            _greater(f"{prefix}.lr", phase.lr, 0, " (or null: trainer.lr)")
        for key in COUNTS:
            if _opt(phase, key) is not None:
                _at_least(f"{prefix}.{key}", _opt(phase, key), 1, f" (or null: trainer.{key})")
        for key in ("eval_examples", "max_examples_per_task"):
            if _opt(phase, key) is not None:
                _at_least(f"{prefix}.{key}", _opt(phase, key), 1, f" (or null: trainer.{key})")


def _top(cfg: Any) -> None:
    _at_least("seed", cfg.seed, 0)
    _at_least("cells_per_gpu", cfg.cells_per_gpu, 1, " (1: a GPU per cell)")
    _at_least("data.synthetic_examples", cfg.data.synthetic_examples, MIN_SYNTHETIC_EXAMPLES)
    stages = list(cfg.order.stages)
    for stage in stages:
        if stage not in STAGES:
            raise _bad("order.stages", stages, f"{stage!r} is not one of {', '.join(STAGES)}")
    variant = cfg.multilingual
    _choice("multilingual.kind", variant.kind, schema.choices(schema.MultilingualConfig, "kind"))
    if cfg.target.epochs is not None:
        _greater("target.epochs", cfg.target.epochs, 0, " (or null: 3)")
    if cfg.target.evaluations is not None:
        _at_least("target.evaluations", cfg.target.evaluations, 1, " (or null: every trainer.eval_every steps)")
    _interval("multilingual.mlm_probability", variant.mlm_probability, 0, 1, closed_low=False)
    if variant.max_examples_per_language is not None:
        _at_least("multilingual.max_examples_per_language", variant.max_examples_per_language, 1, " (or null: no cap)")


def _tables(cfg: Any) -> list[tuple[str, Any]]:
    """(key, spec) of every task-shaped node of the cell: tasks, target, the MLM text."""
    out = [(f"task.{name}", cfg.task[name]) for name in cfg.task]
    out.append(("target", cfg.target))
    if cfg.multilingual.text is not None and cfg.multilingual.kind == "mlm":  # other variants ignore the text
        out.append(("multilingual.text", cfg.multilingual.text))
    return out


def _chosen(key: str, spec: Any, preferred: str | None, translations: bool) -> str | None:
    """The name of the source (or translations) entry `spec` reads, checked against its table; None when it
    names none (tasks without translations: the multilingual stage reports that when it needs them)."""
    table = spec.translations if translations else spec.sources
    chosen, field = schema.chosen_source(spec, preferred, translations)
    what = "machine-translated training data" if translations else "data source"
    owner = "the MLM text" if key == "multilingual.text" else f"{key.split('.')[0]} {spec.name}"
    rule = f"{owner} has no {what} named {{!r}} (available: {', '.join(table) or 'none'})"
    if chosen is not None and chosen not in table:  # never the run-wide data.source: it is chosen only where it is
        raise _bad(f"{key}.{field}", chosen, rule.format(chosen))
    return chosen


def _specs(cfg: Any) -> None:
    preferred = cfg.data.source
    known: set[str] = set()
    for key, spec in _tables(cfg):
        from xorder import kinds  # the kinds' metric tables (numpy), past the import of this module
        from xorder.kinds.metrics import EXTERNAL

        _choice(f"{key}.kind", spec.kind, kinds.names())
        kind = kinds.get(spec.kind)
        metrics, valid = list(spec.metrics), tuple(kind.metrics)
        if not metrics:
            raise _bad(f"{key}.metrics", metrics, f"needs at least one metric ({', '.join(valid or ['accuracy'])})")
        users = " or evaluate:<id or path>" if kind.user_metrics else ""
        for metric in metrics:
            if metric not in valid and not (users and metric.startswith(EXTERNAL) and len(metric) > len(EXTERNAL)):
                raise _bad(
                    f"{key}.metrics", metrics, f"{metric!r} is not a {spec.kind} metric ({', '.join(valid)}{users})"
                )
        if spec.max_length is not None:
            _at_least(f"{key}.max_length", spec.max_length, 1, " (or null: trainer.max_length)")
        _at_least(f"{key}.doc_stride", spec.doc_stride, 1)
        for name in spec.sources:
            source = spec.sources[name]
            if source.max_examples is not None:
                _at_least(f"{key}.sources.{name}.max_examples", source.max_examples, 1, " (or null: no cap)")
            for where, node in [("", source), *((f".splits.{role}", source.splits[role]) for role in source.splits)]:
                if node.aligned is not None:
                    _choice(f"{key}.sources.{name}{where}.aligned", node.aligned, ALIGNMENTS)
        known |= set(spec.sources) | set(spec.translations)
    if preferred is not None and preferred not in known:
        raise _bad(
            "data.source",
            preferred,
            f"no task or target of this cell has that source "
            f"(valid: {', '.join(sorted(known))}, or null: each task's default)",
        )
    if cfg.trainer.save_target_model and kinds.get(cfg.target.kind).auto_class is None:
        raise _bad(
            "trainer.save_target_model",
            True,
            f"a {cfg.target.kind} target has no Hugging Face Auto class xorder saves it as (classification and "
            "regression targets have one)",
        )
    for key, spec in _tables(cfg):
        _chosen(key, spec, preferred, translations=False)
        if not key.startswith("multilingual"):
            _chosen(key, spec, preferred, translations=True)


# ---------------------------------------------------------------------------------------- languages


@functools.lru_cache(maxsize=1)
def _synthetic_languages() -> frozenset[str]:
    """What the synthetic generator and the tiny model know: their languages and STS-17 style pairs."""
    from xorder.encoders.tiny import LANGUAGES  # standard library only

    return frozenset(LANGUAGES) | frozenset(f"{a}-{b}" for a in LANGUAGES for b in LANGUAGES)


def _accepted(source: Any) -> frozenset[str] | None:
    """The languages a source serves; None: any (a `languages: null` source that is not synthetic)."""
    if source.languages is not None:
        return frozenset(source.languages)
    return _synthetic_languages() if source.format == "synthetic" else None


def _listed(languages: frozenset[str]) -> str:
    plain = sorted(lang for lang in languages if "-" not in lang)
    pairs = " and pairs such as en-de" if any("-" in lang for lang in languages) and len(plain) > 1 else ""
    return ", ".join(plain or sorted(languages)) + pairs


def _languages(cfg: Any) -> None:
    preferred = cfg.data.source
    for key, spec in _tables(cfg):
        name = _chosen(key, spec, preferred, translations=False)
        if name is None:
            continue
        accepted = _accepted(spec.sources[name])
        if accepted is None:
            continue
        where = f"{key}'s {name} source"
        if key != "multilingual.text" and spec.train_language not in accepted:  # MLM text has no training language
            raise _bad(
                f"{key}.train_language",
                spec.train_language,
                f"{where} has no such language (valid: {_listed(accepted)})",
            )
        if key == "target":
            for lang in spec.languages:
                if lang not in accepted:
                    raise _bad(
                        "target.languages",
                        list(spec.languages),
                        f"{lang!r} is not a language of {where} (valid: {_listed(accepted)})",
                    )
    wanted = cfg.multilingual.languages
    if wanted is None or not any(stage in ("multilingual", "joint") for stage in cfg.order.stages):
        return
    sources = _multilingual_sources(cfg, preferred)
    offered = {what: _accepted(source) for what, source in sources}
    # The list is study-wide and each listed source uses those it has (conf/multilingual): a language this
    # cell's sources lack is fine when it is a language of the study, not when no source anywhere knows it.
    # A synthetic source that lists none generates whatever it is asked for: there, every language counts.
    study = _synthetic_languages() | _config_languages(cfg)
    for lang in wanted:
        for what, source in sources:
            if source.format == "synthetic" and source.languages is None and lang not in _synthetic_languages():
                raise _bad(
                    "multilingual.languages",
                    list(wanted),
                    f"{lang!r} is not a language of {what} (valid: {_listed(_synthetic_languages())})",
                )
        if any(langs is None or lang in langs for langs in offered.values()) or lang in study:
            continue
        listing = "; ".join(f"{what}: {_listed(langs)}" for what, langs in offered.items() if langs is not None)
        raise _bad("multilingual.languages", list(wanted), f"{lang!r} is a language no source has ({listing})")


def _multilingual_sources(cfg: Any, preferred: str | None) -> list[tuple[str, Any]]:
    """(description, source) of each stream of the multilingual stage (`plan.reads`: what that stage reads)."""
    out = []
    for read in reads(cfg, "multilingual"):
        mlm = read.variant == MLM
        name = _chosen(read.key, read.spec, preferred, translations=not mlm)
        if name is None:
            continue
        if mlm:
            out.append((f"the {name} text of multilingual=mlm", read.spec.sources[name]))
        else:
            out.append((f"{read.key.replace('.', ' ', 1)}'s {name} translations", read.spec.translations[name]))
    return out


def _config_languages(cfg: Any) -> frozenset[str]:
    """Every language some source of the config lists (the study's languages)."""
    out: set[str] = set()
    for _, spec in _tables(cfg):
        for table in (spec.sources, spec.translations):
            for name in table:
                source = table[name]
                out |= set(source.languages or [])
                for role in source.splits:
                    out |= set(source.splits[role].languages or [])
    return frozenset(out)


# -------------------------------------------------------------------------------------------- hydra


class HydraCallback:
    """Hydra callback (hydra.callbacks): `config` and `writable` in the launching process, after composition
    and before Hydra creates any output directory or a launcher pickles a job. A mistake prints one line and
    exits 2 (Hydra turns exceptions raised by callbacks into warnings, so SystemExit is the way out)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None  # every other hook of this and later Hydra versions
        raise AttributeError(name)

    @staticmethod
    def _check(cfg: DictConfig) -> None:
        from xorder.runtime.directories import writable

        try:
            config(cfg)
            writable(cfg)
        except XorderError as err:
            print(f"xorder: error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
