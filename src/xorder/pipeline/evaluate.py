"""Evaluation: predictions per example for every evaluation set, metrics per split and language (each head kind
scores its own predictions), and the ways of choosing the target checkpoint from one run:

  en_dev  the checkpoint best on the training language's dev set (the zero-shot number)
  oracle  for each language, the checkpoint best on that language's own dev set
  last    the final checkpoint
  average the mean of the weights of every evaluated checkpoint (Schmidt et al. 2023): like en_dev, it needs no
          target-language dev set, and it does not depend on one dev set's noise

Every evaluation scores the dev sets; the test sets only where one of these selections can land (`landing`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch

from xorder.config import TaskConfig
from xorder.data.stage import EvalSet
from xorder.errors import XorderError


@dataclass
class EvalResult:
    head: str
    split: str
    language: str
    metrics: dict[str, float]
    ids: list[str] = field(default_factory=list)
    gold: list[Any] = field(default_factory=list)
    prediction: list[Any] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # the source item of each id (its translations share it)


@torch.inference_mode()
def predict(model: Any, evalset: EvalSet, loader: Any, accelerator: Any, seed: int = 0) -> EvalResult:
    """Run one evaluation set (batches from `loader`) on every process and gather the predictions on all of them."""
    kind = evalset.kind
    model.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    index_all, preds_all = [], []
    with torch.random.fork_rng(devices=devices):  # MLM masking draws random numbers: keep training's stream intact
        torch.manual_seed(seed)
        for batch in loader:
            batch.pop("row")
            index = batch.pop("feature")  # position in evalset.features (QA and MLM have several per example)
            _, outputs = model(evalset.head, batch)
            preds = kind.predictions(outputs, batch)
            if kind.token_level:
                preds = accelerator.pad_across_processes(preds, dim=1, pad_index=-100)
            index, preds = accelerator.gather_for_metrics((index, preds))
            index_all.append(index.cpu())
            preds_all.append(preds.cpu())
    model.train()
    return score(evalset, torch.cat(index_all), preds_all)


def score(evalset: EvalSet, index: torch.Tensor, preds: list[torch.Tensor]) -> EvalResult:
    """Predictions by feature -> metrics by example. Each feature is counted once (processes may have padded
    with repeats), and every example must have been predicted."""
    kind = evalset.kind
    if kind.token_level:
        width = max(p.shape[1] for p in preds)
        preds = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=-100) for p in preds]
    features, first = np.unique(index.numpy(), return_index=True)
    flat = torch.cat(preds)[torch.from_numpy(first)]
    if flat.is_floating_point() and not torch.isfinite(flat).all():
        raise XorderError(
            f"{evalset.key}: the model predicts NaN or infinite values: its weights diverged (lower the learning rate)"
        )
    chosen = evalset.features.select(features.tolist())
    rows = [int(r) for r in chosen["row"]]
    if len(set(rows)) != len(evalset.examples):
        raise RuntimeError(f"{evalset.key}: predictions for {len(set(rows))} of {len(evalset.examples)} examples")
    scored = kind.score(evalset.task, evalset.examples, chosen, rows, flat)
    if scored.items is None:
        item_of = dict(zip(evalset.examples["id"], evalset.examples["item"])) if scored.ids else {}
        items = [item_of[i] for i in scored.ids]
    else:
        items = scored.items
    return EvalResult(
        evalset.head,
        evalset.split,
        evalset.language,
        scored.metrics,
        scored.ids,
        scored.gold,
        scored.prediction,
        items,
    )


def learning(
    evaluated: list[tuple[EvalSet, EvalResult]], start: dict[str, list[list[Any]]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per head, its kind's learning test (`Kind.learning`) on the predictions of the given evaluation sets pooled
    over languages, as plain values for the stage summary; a head whose kind has no test is left out. `start`:
    per set key, [gold, prediction] before the first step (kinds measured from their start)."""
    pooled: dict[str, tuple[Any, list[Any], list[Any], list[Any], list[Any]]] = {}
    for evalset, result in evaluated:
        kind, gold, pred, gold0, pred0 = pooled.setdefault(result.head, (evalset.kind, [], [], [], []))
        gold += result.gold
        pred += result.prediction
        if start is not None and evalset.key in start:
            gold0 += start[evalset.key][0]
            pred0 += start[evalset.key][1]
    out = {}
    for head, (kind, gold, pred, gold0, pred0) in pooled.items():
        found = kind.learning(gold, pred, (gold0, pred0) if kind.measured_from_start else None)
        if found is not None:
            out[head] = asdict(found)
    return out


