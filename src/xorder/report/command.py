"""`xorder report`: read records, compute, write every table, CSV, plot and the references."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xorder.errors import EXIT_USER_ERROR, XorderError
from xorder.records import METRICS, write_atomic
from xorder.report.aggregate import per_seed, summarize
from xorder.report.cite import references
from xorder.report.compute import budget_table, compute_frame, compute_line, compute_table
from xorder.report.effects import order_effects
from xorder.report.grid import NO_TASKS, PAIR, SLICE, ZERO_SHOT, missing_cells
from xorder.report.load import Records, load_records
from xorder.report.names import load_names
from xorder.report.plots import write_plots
from xorder.report.ranking import check as ranking_check
from xorder.report.ranking import markdown as ranking_markdown
from xorder.report.render import PLAIN, Style, Table, tex
from xorder.report.tables import (
    Look,
    View,
    degenerate_table,
    delta_table,
    effect_table,
    main_table,
    record_notes,
    robustness_table,
    selection_table,
    selections_table,
    slice_label,
    views,
)

RESAMPLES = 9999
CSV_FLOAT = "%.4f"


@dataclass(frozen=True)
class Options:
    """What `xorder report`'s presentation options choose; the defaults give paper-ready tables."""

    pair: tuple[str, str] = PAIR
    look: Look = field(default_factory=Look)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format=CSV_FLOAT, na_rep="", lineterminator="\n")


def _commits(cells: pd.DataFrame) -> str:
    counts = cells["git_commit"].map(lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else "") if c else "unknown")
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.value_counts().items()))


def _check(records: Records, results: Path, strict: bool, pair: tuple[str, str], stream: Any) -> None:
    """Warn about every skipped and malformed record; with --strict the first of them is an error."""
    for path, reason in records.skipped:
        print(f"xorder: warning: {path}: {reason}; record skipped", file=stream)
    for path, reason in records.malformed:
        print(f"xorder: warning: {path}: {reason}; its cells are marked n/a‡", file=stream)
    if strict and records.skipped:
        raise XorderError(
            f"{len(records.skipped)} record(s) skipped under {results} (--strict); "
            f"first: {records.skipped[0][0]}: {records.skipped[0][1]}"
        )
    if strict and records.malformed:
        raise XorderError(f"malformed record (--strict): {records.malformed[0][0]}/{records.malformed[0][1]}")
    if records.cells.empty:
        raise XorderError(f"no complete records ({METRICS}) under {results}")
    absent = [order for order in pair if order not in set(records.cells["order"])]
    if pair != PAIR and absent:
        raise XorderError(f"--compare: no records of order {absent[0]!r} under {results}")


def _view_tables(
    view: View,
    look: Look,
    records: Records,
    seeds: pd.DataFrame,
    summary: pd.DataFrame,
    effects: pd.DataFrame,
    resamples: int,
    pair: tuple[str, str],
) -> list[Table]:
    made = (
        main_table(view, look),
        delta_table(view, look),
        effect_table(view, look, effects, resamples, records, pair),
        robustness_table(view, look, seeds, records.target(view.target).train_language),
        selection_table(view, look, summary),
        selections_table(view, look, summary),
        budget_table(view, look, records),
    )
    return [t for t in made if t is not None]


def _notes(records: Records, look: Look, key: tuple[str, str, str]) -> tuple[str, str]:
    """The records' notes under the tables of a slice (target, data, model), as Markdown and LaTeX (empty when
    there are none)."""
    notes = record_notes(records, key)
    if not notes:
        return "", ""
    head = f"Notes of the {slice_label(look.names, key)} records"
    md = "\n".join([f"{head}:", "", *(f"- {n}" for n in notes)]) + "\n"
    return md, f"\\noindent {tex(head)}: " + "; ".join(tex(n) for n in notes) + ".\n"


def _counts(records: Records, missing: pd.DataFrame) -> str:
    """`48 records (24 degenerate, left out of the means), 0 missing, 0 skipped`."""
    degenerate = int((records.cells["degenerate"] != "").sum())
    how = "included in the means" if records.include_degenerate else "left out of the means"
    held = f" ({degenerate} degenerate, {how})" if degenerate else ""
    return f"{len(records.cells)} records{held}, {len(missing)} missing, {len(records.skipped)} skipped"


