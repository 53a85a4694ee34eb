"""Config -> the list of stages of a cell, each with a content hash of everything that determines its
weights: the base model, every stage before it, its data, its hyperparameters and the seed.

Pure: no I/O. Two cells whose plans share a prefix of hashes share those trained stages."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from xorder.config import PhaseConfig, SourceConfig, TaskConfig, TrainerConfig, XorderConfig
from xorder.errors import XorderError
from xorder.precision import hashed_precision

# Bump when a change to the training code changes what a stage computes: old cache entries then miss.
# 3: length-grouped batches in random order; the target averages its checkpoints.
STAGE_FORMAT = 3
MLM = "mlm"


@dataclass(frozen=True)
class Component:
    """One stream of training data in a stage: a task (the head it trains) read from one source."""

    task: TaskConfig
    variant: str  # english | translate_train | mlm | target
    source_name: str
    source: SourceConfig
    languages: tuple[str, ...]
    max_examples: int | None = None  # per language
    mlm_probability: float | None = None

    @property
    def head(self) -> str:
        return self.task.name


@dataclass(frozen=True)
class StageHParams:
    """The hyperparameters that shape a stage's weights (logging and checkpoint cadence are not among them).
    Serialised with `asdict` into the stage hash: the field names and order are part of every hash."""

    processes: int
    precision: str
    lr: float
    weight_decay: float
    adam_epsilon: float
    warmup_ratio: float
    max_grad_norm: float
    batch_size: int | str  # "auto": planned on the device (batch_plan.py), toward effective_batch
    grad_accum: int
    max_length: int
    epochs: float
    max_steps: int | None
    eval_every: int
    eval_examples: int | None
    patience: int | None
    group_by_length: bool
    sampling: str
    sampling_temperature: float
    max_examples_per_task: int | None
    freeze_embeddings: bool = False
    evaluations: int | None = None  # the target: evaluations per run, spread evenly (instead of eval_every)
    eval_cap: int | None = None  # the target: a fixed random subset of this many rows per evaluation set
    effective_batch: int | None = None  # batch_size=auto: the batch over micro-batches, accumulation and processes
    # speed switches that draw dropout differently (the same model up to those draws, not the same numbers)
    compile: str | None = None
    attention: str | None = None
    # a joint stage under trainer.joint_budget=matched: per group of components (english, multilingual), the
    # epochs and max_steps that group gets in the sequential orders
    budget: tuple[Budget, ...] | None = None


@dataclass(frozen=True)
class Budget:
    group: str  # english | multilingual
    epochs: float
    max_steps: int | None


# Hyperparameters added after stage hashes were first published: left out of a hash while they have these values,
# so the stages they do not change keep their hashes (and their cached weights).
HASH_NEUTRAL: dict[str, Any] = {
    "freeze_embeddings": False,
    "evaluations": None,
    "budget": None,
    "eval_cap": None,
    "effective_batch": None,
    "compile": None,
    "attention": None,
}


def group(variant: str) -> str:
    """Which budget group a component's data belongs to in a joint stage."""
    return "english" if variant == "english" else "multilingual"


@dataclass(frozen=True)
class StageSpec:
    index: int
    name: str  # english | multilingual | joint | target
    components: tuple[Component, ...]
    hparams: StageHParams
    seed: int
    parent: str  # hash of the stage before, or the base model's identity
    hash: str = field(default="")

    @property
    def heads(self) -> dict[str, TaskConfig]:
        return {c.head: c.task for c in self.components}

    @property
    def languages(self) -> list[str]:
        return sorted({lang for c in self.components for lang in c.languages})

    @property
    def is_target(self) -> bool:
        return self.name == "target"


def to_typed(cfg: DictConfig | XorderConfig) -> XorderConfig:
    return cfg if isinstance(cfg, XorderConfig) else cast(XorderConfig, OmegaConf.to_object(cfg))


def base_identity(cfg: XorderConfig) -> str:
    from xorder import me5, tiny

    model = cfg.model
    version = {"builtin:tiny": tiny.name, "builtin:me5_small": me5.name}.get(model.path, lambda: "")()
    return _digest({"model": model.path, "revision": model.revision, "builtin": version})


