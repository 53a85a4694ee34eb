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
import pyarrow.parquet as pq
from pyarrow import ArrowException

from xorder import kinds
from xorder.kinds.base import Shares
from xorder.records import NOT_APPLICABLE, PREDICTIONS
from xorder.report.grid import (
    AVG,
    AVG_NON_EN,
    MULTILINGUAL_STAGES,
    NO_TASKS,
    PAIR,
    SLICE,
    ZERO_SHOT,
    columns_of,
    main_splits,
    of_slice,
    primary_metric,
    sort_frame,
)
from xorder.report.load import Records
from xorder.report.paired import Stratum, paired_effect

_PAIR_LANGUAGES = re.compile(r"[a-z]{2,3}-[a-z]{2,3}")  # STS-17 cross-lingual pairs: ar-en, en-de


def effect_columns(pair: tuple[str, str]) -> list[str]:
    """order_effect.csv's columns: the compared orders' means are named after the orders."""
    return [
        "target",
        "data",
        "model",
        "multilingual",
        "tasks",
        "selection",
        "split",
        "language",
        "metric",
        "n_seeds",
        "n_examples",
        "n_items",
        "clusters",
        *pair,
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "seed_sd",
        "learned",
    ]


# What a resample draws as one cluster (order_effect.csv's `clusters`): items whose rows span languages (an aligned
# split), items of one language each (a split without alignment), or rows (records older than the `item` column:
# each (language, id) row with its seeds; translations counted as independent, so the interval is too narrow).
CLUSTERS = ("aligned", "unaligned", "rows")
_TEST = ("ci_low", "ci_high", "p_value")  # left empty where neither compared cell learned a model


def _load_predictions(path: Path, split: str) -> pd.DataFrame | str:
    """The zero-shot selection's predictions of one split (`item` empty in records older than it), or why they
    cannot be used."""
    need = ["split", "language", "id", "gold", "prediction"]
    try:
        has_item = "item" in pq.read_schema(path).names
        frame = pd.read_parquet(path, columns=["selection", *need, *(["item"] if has_item else [])])
    except FileNotFoundError:
        return "no predictions.parquet"
    except (OSError, ValueError, KeyError, ArrowException) as err:  # a damaged or foreign file
        return f"unreadable predictions.parquet ({type(err).__name__})"
    if not has_item:
        frame["item"] = None
    need.append("item")
    frame = frame[(frame["selection"] == ZERO_SHOT) & (frame["split"] == split)][need]
    if frame.duplicated(["language", "id"]).any():
        return "predictions.parquet repeats an example id"
    return frame


