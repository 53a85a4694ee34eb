"""The order effect: two orders compared on paired per-example predictions (or on seed means without them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import ArrowException

from xorder.records import PREDICTIONS
from xorder.report.grid import AVG, AVG_NON_EN, ZERO_SHOT, is_train_language, main_splits, primary_metric, sort_frame
from xorder.report.load import Records
from xorder.report.paired import TESTABLE, Stratum, paired_effect

EFFECT_COLUMNS = ["target", "model", "multilingual", "tasks", "selection", "split", "language", "metric",
                  "n_seeds", "n_examples", "english_first", "multilingual_first", "diff", "ci_low", "ci_high",
                  "p_value"]


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


def order_effects(records: Records, summary: pd.DataFrame, results: Path, resamples: int,
                  warn: Callable[[str, str], None]) -> pd.DataFrame:
    """The order-effect rows: one per (target, model, multilingual, tasks, main split, language or average)
    where both english_first and multilingual_first have records. With predictions the difference, CI and p
    come from the paired examples; without them the difference of summary means stands alone."""
    cells, rows = records.cells, []
    pairs = cells[cells["order"].isin(["english_first", "multilingual_first"])]
    for (target, model, multilingual, tasks), group in pairs.groupby(["target", "model", "multilingual", "tasks"]):
        if group["order"].nunique() < 2:
            continue
        metric = primary_metric(cells, target)
        train = records.train_language.get(target, "en")
        for split in main_splits(summary, target, model):
            view = summary[(summary["target"] == target) & (summary["model"] == model)
                           & (summary["multilingual"] == multilingual) & (summary["tasks"] == tasks)
                           & (summary["selection"] == ZERO_SHOT) & (summary["split"] == split)
                           & (summary["metric"] == metric)]
            languages = sorted(set(view["language"]) - {AVG, AVG_NON_EN})
            columns = {lang: [lang] for lang in languages}
            columns[AVG] = languages
            columns[AVG_NON_EN] = [lang for lang in languages if not is_train_language(lang, train)]
            name = f"{target}/{model}/{multilingual}/{tasks}/{split}"
            stats = {}
            if metric in TESTABLE:
                strata = _strata(group, results, split, warn)
                stats = paired_effect(strata, metric, columns, resamples, name) if strata else {}
            for column in columns:
                means = {o: view[(view["order"] == o) & (view["language"] == column)]["mean"]
                         for o in ("english_first", "multilingual_first")}
                if column in stats:
                    s = stats[column]
                    rows.append((target, model, multilingual, tasks, ZERO_SHOT, split, column, metric,
                                 s["n_seeds"], s["n_examples"], s["a"], s["b"], s["diff"], s["ci_low"],
                                 s["ci_high"], s["p_value"]))
                elif all(len(m) for m in means.values()):
                    a, b = float(means["english_first"].iloc[0]), float(means["multilingual_first"].iloc[0])
                    rows.append((target, model, multilingual, tasks, ZERO_SHOT, split, column, metric,
                                 math.nan, math.nan, a, b, a - b, math.nan, math.nan, math.nan))
    frame = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    frame["n_examples"] = frame["n_examples"].astype("Int64")
    return sort_frame(frame, ["target", "model", "multilingual", "tasks", "split", "language"])


def _strata(group: pd.DataFrame, results: Path, split: str, warn: Callable[[str, str], None]) -> list[Stratum]:
    """Examples of both orders matched by (seed, language, id), for the seeds that both orders have."""
    by_order: dict[str, dict[int, pd.DataFrame]] = {"english_first": {}, "multilingual_first": {}}
    for row in group.itertuples():
        frame = _load_predictions(results / row.path / PREDICTIONS, split)
        if isinstance(frame, str):
            warn(row.path, f"{frame}; its paired test is left out")
            continue
        by_order[row.order][row.seed] = frame
    strata = []
    for seed in sorted(by_order["english_first"].keys() & by_order["multilingual_first"].keys()):
        a, b = by_order["english_first"][seed], by_order["multilingual_first"][seed]
        merged = a.merge(b, on=["language", "id"], suffixes=("_a", "_b"), sort=True)
        for language, part in merged.groupby("language", sort=True):
            gold_a, gold_b = part["gold_a"].to_numpy(), part["gold_b"].to_numpy()
            if not np.array_equal(gold_a, gold_b):
                warn(f"{group['target'].iloc[0]}/*/{group['tasks'].iloc[0]} seed{seed}",
                     f"gold labels of {language} differ between the two orders; that stratum is left out")
                continue
            strata.append(Stratum(int(seed), str(language), gold_a, part["prediction_a"].to_numpy(),
                                  part["prediction_b"].to_numpy()))
    return strata
