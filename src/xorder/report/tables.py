"""The tables of one view (target x model x split): main, Δ against `none`, order effect, robustness, and
checkpoint selection; numbers as the Style says, names as Names says."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xorder.records import NOT_APPLICABLE
from xorder.report.effects import trained_languages, untrained
from xorder.report.grid import (
    AVG,
    AVG_NON_EN,
    NO_TASKS,
    PAIR,
    SORT_KEYS,
    ZERO_SHOT,
    is_train_language,
    main_splits,
    primary_metric,
    row_key,
)
from xorder.report.load import Records
from xorder.report.names import PAPER, Names
from xorder.report.render import DASH, NA, Style, Table, p_value, slug

BASELINE = (NO_TASKS, NOT_APPLICABLE, "none")
Row = tuple[str, str, str]  # (tasks, multilingual, order)


@dataclass(frozen=True)
class Look:
    """How the tables present what they show: display names and number style (paper-ready by default)."""

    names: Names = PAPER
    style: Style = field(default_factory=Style)


@dataclass
class View:
    """One slice the tables show: target x model x split, zero-shot selection, primary metric."""

    target: str
    model: str
    split: str
    metric: str
    languages: list[str]  # real languages, sorted; AVG and AVG_NON_EN are appended where averages exist
    rows: list[Row]  # observed and missing, sorted
    means: dict[tuple[str, str, str, str], tuple[float, float, int]]  # (row..., language) -> mean, std, n

    @property
    def slug(self) -> str:
        return "-".join(slug(x) for x in (self.target, self.model, self.split))

    def title(self, names: Names, what: str, selection: str = f" ({ZERO_SHOT} selection)") -> str:
        return f"{names(self.target)} · {names(self.model)} · {self.split} · {names(self.metric)}{selection}: {what}"

    def get(self, row: Row, language: str) -> tuple[float, float, int]:
        """(mean, std, number of seeds) of a row in a language column; NaNs and 0 when there is none."""
        return self.means.get((*row, language), (math.nan, math.nan, 0))

    def bad(self, row: Row, language: str) -> bool:
        """Seeds exist but their mean is not a number: a non-finite score in one of them."""
        mean, _, n = self.get(row, language)
        return n > 0 and not math.isfinite(mean)

    def seeds(self, row: Row) -> int:
        return max((self.get(row, lang)[2] for lang in self.languages), default=0)


def views(summary: pd.DataFrame, records: Records, missing: pd.DataFrame) -> list[View]:
    """Every target x model x main split, with its rows (observed cells and missing ones) and means."""
    out = []
    for (target, model), _ in records.cells.groupby(["target", "model"], sort=True):
        metric = primary_metric(records.cells, target)
        cells = records.cells[(records.cells["target"] == target) & (records.cells["model"] == model)]
        gone = missing[(missing["target"] == target) & (missing["model"] == model)]
        rows = sorted(
            {
                *zip(cells["tasks"], cells["multilingual"], cells["order"]),
                *zip(gone["tasks"], gone["multilingual"], gone["order"]),
            },
            key=row_key,
        )
        for split in main_splits(summary, target, model):
            means = _selection_means(summary, target, model, split, metric, ZERO_SHOT)
            present = {key[3] for key in means}
            languages = sorted(present - {AVG, AVG_NON_EN}) + [c for c in (AVG, AVG_NON_EN) if c in present]
            out.append(View(target, model, split, metric, languages, rows, means))
    return out


def _selection_means(
    summary: pd.DataFrame, target: str, model: str, split: str, metric: str, selection: str
) -> dict[tuple[str, str, str, str], tuple[float, float, int]]:
    part = summary[
        (summary["target"] == target)
        & (summary["model"] == model)
        & (summary["selection"] == selection)
        & (summary["split"] == split)
        & (summary["metric"] == metric)
    ]
    return {(r.tasks, r.multilingual, r.order, r.language): (r.mean, r.std, r.n_seeds) for r in part.itertuples()}


def main_table(view: View, look: Look) -> Table:
    """Mean ± std over seeds; a number over fewer seeds than its row's `seeds` says so with (n=k)."""
    rows, values, fewer = [], [], False
    for row in view.rows:
        seeds, cells = view.seeds(row), []
        for lang in view.languages:
            mean, std, n = view.get(row, lang)
            text = NA if view.bad(row, lang) else look.style.mean_std(mean, std)
            if 0 < n < seeds:
                text, fewer = f"{text} (n={n})", True
            cells.append(text)
        rows.append([*look.names.row(row), str(seeds), *cells])
        values.append([view.get(row, lang)[0] for lang in view.languages])
    note = f"{DASH}: no complete record." + (" (n=k): a number over fewer seeds than its row's." if fewer else "")
    if look.style.bold:
        note += " Bold: the best value of each column."
    return Table(
        f"{view.slug}-main",
        view.title(look.names, "mean ± std over seeds"),
        ["task", "multilingual", "order", "seeds", *view.languages],
        rows,
        keys=3,
        note=note,
        bold=look.style.best(values, 4),
    )