def _matched(cells: pd.DataFrame, pair: tuple[str, str]) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """The groups of records to compare: ((target, data, model, multilingual, tasks, a's variant, a's tasks, b's
    variant, b's tasks), both orders' records). An axis that an order does not use (`-`, `none`) matches any
    value of the other order, so english_first can be compared with english_only or with the baseline."""

    def part(order: str) -> dict[tuple[str, ...], pd.DataFrame]:
        mine = cells[cells["order"] == order]
        return {k: g for k, g in mine.groupby([*SLICE, "multilingual", "tasks"], sort=True)}

    out: list[tuple[tuple[str, ...], pd.DataFrame]] = []
    for (target, data, model, ml_a, tasks_a), a in part(pair[0]).items():
        for (target_b, data_b, model_b, ml_b, tasks_b), b in part(pair[1]).items():
            if (target, data, model) != (target_b, data_b, model_b) or not (
                _fits(ml_a, ml_b, NOT_APPLICABLE) and _fits(tasks_a, tasks_b, NO_TASKS)
            ):
                continue
            multilingual = ml_b if ml_a == NOT_APPLICABLE else ml_a
            tasks = tasks_b if tasks_a == NO_TASKS else tasks_a
            key = (target, data, model, multilingual, tasks, ml_a, tasks_a, ml_b, tasks_b)
            out.append((key, pd.concat([a, b])))
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
    """The order-effect rows: one per (target, data, model, multilingual, tasks, main split, language or average)
    where both orders of `pair` have records. With predictions the difference, CI and p come from the
    paired examples; without them the difference of summary means stands alone."""
    cells, rows = records.counted, []
    for (target, data, model, multilingual, tasks, *axes), group in _matched(cells, pair):
        metric = primary_metric(cells, target)
        train = records.target(target).train_language
        for split in main_splits(summary, (target, data, model)):
            view = of_slice(summary, (target, data, model))
            view = view[(view["selection"] == ZERO_SHOT) & (view["split"] == split) & (view["metric"] == metric)]
            sides = [
                view[(view["order"] == order) & (view["multilingual"] == ml) & (view["tasks"] == tk)]
                for order, ml, tk in ((pair[0], axes[0], axes[1]), (pair[1], axes[2], axes[3]))
            ]
            languages = sorted((set(sides[0]["language"]) | set(sides[1]["language"])) - {AVG, AVG_NON_EN})
            columns = columns_of(languages, train)
            name = f"{target}/{model}/{multilingual}/{tasks}/{split}" + (f"/{data}" if data else "")
            stats, clusters = {}, ""
            testable, shares = paired_test(records.target(target).kind, metric)
            if testable:
                strata, clusters = _strata(group, results, split, warn, pair)
                stats = paired_effect(strata, metric, columns, resamples, name, shares)
            compared = [(axes[1], axes[0], pair[0]), (axes[3], axes[2], pair[1])]
            for column, within in columns.items():
                means = [side[side["language"] == column]["mean"] for side in sides]
                keys = (target, data, model, multilingual, tasks, ZERO_SHOT, split, column, metric)
                learned = not all(records.no_learned_model((target, data, model), split, c, within) for c in compared)
                if column in stats:
                    s = stats[column] if learned else {**stats[column], **dict.fromkeys(_TEST, math.nan)}
                    rows.append(
                        (
                            *keys,
                            *(s[k] for k in ("n_seeds", "n_examples", "n_items")),
                            clusters,
                            *(s[k] for k in ("a", "b", "diff", *_TEST, "seed_sd")),
                            learned,
                        )
                    )
                elif all(len(m) for m in means):  # no paired predictions: the difference of the means, no test
                    a, b = float(means[0].iloc[0]), float(means[1].iloc[0])
                    rows.append((*keys, *[math.nan] * 3, "", a, b, a - b, *[math.nan] * 4, learned))
    frame = pd.DataFrame(rows, columns=effect_columns(pair))
    for count in ("n_seeds", "n_examples", "n_items"):
        frame[count] = frame[count].astype("Int64")
    return sort_frame(frame, [*SLICE, "multilingual", "tasks", "split", "language"])


def paired_test(kind: str, metric: str) -> tuple[bool, Shares | None]:
    """Whether `metric` of a target of `kind` has a paired test, and the per-example shares it resamples (None: a
    correlation): the kind says so (Kind.example_scores, Kind.correlations); a kind this installation lacks has
    none."""
    if kind not in kinds.names():
        return False, None
    shares = kinds.get(kind).example_scores(metric)
    return shares is not None or metric in kinds.get(kind).correlations, shares


def _strata(
    group: pd.DataFrame, results: Path, split: str, warn: Callable[[str, str], None], pair: tuple[str, str]
) -> tuple[list[Stratum], str]:
    """Examples of both orders matched by (seed, language, id), for the seeds that both orders have, each with its
    source item; and what the items are (CLUSTERS). One record without `item` makes every stratum fall back to
    (language, id) rows, so that both orders are resampled alike."""
    by_order: dict[str, dict[int, pd.DataFrame]] = {pair[0]: {}, pair[1]: {}}
    for row in group.itertuples():
        frame = _load_predictions(results / row.path / PREDICTIONS, split)
        if isinstance(frame, str):
            warn(row.path, f"{frame}; its paired test is left out")
            continue
        by_order[row.order][row.seed] = frame
    frames = [f for side in by_order.values() for f in side.values()]
    rows = any(f["item"].isna().any() for f in frames)
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
            items = language + ":" + part["id"].astype(str) if rows else part["item_a"].astype(str)
            strata.append(
                Stratum(
                    int(seed),
                    str(language),
                    gold_a,
                    part["prediction_a"].to_numpy(),
                    part["prediction_b"].to_numpy(),
                    items.to_numpy(),
                )
            )
    if rows or not strata:
        return strata, "rows" if strata else ""
    languages = pd.DataFrame(
        [(s.language, item) for s in strata for item in np.unique(s.items)], columns=["language", "item"]
    )
    spans = languages.drop_duplicates().groupby("item")["language"].size()
    return strata, "aligned" if (spans > 1).any() else "unaligned"


def trained_languages(
    records: Records, key: tuple[str, ...], multilingual: str, tasks: str, pair: tuple[str, str]
) -> frozenset[str] | None:
    """The languages that every multilingual (or joint) stage of the compared records of a slice trained on
    (their stages[].languages), or None when neither order has such a stage."""
    stages = of_slice(records.stages, key)
    part = stages[
        stages["order"].isin(pair)
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
