"""Evaluation: predictions per example for every evaluation set, metrics per split and language, and the
three ways of choosing the target checkpoint from one run:

  en_dev  the checkpoint best on the training language's dev set (the zero-shot number)
  oracle  for each language, the checkpoint best on that language's own dev set
  last    the final checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xorder import metrics
from xorder.config import TaskConfig

MAX_ANSWER_TOKENS = 30


@dataclass
class EvalSet:
    """One (task, split, language) evaluation set and its prepared loader."""

    head: str
    task: TaskConfig
    split: str
    language: str
    examples: list[dict[str, Any]]
    features: Any  # datasets.Dataset
    label_names: list[str]
    loader: Any = None

    @property
    def key(self) -> str:
        return f"{self.head}/{self.split}/{self.language}"


@dataclass
class EvalResult:
    head: str
    split: str
    language: str
    metrics: dict[str, float]
    ids: list[str] = field(default_factory=list)
    gold: list[Any] = field(default_factory=list)
    prediction: list[Any] = field(default_factory=list)


def _batch_outputs(kind: str, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-example (or per-token, per-feature) predictions of fixed shape, so they gather across processes."""
    if kind in ("classification", "multiple_choice"):
        return outputs.argmax(-1)
    if kind == "regression":
        return outputs.float()
    if kind == "tagging":
        return outputs.argmax(-1).masked_fill(batch["labels"] == -100, -100)
    if kind == "extractive_qa":
        return _best_spans(outputs.float(), batch)
    raise ValueError(kind)