def delta_table(view: View, look: Look) -> Table | None:
    rows, values = [], []
    for row in view.rows:
        if row == BASELINE:
            continue
        diffs = [view.get(row, lang)[0] - view.get(BASELINE, lang)[0] for lang in view.languages]
        rows.append(
            [
                *look.names.row(row),
                *(
                    NA if view.bad(row, lang) or view.bad(BASELINE, lang) else look.style.num(d, signed=True)
                    for lang, d in zip(view.languages, diffs)
                ),
            ]
        )
        values.append(diffs)
    if not rows:
        return None
    title = view.title(look.names, "Δ against the `none` baseline")
    if BASELINE not in view.rows:
        return Table(
            f"{view.slug}-delta",
            title,
            [],
            [],
            note="No `none` baseline records: run the grid with order=none as well to fill this table.",
        )
    return Table(
        f"{view.slug}-delta",
        title,
        ["task", "multilingual", "order", *view.languages],
        rows,
        keys=3,
        note="Difference of seed means, row − none.",
        bold=look.style.best(values, 3),
    )


def effect_table(
    view: View, look: Look, effects: pd.DataFrame, resamples: int, records: Records, pair: tuple[str, str] = PAIR
) -> Table | None:
    """The compared orders per language; † marks a language that the multilingual stage did not train on."""
    part = effects[
        (effects["target"] == view.target) & (effects["model"] == view.model) & (effects["split"] == view.split)
    ]
    if part.empty:
        return None
    style, names, train = look.style, look.names, records.target(view.target).train_language
    rows, marked = [], False
    for r in part.to_dict("records"):
        trained = trained_languages(records, view.target, view.model, r["multilingual"], r["tasks"], pair)
        dagger = untrained(r["language"], trained, train)
        marked |= dagger
        a, b, diff = (NA if not math.isfinite(r[k]) else style.num(r[k], signed=k == "diff") for k in (*pair, "diff"))
        rows.append(
            [
                names.tasks(r["tasks"]),
                names(r["multilingual"]),
                r["language"] + ("†" if dagger else ""),
                a,
                b,
                diff,
                style.interval(r["ci_low"], r["ci_high"]),
                p_value(r["p_value"]),
                DASH if pd.isna(r["n_examples"]) else str(int(r["n_examples"])),
            ]
        )
    note = (
        f"{names(pair[0])} − {names(pair[1])}, seeds present in both orders; 95% percentile bootstrap CI "
        "and two-sided paired permutation p over examples pooled across seeds (stratified by seed and "
        f"language, {resamples} resamples). They measure test-example sampling for these trained models, "
        "not seed-to-seed variance: read them with the seed std of the main table. p is per row, "
        "uncorrected for multiple comparisons."
    )
    if marked:
        note += " †: not among the languages the multilingual stage trained on (stages[].languages)."
    return Table(
        f"{view.slug}-order",
        view.title(names, "order effect"),
        ["task", "multilingual", "language", names(pair[0]), names(pair[1]), "Δ", "95% CI", "p", "examples"],
        rows,
        keys=3,
        note=note,
    )


def robustness_table(view: View, look: Look, seeds: pd.DataFrame, train_language: str) -> Table:
    """Seed spread, cross-lingual gap (per seed: train language − avg_non_en) and the worst language."""
    part = seeds[
        (seeds["target"] == view.target)
        & (seeds["model"] == view.model)
        & (seeds["selection"] == ZERO_SHOT)
        & (seeds["split"] == view.split)
        & (seeds["metric"] == view.metric)
    ]
    real = [lang for lang in view.languages if lang not in (AVG, AVG_NON_EN)]
    train = next((lang for lang in real if is_train_language(lang, train_language)), None)
    style, rows = look.style, []
    for row in view.rows:
        cell = part[(part["tasks"] == row[0]) & (part["multilingual"] == row[1]) & (part["order"] == row[2])]
        avg_mean, avg_std, n = view.get(row, AVG)
        bad_avg, bad_any = view.bad(row, AVG), any(view.bad(row, lang) for lang in real)
        stds = [s for s in (view.get(row, lang)[1] for lang in real) if math.isfinite(s)]
        rows.append(
            [
                *look.names.row(row),
                str(n) if n else "0",
                NA if bad_avg else style.num(avg_mean),
                NA if bad_avg else style.num(avg_std),
                NA if bad_any else style.num(float(np.mean(stds))) if stds else DASH,
                _gap(cell, train, style),
                NA if bad_any else _worst(view, row, real, style),
            ]
        )
    columns = [
        "task",
        "multilingual",
        "order",
        "seeds",
        "avg",
        "seed std of avg",
        "mean seed std per language",
        f"gap {train or train_language} − non-{train_language}",
        "worst language",
    ]
    return Table(
        f"{view.slug}-robust",
        view.title(look.names, "robustness"),
        columns,
        rows,
        keys=3,
        note=f"Gap: per seed, {train or train_language} minus the average over the other languages, then "
        "mean ± std over seeds. Worst language: lowest seed mean.",
    )


