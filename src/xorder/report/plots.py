"""Plots: per-language bars per order (with a chance or baseline line on accuracy) and a task x order heatmap
of the non-English average, as 300-dpi PNGs and PDFs that carry no timestamp (the same records, the same bytes)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xorder.records import NOT_APPLICABLE, write_atomic
from xorder.report.grid import AVG, AVG_NON_EN, NO_TASKS, ORDERS, SORT_KEYS
from xorder.report.load import Records
from xorder.report.names import Names
from xorder.report.render import slug
from xorder.report.tables import BASELINE, View

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PLOTS_HINT = "xorder: plots need matplotlib: pip install 'xorder[plots]' (tables written without plots)"
DPI = 300
FORMATS: dict[str, dict[str, Any]] = {
    "png": {"dpi": DPI, "metadata": {"Software": None}},
    "pdf": {"metadata": {"Creator": None, "Producer": None, "CreationDate": None}},
}
_STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "xorder",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": False,
}


def _matplotlib() -> Any | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    return matplotlib


def _files(stem: str, fig: Any) -> dict[str, bytes]:
    """The figure as `stem`.png (300 dpi) and `stem`.pdf, without the timestamps and versions matplotlib adds."""
    out = {}
    for ext, options in FORMATS.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, **options)
        out[f"{stem}.{ext}"] = buffer.getvalue()
    return out


def _reference(ax: Any, view: View, names: Names, classes: int, x: np.ndarray) -> None:
    """Accuracy only: chance (100 / classes) when the target's labels are known, else the `none` baseline's
    mean per language as dashed segments; the legend says which."""
    if view.metric != "accuracy":
        return
    if classes:
        ax.axhline(100.0 / classes, color="0.35", linestyle=":", linewidth=1.0, label=f"chance (100/{classes} classes)")
    elif BASELINE in view.rows:
        means = [view.get(BASELINE, lang)[0] for lang in view.languages]
        ax.hlines(
            means,
            x - 0.45,
            x + 0.45,
            colors="0.35",
            linestyles="--",
            linewidth=1.0,
            label=f"{names('none')} mean (chance unknown)",
        )


def bar_plots(view: View, names: Names, classes: int) -> dict[str, Any]:
    """Per task set and variant: per-language bars (mean) with seed std error bars, one bar per order,
    the `none` baseline included; a cell whose mean is not finite says n/a."""
    import matplotlib
    from matplotlib.figure import Figure

    out = {}
    groups = sorted({(t, m) for t, m, _ in view.rows if t != NO_TASKS}) or [(NO_TASKS, NOT_APPLICABLE)]
    for tasks, multilingual in groups:
        rows = [r for r in view.rows if (r[0], r[1]) == (tasks, multilingual)]
        rows = ([BASELINE] if BASELINE in view.rows and BASELINE not in rows else []) + rows
        with matplotlib.rc_context(_STYLE):
            fig = Figure(figsize=(max(6.0, 0.9 * len(view.languages) + 2), 3.6))
            ax = fig.subplots()
            x = np.arange(len(view.languages))
            width = 0.8 / max(len(rows), 1)
            for i, row in enumerate(rows):
                values = [view.get(row, lang) for lang in view.languages]
                at = x + (i - (len(rows) - 1) / 2) * width
                ax.bar(
                    at,
                    [v[0] for v in values],
                    width,
                    yerr=[v[1] if math.isfinite(v[1]) else 0.0 for v in values],
                    capsize=2,
                    label=names(row[2]),
                    color=f"C{ORDERS.index(row[2]) if row[2] in ORDERS else i}",
                )
                for position, lang in zip(at, view.languages):
                    if view.bad(row, lang):
                        ax.text(position, 0, "n/a", rotation=90, fontsize=6, ha="center", va="bottom")
            _reference(ax, view, names, classes, x)
            ax.set_xticks(x, view.languages)
            ax.set_ylabel(f"{names(view.metric)} (mean ± seed std)")
            ax.set_title(f"{view.label(names)} · {view.split} · {names.tasks(tasks)} · {names(multilingual)}")
            ax.legend(
                fontsize=8, frameon=False, ncols=min(len(rows) + 1, 4), loc="upper center", bbox_to_anchor=(0.5, -0.1)
            )  # below the axes, clear of the bars
            fig.tight_layout()
            out[f"{view.slug}-{slug(tasks)}-{slug(multilingual)}-bars"] = fig
    return out


def heatmap(view: View, names: Names) -> dict[str, Any]:
    """Task set (and variant) x order heatmap of the zero-shot non-English average (the average when the
    target has no other languages); cells without records stay blank, non-finite ones say n/a."""
    import matplotlib
    from matplotlib.figure import Figure

    column = AVG_NON_EN if AVG_NON_EN in view.languages else AVG
    if column not in view.languages:
        return {}
    labels = sorted({(t, m) for t, m, _ in view.rows}, key=lambda g: (SORT_KEYS["tasks"](g[0]), g[1]))
    orders = sorted({o for _, _, o in view.rows}, key=SORT_KEYS["order"])
    grid = np.full((len(labels), len(orders)), np.nan)
    for i, (tasks, multilingual) in enumerate(labels):
        for j, order in enumerate(orders):
            grid[i, j] = view.get((tasks, multilingual, order), column)[0]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(1.4 * len(orders) + 2.5, 0.5 * len(labels) + 1.8))
        ax = fig.subplots()
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        ax.set_xticks(np.arange(len(orders)), [names(o) for o in orders], rotation=20, ha="right")
        shown = [NO_TASKS if t == NO_TASKS else names.tasks(t) for t, _ in labels]  # the baseline's row: none
        ax.set_yticks(
            np.arange(len(labels)),
            [t if m == NOT_APPLICABLE else f"{t} / {names(m)}" for t, (_, m) in zip(shown, labels)],
        )
        for i in range(len(labels)):
            for j in range(len(orders)):
                if math.isfinite(grid[i, j]):
                    bright = sum(image.cmap(image.norm(grid[i, j]))[:3]) / 3 > 0.5
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.1f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if bright else "white",
                    )
                elif view.bad((*labels[i], orders[j]), column):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label=f"{names(view.metric)}, {column}")
        ax.set_title(f"{view.label(names)} · {view.split} · {column}")
        fig.tight_layout()
        return {f"{view.slug}-heatmap": fig}


def write_plots(all_views: list[View], records: Records, names: Names, folder: Path, stream: Any) -> int | None:
    """Write every plot as PNG and PDF, returning the number of figures; files of earlier runs that these
    records no longer give are removed so the folder matches the records."""
    if _matplotlib() is None:
        print(PLOTS_HINT, file=stream)
        return None
    files: dict[str, bytes] = {}
    figures = 0
    for view in all_views:
        made = {**bar_plots(view, names, records.target(view.target).classes), **heatmap(view, names)}
        figures += len(made)
        for stem, fig in made.items():
            files.update(_files(stem, fig))
    folder.mkdir(parents=True, exist_ok=True)
    for old in (*folder.glob("*.png"), *folder.glob("*.pdf")):
        if old.name not in files:
            old.unlink()
    for name, data in sorted(files.items()):
        write_atomic(folder / name, data)
    return figures