def world_size() -> int:
    """Processes of this launch (torchrun and accelerate launch set WORLD_SIZE): batch_size is per process,
    so the effective batch, hence the stage, depends on it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def stage_hparams(
    trainer: TrainerConfig,
    phase: PhaseConfig,
    processes: int = 1,
    *,
    epochs: float | None = None,
    evaluations: int | None = None,
    budget: tuple[Budget, ...] | None = None,
    eval_cap: int | None = None,
) -> StageHParams:
    """`epochs`: the target's own when its phase sets none."""
    batch_size = phase.batch_size or trainer.batch_size
    auto = batch_size == "auto"
    return StageHParams(
        processes=processes,
        precision=hashed_precision(trainer.precision),  # the setting, or Accelerate's choice under auto
        lr=phase.lr if phase.lr is not None else trainer.lr,
        weight_decay=trainer.weight_decay,
        adam_epsilon=trainer.adam_epsilon,
        warmup_ratio=trainer.warmup_ratio,
        max_grad_norm=trainer.max_grad_norm,
        batch_size=batch_size,
        grad_accum=1 if auto else phase.grad_accum or trainer.grad_accum,
        max_length=trainer.max_length,
        epochs=phase.epochs if phase.epochs is not None else (epochs if epochs is not None else 3.0),
        max_steps=phase.max_steps,
        eval_every=trainer.eval_every,
        eval_examples=phase.eval_examples if phase.eval_examples is not None else trainer.eval_examples,
        patience=trainer.patience if phase.early_stopping else None,
        group_by_length=trainer.group_by_length,
        sampling=trainer.sampling,
        sampling_temperature=trainer.sampling_temperature,
        max_examples_per_task=trainer.max_examples_per_task,
        freeze_embeddings=trainer.freeze_embeddings,
        evaluations=evaluations,
        budget=budget,
        eval_cap=eval_cap,
        effective_batch=trainer.effective_batch_size if auto else None,
        compile=trainer.compile,
        attention=trainer.attention,
    )


def resolved_source(spec: TaskConfig, preferred: str | None, translations: bool = False) -> str:
    """Which named source a task reads: its own `source`, else the run-wide preference, else its default."""
    chosen = spec.translation_source if translations else spec.source
    table = spec.translations if translations else spec.sources
    default = spec.default_translation_source if translations else spec.default_source
    if chosen is None:
        chosen = preferred if preferred in table else default
    key = "translation_source" if translations else "source"
    what = "machine-translated training data" if translations else "data source"
    valid = ", ".join(sorted(table)) or "none"
    if chosen is None:
        hint = ", or use multilingual=mlm" if translations else ""
        raise XorderError(
            f"task {spec.name!r} has no default {what} (available: {valid}); choose one with "
            f"task.{spec.name}.{key}=NAME{hint}"
        )
    if chosen not in table:
        raise XorderError(f"task {spec.name!r} has no {what} named {chosen!r} (available: {valid})")
    return chosen


def _english(cfg: XorderConfig) -> list[Component]:
    comps = []
    for name in sorted(cfg.task):
        spec = cfg.task[name]
        src = resolved_source(spec, cfg.data.source)
        comps.append(Component(spec, "english", src, spec.sources[src], (spec.train_language,)))
    return comps


def _multilingual(cfg: XorderConfig) -> list[Component]:
    variant, wanted = cfg.multilingual, cfg.multilingual.languages
    cap = variant.max_examples_per_language
    if variant.kind == MLM:
        if variant.text is None:
            raise XorderError("multilingual=mlm needs multilingual.text: the source of its plain text")
        src = resolved_source(variant.text, cfg.data.source)
        source = variant.text.sources[src]
        langs = _available(wanted, source.languages, f"the {src} text source of multilingual=mlm")
        return [Component(variant.text, MLM, src, source, langs, cap, variant.mlm_probability)]
    if variant.kind != "translate_train":
        raise XorderError(f"unknown multilingual kind {variant.kind!r} (valid: translate_train, mlm)")
    comps = []
    for name in sorted(cfg.task):
        spec = cfg.task[name]
        if not spec.translations:
            raise XorderError(
                f"task {name!r} has no machine-translated training data; use multilingual=mlm, or add "
                f"task.{name}.translations.<source> (see the README, 'Local files')"
            )
        src = resolved_source(spec, cfg.data.source, translations=True)
        source = spec.translations[src]
        langs = _available(wanted, source.languages, f"task {name!r}'s {src} translations")
        comps.append(Component(spec, "translate_train", src, source, langs, cap))
    return comps


def _available(wanted: list[str] | None, offered: list[str] | None, what: str) -> tuple[str, ...]:
    """The wanted languages the source has (all it has when none are named); recorded with the stage."""
    if wanted is None:
        if offered is None:
            raise XorderError(f"{what} can serve any language: name them with multilingual.languages=[de,fr,...]")
        return tuple(offered)
    langs = tuple(lang for lang in wanted if offered is None or lang in offered)
    if not langs:
        raise XorderError(
            f"{what} cover none of the languages {', '.join(wanted)} (available: {', '.join(offered or [])})"
        )
    return langs


def _target(cfg: XorderConfig) -> Component:
    spec = cfg.target
    src = resolved_source(spec, cfg.data.source)
    return Component(spec, "target", src, spec.sources[src], (spec.train_language,))


