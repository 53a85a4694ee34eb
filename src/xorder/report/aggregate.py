"""Seed aggregation: per-record averages over languages, then mean and std over seeds."""

from __future__ import annotations

import pandas as pd

from xorder.report.grid import AVG, AVG_NON_EN, ROW, is_train_language, sort_frame
from xorder.report.load import Records

SUMMARY_COLUMNS = [*ROW, "selection", "split", "language", "metric", "n_seeds", "mean", "std", "seeds"]


def per_seed(records: Records) -> pd.DataFrame:
    """Per-record scores plus `avg` and `avg_non_en` per record, selection, split and metric. An average is
    only formed when the record has every language that any record of the target has there: an average over
    fewer languages would not be comparable."""
    scores = records.scores.dropna(subset=["value"])
    if scores.empty:
        return scores.copy()
    group = [*ROW, "seed", "selection", "split", "metric"]
    have = scores.groupby(group)["language"].transform("size")
    expected = scores.groupby(["target", "selection", "split", "metric"])["language"].transform("nunique")
    complete = scores[have == expected]
    train = complete["target"].map(lambda t: records.train_language.get(t, "en"))
    non_en = complete[[not is_train_language(lang, tl) for lang, tl in zip(complete["language"], train)]]
    parts = [scores]
    for name, frame in ((AVG, complete), (AVG_NON_EN, non_en)):
        if frame.empty:
            continue
        mean = frame.groupby(group, sort=True)["value"].mean().reset_index()
        mean.insert(mean.columns.get_loc("metric"), "language", name)
        parts.append(mean[scores.columns])
    return pd.concat(parts, ignore_index=True)


def summarize(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds (std empty for one seed), one row per combination."""
    group = [*ROW, "selection", "split", "language", "metric"]
    if seeds.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    ordered = seeds.sort_values([*group, "seed"], kind="stable")
    summary = ordered.groupby(group, sort=True).agg(
        n_seeds=("value", "count"), mean=("value", "mean"), std=("value", "std"),
        seeds=("seed", lambda s: ";".join(str(v) for v in sorted(s)))).reset_index()
    return sort_frame(summary[SUMMARY_COLUMNS], group)
