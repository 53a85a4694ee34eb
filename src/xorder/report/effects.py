"""The order effect: two orders (english_first and multilingual_first unless --compare says otherwise) compared
on paired per-example predictions, or on seed means without them; and which languages a multilingual stage
did not train on, so that the tables can say where the compared orders differ in the data they saw."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import ArrowException

from xorder.records import NOT_APPLICABLE, PREDICTIONS
from xorder.report.grid import (
    AVG,
    AVG_NON_EN,
    MULTILINGUAL_STAGES,
    NO_TASKS,
    PAIR,
    ZERO_SHOT,
    is_train_language,
    main_splits,
    primary_metric,
    sort_frame,
)
from xorder.report.load import Records
from xorder.report.paired import TESTABLE, Stratum, paired_effect

_PAIR_LANGUAGES = re.compile(r"[a-z]{2,3}-[a-z]{2,3}")  # STS-17 cross-lingual pairs: ar-en, en-de


def effect_columns(pair: tuple[str, str]) -> list[str]:
    """order_effect.csv's columns: the compared orders' means are named after the orders."""
    return [
        "target",
        "model",
        "multilingual",
        "tasks",
        "selection",
        "split",
        "language",
        "metric",
        "n_seeds",
        "n_examples",
        *pair,
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
    ]


def _load_predictions(path: Path, split: str) -> pd.DataFrame | str:
    """The zero-shot selection's predictions of one split, or why they cannot be used."""
    need = ["split", "language", "id", "gold", "prediction"]
    try:
        frame = pd.read_parquet(path, columns=["selection", *need])
    except FileNotFoundError:
        return "no predictions.parquet"
    except (OSError, ValueError, KeyError, ArrowException) as err:  # a damaged or foreign file
        return f"unreadable predictions.parquet ({type(err).__name__})"
    frame = frame[(frame["selection"] == ZERO_SHOT) & (frame["split"] == split)][need]
    if frame.duplicated(["language", "id"]).any():
        return "predictions.parquet repeats an example id"
    return frame


def _matched(cells: pd.DataFrame, pair: tuple[str, str]) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """The groups of records to compare: ((target, model, multilingual, tasks, a's variant, a's tasks, b's
    variant, b's tasks), both orders' records). An axis that an order does not use (`-`, `none`) matches any
    value of the other order, so english_first can be compared with english_only or with the baseline."""

    def part(order: str) -> dict[tuple[str, ...], pd.DataFrame]:
        mine = cells[cells["order"] == order]
        return {k: g for k, g in mine.groupby(["target", "model", "multilingual", "tasks"], sort=True)}

    out: list[tuple[tuple[str, ...], pd.DataFrame]] = []
    for (target, model, ml_a, tasks_a), a in part(pair[0]).items():
        for (target_b, model_b, ml_b, tasks_b), b in part(pair[1]).items():
            if (target, model) != (target_b, model_b) or not (
                _fits(ml_a, ml_b, NOT_APPLICABLE) and _fits(tasks_a, tasks_b, NO_TASKS)
            ):
                continue
            multilingual = ml_b if ml_a == NOT_APPLICABLE else ml_a
            tasks = tasks_b if tasks_a == NO_TASKS else tasks_a
            out.append(((target, model, multilingual, tasks, ml_a, tasks_a, ml_b, tasks_b), pd.concat([a, b])))
    return out


def _fits(a: str, b: str, unused: str) -> bool:
    return a == b or unused in (a, b)