def plan(cfg: DictConfig | XorderConfig, processes: int | None = None) -> list[StageSpec]:
    """The stages of the cell in training order, the target last; `processes` defaults to this launch's."""
    cfg = to_typed(cfg)
    processes = world_size() if processes is None else processes
    if cfg.order.stages and not cfg.task:
        raise XorderError(f"order={cfg.order.name} needs at least one intermediate task (task=NAME)")
    _check_held_out(cfg)
    trainer = cfg.trainer
    builders = {
        "english": lambda: (_english(cfg), trainer.intermediate),
        "multilingual": lambda: (_multilingual(cfg), trainer.multilingual),
        "joint": lambda: (_english(cfg) + _multilingual(cfg), trainer.intermediate),
    }
    stages: list[StageSpec] = []
    parent = base_identity(cfg)
    for index, name in enumerate([*cfg.order.stages, "target"]):
        if name == "target":
            comps, phase = [_target(cfg)], trainer.target
            hparams = stage_hparams(
                trainer,
                phase,
                processes,
                epochs=cfg.target.epochs,
                evaluations=cfg.target.evaluations,
                eval_cap=phase.eval_examples,
            )
        elif name in builders:
            comps, phase = builders[name]()
            hparams = stage_hparams(trainer, phase, processes, budget=_budget(cfg) if name == "joint" else None)
        else:
            raise XorderError(
                f"order {cfg.order.name!r} names an unknown stage {name!r} (valid: {', '.join(builders)})"
            )
        stage = StageSpec(index, name, tuple(comps), hparams, cfg.seed, parent)
        stage = replace(stage, hash=stage_hash(stage, cfg))
        stages.append(stage)
        parent = stage.hash
    return stages


def _budget(cfg: XorderConfig) -> tuple[Budget, ...] | None:
    """A joint stage's steps under trainer.joint_budget: `matched` (each kind of data gets the steps the sequential
    orders give it, so order is not confounded with compute) or `sum` (intermediate epochs over both together)."""
    trainer = cfg.trainer
    if trainer.joint_budget == "sum":
        return None
    if trainer.joint_budget != "matched":
        raise XorderError(f"trainer.joint_budget={trainer.joint_budget} is invalid: must be one of matched, sum")
    english, multilingual = trainer.intermediate, trainer.multilingual
    return (
        Budget("english", english.epochs if english.epochs is not None else 3.0, english.max_steps),
        Budget("multilingual", multilingual.epochs if multilingual.epochs is not None else 1.0, multilingual.max_steps),
    )


def _check_held_out(cfg: XorderConfig) -> None:
    """Pairs a translate-train stage early-stops on must be held out of the English stage too, or that stage
    would have trained on the originals of its validation data in english_first and joint, and not in
    multilingual_first: a bias in exactly the comparison the study exists for. A translation source's dev rows
    cut from its train split (as `train[-2000:]`) are compared with the English source's train split of the same
    name, which must leave those rows out (translate-train data is row-parallel to its English original)."""
    stages = set(cfg.order.stages)
    if (
        cfg.multilingual.kind != "translate_train"
        or not stages & {"multilingual", "joint"}
        or not stages & {"english", "joint"}
    ):
        return
    from xorder.splits import overlapping, parse_split, splits_of

    for name in sorted(cfg.task):
        spec = cfg.task[name]
        if not spec.translations:
            continue
        translations = spec.translations[resolved_source(spec, cfg.data.source, translations=True)]
        english = spec.sources[resolved_source(spec, cfg.data.source)]
        dev, train = splits_of(translations).get("dev"), splits_of(english).get("train")
        if dev is None or dev.split is None or train is None or train.split is None:
            continue
        clash = overlapping(parse_split(train.split), parse_split(dev.split))
        if clash:
            raise XorderError(
                f"task {name}: its translations early-stop on {dev.split!r}, rows the English source trains on "
                f"({train.split!r}): hold them out of the English training split too (e.g. "
                f"task.{name}.sources.<source>.splits.train.split='{clash}[:-N]' for dev '{clash}[-N:]')"
            )


def stage_hash(stage: StageSpec, cfg: XorderConfig) -> str:
    """Content hash: the stage's name is left out, so english_only's and english_first's first stages match."""
    payload = {
        "format": STAGE_FORMAT,
        "parent": stage.parent,
        "components": [_component_identity(c, cfg) for c in stage.components],
        "hparams": {k: v for k, v in asdict(stage.hparams).items() if not (k in HASH_NEUTRAL and HASH_NEUTRAL[k] == v)},
        "seed": stage.seed,
    }
    return _digest(payload)


def _component_identity(comp: Component, cfg: XorderConfig) -> dict[str, Any]:
    task = asdict(comp.task)
    for key in (
        "description",
        "citation",
        "epochs",
        "evaluations",
        "sources",
        "translations",
        "source",
        "translation_source",
        "default_source",
        "default_translation_source",
    ):
        task.pop(key)
    source = asdict(comp.source)
    if source["format"] == "synthetic":
        from xorder import lexicon

        source["generator"] = lexicon.VERSION
        source["examples"] = cfg.data.synthetic_examples
    return {
        "task": task,
        "variant": comp.variant,
        "source": source,
        "languages": list(comp.languages),
        "max_examples": comp.max_examples,
        "mlm_probability": comp.mlm_probability,
    }


def config_hash(cfg: DictConfig | XorderConfig, processes: int | None = None) -> str:
    """What a record's numbers depend on: the content hashes of the cell's stages (base model, data,
    hyperparameters, seed, processes; the target's evaluation sets). Cells that differ only in an axis
    the order does not use (the task of the baseline) have the same hash and share one record."""
    return stages_hash(plan(cfg, processes))


def stages_hash(stages: list[StageSpec]) -> str:
    return _digest([stage.hash for stage in stages], 16)


def _digest(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]
