"""Everything a stage reads: its training sets (one per component, languages concatenated, capped) and its
evaluation sets, loaded, validated and tokenized before the first training step."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

from xorder.config import TaskConfig
from xorder.data.encode import encode, fingerprint
from xorder.data.sources import load_split, splits_of
from xorder.errors import XorderError
from xorder.evaluate import EvalSet
from xorder.plan import Component, StageSpec

DATA_SEED = 0  # subsets and caps are part of the data, the same for every training seed


@dataclass
class TrainSet:
    name: str  # component key: head/variant
    head: str
    task: TaskConfig
    features: Any  # datasets.Dataset
    mlm_probability: float | None


@dataclass
class StageData:
    train: list[TrainSet]
    evals: list[EvalSet]
    label_names: dict[str, list[str]]


@dataclass
class DataSettings:
    """Where data is cached and how big the synthetic stand-in is; everything else comes from the stage."""

    cache_dir: str
    synthetic_examples: int


def _subset(rows: list[Any], n: int | None, salt: str) -> list[Any]:
    """A fixed random subset of n rows, kept in their original order."""
    if n is None or len(rows) <= n:
        return rows
    keep = sorted(random.Random(f"{DATA_SEED}/{salt}").sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def _load(comp: Component, task: TaskConfig, role: str, lang: str, settings: DataSettings, cap: int | None = None):
    loaded = load_split(task, comp.source, role, lang, cache_dir=settings.cache_dir,
                        synthetic_examples=settings.synthetic_examples, max_examples=cap)
    if loaded is not None and task.kind == "multiple_choice":
        counts = {len(r["choices"]) for r in loaded.rows}
        if len(counts) > 1:
            raise XorderError(f"{loaded.where}: rows have different numbers of choices ({sorted(counts)}); "
                              "a multiple-choice task needs the same number in every row")
    return loaded


def _label_names(task: TaskConfig, train_rows: list[dict[str, Any]]) -> list[str]:
    if task.kind == "tagging" and not task.label_names:
        return sorted({tag for row in train_rows for tag in row["tags"]})
    return list(task.label_names)


def prepare(stage: StageSpec, tokenizer: Any, settings: DataSettings) -> StageData:
    """Load and tokenize the stage's data. Intermediate stages evaluate on a fixed subset of each dev set;
    the target stage evaluates every split it has (dev, test, ...) in every evaluation language."""
    train_sets: list[TrainSet] = []
    evals: list[EvalSet] = []
    label_names: dict[str, list[str]] = {}
    for comp in stage.components:
        task = comp.task
        max_length = task.max_length or stage.hparams["max_length"]
        rows, fps = [], []
        for lang in comp.languages:
            loaded = _load(comp, task, "train", lang, settings, read_cap(comp))
            if loaded is None:
                raise XorderError(f"{task.name}: the {comp.source_name} source has no train split")
            lang_rows = _subset(loaded.rows, comp.max_examples, f"{task.name}/{lang}")
            rows += lang_rows
            fps.append(f"{loaded.fingerprint}:{len(lang_rows)}")
        rows = _subset(rows, stage.hparams["max_examples_per_task"], f"{task.name}/{comp.variant}")
        names = label_names.setdefault(comp.head, _label_names(task, rows))
        fp = fingerprint("/".join(fps) + f":{len(rows)}", task, tokenizer, max_length, True, names)
        features = encode(rows, task, tokenizer, max_length, train=True, label_names=names, fingerprint=fp,
                          cache_dir=settings.cache_dir)
        train_sets.append(TrainSet(f"{comp.head}/{comp.variant}", comp.head, task, features, comp.mlm_probability))
        evals += _eval_sets(stage, comp, names, tokenizer, settings, max_length)
    return StageData(train_sets, evals, label_names)


def read_cap(comp: Component) -> int | None:
    """Rows read from the source: a large text corpus is streamed up to the cap (its first documents); any
    other source is read whole and then subsampled at random per language (`_subset`), so capped
    translate-train data is not the same first N examples in every language."""
    return comp.max_examples if comp.variant == "mlm" else None


def eval_reads(stage: StageSpec, comp: Component) -> list[tuple[str, str]]:
    """(split, language) of every evaluation set of a component: the dev split in the component's languages
    for intermediate stages; every split but train for the target, in its evaluation languages (or the
    split's own, as STS 2017's language pairs)."""
    out = []
    splits = splits_of(comp.source)
    for role in ([r for r in splits if r != "train"] if stage.is_target else ["dev"]):
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


def _eval_sets(stage: StageSpec, comp: Component, names: list[str], tokenizer: Any, settings: DataSettings,
               max_length: int) -> list[EvalSet]:
    task = comp.task
    cap = None if stage.is_target else stage.hparams["eval_examples"]
    out = []
    for split, lang in eval_reads(stage, comp):
        loaded = _load(comp, task, split, lang, settings)
        if loaded is None:
            continue
        rows = _subset(loaded.rows, cap, f"{task.name}/{split}/{lang}")
        fp = fingerprint(f"{loaded.fingerprint}:{len(rows)}", task, tokenizer, max_length, False, names)
        features = encode(rows, task, tokenizer, max_length, train=False, label_names=names, fingerprint=fp,
                          cache_dir=settings.cache_dir)
        features = features.add_column("feature", list(range(len(features))))  # QA: several features per example
        out.append(EvalSet(comp.head, task, split, lang, rows, features, names))
    return out