def _gap(cell: pd.DataFrame, train: str | None, style: Style) -> str:
    """Mean ± std over seeds of (train language − avg_non_en), over the seeds that have both."""
    both = cell[cell["language"].isin([train, AVG_NON_EN])]
    if train is None or both.empty:
        return DASH
    if both["value"].isna().any():
        return NA
    wide = both.pivot_table(index="seed", columns="language", values="value", aggfunc="first")
    if not {train, AVG_NON_EN} <= set(wide.columns):
        return DASH
    gap = (wide[train] - wide[AVG_NON_EN]).dropna()  # seeds without one of the two (a missing language)
    return DASH if gap.empty else style.mean_std(gap.mean(), gap.std() if len(gap) > 1 else math.nan)


def _worst(view: View, row: Row, real: list[str], style: Style) -> str:
    worst = [(view.get(row, lang)[0], lang) for lang in real if math.isfinite(view.get(row, lang)[0])]
    return DASH if not worst else f"{min(worst)[1]} ({style.num(min(worst)[0])})"


def selection_table(view: View, look: Look, summary: pd.DataFrame) -> Table | None:
    oracle = _selection_means(summary, view.target, view.model, view.split, view.metric, "oracle")
    if not oracle:
        return None
    rows = []
    for row in view.rows:
        cells = []
        for lang in view.languages:
            other = oracle.get((*row, lang), (math.nan, math.nan, 0))
            bad = view.bad(row, lang) or (other[2] > 0 and not math.isfinite(other[0]))
            cells.append(NA if bad else look.style.num(other[0] - view.get(row, lang)[0], signed=True))
        rows.append([*look.names.row(row), *cells])
    return Table(
        f"{view.slug}-selection",
        view.title(look.names, "oracle − en_dev selection", ""),
        ["task", "multilingual", "order", *view.languages],
        rows,
        keys=3,
        note="Seed mean with each language's own dev set choosing the checkpoint, minus the zero-shot "
        "choice on English dev: how much checkpoint selection alone is worth.",
    )


_SELECTIONS = {
    "en_dev": "the checkpoint chosen on English dev (zero-shot)",
    "oracle": "on each language's own dev set (not zero-shot)",
    "last": "the last checkpoint",
    "average": "checkpoints averaged over the target's evaluations",
}


def selections_table(view: View, look: Look, summary: pd.DataFrame) -> Table | None:
    """Every checkpoint selection side by side on the non-English average (the average where there is none)."""
    column = AVG_NON_EN if AVG_NON_EN in view.languages else AVG
    part = summary[
        (summary["target"] == view.target)
        & (summary["model"] == view.model)
        & (summary["split"] == view.split)
        & (summary["metric"] == view.metric)
        & (summary["language"] == column)
    ]
    chosen = sorted(set(part["selection"]), key=SORT_KEYS["selection"])
    if column not in view.languages or len(chosen) < 2:
        return None
    means = {sel: _selection_means(summary, view.target, view.model, view.split, view.metric, sel) for sel in chosen}
    rows = []
    for row in view.rows:
        cells = []
        for sel in chosen:
            mean, std, n = means[sel].get((*row, column), (math.nan, math.nan, 0))
            cells.append(NA if n > 0 and not math.isfinite(mean) else look.style.mean_std(mean, std))
        rows.append([*look.names.row(row), *cells])
    described = "; ".join(f"{sel}: {_SELECTIONS.get(sel, 'as the records name it')}" for sel in chosen)
    return Table(
        f"{view.slug}-selections",
        view.title(look.names, f"checkpoint selection, {column}", ""),
        ["task", "multilingual", "order", *chosen],
        rows,
        keys=3,
        note=f"Mean ± std over seeds of {column} for each checkpoint selection ({described}).",
    )


def record_notes(records: Records, target: str, model: str) -> list[str]:
    """The records' notes of one target and model (e.g. evaluation pairs left out), once each, with how many
    records carry them."""
    notes = records.notes[(records.notes["target"] == target) & (records.notes["model"] == model)]
    counts = notes.groupby("note", sort=True)["path"].nunique()
    return [f"{note} ({n} record{'s' if n > 1 else ''})" for note, n in counts.items()]
