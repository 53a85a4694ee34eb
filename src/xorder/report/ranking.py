"""The check of a ranking (`xorder rank`) against the grid that realises it: per target, model, method and main
split, the Spearman correlation of the predicted scores with the realised gains over `none`, and Regret@1 and
Regret@3 as Poth et al. 2021 define them, with the seed spread of the gains beside them.

Realised: the seed mean of the primary metric on the non-English average (zero-shot selection) of the order that
carries out what a method predicts (files.REALISED_BY: english_only for the English task, multilingual_only for
the multilingual stage's data). Gain: that mean minus the mean of `none`. Regret@k = (O - M_k) / O x 100, where O
is the best realised score of the candidates and M_k the best realised score among the k candidates the method
ranks highest (only candidates that both have a score and realised records take part)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from xorder.rank import files
from xorder.records import NOT_APPLICABLE
from xorder.report.grid import AVG_NON_EN, NO_TASKS, ZERO_SHOT, main_splits, primary_metric
from xorder.report.load import Records
from xorder.report.render import DASH

CHECK_COLUMNS = [
    "target",
    "data",
    "model",
    "method",
    "multilingual",
    "split",
    "metric",
    "candidates",
    "seeds",
    "spearman",
    "regret_at_1",
    "regret_at_3",
    "best",
    "predicted_best",
    "best_gain",
    "gain_spread",
    "gain_seed_std",
]
KS = (1, 3)


def find_rankings(results: Path, exclude: Path | None = None) -> list[Path]:
    """Every ranking.csv under `results` (hidden folders and the report's own output folder left out)."""
    found = []
    for root, dirs, names in os.walk(results):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or Path(root, d).resolve() != exclude)
        )
        if files.RANKING_CSV in names:
            found.append(Path(root) / files.RANKING_CSV)
    return sorted(found)


def regret(realised: list[float], k: int) -> float:
    """Poth et al.'s Regret@k in percent of the best realised score; `realised` in predicted order (best first)."""
    best = max(realised)
    if not best > 0:
        return math.nan  # relative to a score at or below zero it means nothing
    return (best - max(realised[:k])) / best * 100


def _values(seeds: pd.DataFrame, order: str, multilingual: str, tasks: str) -> pd.Series:
    rows = seeds[(seeds["order"] == order) & (seeds["multilingual"] == multilingual) & (seeds["tasks"] == tasks)]
    return rows.set_index("seed")["value"]


def check(
    results: Path, exclude: Path | None, records: Records, seeds: pd.DataFrame, summary: pd.DataFrame, warn: Callable
) -> pd.DataFrame:
    """One row per ranking x method x multilingual variant x main split that the records can check."""
    out = []
    for path in find_rankings(results, exclude):
        rel = path.parent.relative_to(results).as_posix()
        try:
            ranking = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"multilingual": str})
        except (OSError, ValueError, pd.errors.ParserError) as err:
            warn(rel, f"unreadable {files.RANKING_CSV} ({type(err).__name__}); left out of the ranking check")
            continue
        if set(files.COLUMNS) - set(ranking.columns):
            warn(rel, f"{files.RANKING_CSV} lacks the columns of `xorder rank`; left out of the ranking check")
            continue
        ranking["multilingual"] = ranking["multilingual"].fillna("")
        for (target, model, method, variant), group in ranking.groupby(["target", "model", "method", "multilingual"]):
            if method not in files.REALISED_BY or records.cells[records.cells["target"] == target].empty:
                continue
            metric = primary_metric(records.cells, target)
            cells = records.cells[(records.cells["target"] == target) & (records.cells["model"] == model)]
            for data, split in [
                (d, s) for d in sorted(set(cells["data"])) for s in main_splits(summary, (target, d, model))
            ]:
                wanted = {
                    **{"target": target, "data": data, "model": model, "selection": ZERO_SHOT},
                    **{"split": split, "language": AVG_NON_EN, "metric": metric},
                }
                mine = seeds[(seeds[list(wanted)] == pd.Series(wanted)).all(axis=1)]
                row = _check_one(group, mine, files.REALISED_BY[method], variant or NOT_APPLICABLE)
                if row is not None:
                    out.append(
                        {
                            "target": target,
                            "data": data,
                            "model": model,
                            "method": method,
                            "multilingual": variant or DASH,
                            "split": split,
                            "metric": metric,
                            **row,
                        }
                    )
    return pd.DataFrame(out, columns=CHECK_COLUMNS)


