"""Seed aggregation: per-record averages over languages, then mean and std over seeds.

A non-finite score (a malformed record, warned about when loading) is never averaged away: every average
and every seed mean that it enters is NaN, and the tables mark those cells."""

from __future__ import annotations

import pandas as pd

from xorder.report.grid import AVG, AVG_NON_EN, ROW, is_train_language, sort_frame
from xorder.report.load import Records

SUMMARY_COLUMNS = [*ROW, "selection", "split", "language", "metric", "n_seeds", "mean", "std", "seeds"]


def _strict_mean(frame: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Mean of `value` per group; NaN when any value of the group is NaN (pandas would skip it)."""
    stats = frame.groupby(group, sort=True)["value"].agg(["mean", "count", "size"])
    mean = stats["mean"].where(stats["count"] == stats["size"])
    return mean.rename("value").reset_index()


def per_seed(records: Records) -> pd.DataFrame:
    """Per-record scores plus `avg` and `avg_non_en` per record, selection, split and metric. An average is
    only formed when the record has every language that any record of the target has there: an average over
    fewer languages would not be comparable."""
    scores = records.scores
    if scores.empty:
        return scores.copy()
    group = [*ROW, "seed", "selection", "split", "metric"]
    have = scores.groupby(group)["language"].transform("size")
    expected = scores.groupby(["target", "data", "selection", "split", "metric"])["language"].transform("nunique")
    complete = scores[have == expected]
    train = complete["target"].map(lambda t: records.target(t).train_language)
    non_en = complete[[not is_train_language(lang, tl) for lang, tl in zip(complete["language"], train)]]
    parts = [scores]
    for name, frame in ((AVG, complete), (AVG_NON_EN, non_en)):
        if frame.empty:
            continue
        mean = _strict_mean(frame, group)
        mean.insert(mean.columns.get_loc("metric"), "language", name)
        parts.append(mean[scores.columns])
    return pd.concat(parts, ignore_index=True)


def summarize(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds (std empty for one seed), one row per combination.
    n_seeds counts every seed behind the number; mean and std are empty when one of them is not finite."""
    group = [*ROW, "selection", "split", "language", "metric"]
    if seeds.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    ordered = seeds.sort_values([*group, "seed"], kind="stable")
    summary = (
        ordered.groupby(group, sort=True)
        .agg(
            n_seeds=("value", "size"),
            finite=("value", "count"),
            mean=("value", "mean"),
            std=("value", "std"),
            seeds=("seed", lambda s: ";".join(str(v) for v in sorted(s))),
        )
        .reset_index()
    )
    bad = summary["finite"] < summary["n_seeds"]
    summary.loc[bad, ["mean", "std"]] = float("nan")
    return sort_frame(summary[SUMMARY_COLUMNS], group)