def _best_spans(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """For each feature: the best (start, end, score) span with start <= end < start + MAX_ANSWER_TOKENS,
    inside the context (question tokens have offsets (-1, -1) and are masked by the caller's offsets)."""
    start, end = logits[..., 0], logits[..., 1]
    scores = start.unsqueeze(2) + end.unsqueeze(1)  # [features, start, end]
    length = scores.shape[1]
    band = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu().tril(MAX_ANSWER_TOKENS - 1)
    context = batch["context_mask"].bool()
    allowed = band.unsqueeze(0) & context.unsqueeze(2) & context.unsqueeze(1)
    scores = scores.masked_fill(~allowed, -1e9)
    flat = scores.flatten(1).argmax(-1)
    best = scores.flatten(1).gather(1, flat.unsqueeze(1)).squeeze(1)
    return torch.stack([(flat // length).float(), (flat % length).float(), best], dim=-1)


@torch.no_grad()
def predict(model: Any, evalset: EvalSet, accelerator: Any, seed: int = 0) -> EvalResult:
    """Run one evaluation set on every process and gather the predictions on all of them."""
    kind = evalset.task.kind
    model.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    index_all, preds_all, correct, total = [], [], 0, 0
    with torch.random.fork_rng(devices=devices):  # MLM masking draws random numbers: keep training's stream intact
        torch.manual_seed(seed)
        for batch in evalset.loader:
            batch.pop("row")
            index = batch.pop("feature")  # position in evalset.features (QA and MLM have several per example)
            loss, outputs = model(evalset.head, batch)
            if kind == "mlm":
                labels = batch["labels"][batch["labels"] != -100]
                counts = torch.stack([(outputs.argmax(-1) == labels).sum(), labels.new_tensor(labels.numel())])
                counts = accelerator.reduce(counts, reduction="sum")
                correct, total = correct + int(counts[0]), total + int(counts[1])
                continue
            preds = _batch_outputs(kind, outputs, batch)
            if kind == "tagging":
                preds = accelerator.pad_across_processes(preds, dim=1, pad_index=-100)
            index, preds = accelerator.gather_for_metrics((index, preds))
            index_all.append(index.cpu())
            preds_all.append(preds.cpu())
    model.train()
    if kind == "mlm":
        value = 100.0 * correct / total if total else None  # no masked token: no score, not zero
        return EvalResult(evalset.head, evalset.split, evalset.language, {} if value is None else {"accuracy": value})
    return _score(evalset, torch.cat(index_all), preds_all)


def _score(evalset: EvalSet, index: torch.Tensor, preds: list[torch.Tensor]) -> EvalResult:
    """Predictions by feature -> metrics by example. Each feature is counted once (processes may have padded
    with repeats), and every example must have been predicted."""
    kind, task, examples = evalset.task.kind, evalset.task, evalset.examples
    ids = [e["id"] for e in examples]
    width = max(p.shape[1] for p in preds) if kind == "tagging" else 0
    if kind == "tagging":
        preds = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=-100) for p in preds]
    features, first = np.unique(index.numpy(), return_index=True)
    flat = torch.cat(preds)[torch.from_numpy(first)]
    chosen = evalset.features.select(features.tolist())
    example_rows = [int(r) for r in chosen["row"]]
    if len(set(example_rows)) != len(examples):
        raise RuntimeError(f"{evalset.key}: predictions for {len(set(example_rows))} of {len(examples)} examples")
    if kind == "tagging":
        gold, pred = [], []
        for labels, predicted in zip(chosen["labels"], flat.tolist()):
            pairs = [(g, q) for g, q in zip(labels, predicted) if g != -100]
            gold += [g for g, _ in pairs]
            pred += [q for _, q in pairs]
        return EvalResult(evalset.head, evalset.split, evalset.language, metrics.compute(kind, task.metrics, gold, pred))
    if kind == "extractive_qa":
        best: dict[int, tuple[float, str]] = {}
        for example, offsets, (start, end, score) in zip(example_rows, chosen["offset_mapping"], flat.tolist()):
            context = examples[example]["context"]
            text = context[offsets[int(start)][0] : offsets[int(end)][1]] if offsets[int(start)][0] >= 0 else ""
            if example not in best or score > best[example][0]:
                best[example] = (score, text)
        order = sorted(best)
        gold = [examples[i]["answers"]["text"] for i in order]
        pred = [best[i][1] for i in order]
        result = metrics.compute(kind, task.metrics, gold, pred)
        return EvalResult(evalset.head, evalset.split, evalset.language, result, [ids[i] for i in order],
                          ["|".join(g) for g in gold], pred)
    values = flat.numpy().tolist()  # one feature per example, in example order
    gold = [examples[i]["label"] for i in example_rows]
    result = metrics.compute(kind, task.metrics, gold, values)
    return EvalResult(evalset.head, evalset.split, evalset.language, result, [ids[i] for i in example_rows], gold,
                      values)


def primary(task: TaskConfig) -> str:
    return task.metrics[0]


def select(history: list[dict[str, Any]], train_language: str, primary_metric: str) -> dict[str, dict[str, Any]]:
    """Scores of each selection from the evaluation history of one target run.

    history: [{"step": int, "scores": {split: {lang: {metric: value}}}}, ...] in training order.
    Returns {selection: {"scores": {...}, "steps": {split: {lang: step}}}}; ties go to the earlier step.
    """
    def dev(entry: dict[str, Any], lang: str) -> float | None:
        return entry["scores"].get("dev", {}).get(lang, {}).get(primary_metric)

    last = history[-1]
    chosen: dict[str, dict[str, Any]] = {}
    ranked = [e for e in history if dev(e, train_language) is not None]
    en_best = max(ranked, key=lambda e: dev(e, train_language)) if ranked else last
    for name, pick in (("en_dev", lambda lang: en_best), ("last", lambda lang: last)):
        chosen[name] = _gather(last, pick)
    oracle_steps: dict[str, dict[str, Any]] = {}
    for lang in last["scores"].get("dev", {}):
        candidates = [e for e in history if dev(e, lang) is not None]
        oracle_steps[lang] = max(candidates, key=lambda e: dev(e, lang))
    chosen["oracle"] = _gather(last, lambda lang: oracle_steps.get(lang))
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
