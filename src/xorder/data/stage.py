"""Everything a stage reads: its training sets (one per component, languages concatenated, capped) and its
evaluation sets, loaded, validated and tokenized before the first training step."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from xorder import kinds
from xorder.config import TaskConfig
from xorder.data import leaks
from xorder.data.encode import encode, fingerprint
from xorder.data.sources import LoadedSplit, load_split
from xorder.errors import XorderError
from xorder.kinds.base import Kind
from xorder.plan import Component, StageSpec
from xorder.splits import splits_of

DATA_SEED = 0  # subsets and caps are part of the data, the same for every training seed


@dataclass
class TrainSet:
    name: str  # component key: head/variant
    head: str
    task: TaskConfig
    features: Any  # datasets.Dataset
    mlm_probability: float | None
    variant: str  # english | translate_train | mlm | target

    @property
    def kind(self) -> Kind:
        return kinds.get(self.task.kind)


@dataclass
class EvalSet:
    """One (task, split, language) evaluation set: its canonical examples and their features (a QA context or
    an MLM document may give several features; `features["row"]` points back at the example)."""

    head: str
    task: TaskConfig
    split: str
    language: str
    examples: Any  # datasets.Dataset of canonical rows
    features: Any  # datasets.Dataset, with a `feature` column: each feature's own position
    label_names: list[str]
    mlm_probability: float | None = None

    @property
    def key(self) -> str:
        return f"{self.head}/{self.split}/{self.language}"

    @property
    def kind(self) -> Kind:
        return kinds.get(self.task.kind)


@dataclass
class StageData:
    train: list[TrainSet]
    evals: list[EvalSet]
    label_names: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)  # what a reader of the record must know (excluded pairs)


@dataclass
class DataSettings:
    """Where data is cached and how big the synthetic stand-in is; everything else comes from the stage."""

    cache_dir: str
    synthetic_examples: int


def subset(dataset: Any, n: int | None, salt: str) -> Any:
    """A fixed random subset of n rows, kept in their original order (the same draw for every training seed)."""
    if n is None or len(dataset) <= n:
        return dataset
    keep = sorted(random.Random(f"{DATA_SEED}/{salt}").sample(range(len(dataset)), n))
    return dataset.select(keep, keep_in_memory=True)


def _load(comp: Component, role: str, lang: str, settings: DataSettings, cap: int | None = None) -> LoadedSplit | None:
    return load_split(
        comp.task,
        comp.source,
        role,
        lang,
        cache_dir=settings.cache_dir,
        synthetic_examples=settings.synthetic_examples,
        max_examples=cap,
    )


def prepare(stage: StageSpec, tokenizer: Any, settings: DataSettings, earlier: Sequence[StageSpec] = ()) -> StageData:
    """Load and tokenize the stage's data. Intermediate stages evaluate on a fixed subset of each dev set;
    the target stage evaluates every split it has (dev, test, ...) in every evaluation language, minus what it
    or any `earlier` stage of the cell trained or was selected on (`data.leaks`)."""
    train_sets: list[TrainSet] = []
    evals: list[EvalSet] = []
    label_names: dict[str, list[str]] = {}
    notes: list[str] = []
    for comp in stage.components:
        task = comp.task
        max_length = task.max_length or stage.hparams.max_length
        rows, identity = train_rows(stage, comp, settings)
        names = label_names.setdefault(comp.head, kinds.get(task.kind).label_names(task, rows))
        fp = fingerprint(identity, task, tokenizer, max_length, True, names)
        features = encode(
            rows,
            task,
            tokenizer,
            max_length,
            train=True,
            label_names=names,
            fingerprint=fp,
            cache_dir=settings.cache_dir,
        )
        train_sets.append(
            TrainSet(f"{comp.head}/{comp.variant}", comp.head, task, features, comp.mlm_probability, comp.variant)
        )
        drawn = eval_rows(stage, comp, settings)
        if stage.is_target and comp.source.format != "synthetic":
            drawn, found = _unseen(stage, comp, settings, drawn, rows, identity, earlier)
            notes += found
        evals += _eval_sets(comp, names, tokenizer, settings, max_length, drawn)
    return StageData(train_sets, evals, label_names, notes)


def train_rows(stage: StageSpec, comp: Component, settings: DataSettings) -> tuple[Any, str]:
    """The rows a component trains on (its languages concatenated, capped per language and per task by fixed
    draws) and their identity: where they were read and how they were drawn, without the tokenizer."""
    import datasets

    task = comp.task
    parts, fps = [], []
    for lang in comp.languages:
        loaded = _load(comp, "train", lang, settings, read_cap(comp))
        if loaded is None:
            raise XorderError(f"{task.name}: the {comp.source_name} source has no train split")
        part = subset(loaded.dataset, comp.max_examples, f"{task.name}/{lang}")
        parts.append(part)
        fps.append(f"{loaded.fingerprint}:{len(part)}")
    rows = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    rows = subset(rows, stage.hparams.max_examples_per_task, f"{task.name}/{comp.variant}")
    return rows, "/".join(fps) + f":{len(rows)}"


def read_cap(comp: Component) -> int | None:
    """Rows read from the source: a corpus on the hub (Wikipedia) is streamed, shuffled, up to the cap; any other
    source is read whole and then subsampled at random per language (`subset`), so capped data is a random sample,
    not the same first N examples in every language."""
    return comp.max_examples if comp.variant == "mlm" and comp.source.format == "hub" else None


def eval_reads(stage: StageSpec, comp: Component) -> list[tuple[str, str]]:
    """(split, language) of every evaluation set of a component: the dev split in the component's languages
    for intermediate stages; every split but train for the target, in its evaluation languages (or the
    split's own, as STS 2017's language pairs)."""
    out = []
    splits = splits_of(comp.source)
    for role in [r for r in splits if r != "train"] if stage.is_target else ["dev"]:
        split = splits.get(role)
        if split is None or split.split is None:
            continue
        if not stage.is_target:
            languages = list(comp.languages)
        elif split.languages is not None:
            languages = list(split.languages)
        else:
            languages = list(comp.task.languages)
        out += [(role, lang) for lang in languages]
    return out


def reads(stage: StageSpec) -> Iterator[tuple[Component, str, str, int | None]]:
    """Every (component, split, language, row cap) the stage reads: what `prepare` loads and what
    `xorder prepare` fetches and validates ahead of time."""
    for comp in stage.components:
        for lang in comp.languages:
            yield comp, "train", lang, read_cap(comp)
        for role, lang in eval_reads(stage, comp):
            yield comp, role, lang, None


Drawn = dict[tuple[str, str], tuple[LoadedSplit, Any]]  # (split, language) -> (the whole split, its draw)


def eval_rows(stage: StageSpec, comp: Component, settings: DataSettings) -> Drawn:
    """A component's evaluation sets: each split read whole, then one fixed draw per split whatever the language,
    so parallel evaluation sets keep the same (translated) pairs (the target: trainer.target.eval_examples;
    intermediate stages: trainer.eval_examples of their dev sets, which select their checkpoints)."""
    cap = stage.hparams.eval_cap if stage.is_target else stage.hparams.eval_examples
    out = {}
    for split, lang in eval_reads(stage, comp):
        loaded = _load(comp, split, lang, settings)
        if loaded is not None:
            out[(split, lang)] = (loaded, subset(loaded.dataset, cap, f"{comp.task.name}/{split}"))
    return out


def _unseen(
    stage: StageSpec,
    comp: Component,
    settings: DataSettings,
    drawn: Drawn,
    train: Any,
    train_identity: str,
    earlier: Sequence[StageSpec],
) -> tuple[Drawn, list[str]]:
    """The target's evaluation sets minus what it trains or is selected on and what every earlier stage of the
    cell trained or was selected on, with notes saying what left and which splits share source pairs. Synthetic
    data is never compared: its splits come from one small lexicon and repeat each other by design (the demo is
    about the pipeline, not about these numbers)."""
    task, cache = comp.task, settings.cache_dir
    selection = ("dev", task.train_language)
    identity = f"{train_identity}:{task.name}/{comp.variant}"
    seen_by = [
        replace(leaks.seen("the target's training data", train, task, identity, cache, False), other_stage=False)
    ]
    if selection in drawn:
        loaded = drawn[selection][0]
        own = leaks.seen("the target's selection data", loaded.dataset, task, loaded.fingerprint, cache, False)
        seen_by.append(replace(own, other_stage=False, of=selection))
    seen_by += seen_in(earlier, settings)
    kept, notes = leaks.exclude(task, {key: rows for key, (_, rows) in drawn.items()}, leaks.merged(seen_by), selection)
    notes += leaks.shared_between_splits(
        task,
        {key: rows for key, rows in kept.items() if key != selection},
        list(drawn),
        lambda key: leaks.seen("", drawn[key][0].dataset, task, drawn[key][0].fingerprint, cache, False).keys,
    )
    return {key: (drawn[key][0], rows) for key, rows in kept.items()}, notes


def check_unseen(stages: Sequence[StageSpec], settings: DataSettings) -> None:
    """Refuse, before anything trains, a cell whose target selects its checkpoint on pairs that another of its
    stages trained or was selected on (`data.leaks.exclude`); the target's preparation repeats the check from
    cached keys."""
    target = stages[-1]
    for comp in target.components:
        if comp.source.format != "synthetic":
            rows, identity = train_rows(target, comp, settings)
            _unseen(target, comp, settings, eval_rows(target, comp, settings), rows, identity, stages[:-1])


def seen_in(stages: Sequence[StageSpec], settings: DataSettings) -> list[leaks.Seen]:
    """What each stage trained on and selected its checkpoint on (its dev draws), as key sets (cached)."""
    out = []
    for stage in stages:
        for comp in stage.components:
            if comp.source.format == "synthetic":
                continue
            texts = comp.task.kind == "mlm"
            what = f"the {stage.name} stage's {comp.head}"
            rows, identity = train_rows(stage, comp, settings)
            identity += f":{comp.task.name}/{comp.variant}"
            out.append(leaks.seen(f"{what} training data", rows, comp.task, identity, settings.cache_dir, texts))
            for (split, _), (loaded, draw) in eval_rows(stage, comp, settings).items():
                identity = f"{loaded.fingerprint}:{len(draw)}:{comp.task.name}/{split}"
                out.append(leaks.seen(f"{what} selection data", draw, comp.task, identity, settings.cache_dir, texts))
    return out


def _eval_sets(
    comp: Component, names: list[str], tokenizer: Any, settings: DataSettings, max_length: int, drawn: Drawn
) -> list[EvalSet]:
    task, out = comp.task, []
    for (split, lang), (loaded, examples) in drawn.items():
        fp = fingerprint(
            f"{loaded.fingerprint}:{len(examples)}:{_digest(examples)}", task, tokenizer, max_length, False, names
        )
        features = encode(
            examples,
            task,
            tokenizer,
            max_length,
            train=False,
            label_names=names,
            fingerprint=fp,
            cache_dir=settings.cache_dir,
        )
        features = features.add_column("feature", list(range(len(features))))
        out.append(EvalSet(comp.head, task, split, lang, examples, features, names, comp.mlm_probability))
    return out


def _digest(examples: Any) -> str:
    """Which rows an evaluation set holds, for the tokenized-data key (exclusions change it)."""
    return hashlib.blake2b(repr(examples["id"]).encode(), digest_size=8).hexdigest()
