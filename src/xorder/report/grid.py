"""The study grid: axes, the sort order of its rows, the target's primary metric and splits, missing cells."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from xorder.records import NOT_APPLICABLE, SELECTIONS

ORDERS = ("none", "english_only", "multilingual_only", "english_first", "multilingual_first", "joint")
ZERO_SHOT = "en_dev"  # the selection the main tables report: checkpoint chosen on English dev only
AVG, AVG_NON_EN = "avg", "avg_non_en"
NO_TASKS = "none"
# The target's data source is part of a cell's identity: synthetic PAWS-X and real PAWS-X are different test sets.
# A record's `variant` names it first (`xtreme+synthetic-1a2b3c4d`: the target read from XTREME's files); records
# written before variants existed have "".
SLICE = ["target", "data", "model"]  # what one set of tables covers (with a split)
ROW = [*SLICE, "multilingual", "order", "tasks"]  # one row of the study grid; seeds pooled
MISSING_COLUMNS = [*ROW, "seed"]
PAIR = ("english_first", "multilingual_first")  # the orders the order-effect table compares by default (--compare)
STAGES = ("english", "multilingual", "joint", "target")  # stage names of a record, in training sequence
MULTILINGUAL_STAGES = ("multilingual", "joint")  # the stages that train on languages other than English
# checkpoint selections; `average` (checkpoints averaged over the target's evaluations) is newer than some records
SELECTION_ORDER = tuple(dict.fromkeys((*SELECTIONS, "average")))


def _position(sequence: tuple[str, ...], last: bool = False) -> Callable[[str], tuple]:
    """Sort key: values of `sequence` in its order (before, or with last=True after, all other values)."""

    def key(value: str) -> tuple:
        if value in sequence:
            return (1 if last else 0, sequence.index(value), "")
        return (0 if last else 1, 0, value)

    return key


SORT_KEYS: dict[str, Callable[[str], tuple]] = {
    "order": _position(ORDERS),  # the design's sequence: baseline first
    "tasks": _position((NO_TASKS,)),  # the baseline's "none" first, then task sets by name
    "selection": _position(SELECTION_ORDER),
    "split": lambda v: (1, v) if v == "dev" else (0, "") if v == "test" else (0, v),  # test, others, dev
    "language": _position((AVG, AVG_NON_EN), last=True),  # languages by name, then the averages
}


def sort_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sort by `columns` with the study's orders (baseline first, orders as in the design, averages last)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    keys = [[SORT_KEYS[c](v) for v in frame[c]] if c in SORT_KEYS else list(frame[c]) for c in columns]
    order = sorted(range(len(frame)), key=lambda i: tuple(k[i] for k in keys))
    return frame.iloc[order].reset_index(drop=True)


def row_key(row: tuple[str, str, str]) -> tuple:
    """Sort key of a table row (tasks, multilingual, order): baseline first, then task sets, orders as designed."""
    tasks, multilingual, order = row
    return (SORT_KEYS["tasks"](tasks), multilingual, SORT_KEYS["order"](order))


def is_train_language(language: str, train_language: str) -> bool:
    """`en` and, for cross-lingual pair sets such as STS-17, `en-en`: the languages seen in training."""
    return language == train_language or language == f"{train_language}-{train_language}"


def columns_of(languages: list[str], train_language: str) -> dict[str, list[str]]:
    """The languages behind each column of a table: every language alone, then `avg` (all of them) and
    `avg_non_en` (all but the training language)."""
    out = {lang: [lang] for lang in languages}
    out[AVG] = list(languages)
    out[AVG_NON_EN] = [lang for lang in languages if not is_train_language(lang, train_language)]
    return out


def primary_metric(cells: pd.DataFrame, target: str) -> str:
    """The target's primary metric (the most common one among its records, ties by name)."""
    counts = cells[cells["target"] == target]["primary_metric"].value_counts()
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def of_slice(frame: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    """The rows of `frame` in one slice (target, data, model)."""
    return frame[(frame["target"] == key[0]) & (frame["data"] == key[1]) & (frame["model"] == key[2])]


def main_splits(summary: pd.DataFrame, key: tuple[str, ...]) -> list[str]:
    """The evaluation splits the tables report for a slice: every split but dev (dev chose the checkpoint), or
    dev when a target has nothing else."""
    part = of_slice(summary, key)
    splits = set(part[part["selection"] == ZERO_SHOT]["split"])
    chosen = sorted(splits - {"dev"}, key=SORT_KEYS["split"]) or sorted(splits)
    return chosen


def missing_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells and seeds of the grid the records span but do not fill. Per target and model the grid is every
    observed order with every observed task set and multilingual variant, for the axes the order uses as
    its records show (`none` uses neither, english_only tasks only, the others both), each with every
    observed seed."""
    missing = []
    for key, group in cells.groupby(SLICE, sort=True):
        seeds = sorted(set(group["seed"]))
        tasks = sorted(set(group["tasks"]) - {NO_TASKS})
        variants = sorted(set(group["multilingual"]) - {NOT_APPLICABLE})
        have = set(zip(group["multilingual"], group["order"], group["tasks"], group["seed"]))
        for order in sorted(set(group["order"]), key=SORT_KEYS["order"]):
            mine = group[group["order"] == order]
            uses_multilingual = (mine["multilingual"] != NOT_APPLICABLE).any()
            for multilingual in variants if uses_multilingual else [NOT_APPLICABLE]:
                # multilingual_only uses the task for translate-train but not for MLM: decided per variant
                rows = mine[mine["multilingual"] == multilingual]
                uses_tasks = ((rows if len(rows) else mine)["tasks"] != NO_TASKS).any()
                for task in tasks if uses_tasks else [NO_TASKS]:
                    for seed in seeds:
                        if (multilingual, order, task, seed) not in have:
                            missing.append((*key, multilingual, order, task, seed))
    frame = pd.DataFrame(missing, columns=MISSING_COLUMNS)
    return sort_frame(frame, MISSING_COLUMNS)
