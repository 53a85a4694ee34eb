"""`xorder rank OVERRIDES`: score every candidate intermediate task for the target without training, from forward
passes of the study's own encoder over a fixed random sample of each task's training data (same seed: same sample,
same scores). Takes the overrides of `xorder run` (and -m, whose cells' tasks are the candidates: a grid's task
list); writes results_dir/ranking/<target>/<model>/ranking.csv and ranking.json (what was read: files and their
sha256, the model, sample sizes, the seed) and prints the table. Logs and progress go to stderr."""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xorder.config import XorderConfig
from xorder.errors import XorderError
from xorder.rank import files
from xorder.rank.sample import Reading, Sample, draw

USAGE = "usage: xorder rank [-m] [--config-dir DIR] [--examples N] [--methods M,...] [--batch-size B] [OVERRIDE ...]"
DEFAULT_EXAMPLES = 1000
# the fewest examples of a task (or, for semb_multilingual, of a language) each method reads from
MIN_EXAMPLES = {"semb": 10, "logme": 50, "semb_multilingual": 10}


@dataclass(frozen=True)
class Options:
    examples: int = DEFAULT_EXAMPLES  # per task (and target); split over the languages by semb_multilingual
    methods: tuple[str, ...] = files.METHODS
    batch_size: int = 32


@dataclass
class Job:
    """One ranking: a target and a model, every candidate task of the cells, each multilingual variant seen."""

    cfg: XorderConfig  # the first cell's config, its tasks the union of all cells'
    variants: dict[str, XorderConfig]
    cells: int


@dataclass
class Row:
    method: str
    multilingual: str
    task: str
    score: float
    examples: int
    seconds: float
    note: str = ""


@dataclass
class Ranked:
    rows: list[Row] = field(default_factory=list)
    reads: dict[str, Any] = field(default_factory=dict)


def say(text: str) -> None:
    print(f"xorder rank: {text}", file=sys.stderr, flush=True)


