"""Evaluation: predictions per example for every evaluation set, metrics per split and language (each head kind
scores its own predictions), and the ways of choosing the target checkpoint from one run:

  en_dev  the checkpoint best on the training language's dev set (the zero-shot number)
  oracle  for each language, the checkpoint best on that language's own dev set
  last    the final checkpoint
  average the mean of the weights of every evaluated checkpoint (Schmidt et al. 2023): like en_dev, it needs no
          target-language dev set, and it does not depend on one dev set's noise
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    return EvalResult(
        evalset.head, evalset.split, evalset.language, scored.metrics, scored.ids, scored.gold, scored.prediction
    )


def nest(items: list[tuple[str, str, str, dict[str, float]]]) -> dict[str, Any]:
    """[(split, lang, head, metrics)] -> {split: {lang: metrics}} (heads of a multi-task stage: head/lang)."""
    heads = {head for _, _, head, _ in items}
    out: dict[str, Any] = {}
    for split, lang, head, values in items:
        key = lang if len(heads) == 1 else f"{head}/{lang}"
        out.setdefault(split, {})[key] = values
    return out


def primary(task: TaskConfig) -> str:
    return task.metrics[0]


def select(
    history: list[dict[str, Any]], train_language: str, primary_metric: str, average: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Scores of each selection from the evaluation history of one target run.

    history: [{"step": int, "scores": {split: {lang: {metric: value}}}}, ...] in training order; `average`: the
    evaluation of the mean of those checkpoints' weights, in the same shape (its step: the last one averaged).
    Returns {selection: {"scores": {...}, "steps": {split: {lang: step}}}}; ties go to the earlier step.
    """

    def dev(entry: dict[str, Any], lang: str) -> float | None:
        return entry["scores"].get("dev", {}).get(lang, {}).get(primary_metric)

    last = history[-1]
    chosen: dict[str, dict[str, Any]] = {}
    ranked = [e for e in history if dev(e, train_language) is not None]
    en_best = max(ranked, key=lambda e: cast(float, dev(e, train_language))) if ranked else last
    for name, pick in (("en_dev", lambda lang: en_best), ("last", lambda lang: last)):
        chosen[name] = _gather(last, pick)
    oracle_steps: dict[str, dict[str, Any]] = {}
    for lang in last["scores"].get("dev", {}):
        candidates = [e for e in history if dev(e, lang) is not None]
        oracle_steps[lang] = max(candidates, key=lambda e: cast(float, dev(e, lang)))
    chosen["oracle"] = _gather(last, lambda lang: oracle_steps.get(lang))
    if average is not None:
        chosen["average"] = _gather(last, lambda lang: average)
    return chosen


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
