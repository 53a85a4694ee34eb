"""Task metrics. The built-in ones, in percent (0-100), come from scikit-learn and SciPy (SQuAD exact match and
F1 follow the official v1.1 evaluation script's normalisation); they are cross-checked, and never fetched. A
metric a user brings is named `evaluate:<hub id or local path>` (`evaluate:./my_metric`, `evaluate:bleu`;
`#key` picks one of several numbers it returns) and computed with Hugging Face `evaluate` on the same predictions
and references, on the module's own scale."""

from __future__ import annotations

import collections
import functools
import os
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xorder.errors import XorderError


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


EXTERNAL = "evaluate:"


def is_external(name: str) -> bool:
    return name.startswith(EXTERNAL)


def _offline() -> bool:
    return any(
        os.environ.get(name, "0").strip().lower() not in ("0", "", "false", "no", "off")
        for name in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE")
    )


@functools.cache
def external(name: str) -> Metric:
    """The metric `evaluate:<id or path>[#key]`, loaded once with `evaluate.load` (in memory: processes of one
    cell never share its cache files). Its value is the module's `key`, else the number named like the module,
    else its only number. A mistake (no such module, a hub id offline) is one line saying what to do."""
    spec = name[len(EXTERNAL) :]
    where, _, key = spec.partition("#")
    try:
        import evaluate
    except ModuleNotFoundError:
        raise XorderError(f"metric {name} needs the package evaluate: pip install 'xorder[evaluate]'") from None
    local = where.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(where))
    path = os.path.expanduser(where) if local else where
    if local and not os.path.exists(path):
        raise XorderError(
            f"metric {name}: no evaluate module at {path} (a folder holding {os.path.basename(path)}.py, or the "
            "script itself; relative paths start where xorder runs)"
        )
    try:
        module = evaluate.load(path, keep_in_memory=True)
    except Exception as err:  # evaluate raises builtins and the hub's errors for a module it cannot find
        if local:
            raise XorderError(f"metric {name}: cannot load the evaluate module at {path}: {_first(err)}") from err
        advice = (
            "this machine is offline: run `xorder prepare` with the same overrides where there is internet (same "
            "HF_HOME)"
            if _offline()
            else f"check the id ({_first(err)}), or run `xorder prepare` where there is internet"
        )
        raise XorderError(
            f"metric {name} is not a local evaluate module and not in evaluate's cache; {advice}, or give a local "
            f"module: evaluate:./path/to/{where.rsplit('/', 1)[-1]}"
        ) from err

    def compute(gold: Sequence[Any], pred: Sequence[Any]) -> float:
        try:
            result = module.compute(predictions=list(pred), references=list(gold))
        except Exception as err:  # the module's own checks of what it is given
            raise XorderError(
                f"metric {name} failed on this task's predictions and references ({_first(err)}): they are what its "
                "head kind scores (class ids, scores, answer texts, tag ids)"
            ) from err
        return _value(name, key or module.name, result, explicit=bool(key))

    return compute


def _value(name: str, key: str, result: Any, explicit: bool) -> float:
    numbers = {
        k: float(v)
        for k, v in (result or {}).items()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    }
    if key in numbers:
        return numbers[key]
    if len(numbers) == 1 and not explicit:
        return next(iter(numbers.values()))
    raise XorderError(
        f"metric {name} returns {', '.join(sorted(result or {})) or 'nothing'}: name the number to record as "
        f"{name.split('#', 1)[0]}#KEY (one of {', '.join(sorted(numbers)) or 'none: it returns no single number'})"
    )


def _first(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def check_external(names: Sequence[str]) -> None:
    """Load every `evaluate:` metric named, before any stage trains: a missing module stops the cell at once."""
    for name in names:
        if is_external(name):
            external(name)