def options(args: list[str]) -> tuple[Options, list[str]]:
    """rank's own flags, and the rest for the Hydra overrides (checked as `xorder run` checks them)."""
    parser = argparse.ArgumentParser(prog="xorder rank", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("--methods", default=",".join(files.METHODS))
    parser.add_argument("--batch-size", type=int, default=32)
    try:
        given, rest = parser.parse_known_args(args)
    except argparse.ArgumentError as err:
        raise XorderError(f"rank: {err}") from err
    methods = tuple(dict.fromkeys(m.strip() for m in given.methods.split(",") if m.strip()))
    unknown = [m for m in methods if m not in files.METHODS]
    if unknown or not methods:
        raise XorderError(f"rank: unknown method {(unknown or [''])[0]!r} (valid: {', '.join(files.METHODS)})")
    if given.examples < max(MIN_EXAMPLES[m] for m in methods):
        low = max(methods, key=lambda m: MIN_EXAMPLES[m])
        raise XorderError(f"rank: --examples {given.examples} is too few for {low} (at least {MIN_EXAMPLES[low]})")
    if given.batch_size < 1:
        raise XorderError("rank: --batch-size must be at least 1")
    return Options(given.examples, methods, given.batch_size), rest


def jobs(cells: list[list[str]]) -> list[Job]:
    """One job per (target, model) of the cells; its candidates are every task any cell names."""
    from xorder.config_tree import compose
    from xorder.plan import to_typed

    grouped: dict[tuple[str, str], Job] = {}
    for overrides in cells:
        cfg = to_typed(compose(overrides))
        key = (cfg.target.name, cfg.model.name)
        job = grouped.get(key)
        if job is None:
            grouped[key] = Job(cfg, {cfg.multilingual.name: cfg}, 1)
            continue
        job.cells += 1
        job.variants.setdefault(cfg.multilingual.name, cfg)
        tasks = {**cfg.task, **job.cfg.task}
        job.cfg = replace(job.cfg, task=dict(sorted(tasks.items())), seed=min(job.cfg.seed, cfg.seed))
    for job in grouped.values():
        if not job.cfg.task:
            raise XorderError("rank: no intermediate task to rank; name the candidates with task=[a,b,...]")
    return list(grouped.values())


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{__doc__.strip()}\n{HELP}")
        return 0
    from xorder.config_tree import expand

    chosen, rest = options(args)
    import datasets

    datasets.disable_progress_bars()  # tokenizing is cached and quick; the embedding has its own bar
    for job in jobs(expand(rest, "rank")):
        begin = time.time()
        ranked = rank(job, chosen)
        frame = table(job.cfg, ranked.rows)
        out = write(job, chosen, ranked, frame, ["xorder", "rank", *args], time.time() - begin)
        print(render(frame))
        print(f"ranking: {out / files.RANKING_CSV} (what it read: {out / files.RANKING_JSON})")
    return 0


HELP = """
options:
  --examples N     examples sampled per task and for the target (default 1000; semb_multilingual splits them over
                   the languages); the sample is drawn with the config's seed (seed=K): the same seed, the same scores
  --methods M,...  any of semb, logme, semb_multilingual (default: all)
  --batch-size B   sequences per forward pass (default 32)

methods (README, "Rank before you train"):
  semb               cosine of the mean sentence embeddings of a task's and the target's training data (Poth et al.
                     2021); realised by order=english_only
  logme              LogME (You et al. 2021) of the target's training labels on the outputs of a linear head for the
                     task on the frozen encoder; realised by order=english_only
  semb_multilingual  per language, semb of the multilingual stage's data (a task's translations, or the MLM text)
                     and the target's dev inputs in that language, averaged; realised by order=multilingual_only"""


def rank(job: Job, chosen: Options) -> Ranked:
    """Every requested method's score for every candidate of the job. Every sample is read and checked before the
    first forward pass, so that a mistake in any of them stops the command at once."""
    from xorder.encoders.base_model import resolve_path
    from xorder.plan import english_components, target_component
    from xorder.rank.embed import Encoder
    from xorder.splits import split_config

    cfg = job.cfg
    cache_dir = str(Path(cfg.cache_dir).expanduser())
    encoder = Encoder(resolve_path(cfg.model, cache_dir), cfg.model.revision, chosen.batch_size)
    reading = Reading(cache_dir, cfg.data.synthetic_examples, cfg.seed, cfg.trainer.max_length)
    english = [m for m in chosen.methods if m in files.ENGLISH_METHODS]
    lang = cfg.target.train_language
    target_comp = target_component(cfg)
    train = split_config(target_comp.source, "train")
    if train is None or (train.languages is not None and lang not in train.languages):
        have = "no train split" if train is None else f"train data in {', '.join(train.languages or [])} only"
        raise XorderError(
            f"target {cfg.target.name} has no {lang} training data to rank against (its {target_comp.source_name} "
            f"source has {have})"
        )
    target = draw(target_comp, "train", lang, chosen.examples, reading, encoder.tokenizer)
    enough(target, english, f"target {cfg.target.name}")
    candidates = []
    for comp in english_components(cfg) if english else []:
        begin = time.perf_counter()
        sample = draw(comp, "train", comp.languages[0], chosen.examples, reading, encoder.tokenizer)
        enough(sample, english, f"task {comp.task.name}")
        candidates.append((sample, time.perf_counter() - begin))
    streams = []
    if "semb_multilingual" in chosen.methods:
        for name, variant in job.variants.items():
            streams.append((name, _multilingual_samples(replace(variant, task=cfg.task), chosen, reading, encoder)))
    say(
        f"target {cfg.target.name}, model {cfg.model.name}, {len(cfg.task)} candidate task(s) from {job.cells} "
        f"cell(s), methods {', '.join(chosen.methods)}, {chosen.examples} examples each, seed {cfg.seed}"
    )
    ranked = Ranked(reads={"target": target.read, "candidates": {s.task: s.read for s, _ in candidates}})
    if english:
        target_embedding = encoder.embed(target.sequences, f"{cfg.target.name} (target)")
    for sample, read_seconds in candidates:
        begin = time.perf_counter()
        embedding = encoder.embed(sample.sequences, sample.task)
        spent = read_seconds + time.perf_counter() - begin
        for method in english:
            start = time.perf_counter()
            score, note = _english_score(method, sample, embedding, target, target_embedding)
            row = Row(method, "", sample.task, score, sample.examples, spent + time.perf_counter() - start, note)
            ranked.rows.append(row)
    for name, plan in streams:
        _multilingual_scores(name, plan, encoder, ranked)
    return ranked


def enough(sample: Sample, methods: list[str], what: str) -> None:
    """A sample smaller than a method needs is a user's mistake (a fixture file, a wrong split): one line."""
    for method in methods:
        if sample.examples < MIN_EXAMPLES[method]:
            raise XorderError(
                f"{what}: {sample.examples} {sample.role} example(s) in {sample.language!r}, too few for {method} "
                f"(at least {MIN_EXAMPLES[method]}); leave the task out or choose the methods with --methods"
            )


def _english_score(
    method: str, sample: Sample, embedding: np.ndarray, target: Sample, target_embedding: np.ndarray
) -> tuple[float, str]:
    from xorder.rank import methods

    if method == "semb":
        return methods.semb(embedding, target_embedding), ""
    if sample.labels is None:
        return math.nan, "no label per sequence (token or span labels): logme has no head to fit"
    if target.labels is None:
        return math.nan, "the target has no label per sequence: logme has nothing to explain"
    score = methods.head_logme(
        embedding, sample.labels, sample.regression, target_embedding, target.labels, target.regression
    )
    return score, ""


@dataclass
class Stream:
    """One candidate of semb_multilingual: a task's translations or the MLM text, sampled per language."""

    name: str
    samples: dict[str, Sample] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""


@dataclass
class MultilingualPlan:
    streams: list[Stream]
    target_dev: dict[str, Sample]


def _multilingual_samples(cfg: XorderConfig, chosen: Options, reading: Reading, encoder: Any) -> MultilingualPlan:
    """semb_multilingual's samples for one multilingual variant: each task's translations (translate_train) or the
    MLM text, and the target's dev inputs, in each language both have (never test, never labels)."""
    from xorder.plan import MLM, multilingual_components, target_component

    target = target_component(cfg)
    if cfg.multilingual.kind == MLM:
        found: list[tuple[str, Any]] = [(comp.task.name, comp) for comp in multilingual_components(cfg)]
    else:
        found = []
        for name, spec in cfg.task.items():
            try:
                found += [(name, comp) for comp in multilingual_components(replace(cfg, task={name: spec}))]
            except XorderError as err:  # a task without translations: no multilingual stage to score
                found.append((name, str(err)))
    plan = MultilingualPlan([], {})
    for name, comp in found:
        if isinstance(comp, str):
            plan.streams.append(Stream(name, note=comp))
            continue
        languages = [lang for lang in comp.languages if lang in cfg.target.languages]
        if not languages:
            note = f"its languages ({', '.join(comp.languages)}) are none of the target's evaluation languages"
            plan.streams.append(Stream(name, note=note))
            continue
        n = math.ceil(chosen.examples / len(languages))
        stream = Stream(name)
        begin = time.perf_counter()
        for lang in languages:
            if lang not in plan.target_dev:
                dev = draw(target, "dev", lang, n, reading, encoder.tokenizer)
                enough(dev, ["semb_multilingual"], f"target {cfg.target.name} dev")
                plan.target_dev[lang] = dev
            stream.samples[lang] = draw(comp, "train", lang, n, reading, encoder.tokenizer)
            enough(stream.samples[lang], ["semb_multilingual"], f"{cfg.multilingual.name} data of {name}")
        stream.seconds = time.perf_counter() - begin
        plan.streams.append(stream)
    return plan


def _multilingual_scores(variant: str, plan: MultilingualPlan, encoder: Any, ranked: Ranked) -> None:
    from xorder.rank import methods

    dev = {lang: encoder.embed(s.sequences, f"{s.task} dev {lang}") for lang, s in plan.target_dev.items()}
    reads = {
        "target_dev": {lang: s.read for lang, s in plan.target_dev.items()},
        "candidates": {s.name: [x.read for x in s.samples.values()] for s in plan.streams if s.samples},
    }
    ranked.reads.setdefault("multilingual", {})[variant] = reads
    for stream in plan.streams:
        if not stream.samples:
            ranked.rows.append(Row("semb_multilingual", variant, stream.name, math.nan, 0, 0.0, stream.note))
            continue
        begin = time.perf_counter()
        embeddings = {lang: encoder.embed(s.sequences, f"{stream.name} {lang}") for lang, s in stream.samples.items()}
        score = methods.semb_multilingual(embeddings, dev)
        used = sum(s.examples for s in stream.samples.values())
        seconds = stream.seconds + time.perf_counter() - begin
        ranked.rows.append(Row("semb_multilingual", variant, stream.name, score, used, seconds))


def table(cfg: XorderConfig, rows: list[Row]) -> Any:
    """ranking.csv's rows: rank 1 is the highest score of a method (and multilingual variant); ties share a rank;
    a candidate a method cannot score has no score and no rank, and a note that says why."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "target": cfg.target.name,
            "model": cfg.model.name,
            "method": [r.method for r in rows],
            "multilingual": [r.multilingual for r in rows],
            "task": [r.task for r in rows],
            "score": [round(r.score, 6) for r in rows],
            "examples": [r.examples for r in rows],
            "seconds": [round(r.seconds, 2) for r in rows],
            "note": [r.note for r in rows],
        }
    )
    ranks = frame.groupby(["method", "multilingual"])["score"].rank(ascending=False, method="min")
    frame["rank"] = ranks.astype("Int64")
    order = {m: i for i, m in enumerate(files.METHODS)}
    frame = frame.assign(_m=frame["method"].map(order), _r=frame["rank"].fillna(10**9))
    frame = frame.sort_values(["_m", "multilingual", "_r", "task"], kind="stable").drop(columns=["_m", "_r"])
    return frame[files.COLUMNS].reset_index(drop=True)


def render(frame: Any) -> str:
    """The table printed on stdout."""
    shown = frame.drop(columns=["target", "model"]).fillna({"note": ""})
    shown["score"] = [f"{s:.4f}" if s == s else "n/a" for s in shown["score"]]
    shown["rank"] = shown["rank"].astype("string").fillna("-")
    first = frame.iloc[0]
    head = f"ranking of {len(set(frame['task']))} candidate(s) for target {first['target']}, model {first['model']}"
    return head + "\n" + shown.to_string(index=False)


def write(job: Job, chosen: Options, ranked: Ranked, frame: Any, command: list[str], seconds: float) -> Path:
    """ranking.csv and ranking.json, each written whole or not at all."""
    import torch

    from xorder import __version__
    from xorder.storage.fileio import write_atomic, write_json

    cfg = job.cfg
    out = Path(cfg.results_dir) / files.FOLDER / cfg.target.name / cfg.model.name
    write_atomic(out / files.RANKING_CSV, frame.to_csv(index=False, lineterminator="\n"))
    record = {
        "command": command,
        "xorder": __version__,
        "target": cfg.target.name,
        "model": {"name": cfg.model.name, "path": cfg.model.path, "revision": cfg.model.revision},
        "seed": cfg.seed,
        "examples_per_task": chosen.examples,
        "max_length": cfg.trainer.max_length,
        "methods": list(chosen.methods),
        "multilingual": sorted(job.variants),
        "cells": job.cells,
        "torch_threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "read": ranked.reads,
    }
    write_json(out / files.RANKING_JSON, record)
    return out
