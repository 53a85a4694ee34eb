"""Result tables: the study's answer, rebuilt from run records alone (`xorder report`, scripts/make_tables.py).

Reads every complete record (`metrics.json`) under a results directory, and `predictions.parquet` of the
english_first / multilingual_first cells for the paired tests; never logs. Writes into the output directory:

  summary.csv       tidy long form: one row per target x model x multilingual x order x tasks x selection x
                    split x language x metric, with n_seeds, mean and sample std over seeds (avg, avg_non_en
                    are computed per seed first, so their std is the seed-to-seed spread of the average)
  order_effect.csv  english_first - multilingual_first per task and language, 95% bootstrap CI, permutation p
  missing.csv       cells and seeds of the observed grid that have no complete record
  tables.md/.tex    main (mean ± std), delta vs `none`, order effect, robustness and selection tables
  plots/*.png       per-language bars with error bars per order, and a task x order heatmap of the average

The same records always give byte-identical files: rows are sorted, floats formatted at fixed precision,
random draws come from generators seeded by the name of what they test, and PNGs carry no timestamp.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from xorder.errors import EXIT_USER_ERROR, XorderError
from xorder.records import CONFIG, METRICS, NOT_APPLICABLE, PREDICTIONS, SELECTIONS, validate, write_atomic

ORDERS = ("none", "english_only", "multilingual_only", "english_first", "multilingual_first", "joint")
ZERO_SHOT = "en_dev"  # the selection the main tables report: checkpoint chosen on English dev only
AVG, AVG_NON_EN = "avg", "avg_non_en"
NO_TASKS = "none"
ROW = ["target", "model", "multilingual", "order", "tasks"]  # one row of the study grid; seeds pooled
SUMMARY_COLUMNS = [*ROW, "selection", "split", "language", "metric", "n_seeds", "mean", "std", "seeds"]
EFFECT_COLUMNS = ["target", "model", "multilingual", "tasks", "selection", "split", "language", "metric",
                  "n_seeds", "n_examples", "english_first", "multilingual_first", "diff", "ci_low", "ci_high",
                  "p_value"]
MISSING_COLUMNS = ["target", "model", "multilingual", "order", "tasks", "seed"]
RESAMPLES = 9999
TESTABLE = ("accuracy", "pearson", "spearman")  # metrics the paired tests know how to recompute per example
BASE_SEED = 6  # issue 6; with the compared cell's name it seeds every draw
CSV_FLOAT = "%.4f"
DASH = "—"
PLOTS_HINT = "xorder: plots need matplotlib: pip install 'xorder[plots]' (tables written without plots)"


# ----------------------------------------------------------------------------------------------- loading

@dataclass
class Records:
    """Every valid record as tidy frames, plus what was skipped and why."""

    cells: pd.DataFrame  # one row per record: ROW + seed, path, primary_metric, git_commit
    scores: pd.DataFrame  # ROW + seed, selection, split, language, metric, value
    train_language: dict[str, str]  # target -> its training language (excluded from avg_non_en)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def find_records(results: Path, exclude: Path | None = None) -> list[Path]:
    """Every metrics.json below `results` (hidden folders such as .hydra and the output folder left out)."""
    found = []
    for root, dirs, files in os.walk(results):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or Path(root, d).resolve() != exclude))
        if METRICS in files:
            found.append(Path(root) / METRICS)
    return sorted(found)


def check_record(obj: Any) -> str | None:
    """Why a parsed metrics.json cannot be used, or None when it can: the documented schema
    (xorder.records.METRICS_SCHEMA), plus what a schema cannot say (named tasks, a primary metric that is scored)."""
    problems = sorted(validate(obj))
    if problems:
        return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    if not all(obj["tasks"]) or not all(obj[k] for k in ("target", "order", "multilingual", "model")):
        return "an axis (target, order, tasks, multilingual, model) is empty"
    if not any(obj["primary_metric"] in values for splits in obj["scores"].values() for langs in splits.values()
               for values in langs.values()):
        return f"primary metric {obj['primary_metric']!r} appears in no score"
    return None


def _train_language(record_dir: Path) -> str | None:
    """The target's training language from the record's resolved config (read once per target)."""
    try:
        from omegaconf import OmegaConf

        value = OmegaConf.load(record_dir / CONFIG).get("target", {}).get("train_language")
    except Exception:  # an unreadable config only costs the default
        return None
    return value if isinstance(value, str) else None


def load_records(results: Path, exclude: Path | None = None) -> Records:
    """Parse and validate every record; malformed ones are skipped with a reason. Two records of one cell
    (a copied folder, say) keep the one at the cell's own path <target>/<order>/<tasks>/<multilingual>/
    <model>/seed<k>, else the first by path; the other is skipped as a duplicate."""
    parsed, skipped = [], []
    for path in find_records(results, exclude):
        rel = path.parent.relative_to(results).as_posix()
        try:
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            skipped.append((rel, f"unreadable metrics.json ({type(err).__name__}: {err})"))
            continue
        reason = check_record(obj)
        if reason is not None:
            skipped.append((rel, reason))
            continue
        tasks = "+".join(obj["tasks"]) or NO_TASKS
        key = (obj["target"], obj["model"], obj["multilingual"], obj["order"], tasks, obj["seed"])
        home = f"{obj['target']}/{obj['order']}/{tasks}/{obj['multilingual']}/{obj['model']}/seed{obj['seed']}"
        parsed.append((rel != home, rel, key, obj))
    cells, rows, seen = [], [], {}
    train_language: dict[str, str] = {}
    for _, rel, key, obj in sorted(parsed, key=lambda item: item[:2]):
        if key in seen:
            skipped.append((rel, f"duplicate of the record in {seen[key]}"))
            continue
        seen[key] = rel
        target = obj["target"]
        if target not in train_language:
            language = _train_language(results / rel)
            if language:
                train_language[target] = language
        commit = (obj.get("provenance") or {}).get("git_commit")
        cells.append((*key, rel, obj["primary_metric"], commit if isinstance(commit, str) else ""))
        for selection, splits in obj["scores"].items():
            for split, langs in splits.items():
                for lang, values in langs.items():
                    for metric, value in values.items():
                        rows.append((*key, selection, split, lang, metric, float(value)))
    skipped.sort()
    cell_frame = pd.DataFrame(cells, columns=[*ROW, "seed", "path", "primary_metric", "git_commit"])
    scores = pd.DataFrame(rows, columns=[*ROW, "seed", "selection", "split", "language", "metric", "value"])
    return Records(cell_frame, scores, train_language, skipped)


# ----------------------------------------------------------------------------------------------- sorting

def _position(sequence: tuple[str, ...], last: bool = False) -> Callable[[str], tuple]:
    """Sort key: values of `sequence` in its order (before, or with last=True after, all other values)."""
    def key(value: str) -> tuple:
        if value in sequence:
            return (1 if last else 0, sequence.index(value), "")
        return (0 if last else 1, 0, value)

    return key


_KEYS: dict[str, Callable[[str], tuple]] = {
    "order": _position(ORDERS),  # the design's sequence: baseline first
    "tasks": _position((NO_TASKS,)),  # the baseline's "none" first, then task sets by name
    "selection": _position(SELECTIONS),
    "split": lambda v: (1, v) if v == "dev" else (0, "") if v == "test" else (0, v),  # test, others, dev
    "language": _position((AVG, AVG_NON_EN), last=True),  # languages by name, then the averages
}


def sort_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sort by `columns` with the study's orders (baseline first, orders as in the design, averages last)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    keys = [[_KEYS[c](v) for v in frame[c]] if c in _KEYS else list(frame[c]) for c in columns]
    order = sorted(range(len(frame)), key=lambda i: tuple(k[i] for k in keys))
    return frame.iloc[order].reset_index(drop=True)


def _row_key(row: tuple[str, str, str]) -> tuple:
    tasks, multilingual, order = row
    return (_KEYS["tasks"](tasks), multilingual, _KEYS["order"](order))


# ------------------------------------------------------------------------------------------- statistics

def is_train_language(language: str, train_language: str) -> bool:
    """`en` and, for cross-lingual pair sets such as STS-17, `en-en`: the languages seen in training."""
    return language == train_language or language == f"{train_language}-{train_language}"


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


@dataclass
class Stratum:
    """One (seed, language) of a paired comparison: per-example gold and the two systems' predictions,
    matched by example id."""

    seed: int
    language: str
    gold: np.ndarray
    a: np.ndarray  # english_first
    b: np.ndarray  # multilingual_first


def _rows_metric(metric: str, gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The metric (x100) along the last axis: accuracy, or a Pearson/Spearman correlation per row."""
    if metric == "accuracy":
        return 100.0 * (pred == gold).mean(axis=-1)
    if metric == "spearman":
        from scipy.stats import rankdata

        gold, pred = rankdata(gold, axis=-1), rankdata(pred, axis=-1)
    gc = gold - gold.mean(axis=-1, keepdims=True)
    pc = pred - pred.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (gc * pc).sum(axis=-1) / np.sqrt((gc * gc).sum(axis=-1) * (pc * pc).sum(axis=-1))