def nest(items: list[tuple[str, str, str, dict[str, float]]]) -> dict[str, Any]:
    """[(split, lang, head, metrics)] -> {split: {lang: metrics}} (heads of a multi-task stage: head/lang)."""
    heads = {head for _, _, head, _ in items}
    out: dict[str, Any] = {}
    for split, lang, head, values in items:
        out.setdefault(split, {})[nest_key(head, lang, heads)] = values
    return out


def nest_key(head: str, lang: str, heads: set[str]) -> str:
    """A set's key under its split in nested scores: its language, or head/language when several heads share them."""
    return lang if len(heads) == 1 else f"{head}/{lang}"


def primary(task: TaskConfig) -> str:
    return task.metrics[0]


def best(history: list[dict[str, Any]], lang: str, primary_metric: str) -> dict[str, Any] | None:
    """The evaluation best on `lang`'s dev set, the earliest of a tie (max keeps the first); None if none scored it.
    Both the selections and the choice of where test sets are scored (`landing`) ask this one function."""
    candidates = [e for e in history if _dev(e, lang, primary_metric) is not None]
    return max(candidates, key=lambda e: cast(float, _dev(e, lang, primary_metric))) if candidates else None


def _dev(entry: dict[str, Any], lang: str, primary_metric: str) -> float | None:
    return entry["scores"].get("dev", {}).get(lang, {}).get(primary_metric)


def select(
    history: list[dict[str, Any]], train_language: str, primary_metric: str, average: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Scores of each selection from the evaluation history of one target run.

    history: [{"step": int, "scores": {split: {lang: {metric: value}}}}, ...] in training order; `average`: the
    evaluation of the mean of those checkpoints' weights, in the same shape (its step: the last one averaged).
    Returns {selection: {"scores": {...}, "steps": {split: {lang: step}}}}; ties go to the earlier step.
    """
    last = history[-1]
    chosen: dict[str, dict[str, Any]] = {}
    found = best(history, train_language, primary_metric)
    en_best = last if found is None else found
    for name, pick in (("en_dev", lambda lang: en_best), ("last", lambda lang: last)):
        chosen[name] = _gather(last, pick)
    oracle_steps = {lang: best(history, lang, primary_metric) for lang in last["scores"].get("dev", {})}
    chosen["oracle"] = _gather(last, lambda lang: oracle_steps.get(lang))
    if average is not None:
        chosen["average"] = _gather(last, lambda lang: average)
    return chosen


def landing(history: list[dict[str, Any]], train_language: str, primary_metric: str) -> set[str] | None:
    """Which languages' sets beyond dev the newest evaluation (the last of `history`, its dev scores only) must
    score for `select` to find every score it picks: None (every set) when it is the best so far on the training
    language's dev set (en_dev may pick it); else the languages whose own dev set it is the best so far on (the
    oracle may pick it there). The last evaluation and the average are scored whole by the caller. A step that is
    not the best so far can never become a selection's pick later: `best` keeps the earliest of a tie."""
    newest = history[-1]
    if best(history, train_language, primary_metric) is newest:
        return None
    return {lang for lang in newest["scores"].get("dev", {}) if best(history, lang, primary_metric) is newest}


def _gather(last: dict[str, Any], pick: Any) -> dict[str, Any]:
    scores: dict[str, dict[str, dict[str, float]]] = {}
    steps: dict[str, dict[str, int]] = {}
    for split, langs in last["scores"].items():
        for lang in langs:
            entry = pick(lang)
            if entry is None or lang not in entry["scores"].get(split, {}):
                continue
            scores.setdefault(split, {})[lang] = entry["scores"][split][lang]
            steps.setdefault(split, {})[lang] = entry["step"]
    return {"scores": scores, "steps": steps}