def build(
    results: Path,
    out: Path,
    strict: bool = False,
    resamples: int = RESAMPLES,
    stream: Any = None,
    options: Options | None = None,
    include_degenerate: bool = False,
) -> dict[str, Any]:
    """Everything `xorder report` does: the tables (tables.md, tables.tex, the CSVs), plots and references of
    every record under `results`, written to `out`; byte-identical for the same records.

    Args:
        results: the results directory the cells wrote their records to.
        out: the folder the tables go to (created).
        strict: stop at the first unusable predictions.parquet instead of warning and leaving out its test.
        resamples: bootstrap and permutation draws of each paired order-effect test.
        stream: where warnings go (stderr by default).
        options: the presentation options (the compared pair of orders, names and plot looks).
        include_degenerate: count degenerate records in the means (left out by default).

    Returns:
        Counts of what was read and written (records, degenerate, missing, skipped, malformed, tables, plots,
        ranking_checks), the problems found (path, reason), the counts and compute lines as printed, the references.

    Raises:
        XorderError: `results` does not exist or holds no complete record, or (`strict`) a record's predictions
            are unusable.
    """
    stream, options = stream or sys.stderr, options or Options()
    look, pair = options.look, options.pair
    if not results.is_dir():
        raise XorderError(
            f"results directory {results} does not exist; run cells first (xorder run ...) or pass --results DIR"
        )
    records = load_records(results, out.resolve(), include_degenerate)
    _check(records, results, strict, pair, stream)
    problems: list[tuple[str, str]] = [*records.skipped, *records.malformed]
    known = len(problems)

    def warn(path: str, reason: str) -> None:
        if (path, reason) not in problems:  # a record's predictions are read once per split
            problems.append((path, reason))
            print(f"xorder: warning: {path}: {reason}", file=stream)

    seeds = per_seed(records)
    summary = summarize(seeds)
    missing = missing_cells(records.cells)
    effects = order_effects(records, summary, results, resamples, warn, pair)
    if strict and len(problems) > known:
        raise XorderError(f"unusable predictions (--strict): {problems[known][0]}: {problems[known][1]}")
    compute = compute_frame(records, missing)
    all_views = views(summary, records, missing)
    md = [
        "# xorder result tables",
        "",
        (
            f"{_counts(records, missing)}. "
            f"Zero-shot ({ZERO_SHOT}) selection, each target's primary metric; every number in summary.csv."
        ),
        f"Records from git commits: {_commits(records.cells)}.",
        "",
    ]
    tex_parts = ["% xorder result tables (booktabs); generated by `xorder report`, do not edit", ""]
    tables: list[Table] = []
    for key, _ in records.cells.groupby(SLICE, sort=True):
        mine = [
            t
            for view in all_views
            if view.key == key
            for t in _view_tables(view, look, records, seeds, summary, effects, resamples, pair)
        ]
        degenerate = degenerate_table(records, look, key, tabled=bool(mine))
        mine += [degenerate] if degenerate is not None else []
        tables += mine
        md += [t.markdown() for t in mine]
        tex_parts += [t.latex() for t in mine if t.rows]
        notes = _notes(records, look, key)
        md += [notes[0]] if notes[0] else []
        tex_parts += [notes[1]] if notes[1] else []
    table = compute_table(compute, look)
    if table is not None:
        tables.append(table)
        md.append(table.markdown())
        tex_parts.append(table.latex())
    checked = ranking_check(results, out.resolve(), records, seeds, summary, warn)
    md += ranking_markdown(checked, look.style.digits)
    md += ["### Missing records", ""]
    md += [
        f"- {r.target}/{r.order}/{r.tasks}/{r.multilingual}/{r.model}/seed{r.seed}"
        + (f" (data: {r.data})" if r.data else "")
        for r in missing.itertuples()
    ] or ["none"]
    md += ["", "### Skipped records", ""]
    md += [f"- {path}: {reason}" for path, reason in records.skipped] or ["none"]
    if records.malformed:
        md += ["", "### Malformed records (used; their cells are marked n/a‡)", ""]
        md += [f"- {path}: {reason}" for path, reason in records.malformed]
    datasets = {*records.cells["target"], *(t for ts in records.cells["tasks"] for t in ts.split("+"))} - {NO_TASKS}
    bib = references(datasets)
    files = {
        "summary.csv": _csv(summary),
        "order_effect.csv": _csv(effects),
        "missing.csv": _csv(missing),
        "compute.csv": _csv(compute),
        "tables.md": "\n".join(md) + "\n",
        "tables.tex": "\n".join(tex_parts),
        "references.bib": bib,
        **({"ranking_check.csv": _csv(checked)} if not checked.empty else {}),
    }
    for name, text in files.items():
        write_atomic(out / name, text)
    plots = write_plots(all_views, records, look.names, out / "plots", stream)
    return {
        "records": len(records.cells),
        "degenerate": int((records.cells["degenerate"] != "").sum()),
        "counts": _counts(records, missing),
        "missing": len(missing),
        "skipped": len(records.skipped),
        "malformed": len(records.malformed),
        "tables": len(tables),
        "plots": plots,
        "problems": problems,
        "compute": compute_line(compute, len(missing)),
        "references": bib,
        "ranking_checks": len(checked),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xorder report",
        description="Result tables, statistics and plots from "
        "run records (metrics.json, predictions.parquet); byte-identical for the same records.",
    )
    p.add_argument("--results", default="results", help="results directory to read (default: results)")
    p.add_argument("--out", default=None, help="output directory (default: RESULTS/tables)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on a malformed record (unreadable, duplicate, non-finite score) instead of warning",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=RESAMPLES,
        help=f"bootstrap and permutation resamples for the order-effect table (default: {RESAMPLES})",
    )
    p.add_argument(
        "--compare",
        default=",".join(PAIR),
        metavar="A,B",
        help=f"the two orders of the order-effect table (default: {','.join(PAIR)})",
    )
    p.add_argument(
        "--names",
        default=None,
        metavar="FILE.yaml",
        help="yaml mapping identifier: display name, overriding and adding to the built-in names",
    )
    p.add_argument("--raw-names", action="store_true", help="show identifiers (pawsx, english_first) as they are")
    p.add_argument("--digits", type=int, default=Style.digits, help="digits after the point (default: 2)")
    p.add_argument(
        "--plain", action="store_true", help="plain-text numbers: ASCII hyphen-minus, no bold (for diffs and parsers)"
    )
    p.add_argument(
        "--include-degenerate",
        action="store_true",
        help="put degenerate records (one value predicted everywhere, or R² <= 0) into the means, marked ∅",
    )
    p.add_argument(
        "--cite",
        action="store_true",
        help="print BibTeX for xorder and the records' datasets (always written to references.bib)",
    )
    return p


