"""Plots: per-language bars per order and a task x order heatmap, as deterministic PNGs."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from xorder.records import NOT_APPLICABLE, write_atomic
from xorder.report.grid import AVG, NO_TASKS, ORDERS, SORT_KEYS
from xorder.report.render import slug
from xorder.report.tables import View

PLOTS_HINT = "xorder: plots need matplotlib: pip install 'xorder[plots]' (tables written without plots)"


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
            out[f"{view.slug}-{slug(tasks)}-{slug(multilingual)}-bars.png"] = _png(fig)
    return out


def heatmap(view: View) -> dict[str, bytes]:
    """Task set (and variant) x order heatmap of the zero-shot average; cells without records stay blank."""
    import matplotlib
    from matplotlib.figure import Figure

    if AVG not in view.languages:
        return {}
    labels = sorted({(t, m) for t, m, _ in view.rows}, key=lambda g: (SORT_KEYS["tasks"](g[0]), g[1]))
    orders = sorted({o for _, _, o in view.rows}, key=SORT_KEYS["order"])
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
