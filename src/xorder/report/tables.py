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
    SLICE,
    SORT_KEYS,
    ZERO_SHOT,
    columns_of,
    is_train_language,
    main_splits,
    of_slice,
    primary_metric,
    row_key,
)
from xorder.report.load import Records
from xorder.report.names import PAPER, Names
from xorder.report.render import DASH, NA, NO_MODEL, NO_MODEL_NOTE, Style, Table, p_value, slug

BASELINE = (NO_TASKS, NOT_APPLICABLE, "none")
Row = tuple[str, str, str]  # (tasks, multilingual, order)
UNLEARNED = "§"  # a row some of whose records are built on a stage that did not learn
DEGENERATE = "∅"  # a row some of whose records are degenerate


@dataclass(frozen=True)
class Look:
    """How the tables present what they show: display names and number style (paper-ready by default)."""

    names: Names = PAPER
    style: Style = field(default_factory=Style)


@dataclass
class View:
    """One slice the tables show: target (and its data source) x model x split, zero-shot selection, primary
    metric."""

    target: str
    data: str  # the target's data source ("" in records older than variants)
    model: str
    split: str
    metric: str
    languages: list[str]  # real languages, sorted; AVG and AVG_NON_EN are appended where averages exist
    rows: list[Row]  # observed and missing, sorted
    means: dict[tuple[str, str, str, str], tuple[float, float, int]]  # (row..., language) -> mean, std, n
    no_model: frozenset[tuple[str, str, str, str]] = frozenset()  # (row..., language): no learned model there
    unlearned: dict[Row, int] = field(default_factory=dict)  # records built on a stage that did not learn
    degenerate: dict[Row, int] = field(default_factory=dict)  # degenerate records
    left_out: bool = True  # degenerate records are left out of the means (not --include-degenerate)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target, self.data, self.model)

    @property
    def slug(self) -> str:
        return "-".join(slug(x) for x in (self.target, self.data, self.model, self.split) if x)

    def label(self, names: Names) -> str:
        """Target, its data source and model, as titles name them: `PAWS-X (data: synthetic) · tiny`."""
        return slice_label(names, self.key)

    def title(self, names: Names, what: str, selection: str = f" ({ZERO_SHOT} selection)") -> str:
        return f"{self.label(names)} · {self.split} · {names(self.metric)}{selection}: {what}"

    def get(self, row: Row, language: str) -> tuple[float, float, int]:
        """(mean, std, number of seeds) of a row in a language column; NaNs and 0 when there is none."""
        return self.means.get((*row, language), (math.nan, math.nan, 0))

    def bad(self, row: Row, language: str) -> bool:
        """Seeds exist but their mean is not a number: a non-finite score in one of them."""
        mean, _, n = self.get(row, language)
        return n > 0 and not math.isfinite(mean)

    def seeds(self, row: Row) -> int:
        return max((self.get(row, lang)[2] for lang in self.languages), default=0)

    def learned(self, row: Row, language: str) -> bool:
        return (*row, language) not in self.no_model

    def best_values(self, row: Row) -> list[float]:
        """The row's means for choosing a column's best: NaN where it learned no model (a constant predictor's
        accuracy is the majority rate, never a best)."""
        return [self.get(row, lang)[0] if self.learned(row, lang) else math.nan for lang in self.languages]

    def row_label(self, look: Look, row: Row) -> list[str]:
        """The key cells of a row, its order marked where records of the row are built on a stage that did not
        learn (§) or are degenerate (∅)."""
        marks = UNLEARNED * (row in self.unlearned) + DEGENERATE * (row in self.degenerate)
        tasks, multilingual, order = look.names.row(row)
        return [tasks, multilingual, f"{order} {marks}" if marks else order]

    def marks_note(self, rows: list[Row] | None = None, costs: bool = False) -> str:
        """What the marks of `rows` (every row of the view by default) mean, or "" when none is marked; `costs`:
        for a table of training costs, which counts degenerate records too."""
        rows = self.rows if rows is None else rows
        notes = []
        if any(row in self.unlearned for row in rows):
            notes.append(
                f"{UNLEARNED}: some of the row's records are built on a stage that did not beat its baseline on its "
                "dev data (the notes name it): they compare a stage that did not learn."
            )
        if any(row in self.degenerate for row in rows):
            left_out = self.left_out and not costs
            where = "left out of these numbers" if left_out else "included in these numbers"
            notes.append(
                f"{DEGENERATE}: some of the row's records are degenerate (one value predicted in every set, or "
                f"R² ≤ 0), {where}" + (" (xorder report --include-degenerate puts them in)." if left_out else ".")
            )
        return " ".join(notes)


