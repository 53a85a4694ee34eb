"""Task metrics, in percent (0-100), from scikit-learn and SciPy; SQuAD exact match and F1 follow the
official v1.1 evaluation script's normalisation."""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def accuracy(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    from sklearn.metrics import accuracy_score

    return 100.0 * float(accuracy_score(gold, pred))


def f1(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    """Binary F1 of the positive class (QQP, MRPC); macro F1 when there are more classes."""
    from sklearn.metrics import f1_score

    labels = set(gold) | set(pred)
    average = "binary" if labels <= {0, 1} else "macro"
    return 100.0 * float(f1_score(gold, pred, average=average, zero_division=0))


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import pearsonr

    return _correlation(pearsonr, gold, pred)


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return _correlation(spearmanr, gold, pred)


def _correlation(fn: Callable, gold: Sequence[float], pred: Sequence[float]) -> float:
    if len(gold) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0  # a constant prediction carries no correlation
    return 100.0 * float(fn(gold, pred)[0])


def _normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _span_f1(gold: str, pred: str) -> float:
    gold_tokens, pred_tokens = _normalize(gold).split(), _normalize(pred).split()
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(gold: Sequence[list[str]], pred: Sequence[str]) -> float:
    """gold: the accepted answers of each question; a prediction scores its best match."""
    return 100.0 * float(np.mean([max(_normalize(g) == _normalize(p) for g in golds) for golds, p in zip(gold, pred)]))


def squad_f1(gold: Sequence[list[str]], pred: Sequence[str]) -> float:
    return 100.0 * float(np.mean([max(_span_f1(g, p) for g in golds) for golds, p in zip(gold, pred)]))


Metric = Callable[[Sequence[Any], Sequence[Any]], float]
# Each head kind names its table: class labels (per example or per tagged word), real-valued scores (correlations
# need them; accuracy on scores would fail only after training), answer spans.
CLASSES: dict[str, Metric] = {"accuracy": accuracy, "f1": f1}
SCORES: dict[str, Metric] = {"pearson": pearson, "spearman": spearman}
SPAN: dict[str, Metric] = {"f1": squad_f1, "exact_match": exact_match}
