"""Config -> the list of stages of a cell, each with a content hash of everything that determines its
weights: the base model, every stage before it, its data, its hyperparameters and the seed.

Pure: no I/O. The content of the data files a stage reads comes in from outside (`data`: the digests that
`xorder.data.identity` computes once per run), so that a stage trained on other data is never reused. Two cells
whose plans share a prefix of hashes share those trained stages."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from xorder.config import (
    MultilingualConfig,
    PhaseConfig,
    SourceConfig,
    TaskConfig,
    TrainerConfig,
    XorderConfig,
    choices,
    chosen_source,
)
from xorder.errors import XorderError
from xorder.runtime.precision import hashed_precision

# Bump when a change to the training code changes what a stage computes: old cache entries then miss.
# 3: length-grouped batches in random order; the target averages its checkpoints.
# 4: the target's evaluation sets leave out what any stage of the cell trained or was selected on, with every
# translation of such an item, and its predictions name their source item (`item`).
STAGE_FORMAT = 4
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
    batch_size: int | str  # "auto": planned on the device (pipeline/batch_plan.py), toward effective_batch
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


@dataclass(frozen=True, order=True)
class DataFile:
    """One file (or hub dataset) a stage reads, and what identifies its content."""

    read: str  # which read of the stage, the same wherever the data lives: "mnli/english train/en/train"
    where: str  # the file's path, or the hub dataset ("hub:nyu-mll/glue/mnli")
    digest: str  # "sha256:<hex>" of a file's content; "revision:<commit>" (or "revision:null") of a hub dataset


@dataclass(frozen=True)
class StageSpec:
    index: int
    name: str  # english | multilingual | joint | target
    components: tuple[Component, ...]
    hparams: StageHParams
    seed: int
    parent: str  # hash of the stage before, or the base model's identity
    hash: str = field(default="")
    data: tuple[DataFile, ...] = ()  # what it reads, where `plan` was given the digests (synthetic data: nothing)

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
    from xorder.encoders import me5, tiny

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
        max_examples_per_task=(
            phase.max_examples_per_task if phase.max_examples_per_task is not None else trainer.max_examples_per_task
        ),
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
    chosen, _ = chosen_source(spec, preferred, translations)
    table = spec.translations if translations else spec.sources
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


@dataclass(frozen=True)
class Read:
    """What one component of a stage reads before its source is chosen: a task (or the MLM text), and as what."""

    spec: TaskConfig
    variant: str  # english | translate_train | mlm | target
    key: str  # where the config holds it: task.<name> | target | multilingual.text

    def source(self, preferred: str | None) -> str:
        return resolved_source(self.spec, preferred, translations=self.variant == "translate_train")


def reads(cfg: XorderConfig, stage: str) -> list[Read]:
    """Which data a stage reads: the one place that says it (`plan` builds its components from it, the cell's
    identity, `xorder.cell`, its tasks and sources). The multilingual stage reads the MLM text or each task's
    translations; an unknown stage reads nothing (`plan` names it)."""
    if stage == "target":
        return [Read(cfg.target, "target", "target")]
    english = [Read(cfg.task[name], "english", f"task.{name}") for name in sorted(cfg.task)]
    if cfg.multilingual.kind == MLM:
        text = cfg.multilingual.text
        multilingual = [] if text is None else [Read(text, MLM, "multilingual.text")]
    else:
        multilingual = [Read(cfg.task[name], "translate_train", f"task.{name}") for name in sorted(cfg.task)]
    return {"english": english, "multilingual": multilingual, "joint": english + multilingual}.get(stage, [])


def english_components(cfg: XorderConfig) -> list[Component]:
    """One component per intermediate task, read in its training language (the English stage; `xorder rank`)."""
    comps = []
    for read in reads(cfg, "english"):
        src = read.source(cfg.data.source)
        comps.append(Component(read.spec, "english", src, read.spec.sources[src], (read.spec.train_language,)))
    return comps


def multilingual_components(cfg: XorderConfig) -> list[Component]:
    """The multilingual stage's data: each task's translations (translate_train) or the MLM text."""
    variant, wanted = cfg.multilingual, cfg.multilingual.languages
    cap = variant.max_examples_per_language
    if variant.kind == MLM:
        if variant.text is None:
            raise XorderError("multilingual=mlm needs multilingual.text: the source of its plain text")
        (read,) = reads(cfg, "multilingual")
        src = read.source(cfg.data.source)
        source = variant.text.sources[src]
        langs = _available(wanted, source.languages, f"the {src} text source of multilingual=mlm")
        return [Component(variant.text, MLM, src, source, langs, cap, variant.mlm_probability)]
    if variant.kind != "translate_train":
        valid = ", ".join(choices(MultilingualConfig, "kind"))
        raise XorderError(f"unknown multilingual kind {variant.kind!r} (valid: {valid})")
    comps = []
    for read in reads(cfg, "multilingual"):
        name = read.key.removeprefix("task.")
        if not read.spec.translations:
            raise XorderError(
                f"task {name!r} has no machine-translated training data; use multilingual=mlm, or add "
                f"task.{name}.translations.<source> (see the README, 'Local files')"
            )
        src = read.source(cfg.data.source)
        source = read.spec.translations[src]
        langs = _available(wanted, source.languages, f"task {name!r}'s {src} translations")
        comps.append(Component(read.spec, "translate_train", src, source, langs, cap))
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


def target_component(cfg: XorderConfig) -> Component:
    """The target, read in its training language."""
    (read,) = reads(cfg, "target")
    src = read.source(cfg.data.source)
    return Component(read.spec, "target", src, read.spec.sources[src], (read.spec.train_language,))


DataOf = Callable[["StageSpec"], tuple[DataFile, ...]]


def plan(cfg: DictConfig | XorderConfig, processes: int | None = None, data: DataOf | None = None) -> list[StageSpec]:
    """The stages of the cell in training order, the target last.

    Args:
        cfg: the cell's config, composed (DictConfig) or typed.
        processes: the processes that train it (the effective batch of batch_size=auto depends on them); None: this
            launch's (WORLD_SIZE).
        data: the files a stage reads with their digests (`xorder.data.identity.plan_cell` passes it); None: the
            hashes cover the configuration of the data, not its content (for tests and for what needs no hash).

    Returns:
        One StageSpec per stage (english, multilingual, joint as the order lists them, then the target), each with
        its components, hyperparameters and hash, the key of the stage cache.

    Raises:
        XorderError: a setting the stages cannot be built from (a joint budget or a translate-train split that
            does not exist, data a stage may not read).
    """
    cfg = to_typed(cfg)
    processes = world_size() if processes is None else processes
    if cfg.order.stages and not cfg.task:
        raise XorderError(f"order={cfg.order.name} needs at least one intermediate task (task=NAME)")
    _check_held_out(cfg)
    trainer = cfg.trainer
    builders = {
        "english": lambda: (english_components(cfg), trainer.intermediate),
        "multilingual": lambda: (multilingual_components(cfg), trainer.multilingual),
        "joint": lambda: (english_components(cfg) + multilingual_components(cfg), trainer.intermediate),
    }
    stages: list[StageSpec] = []
    parent = base_identity(cfg)
    for index, name in enumerate([*cfg.order.stages, "target"]):
        if name == "target":
            comps, phase = [target_component(cfg)], trainer.target
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
        if data is not None:
            stage = replace(stage, data=data(stage))
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
        valid = ", ".join(choices(TrainerConfig, "joint_budget"))
        raise XorderError(f"trainer.joint_budget={trainer.joint_budget} is invalid: must be one of {valid}")
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
    """Content hash: the stage's name is left out, so english_only's and english_first's first stages match. The
    data's digests enter by what they are read as (the sources, with their paths, are in the components); a stage
    that reads nothing but synthetic data keeps the hash it had before data digests existed."""
    payload: dict[str, Any] = {
        "format": STAGE_FORMAT,
        "parent": stage.parent,
        "components": [_component_identity(c, cfg) for c in stage.components],
        "hparams": {k: v for k, v in asdict(stage.hparams).items() if not (k in HASH_NEUTRAL and HASH_NEUTRAL[k] == v)},
        "seed": stage.seed,
    }
    if stage.data:
        payload["data"] = sorted([f.read, f.digest] for f in stage.data)
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
    for split in source["splits"].values():
        _alignment_identity(split, comp)
    _alignment_identity(source, comp)
    if source["format"] == "synthetic":
        from xorder.kinds import lexicon

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


def _alignment_identity(node: dict[str, Any], comp: Component) -> None:
    """A source's (or split's) `aligned` decides which evaluation rows are one item: part of the target's identity
    (its evaluation sets leave out every translation of a leaked item), never of a stage it cannot change; unset,
    it is left out so that stages hashed before it existed keep their hashes."""
    if comp.variant != "target" or node.get("aligned") is None:
        node.pop("aligned", None)


def stages_hash(stages: list[StageSpec]) -> str:
    return _digest([stage.hash for stage in stages], 16)


def _digest(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]