def slice_label(names: Names, key: tuple[str, ...]) -> str:
    target, data, model = key
    return f"{names(target)}{f' (data: {names(data)})' if data else ''} · {names(model)}"


def views(summary: pd.DataFrame, records: Records, missing: pd.DataFrame) -> list[View]:
    """Every target (and data source) x model x main split, with its rows (observed cells and missing ones) and
    means."""
    out = []
    for key, _ in records.cells.groupby(SLICE, sort=True):
        target, data, model = key
        metric = primary_metric(records.cells, target)
        cells = of_slice(records.cells, key)
        gone = of_slice(missing, key)
        rows = sorted(
            {
                *zip(cells["tasks"], cells["multilingual"], cells["order"]),
                *zip(gone["tasks"], gone["multilingual"], gone["order"]),
            },
            key=row_key,
        )
        marked = {
            name: cells[cells[name] != ""].groupby(["tasks", "multilingual", "order"]).size().to_dict()
            for name in ("unlearned", "degenerate")
        }
        for split in main_splits(summary, key):
            means = _selection_means(summary, key, split, metric, ZERO_SHOT)
            present = {mean[3] for mean in means}
            real = sorted(present - {AVG, AVG_NON_EN})
            languages = real + [c for c in (AVG, AVG_NON_EN) if c in present]
            within = columns_of(real, records.target(target).train_language)
            no_model = frozenset(
                (*row, lang)
                for row in rows
                for lang in languages
                if records.no_learned_model(key, split, row, within[lang])
            )
            out.append(
                View(
                    target,
                    data,
                    model,
                    split,
                    metric,
                    languages,
                    rows,
                    means,
                    no_model=no_model,
                    unlearned=marked["unlearned"],
                    degenerate=marked["degenerate"],
                    left_out=not records.include_degenerate,
                )
            )
    return out


def _selection_means(
    summary: pd.DataFrame, key: tuple[str, ...], split: str, metric: str, selection: str
) -> dict[tuple[str, str, str, str], tuple[float, float, int]]:
    part = of_slice(summary, key)
    part = part[(part["selection"] == selection) & (part["split"] == split) & (part["metric"] == metric)]
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
        left_out = view.degenerate.get(row, 0) if view.left_out else 0
        rows.append(
            [*view.row_label(look, row), f"{seeds} (+{left_out}{DEGENERATE})" if left_out else str(seeds), *cells]
        )
        values.append(view.best_values(row))
    note = f"{DASH}: no complete record" + (
        f" (or, with +k{DEGENERATE}, only degenerate ones)." if view.degenerate and view.left_out else "."
    )
    note += " (n=k): a number over fewer seeds than its row's." if fewer else ""
    note += f" {view.marks_note()}" if view.marks_note() else ""
    if look.style.bold:
        note += " Bold: the best value of each column" + (
            ", among the cells that learned a model there (the records' notes name the others)."
            if view.no_model
            else "."
        )
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
    rows, values, unlearned = [], [], False
    for row in view.rows:
        if row == BASELINE:
            continue
        diffs = [view.get(row, lang)[0] - view.get(BASELINE, lang)[0] for lang in view.languages]
        cells = []
        for lang, d in zip(view.languages, diffs):
            if view.bad(row, lang) or view.bad(BASELINE, lang):
                cells.append(NA)
            elif not (view.learned(row, lang) or view.learned(BASELINE, lang)):
                cells.append(NO_MODEL)
                unlearned = True
            else:
                cells.append(look.style.num(d, signed=True))
        rows.append([*view.row_label(look, row), *cells])
        values.append([d if view.learned(row, lang) else math.nan for lang, d in zip(view.languages, diffs)])
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
        note=" ".join(
            part
            for part in ("Difference of seed means, row − none.", NO_MODEL_NOTE if unlearned else "", view.marks_note())
            if part
        ),
        bold=look.style.best(values, 3),
    )