def _standardize(pred: np.ndarray, metric: str) -> np.ndarray:
    """Predictions on a common scale, leaving the metric unchanged (z-scores; ranks for Spearman)."""
    if metric == "spearman":
        from scipy.stats import rankdata

        pred = rankdata(pred)
    pred = pred.astype(np.float64)
    std = pred.std()
    return (pred - pred.mean()) / std if std > 0 else pred - pred.mean()


def stratum_draws(stratum: Stratum, metric: str, resamples: int,
                  rng: np.random.Generator) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(metric a, metric b, bootstrap differences a-b, permutation differences a-b) for one stratum.

    Bootstrap: resample the examples with replacement, score both systems on the same resample.
    Permutation (paired, approximate randomization): swap the two systems' predictions of each example with
    probability 1/2, which is the null hypothesis that the order does not matter for any example.
    Accuracy takes a shortcut that is exact in distribution: the difference of a resample depends only on
    how many examples only a / only b got right (multinomial), and of a swap only on how many of those
    flip (binomial), so it costs O(resamples) however many examples there are. Correlations are not sums
    over examples: they are recomputed on every resample, in chunks. Before swapping, each system's
    predictions are standardized (Pearson) or ranked (Spearman): the metric ignores a system's offset and
    scale, and swapping raw outputs of two differently calibrated regressors would mix scales and make
    every swapped correlation small, testing calibration instead of the difference in correlation."""
    gold, a, b, n = stratum.gold, stratum.a, stratum.b, len(stratum.gold)
    if metric == "accuracy":
        d = (a == gold).astype(np.int64) - (b == gold).astype(np.int64)
        counts = np.array([(d == -1).sum(), (d == 0).sum(), (d == 1).sum()])
        boot = rng.multinomial(n, counts / n, size=resamples)
        plus = rng.binomial(int(counts[0] + counts[2]), 0.5, size=resamples)
        return (100.0 * (a == gold).mean(), 100.0 * (b == gold).mean(),
                100.0 * (boot[:, 2] - boot[:, 0]) / n, 100.0 * (2 * plus - counts[0] - counts[2]) / n)
    za, zb = _standardize(a, metric), _standardize(b, metric)
    if metric == "pearson":
        boot, perm = _pearson_draws(gold.astype(np.float64), za, zb, resamples, rng)
    else:
        boots, perms = [], []
        chunk = max(1, 2_000_000 // max(n, 1))
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            idx = rng.integers(0, n, size=(size, n))
            g = gold[idx]
            boots.append(_rows_metric(metric, g, a[idx]) - _rows_metric(metric, g, b[idx]))
            swap = rng.random((size, n)) < 0.5
            perms.append(_rows_metric(metric, gold, np.where(swap, zb, za))
                         - _rows_metric(metric, gold, np.where(swap, za, zb)))
        boot, perm = np.concatenate(boots), np.concatenate(perms)
    return float(_rows_metric(metric, gold, a)), float(_rows_metric(metric, gold, b)), boot, perm


def _pearson_draws(gold: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pearson differences of bootstrap resamples and of swaps from weighted sums alone: a resample is a
    row of example counts, a swap a row of 0/1, and every correlation needs only five sums, so each chunk
    is one matrix product. Inputs are centered (gold) and standardized (a, b) so the sums do not cancel."""
    n = len(gold)
    g = gold - gold.mean()

    def corr(sg: np.ndarray, sx: np.ndarray, sgg: np.ndarray, sxx: np.ndarray, sgx: np.ndarray,
             count: float) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * (sgx - sg * sx / count) / np.sqrt((sgg - sg * sg / count) * (sxx - sx * sx / count))

    boots, perms = [], []
    chunk = max(1, 4_000_000 // max(n, 1))
    columns = np.stack([g, a, b, g * g, a * a, b * b, g * a, g * b], axis=1)
    swapped = np.stack([b - a, b * b - a * a, g * (b - a)], axis=1)
    base = np.array([a.sum(), (a * a).sum(), (g * a).sum(), b.sum(), (b * b).sum(), (g * b).sum()])
    sg, sgg = g.sum(), (g * g).sum()
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        m = weights @ columns
        boots.append(corr(m[:, 0], m[:, 1], m[:, 3], m[:, 4], m[:, 6], n)
                     - corr(m[:, 0], m[:, 2], m[:, 3], m[:, 5], m[:, 7], n))
        d = (rng.random((size, n)) < 0.5).astype(np.float64) @ swapped  # what swapping moves from a to b
        perms.append(corr(sg, base[0] + d[:, 0], sgg, base[1] + d[:, 1], base[2] + d[:, 2], n)
                     - corr(sg, base[3] - d[:, 0], sgg, base[4] - d[:, 1], base[5] - d[:, 2], n))
    return np.concatenate(boots), np.concatenate(perms)


def _rng(*names: Any) -> np.random.Generator:
    """A generator seeded by what it tests, so a cell's numbers do not depend on which other cells exist."""
    return np.random.default_rng([BASE_SEED, *(zlib.crc32(str(n).encode()) for n in names)])


def paired_effect(strata: list[Stratum], metric: str, columns: dict[str, list[str]], resamples: int,
                  name: str) -> dict[str, dict[str, float]]:
    """english_first - multilingual_first for each column (a language, or an average over languages), pooled
    over seeds: the column's value per seed is the mean over its languages, then the mean over seeds, so the
    point estimate equals the difference of the tables' seed means. Each (seed, language) is resampled on
    its own (stratified): seeds and languages keep their weight in every resample. Returns per column
    a, b, diff, ci_low, ci_high (percentile 95% bootstrap CI), p_value (two-sided, (1 + #|T*| >= |T|) /
    (R + 1)), n_seeds and n_examples."""
    draws = {}
    for s in strata:
        draws[(s.seed, s.language)] = (*stratum_draws(s, metric, resamples, _rng(name, s.seed, s.language)), len(s.gold))
    out: dict[str, dict[str, float]] = {}
    seeds = sorted({s.seed for s in strata})
    for column, languages in columns.items():
        usable = [seed for seed in seeds if all((seed, lang) in draws for lang in languages)]
        if not usable or not languages:
            continue
        parts = [[draws[(seed, lang)] for lang in languages] for seed in usable]

        def combine(i: int) -> Any:
            return sum(sum(p[i] for p in per) / len(per) for per in parts) / len(parts)

        a, b, boot, perm = combine(0), combine(1), combine(2), combine(3)
        diff = a - b
        finite = boot[np.isfinite(boot)]
        if math.isfinite(diff) and len(finite) == len(boot):
            low, high = np.percentile(boot, [2.5, 97.5])
            tol = 1e-9 * max(1.0, abs(diff))
            p = (1 + int((np.abs(perm) >= abs(diff) - tol).sum())) / (len(perm) + 1)
        else:
            low = high = p = float("nan")
        out[column] = {"a": float(a), "b": float(b), "diff": float(diff), "ci_low": float(low),
                       "ci_high": float(high), "p_value": float(p), "n_seeds": len(usable),
                       "n_examples": sum(p_[4] for per in parts for p_ in per)}
    return out


# ------------------------------------------------------------------------------------------ predictions

def _load_predictions(path: Path, split: str) -> pd.DataFrame | str:
    """The zero-shot selection's predictions of one split, or why they cannot be used."""
    need = ["split", "language", "id", "gold", "prediction"]
    try:
        frame = pd.read_parquet(path, columns=["selection", *need])
    except FileNotFoundError:
        return "no predictions.parquet"
    except Exception as err:  # pyarrow raises several types for a damaged or foreign file
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
        metric = _primary(cells, target)
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


# -------------------------------------------------------------------------------------------------- grid

def _primary(cells: pd.DataFrame, target: str) -> str:
    """The target's primary metric (the most common one among its records, ties by name)."""
    counts = cells[cells["target"] == target]["primary_metric"].value_counts()
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def main_splits(summary: pd.DataFrame, target: str, model: str) -> list[str]:
    """The evaluation splits the tables report: every split but dev (dev chose the checkpoint), or dev when
    a target has nothing else."""
    splits = set(summary[(summary["target"] == target) & (summary["model"] == model)
                         & (summary["selection"] == ZERO_SHOT)]["split"])
    chosen = sorted(splits - {"dev"}, key=_KEYS["split"]) or sorted(splits)
    return chosen


def missing_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells and seeds of the grid the records span but do not fill. Per target and model the grid is every
    observed order with every observed task set and multilingual variant, for the axes the order uses as
    its records show (`none` uses neither, english_only tasks only, the others both), each with every
    observed seed."""
    missing = []
    for (target, model), group in cells.groupby(["target", "model"], sort=True):
        seeds = sorted(set(group["seed"]))
        tasks = sorted(set(group["tasks"]) - {NO_TASKS})
        variants = sorted(set(group["multilingual"]) - {NOT_APPLICABLE})
        have = set(zip(group["multilingual"], group["order"], group["tasks"], group["seed"]))
        for order in sorted(set(group["order"]), key=_KEYS["order"]):
            mine = group[group["order"] == order]
            uses_tasks = (mine["tasks"] != NO_TASKS).any()
            uses_multilingual = (mine["multilingual"] != NOT_APPLICABLE).any()
            combos = [(m, t) for t in (tasks if uses_tasks else [NO_TASKS])
                      for m in (variants if uses_multilingual else [NOT_APPLICABLE])]
            for multilingual, task in combos:
                for seed in seeds:
                    if (multilingual, order, task, seed) not in have:
                        missing.append((target, model, multilingual, order, task, seed))
    frame = pd.DataFrame(missing, columns=MISSING_COLUMNS)
    return sort_frame(frame, MISSING_COLUMNS)


# ---------------------------------------------------------------------------------------------- tables

@dataclass
class Table:
    """A small table rendered to Markdown and to LaTeX (booktabs): first `keys` columns are left-aligned."""

    label: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    keys: int = 3
    note: str = ""

    def markdown(self) -> str:
        align = ["---" if i < self.keys else "---:" for i in range(len(self.columns))]
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        if not self.rows:
            return "\n".join(lines)
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(align) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        if not self.rows:
            return ""
        spec = "l" * self.keys + "r" * (len(self.columns) - self.keys)
        lines = ["\\begin{table}[htbp]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(_tex(c) for c in self.columns) + " \\\\", "\\midrule"]
        lines += [" & ".join(_tex(c) for c in row) + " \\\\" for row in self.rows]
        caption = _tex(self.title) + (". " + _tex(self.note) if self.note else "")
        lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}",
                  f"\\label{{tab:{self.label}}}", "\\end{table}"]
        return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": r"$-$",
        "Δ": r"$\Delta$", DASH: "--", "≥": r"$\geq$", "·": r"$\cdot$", "<": r"$<$", ">": r"$>$", "`": ""}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _num(value: float, signed: bool = False, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    value = round(float(value), digits) + 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return DASH
    return _num(mean) if std is None or not math.isfinite(std) else f"{_num(mean)} ± {_num(std)}"


def _p(value: float) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.4f}" if value >= 0.0001 else "<0.0001"


@dataclass
class View:
    """One slice the tables show: target x model x split, zero-shot selection, primary metric."""

    target: str
    model: str
    split: str
    metric: str
    languages: list[str]  # real languages, sorted; AVG and AVG_NON_EN are appended where averages exist
    rows: list[tuple[str, str, str]]  # (tasks, multilingual, order), observed and missing, sorted
    means: dict[tuple[str, str, str, str], tuple[float, float, int]]  # (row..., language) -> mean, std, n

    @property
    def slug(self) -> str:
        return "-".join(_slug(x) for x in (self.target, self.model, self.split))

    def title(self, what: str, selection: str = f" ({ZERO_SHOT} selection)") -> str:
        return f"{self.target} · {self.model} · {self.split} · {self.metric}{selection}: {what}"

    def get(self, row: tuple[str, str, str], language: str) -> tuple[float, float, int]:
        """(mean, std, number of seeds) of a row in a language column; NaNs and 0 when there is none."""
        return self.means.get((*row, language), (math.nan, math.nan, 0))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)


def views(summary: pd.DataFrame, records: Records, missing: pd.DataFrame) -> list[View]:
    """Every target x model x main split, with its rows (observed cells and missing ones) and means."""
    out = []
    for (target, model), _ in records.cells.groupby(["target", "model"], sort=True):
        metric = _primary(records.cells, target)
        cells = records.cells[(records.cells["target"] == target) & (records.cells["model"] == model)]
        gone = missing[(missing["target"] == target) & (missing["model"] == model)]
        rows = sorted({*zip(cells["tasks"], cells["multilingual"], cells["order"]),
                       *zip(gone["tasks"], gone["multilingual"], gone["order"])}, key=_row_key)
        for split in main_splits(summary, target, model):
            part = summary[(summary["target"] == target) & (summary["model"] == model)
                           & (summary["selection"] == ZERO_SHOT) & (summary["split"] == split)
                           & (summary["metric"] == metric)]
            present = set(part["language"])
            languages = sorted(present - {AVG, AVG_NON_EN}) + [c for c in (AVG, AVG_NON_EN) if c in present]
            means = {(r.tasks, r.multilingual, r.order, r.language): (r.mean, r.std, r.n_seeds)
                     for r in part.itertuples()}
            out.append(View(target, model, split, metric, languages, rows, means))
    return out


def _selection_means(summary: pd.DataFrame, view: View, selection: str) -> dict:
    part = summary[(summary["target"] == view.target) & (summary["model"] == view.model)
                   & (summary["selection"] == selection) & (summary["split"] == view.split)
                   & (summary["metric"] == view.metric)]
    return {(r.tasks, r.multilingual, r.order, r.language): (r.mean, r.std, r.n_seeds) for r in part.itertuples()}


def _n(view: View, row: tuple[str, str, str]) -> str:
    counts = [view.get(row, lang)[2] for lang in view.languages]
    return str(max(counts)) if counts and max(counts) else "0"


def main_table(view: View) -> Table:
    rows = []
    for row in view.rows:
        cells = [_mean_std(*view.get(row, lang)[:2]) for lang in view.languages]
        rows.append([*row, _n(view, row), *cells])
    return Table(f"{view.slug}-main", view.title("mean ± std over seeds"),
                 ["task", "multilingual", "order", "seeds", *view.languages], rows, keys=3,
                 note=f"{DASH}: no complete record.")


def delta_table(view: View) -> Table | None:
    base = (NO_TASKS, NOT_APPLICABLE, "none")
    rows = []
    for row in view.rows:
        if row == base:
            continue
        cells = [_num(view.get(row, lang)[0] - view.get(base, lang)[0], signed=True) for lang in view.languages]
        rows.append([*row, *cells])
    if not rows:
        return None
    if base not in view.rows:
        return Table(f"{view.slug}-delta", view.title("Δ against the `none` baseline"), [], [],
                     note="No `none` baseline records: run the grid with order=none as well to fill this table.")
    return Table(f"{view.slug}-delta", view.title("Δ against the `none` baseline"),
                 ["task", "multilingual", "order", *view.languages], rows, keys=3,
                 note="Difference of seed means, row − none.")


def effect_table(view: View, effects: pd.DataFrame, resamples: int) -> Table | None:
    part = effects[(effects["target"] == view.target) & (effects["model"] == view.model)
                   & (effects["split"] == view.split)]
    if part.empty:
        return None
    rows = []
    for r in part.itertuples():
        ci = DASH if not math.isfinite(r.ci_low) else f"[{_num(r.ci_low, True)}, {_num(r.ci_high, True)}]"
        rows.append([r.tasks, r.multilingual, r.language, _num(r.english_first), _num(r.multilingual_first),
                     _num(r.diff, signed=True), ci, _p(r.p_value),
                     DASH if pd.isna(r.n_examples) else str(int(r.n_examples))])
    note = ("english_first − multilingual_first, seeds present in both orders; 95% percentile bootstrap CI "
            "and two-sided paired permutation p over examples pooled across seeds (stratified by seed and "
            f"language, {resamples} resamples). They measure test-example sampling for these trained models, "
            "not seed-to-seed variance: read them with the seed std of the main table. p is per row, "
            "uncorrected for multiple comparisons.")
    return Table(f"{view.slug}-order", view.title("order effect"),
                 ["task", "multilingual", "language", "english_first", "multilingual_first", "Δ", "95% CI", "p",
                  "examples"], rows, keys=3, note=note)


def robustness_table(view: View, seeds: pd.DataFrame, train_language: str) -> Table:
    """Seed spread, cross-lingual gap (per seed: train language − avg_non_en) and the worst language."""
    part = seeds[(seeds["target"] == view.target) & (seeds["model"] == view.model)
                 & (seeds["selection"] == ZERO_SHOT) & (seeds["split"] == view.split)
                 & (seeds["metric"] == view.metric)]
    real = [lang for lang in view.languages if lang not in (AVG, AVG_NON_EN)]
    train = next((lang for lang in real if is_train_language(lang, train_language)), None)
    rows = []
    for row in view.rows:
        cell = part[(part["tasks"] == row[0]) & (part["multilingual"] == row[1]) & (part["order"] == row[2])]
        wide = cell.pivot_table(index="seed", columns="language", values="value", aggfunc="first")
        avg_mean, avg_std, n = view.get(row, AVG)
        stds = [view.get(row, lang)[1] for lang in real]
        stds = [s for s in stds if math.isfinite(s)]
        gap = wide[train] - wide[AVG_NON_EN] if train and {train, AVG_NON_EN} <= set(wide.columns) else None
        gap = gap.dropna() if gap is not None else None
        gap_text = DASH if gap is None or gap.empty else _mean_std(gap.mean(), gap.std() if len(gap) > 1 else math.nan)
        worst = [(view.get(row, lang)[0], lang) for lang in real if math.isfinite(view.get(row, lang)[0])]
        worst_text = DASH if not worst else f"{min(worst)[1]} ({_num(min(worst)[0])})"
        rows.append([*row, str(n) if n else "0", _num(avg_mean), _num(avg_std),
                     _num(float(np.mean(stds))) if stds else DASH, gap_text, worst_text])
    columns = ["task", "multilingual", "order", "seeds", "avg", "seed std of avg", "mean seed std per language",
               f"gap {train or train_language} − non-{train_language}", "worst language"]
    return Table(f"{view.slug}-robust", view.title("robustness"), columns, rows, keys=3,
                 note=f"Gap: per seed, {train or train_language} minus the average over the other languages, then "
                      "mean ± std over seeds. Worst language: lowest seed mean.")


def selection_table(view: View, summary: pd.DataFrame) -> Table | None:
    oracle = _selection_means(summary, view, "oracle")
    if not oracle:
        return None
    rows = []
    for row in view.rows:
        cells = [_num(oracle.get((*row, lang), (math.nan,))[0] - view.get(row, lang)[0], signed=True)
                 for lang in view.languages]
        rows.append([*row, *cells])
    return Table(f"{view.slug}-selection", view.title("oracle − en_dev selection", ""),
                 ["task", "multilingual", "order", *view.languages], rows, keys=3,
                 note="Seed mean with each language's own dev set choosing the checkpoint, minus the zero-shot "
                      "choice on English dev: how much checkpoint selection alone is worth.")


# ----------------------------------------------------------------------------------------------- plots

def _matplotlib() -> Any | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    return matplotlib


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


_STYLE = {"svg.hashsalt": "xorder", "font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
          "axes.spines.right": False, "path.simplify": False}


def bar_plots(view: View) -> dict[str, bytes]:
    """Per task set and variant: per-language bars (mean) with seed std error bars, one bar per order,
    the `none` baseline included."""
    import matplotlib
    from matplotlib.figure import Figure

    out = {}
    base = (NO_TASKS, NOT_APPLICABLE, "none")
    groups = sorted({(t, m) for t, m, _ in view.rows if t != NO_TASKS}, key=lambda g: (g[0], g[1])) or [(NO_TASKS, NOT_APPLICABLE)]
    for tasks, multilingual in groups:
        rows = [r for r in view.rows if (r[0], r[1]) == (tasks, multilingual)]
        rows = ([base] if base in view.rows and base not in rows else []) + rows
        with matplotlib.rc_context(_STYLE):
            fig = Figure(figsize=(max(6.0, 0.9 * len(view.languages) + 2), 3.6))
            ax = fig.subplots()
            x = np.arange(len(view.languages))
            width = 0.8 / max(len(rows), 1)
            for i, row in enumerate(rows):
                values = [view.get(row, lang) for lang in view.languages]
                means = [v[0] for v in values]
                errs = [v[1] if math.isfinite(v[1]) else 0.0 for v in values]
                ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=errs, capsize=2,
                       label=row[2], color=f"C{ORDERS.index(row[2]) if row[2] in ORDERS else i}")
            ax.set_xticks(x, view.languages)
            ax.set_ylabel(f"{view.metric} (mean ± seed std)")
            ax.set_title(f"{view.target} · {view.model} · {view.split} · {tasks} · {multilingual}")
            ax.legend(fontsize=8, frameon=False, ncols=min(len(rows), 3))
            fig.tight_layout()
            out[f"{view.slug}-{_slug(tasks)}-{_slug(multilingual)}-bars.png"] = _png(fig)
    return out


def heatmap(view: View) -> dict[str, bytes]:
    """Task set (and variant) x order heatmap of the zero-shot average; cells without records stay blank."""
    import matplotlib
    from matplotlib.figure import Figure

    if AVG not in view.languages:
        return {}
    labels = sorted({(t, m) for t, m, _ in view.rows}, key=lambda g: (_KEYS["tasks"](g[0]), g[1]))
    orders = sorted({o for _, _, o in view.rows}, key=_KEYS["order"])
    grid = np.full((len(labels), len(orders)), np.nan)
    for i, (tasks, multilingual) in enumerate(labels):
        for j, order in enumerate(orders):
            grid[i, j] = view.get((tasks, multilingual, order), AVG)[0]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(1.4 * len(orders) + 2.5, 0.5 * len(labels) + 1.8))
        ax = fig.subplots()
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        ax.set_xticks(np.arange(len(orders)), orders, rotation=20, ha="right")
        ax.set_yticks(np.arange(len(labels)), [t if m == NOT_APPLICABLE else f"{t} / {m}" for t, m in labels])
        for i in range(len(labels)):
            for j in range(len(orders)):
                if math.isfinite(grid[i, j]):
                    bright = sum(image.cmap(image.norm(grid[i, j]))[:3]) / 3 > 0.5
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8,
                            color="black" if bright else "white")
        fig.colorbar(image, ax=ax, label=f"{view.metric}, avg over languages")
        ax.set_title(f"{view.target} · {view.model} · {view.split}")
        fig.tight_layout()
        return {f"{view.slug}-heatmap.png": _png(fig)}


# ------------------------------------------------------------------------------------------------ write

def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format=CSV_FLOAT, na_rep="", lineterminator="\n")


def _commits(cells: pd.DataFrame) -> str:
    counts = cells["git_commit"].map(lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else "") if c else "unknown")
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.value_counts().items()))


def build(results: Path, out: Path, strict: bool = False, resamples: int = RESAMPLES,
          stream: Any = None) -> dict[str, Any]:
    """Everything `xorder report` does, returning counts; warnings go to `stream` (stderr by default)."""
    stream = stream or sys.stderr
    if not results.is_dir():
        raise XorderError(f"results directory {results} does not exist; run cells first (xorder run ...) "
                          "or pass --results DIR")
    records = load_records(results, out.resolve())
    problems: list[tuple[str, str]] = list(records.skipped)

    def warn(path: str, reason: str) -> None:
        if (path, reason) not in problems:  # a record's predictions are read once per split
            problems.append((path, reason))
            print(f"xorder: warning: {path}: {reason}", file=stream)

    for path, reason in records.skipped:
        print(f"xorder: warning: {path}: {reason}; record skipped", file=stream)
    if strict and records.skipped:
        raise XorderError(f"{len(records.skipped)} record(s) skipped under {results} (--strict); "
                          f"first: {records.skipped[0][0]}: {records.skipped[0][1]}")
    if records.cells.empty:
        raise XorderError(f"no complete records (metrics.json) under {results}")
    seeds = per_seed(records)
    summary = summarize(seeds)
    missing = missing_cells(records.cells)
    effects = order_effects(records, summary, results, resamples, warn)
    if strict and len(problems) > len(records.skipped):
        extra = problems[len(records.skipped)]
        raise XorderError(f"unusable predictions (--strict): {extra[0]}: {extra[1]}")
    tables: list[Table] = []
    all_views = views(summary, records, missing)
    for view in all_views:
        tl = records.train_language.get(view.target, "en")
        for table in (main_table(view), delta_table(view), effect_table(view, effects, resamples),
                      robustness_table(view, seeds, tl), selection_table(view, summary)):
            if table is not None:
                tables.append(table)
    md = ["# xorder result tables", "",
          f"{len(records.cells)} records, {len(missing)} missing, {len(records.skipped)} skipped. "
          f"Zero-shot ({ZERO_SHOT}) selection, each target's primary metric; every number in summary.csv.",
          f"Records from git commits: {_commits(records.cells)}.", ""]
    md += [t.markdown() for t in tables]
    md += ["### Missing records", ""]
    md += [f"- {r.target}/{r.order}/{r.tasks}/{r.multilingual}/{r.model}/seed{r.seed}" for r in missing.itertuples()] \
        or ["none"]
    md += ["", "### Skipped records", ""]
    md += [f"- {path}: {reason}" for path, reason in records.skipped] or ["none"]
    tex = ["% xorder result tables (booktabs); generated by `xorder report`, do not edit", ""]
    tex += [t.latex() for t in tables if t.rows]
    files = {"summary.csv": _csv(summary), "order_effect.csv": _csv(effects), "missing.csv": _csv(missing),
             "tables.md": "\n".join(md) + "\n", "tables.tex": "\n".join(tex)}
    for name, text in files.items():
        write_atomic(out / name, text)
    plots = write_plots(all_views, out / "plots", stream)
    return {"records": len(records.cells), "missing": len(missing), "skipped": len(records.skipped),
            "tables": len(tables), "plots": plots, "problems": problems}


def write_plots(all_views: list[View], folder: Path, stream: Any) -> int | None:
    """Write every plot; stale PNGs of earlier runs are removed so the folder matches the records."""
    if _matplotlib() is None:
        print(PLOTS_HINT, file=stream)
        return None
    images: dict[str, bytes] = {}
    for view in all_views:
        images.update(bar_plots(view))
        images.update(heatmap(view))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        if old.name not in images:
            old.unlink()
    for name, data in sorted(images.items()):
        write_atomic(folder / name, data)
    return len(images)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xorder report", description="Result tables, statistics and plots from "
                                "run records (metrics.json, predictions.parquet); byte-identical for the same records.")
    p.add_argument("--results", default="results", help="results directory to read (default: results)")
    p.add_argument("--out", default=None, help="output directory (default: RESULTS/tables)")
    p.add_argument("--strict", action="store_true", help="exit 2 on a malformed record instead of skipping it")
    p.add_argument("--resamples", type=int, default=RESAMPLES,
                   help=f"bootstrap and permutation resamples for the order-effect table (default: {RESAMPLES})")
    return p


def main(args: list[str]) -> int:
    """`xorder report` and scripts/make_tables.py: 0 on success, 2 on an error the user can fix."""
    ns = parser().parse_args(args)
    results = Path(ns.results)
    out = Path(ns.out) if ns.out else results / "tables"
    try:
        if ns.resamples < 1:
            raise XorderError("--resamples must be at least 1")
        done = build(results, out, ns.strict, ns.resamples)
    except XorderError as err:
        print(f"xorder: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    plots = "no plots" if done["plots"] is None else f"{done['plots']} plots"
    print(f"tables: {out} ({done['records']} records, {done['missing']} missing, {done['skipped']} skipped, "
          f"{done['tables']} tables, {plots})")
    return 0
