"""Everything a stage reads: its training sets (one per component, languages concatenated, capped) and its
evaluation sets, loaded, validated and tokenized before the first training step."""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from xorder import kinds
from xorder.config import TaskConfig
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


def prepare(stage: StageSpec, tokenizer: Any, settings: DataSettings) -> StageData:
    """Load and tokenize the stage's data. Intermediate stages evaluate on a fixed subset of each dev set;
    the target stage evaluates every split it has (dev, test, ...) in every evaluation language."""
    import datasets

    train_sets: list[TrainSet] = []
    evals: list[EvalSet] = []
    label_names: dict[str, list[str]] = {}
    notes: list[str] = []
    for comp in stage.components:
        task = comp.task
        max_length = task.max_length or stage.hparams.max_length
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
        names = label_names.setdefault(comp.head, kinds.get(task.kind).label_names(task, rows))
        fp = fingerprint("/".join(fps) + f":{len(rows)}", task, tokenizer, max_length, True, names)
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
        evals += _eval_sets(stage, comp, names, tokenizer, settings, max_length, rows, notes)
    return StageData(train_sets, evals, label_names, notes)


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


def _eval_sets(
    stage: StageSpec,
    comp: Component,
    names: list[str],
    tokenizer: Any,
    settings: DataSettings,
    max_length: int,
    train: Any,
    notes: list[str],
) -> list[EvalSet]:
    task = comp.task
    cap = stage.hparams.eval_cap if stage.is_target else stage.hparams.eval_examples
    reads = eval_reads(stage, comp)
    loaded_sets = {key: _load(comp, *key, settings) for key in reads}
    seen = None
    # no evaluation pair may be one the target trains on or is selected on (synthetic splits are drawn from one
    # small lexicon and repeat each other by design: the demo is about the pipeline, not about these numbers)
    if stage.is_target and comp.source.format != "synthetic":
        selection = loaded_sets.get(("dev", task.train_language))
        seen = {
            "training": set(_keys(train, task)),
            "selection": set(_keys(selection.dataset, task)) if selection is not None else set(),
        }
    out = []
    for split, lang in reads:
        loaded = loaded_sets[(split, lang)]
        if loaded is None:
            continue
        # one draw per split, whatever the language: parallel evaluation sets keep the same (translated) pairs
        examples = subset(loaded.dataset, cap, f"{task.name}/{split}")
        if seen is not None:
            examples = _without_seen(examples, task, split, lang, seen, notes)
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


def _keys(dataset: Any, task: TaskConfig) -> list[str]:
    """One key per row: its texts, normalised (NFKC, case, whitespace) and sorted, so that a pair that is also
    in another set, in either order, has the same key."""
    columns = [
        c for c, kind in kinds.get(task.kind).columns().items() if kind == "string" and c in dataset.column_names
    ]
    texts = dataset.select_columns(columns).to_dict()
    out = []
    for values in zip(*(texts[c] for c in columns)):
        norm = sorted(" ".join(unicodedata.normalize("NFKC", v or "").casefold().split()) for v in values)
        out.append(hashlib.blake2b("\x1f".join(norm).encode(), digest_size=16).hexdigest())
    return out


def _without_seen(
    examples: Any, task: TaskConfig, split: str, lang: str, seen: dict[str, set[str]], notes: list[str]
) -> Any:
    """The evaluation set minus the pairs the target trains or is selected on (never the selection set itself),
    with a note saying how many were excluded and why."""
    if split == "dev" and lang == task.train_language:
        return examples
    keys = _keys(examples, task)
    found = {name: sum(key in keys_seen for key in keys) for name, keys_seen in seen.items()}
    keep = [i for i, key in enumerate(keys) if not any(key in keys_seen for keys_seen in seen.values())]
    if len(keep) == len(keys):
        return examples
    if not keep:
        raise XorderError(
            f"{task.name} {split}/{lang}: every evaluation pair is also in the target's training or "
            "selection data: nothing would be zero-shot"
        )
    why = " and ".join(f"{n} in its {name} data" for name, n in found.items() if n)
    notes.append(f"{split}/{lang}: {len(keys) - len(keep)} of {len(keys)} pairs excluded from evaluation ({why})")
    return examples.select(keep, keep_in_memory=True)


def _digest(examples: Any) -> str:
    """Which rows an evaluation set holds, for the tokenized-data key (exclusions change it)."""
    return hashlib.blake2b(repr(examples["id"]).encode(), digest_size=8).hexdigest()