def effect_table(
    view: View, look: Look, effects: pd.DataFrame, resamples: int, records: Records, pair: tuple[str, str] = PAIR
) -> Table | None:
    """The compared orders per language; † marks a language that the multilingual stage did not train on."""
    part = of_slice(effects, view.key)
    part = part[part["split"] == view.split]
    if part.empty:
        return None
    style, names, train = look.style, look.names, records.target(view.target).train_language
    rows, marked, compared = [], False, []
    for r in part.to_dict("records"):
        trained = trained_languages(records, view.key, r["multilingual"], r["tasks"], pair)
        dagger = untrained(r["language"], trained, train)
        marked |= dagger
        a, b, diff = (NA if not math.isfinite(r[k]) else style.num(r[k], signed=k == "diff") for k in (*pair, "diff"))
        learned = bool(r["learned"])
        sides: list[Row] = [(r["tasks"], r["multilingual"], order) for order in pair]
        compared += sides
        marks = UNLEARNED * any(row in view.unlearned for row in sides)
        marks += DEGENERATE * any(row in view.degenerate for row in sides)
        rows.append(
            [
                names.tasks(r["tasks"]) + (f" {marks}" if marks else ""),
                names(r["multilingual"]),
                r["language"] + ("†" if dagger else ""),
                a,
                b,
                diff if learned else DASH,
                style.interval(r["ci_low"], r["ci_high"]) if learned else NO_MODEL,
                p_value(r["p_value"]),
                style.num(r["seed_sd"]),
                *(DASH if pd.isna(r[k]) else str(int(r[k])) for k in ("n_items", "n_examples")),
            ]
        )
    note = f"{names(pair[0])} − {names(pair[1])}, seeds present in both orders. " + effect_note(
        view.split, set(part["clusters"]), resamples
    )
    if marked:
        note += " †: not among the languages the multilingual stage trained on (stages[].languages)."
    if not part["learned"].all():
        note += f" {NO_MODEL_NOTE}"
    if view.marks_note(compared):
        note += f" Marks on the task: of the compared rows. {view.marks_note(compared)}"
    return Table(
        f"{view.slug}-order",
        view.title(names, "order effect"),
        [
            "task",
            "multilingual",
            "language",
            names(pair[0]),
            names(pair[1]),
            "Δ",
            "95% CI",
            "p",
            "seed sd",
            "items",
            "examples",
        ],
        rows,
        keys=3,
        note=note,
    )


def effect_note(split: str, clusters: set[str], resamples: int) -> str:
    """What the order-effect table's interval and p resample, and why; and what one item is in this split."""
    note = (
        "95% CI: two levels. Source items are resampled as clusters: an item goes in or out with all its rows, in "
        "every language and seed, because translations of one item and the seeds scored on it are not independent "
        "evidence. The spread of the seeds' own effects beyond what item sampling explains is added (Student t, "
        "Satterthwaite degrees of freedom; with one seed it cannot be measured and the items' percentile interval "
        "stands alone). p: two-sided permutation test that swaps the two orders' predictions of whole items "
        f"({resamples} resamples): whether these trained models differ beyond test-item sampling; it does not test "
        "seed-to-seed variation, the CI does. Seed sd: standard deviation of the per-seed effect. p is per row, "
        "uncorrected for multiple comparisons."
    )
    if "aligned" in clusters:
        note += (
            f" Items of {split}: aligned across languages (each record's `item`: the translations of one source "
            "item share it)."
        )
    if "unaligned" in clusters:
        note += f" Items of {split}: not aligned across languages, each row is an item of its own (with its seeds)."
    if "rows" in clusters:
        note += (
            " Records without `item` (written before it): each (language, example) row is a cluster with its "
            "seeds, translations count as independent, and the interval is too narrow for aligned sets; run "
            "the cells again to get items."
        )
    return note