def options(ns: argparse.Namespace) -> Options:
    """The Options of parsed arguments; a mistake in them is a XorderError."""
    pair = tuple(part.strip() for part in ns.compare.split(","))
    if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
        raise XorderError(f"--compare expects two different orders as A,B (got {ns.compare!r})")
    if not 0 <= ns.digits <= 6:
        raise XorderError("--digits must be between 0 and 6")
    names = load_names(Path(ns.names) if ns.names else None, ns.raw_names)
    style = PLAIN if ns.plain else Style()
    return Options((pair[0], pair[1]), Look(names, Style(ns.digits, style.minus, style.bold)))


def main(args: list[str]) -> int:
    """`xorder report` and scripts/make_tables.py: 0 on success, 2 on an error the user can fix."""
    ns = parser().parse_args(args)
    results = Path(ns.results)
    out = Path(ns.out) if ns.out else results / "tables"
    try:
        if ns.resamples < 1:
            raise XorderError("--resamples must be at least 1")
        done = build(
            results, out, ns.strict, ns.resamples, options=options(ns), include_degenerate=ns.include_degenerate
        )
    except XorderError as err:
        print(f"xorder: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    plots = "no plots" if done["plots"] is None else f"{done['plots']} plots (PNG, PDF)"
    print(f"tables: {out} ({done['counts']}, {done['tables']} tables, {plots})")
    print(done["compute"])
    if ns.cite:
        print(done["references"], end="")
    return 0