def _check_one(ranking: pd.DataFrame, seeds: pd.DataFrame, order: str, variant: str) -> dict | None:
    """The figures of one method against one split's per-seed scores; None when the records hold no baseline."""
    baseline = _values(seeds, "none", NOT_APPLICABLE, NO_TASKS)
    if baseline.empty:
        return None
    scored = ranking[ranking["score"].notna()].sort_values(["score", "task"], ascending=[False, True])
    means, gains, stds, used_seeds = [], [], [], set()
    names = []
    for task, score in zip(scored["task"], scored["score"]):
        values = _values(seeds, order, variant if order != "english_only" else NOT_APPLICABLE, task)
        if values.empty:
            continue
        paired = (values - baseline).dropna()  # per seed, where both ran it
        names.append(task)
        means.append(values.mean())
        gains.append((values.mean() - baseline.mean(), score))
        stds.append(paired.std() if len(paired) > 1 else math.nan)
        used_seeds |= set(values.index)
    if not names:
        return None
    realised = [g for g, _ in gains]
    predicted = [s for _, s in gains]
    spearman = math.nan
    if len(names) >= 3 and len(set(realised)) > 1 and len(set(predicted)) > 1:
        from scipy.stats import spearmanr

        spearman = float(spearmanr(predicted, realised).statistic)
    return {
        "candidates": len(names),
        "seeds": len(used_seeds),
        "spearman": spearman,
        **{f"regret_at_{k}": regret(means, k) if len(names) > 1 else math.nan for k in KS},
        "best": names[int(np.argmax(means))],
        "predicted_best": names[0],
        "best_gain": max(realised),
        "gain_spread": max(realised) - min(realised),
        "gain_seed_std": float(np.nanmedian(stds)) if not all(math.isnan(s) for s in stds) else math.nan,
    }


def markdown(frame: pd.DataFrame, digits: int) -> list[str]:
    """The check as a Markdown section of tables.md, with the note that reads the seed spread."""
    if frame.empty:
        return []

    def num(value: float, places: int = digits) -> str:
        return DASH if value != value else f"{value:.{places}f}"

    lines = [
        "### Ranking check: `xorder rank` against the realised gains",
        "",
        "Spearman ρ of each method's scores with the realised gains over `none` (seed means, non-English average, "
        "primary metric, zero-shot selection); Regret@k (Poth et al. 2021): how far, in % of the best candidate's "
        "score, the best of the method's top k falls short of it. Gain spread: best minus worst mean gain; seed "
        "std: median over candidates of the standard deviation of a candidate's per-seed gain.",
        "",
        "| target | data | model | method | multilingual | split | candidates | seeds | Spearman ρ | Regret@1 % | "
        "Regret@3 % | best (predicted) | gain spread | seed std |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in frame.itertuples():
        lines.append(
            f"| {r.target} | {r.data or DASH} | {r.model} | {r.method} | {r.multilingual} | {r.split} | "
            f"{r.candidates} | {r.seeds} | "
            f"{num(r.spearman, 2)} | {num(r.regret_at_1)} | {num(r.regret_at_3)} | {r.best} ({r.predicted_best}) | "
            f"{num(r.gain_spread)} | {num(r.gain_seed_std)} |"
        )
    unknown = frame["gain_seed_std"].isna()
    noisy = ~unknown & (frame["gain_seed_std"] >= frame["gain_spread"] / 2)
    lines += [""]
    if noisy.any():
        lines.append(
            f"Note: in {int(noisy.sum())} of {len(frame)} rows the seed std of a gain is at least half the spread of "
            "the gains between candidates: seeds alone could reorder the realised ranking there, so neither a high "
            "nor a low ρ says much about the method."
        )
    if unknown.any():
        lines.append(
            f"Note: in {int(unknown.sum())} of {len(frame)} rows no candidate has two seeds paired with `none`: "
            "nothing tells how much of the realised ranking is seed noise."
        )
    if not noisy.any() and not unknown.any():
        lines.append("Note: the seed std of every gain is under half the spread between candidates.")
    return [*lines, ""]