def robustness_table(view: View, look: Look, seeds: pd.DataFrame, train_language: str) -> Table:
    """Seed spread, cross-lingual gap (per seed: train language − avg_non_en) and the worst language."""
    part = of_slice(seeds, view.key)
    part = part[(part["selection"] == ZERO_SHOT) & (part["split"] == view.split) & (part["metric"] == view.metric)]
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
                *view.row_label(look, row),
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
        f"mean ± std over seeds. Worst language: lowest seed mean. {view.marks_note()}".rstrip(),
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
    oracle = _selection_means(summary, view.key, view.split, view.metric, "oracle")
    if not oracle:
        return None
    rows = []
    for row in view.rows:
        cells = []
        for lang in view.languages:
            other = oracle.get((*row, lang), (math.nan, math.nan, 0))
            bad = view.bad(row, lang) or (other[2] > 0 and not math.isfinite(other[0]))
            cells.append(NA if bad else look.style.num(other[0] - view.get(row, lang)[0], signed=True))
        rows.append([*view.row_label(look, row), *cells])
    return Table(
        f"{view.slug}-selection",
        view.title(look.names, "oracle − en_dev selection", ""),
        ["task", "multilingual", "order", *view.languages],
        rows,
        keys=3,
        note="Seed mean with each language's own dev set choosing the checkpoint, minus the zero-shot "
        f"choice on English dev: how much checkpoint selection alone is worth. {view.marks_note()}".rstrip(),
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
    part = of_slice(summary, view.key)
    part = part[(part["split"] == view.split) & (part["metric"] == view.metric) & (part["language"] == column)]
    chosen = sorted(set(part["selection"]), key=SORT_KEYS["selection"])
    if column not in view.languages or len(chosen) < 2:
        return None
    means = {sel: _selection_means(summary, view.key, view.split, view.metric, sel) for sel in chosen}
    rows = []
    for row in view.rows:
        cells = []
        for sel in chosen:
            mean, std, n = means[sel].get((*row, column), (math.nan, math.nan, 0))
            cells.append(NA if n > 0 and not math.isfinite(mean) else look.style.mean_std(mean, std))
        rows.append([*view.row_label(look, row), *cells])
    described = "; ".join(f"{sel}: {_SELECTIONS.get(sel, 'as the records name it')}" for sel in chosen)
    return Table(
        f"{view.slug}-selections",
        view.title(look.names, f"checkpoint selection, {column}", ""),
        ["task", "multilingual", "order", *chosen],
        rows,
        keys=3,
        note=f"Mean ± std over seeds of {column} for each checkpoint selection ({described}). "
        f"{view.marks_note()}".rstrip(),
    )


def degenerate_table(records: Records, look: Look, key: tuple[str, str, str], tabled: bool) -> Table | None:
    """The degenerate records of a slice (target, data, model) per row, with why; `tabled`: whether any table of
    means was formed for them (none when every record is degenerate and they are left out)."""
    cells = of_slice(records.cells, key)
    part = cells[cells["degenerate"] != ""]
    if part.empty:
        return None
    rows = []
    for row in sorted(set(zip(part["tasks"], part["multilingual"], part["order"])), key=row_key):
        mine = part[(part["tasks"] == row[0]) & (part["multilingual"] == row[1]) & (part["order"] == row[2])]
        reasons = "; ".join(sorted(set(mine["degenerate"])))
        rows.append([*look.names.row(row), str(len(mine)), ", ".join(map(str, sorted(mine["seed"]))), reasons])
    total = len(cells)
    note = (
        f"{len(part)} of {total} records: the selected (en_dev) model predicts one value in every evaluation set, or "
        "its regression head is no closer to the gold than the gold's mean on its training language (R² ≤ 0). "
    )
    if records.include_degenerate:
        note += f"Included in the numbers above (rows marked {DEGENERATE}, --include-degenerate)."
    elif tabled:
        note += (
            f"Left out of every number above (rows marked {DEGENERATE}); xorder report --include-degenerate puts "
            "them in."
        )
    else:
        note += (
            "Every record of this target and model is degenerate, so no table of means is formed: no model here "
            "learned the target (xorder report --include-degenerate tables their scores anyway)."
        )
    return Table(
        "-".join(slug(x) for x in (*key, "degenerate") if x),
        f"{slice_label(look.names, key)}: degenerate records",
        ["task", "multilingual", "order", "records", "seeds", "why"],
        rows,
        keys=3,
        note=note,
    )


def record_notes(records: Records, key: tuple[str, ...]) -> list[str]:
    """The records' notes of one slice (target, data, model; e.g. evaluation pairs left out), once each, with how
    many records carry them."""
    notes = of_slice(records.notes, key)
    counts = notes.groupby("note", sort=True)["path"].nunique()
    return [f"{note} ({n} record{'s' if n > 1 else ''})" for note, n in counts.items()]