def order_effects(
    records: Records,
    summary: pd.DataFrame,
    results: Path,
    resamples: int,
    warn: Callable[[str, str], None],
    pair: tuple[str, str] = PAIR,
) -> pd.DataFrame:
    """The order-effect rows: one per (target, model, multilingual, tasks, main split, language or average)
    where both orders of `pair` have records. With predictions the difference, CI and p come from the
    paired examples; without them the difference of summary means stands alone."""
    cells, rows = records.cells, []
    for (target, model, multilingual, tasks, *axes), group in _matched(cells, pair):
        metric = primary_metric(cells, target)
        train = records.target(target).train_language
        for split in main_splits(summary, target, model):
            view = summary[
                (summary["target"] == target)
                & (summary["model"] == model)
                & (summary["selection"] == ZERO_SHOT)
                & (summary["split"] == split)
                & (summary["metric"] == metric)
            ]
            sides = [
                view[(view["order"] == order) & (view["multilingual"] == ml) & (view["tasks"] == tk)]
                for order, ml, tk in ((pair[0], axes[0], axes[1]), (pair[1], axes[2], axes[3]))
            ]
            languages = sorted((set(sides[0]["language"]) | set(sides[1]["language"])) - {AVG, AVG_NON_EN})
            columns = {lang: [lang] for lang in languages}
            columns[AVG] = languages
            columns[AVG_NON_EN] = [lang for lang in languages if not is_train_language(lang, train)]
            name = f"{target}/{model}/{multilingual}/{tasks}/{split}"
            stats = {}
            if metric in TESTABLE:
                strata = _strata(group, results, split, warn, pair)
                stats = paired_effect(strata, metric, columns, resamples, name) if strata else {}
            for column in columns:
                means = [side[side["language"] == column]["mean"] for side in sides]
                keys = (target, model, multilingual, tasks, ZERO_SHOT, split, column, metric)
                if column in stats:
                    s = stats[column]
                    measured = ("n_seeds", "n_examples", "a", "b", "diff", "ci_low", "ci_high", "p_value")
                    rows.append((*keys, *(s[k] for k in measured)))
                elif all(len(m) for m in means):  # no paired predictions: the difference of the means, no test
                    a, b = float(means[0].iloc[0]), float(means[1].iloc[0])
                    rows.append((*keys, math.nan, math.nan, a, b, a - b, math.nan, math.nan, math.nan))
    frame = pd.DataFrame(rows, columns=effect_columns(pair))
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    frame["n_examples"] = frame["n_examples"].astype("Int64")
    return sort_frame(frame, ["target", "model", "multilingual", "tasks", "split", "language"])


def _strata(
    group: pd.DataFrame, results: Path, split: str, warn: Callable[[str, str], None], pair: tuple[str, str]
) -> list[Stratum]:
    """Examples of both orders matched by (seed, language, id), for the seeds that both orders have."""
    by_order: dict[str, dict[int, pd.DataFrame]] = {pair[0]: {}, pair[1]: {}}
    for row in group.itertuples():
        frame = _load_predictions(results / row.path / PREDICTIONS, split)
        if isinstance(frame, str):
            warn(row.path, f"{frame}; its paired test is left out")
            continue
        by_order[row.order][row.seed] = frame
    strata = []
    for seed in sorted(by_order[pair[0]].keys() & by_order[pair[1]].keys()):
        a, b = by_order[pair[0]][seed], by_order[pair[1]][seed]
        merged = a.merge(b, on=["language", "id"], suffixes=("_a", "_b"), sort=True)
        for language, part in merged.groupby("language", sort=True):
            gold_a, gold_b = part["gold_a"].to_numpy(), part["gold_b"].to_numpy()
            if not np.array_equal(gold_a, gold_b):
                warn(
                    f"{group['target'].iloc[0]}/*/{group['tasks'].iloc[0]} seed{seed}",
                    f"gold labels of {language} differ between the two orders; that stratum is left out",
                )
                continue
            strata.append(
                Stratum(
                    int(seed), str(language), gold_a, part["prediction_a"].to_numpy(), part["prediction_b"].to_numpy()
                )
            )
    return strata


def trained_languages(
    records: Records, target: str, model: str, multilingual: str, tasks: str, pair: tuple[str, str]
) -> frozenset[str] | None:
    """The languages that every multilingual (or joint) stage of the compared records trained on (their
    stages[].languages), or None when neither order has such a stage."""
    stages = records.stages
    part = stages[
        (stages["target"] == target)
        & (stages["model"] == model)
        & stages["order"].isin(pair)
        & stages["multilingual"].isin([multilingual, NOT_APPLICABLE])
        & stages["tasks"].isin([tasks, NO_TASKS])
        & stages["name"].isin(MULTILINGUAL_STAGES)
    ]
    if part.empty:
        return None
    return frozenset.intersection(*(frozenset(languages) for languages in part["languages"]))


def untrained(language: str, trained: frozenset[str] | None, train_language: str) -> bool:
    """Whether an evaluation language (or a part of a pair such as `ar-en`) is one that the multilingual stage
    did not train on; the target's own training language always counts as trained, averages are never marked."""
    if trained is None or language in (AVG, AVG_NON_EN):
        return False
    parts = language.split("-") if _PAIR_LANGUAGES.fullmatch(language) else [language]
    return any(p not in trained and p != train_language for p in parts)
