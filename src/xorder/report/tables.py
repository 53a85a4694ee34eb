"""The tables of one view (target x model x split): main, Δ against `none`, order effect, robustness, selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xorder.records import NOT_APPLICABLE
from xorder.report.grid import (
    AVG,
    AVG_NON_EN,
    NO_TASKS,
    ZERO_SHOT,
    is_train_language,
    main_splits,
    primary_metric,
    row_key,
)
from xorder.report.load import Records
from xorder.report.render import DASH, Table, mean_std, num, p_value, slug


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
        return "-".join(slug(x) for x in (self.target, self.model, self.split))

    def title(self, what: str, selection: str = f" ({ZERO_SHOT} selection)") -> str:
        return f"{self.target} · {self.model} · {self.split} · {self.metric}{selection}: {what}"

    def get(self, row: tuple[str, str, str], language: str) -> tuple[float, float, int]:
        """(mean, std, number of seeds) of a row in a language column; NaNs and 0 when there is none."""
        return self.means.get((*row, language), (math.nan, math.nan, 0))


def views(summary: pd.DataFrame, records: Records, missing: pd.DataFrame) -> list[View]:
    """Every target x model x main split, with its rows (observed cells and missing ones) and means."""
    out = []
    for (target, model), _ in records.cells.groupby(["target", "model"], sort=True):
        metric = primary_metric(records.cells, target)
        cells = records.cells[(records.cells["target"] == target) & (records.cells["model"] == model)]
        gone = missing[(missing["target"] == target) & (missing["model"] == model)]
        rows = sorted({*zip(cells["tasks"], cells["multilingual"], cells["order"]),
                       *zip(gone["tasks"], gone["multilingual"], gone["order"])}, key=row_key)
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
        cells = [mean_std(*view.get(row, lang)[:2]) for lang in view.languages]
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
        cells = [num(view.get(row, lang)[0] - view.get(base, lang)[0], signed=True) for lang in view.languages]
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
        ci = DASH if not math.isfinite(r.ci_low) else f"[{num(r.ci_low, True)}, {num(r.ci_high, True)}]"
        rows.append([r.tasks, r.multilingual, r.language, num(r.english_first), num(r.multilingual_first),
                     num(r.diff, signed=True), ci, p_value(r.p_value),
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
        gap_text = DASH if gap is None or gap.empty else mean_std(gap.mean(), gap.std() if len(gap) > 1 else math.nan)
        worst = [(view.get(row, lang)[0], lang) for lang in real if math.isfinite(view.get(row, lang)[0])]
        worst_text = DASH if not worst else f"{min(worst)[1]} ({num(min(worst)[0])})"
        rows.append([*row, str(n) if n else "0", num(avg_mean), num(avg_std),
                     num(float(np.mean(stds))) if stds else DASH, gap_text, worst_text])
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
        cells = [num(oracle.get((*row, lang), (math.nan,))[0] - view.get(row, lang)[0], signed=True)
                 for lang in view.languages]
        rows.append([*row, *cells])
    return Table(f"{view.slug}-selection", view.title("oracle − en_dev selection", ""),
                 ["task", "multilingual", "order", *view.languages], rows, keys=3,
                 note="Seed mean with each language's own dev set choosing the checkpoint, minus the zero-shot "
                      "choice on English dev: how much checkpoint selection alone is worth.")
