"""What the grid cost: the training budget of each order (steps and examples per stage, so that an order effect
is not a compute effect), and the device hours spent and still to spend (compute.csv)."""

from __future__ import annotations

import math
import re

import pandas as pd

from xorder.report.grid import ROW, SLICE, STAGES, of_slice, sort_frame
from xorder.report.load import Records
from xorder.report.render import DASH, Table, count
from xorder.report.tables import Look, View

COMPUTE_COLUMNS = [
    "target",
    "data",
    "model",
    "resource",
    "records",
    "trained_stages",
    "hours",
    "missing",
    "projected_hours",
    "not_projected",
]
CELL = ROW
_GPU = re.compile(r"nvidia|tesla|quadro|geforce|radeon|instinct|\bgpu\b|cuda", re.IGNORECASE)
PROJECTION = (
    "each missing cell costs the mean trained hours of the recorded cells of the same target, data, model, "
    "order, tasks and multilingual variant"
)


def _strict_sum(values: pd.Series) -> float:
    """A sum that is NaN when any term is (a stage without `examples`: an older record)."""
    return float(values.sum(min_count=len(values)))


def budget_table(view: View, look: Look, records: Records) -> Table | None:
    """Steps and training examples per stage and in total, mean over a row's seeds."""
    stages = of_slice(records.stages, view.key)
    if stages.empty:
        return None
    key = ["tasks", "multilingual", "order", "seed"]
    names = [s for s in STAGES if s in set(stages["name"])] + sorted(set(stages["name"]) - set(STAGES))
    per_stage = stages.groupby([*key, "name"])[["steps", "examples"]].sum(min_count=1).unstack("name")
    totals = stages.groupby(key).agg(steps=("steps", "sum"), examples=("examples", _strict_sum))
    measures = ["steps", "examples"] if stages["examples"].notna().any() else ["steps"]
    rows = []
    for row in view.rows:
        if row not in totals.droplevel("seed").index:
            rows.append([*view.row_label(look, row), "0", *[DASH] * (len(names) + 1) * len(measures)])
            continue
        mine, total = per_stage.xs(row, level=key[:3]), totals.xs(row, level=key[:3])
        cells = [
            count(mine[(m, name)].mean(skipna=False) if (m, name) in mine.columns else math.nan)
            for name in names
            for m in measures
        ]
        rows.append(
            [
                *view.row_label(look, row),
                str(len(total)),
                *cells,
                *(count(total[m].mean(skipna=False)) for m in measures),
            ]
        )
    note = (
        "Training steps and examples seen per stage, mean over seeds; a stage reused from the cache counts "
        "for every cell that starts from it. Compare orders at equal budgets."
    )
    if len(measures) == 1:
        note += " Examples: not in these records (written by an older xorder)."
    note += f" {view.marks_note(costs=True)}" if view.marks_note(costs=True) else ""
    columns = [f"{name} {m}" for name in names for m in measures] + [f"total {m}" for m in measures]
    return Table(
        f"{view.slug}-budget",
        view.title(look.names, "training budget", ""),
        ["task", "multilingual", "order", "seeds", *columns],
        rows,
        keys=3,
        note=note,
    )


def _trained(records: Records) -> pd.DataFrame:
    """Stages that a record trained (not reused), each stage hash once, with its resource and device hours:
    GPU hours as recorded (throughput.gpu_hours), else seconds x processes on the record's device."""
    stages = records.stages[~records.stages["reused"]].sort_values(["path", "position"], kind="stable")
    stages = stages.drop_duplicates("hash").merge(records.cells[["path", "device"]], on="path", how="left")
    gpu = stages["gpu_hours"].notna() | stages["device"].fillna("").str.contains(_GPU)
    hours = stages["gpu_hours"].where(stages["gpu_hours"].notna(), stages["seconds"] * stages["processes"] / 3600)
    return stages.assign(resource=gpu.map({True: "gpu", False: "cpu"}), hours=hours)


def compute_frame(records: Records, missing: pd.DataFrame) -> pd.DataFrame:
    """Per target, data, model and resource (gpu, cpu): records, trained stages, hours spent, and the hours the
    missing cells would take (PROJECTION); cells without a recorded cell to go by are counted as not projected."""
    trained = _trained(records)
    if trained.empty:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    cost = trained.groupby(["path", "resource"])["hours"].sum().unstack(fill_value=0.0)
    per_cell = records.cells[[*CELL, "path"]].merge(cost, left_on="path", right_index=True, how="left").fillna(0.0)
    resources = [r for r in ("gpu", "cpu") if r in cost.columns]
    mean = per_cell.groupby(CELL)[resources].mean()
    gone = missing.merge(mean, left_on=CELL, right_index=True, how="left")
    rows = []
    for key, group in records.cells.groupby(SLICE, sort=True):
        mine, todo = of_slice(trained, key), of_slice(gone, key)
        unknown = int(todo[resources].isna().all(axis=1).sum()) if resources else len(todo)
        for resource in resources:
            spent = mine[mine["resource"] == resource]
            if spent.empty and not todo[resource].fillna(0).any():
                continue
            rows.append(
                (
                    *key,
                    resource,
                    len(group),
                    len(spent),
                    float(spent["hours"].sum()),
                    len(todo),
                    float(todo[resource].sum()),
                    unknown,
                )
            )
    return sort_frame(pd.DataFrame(rows, columns=COMPUTE_COLUMNS), [*SLICE, "resource"])


def compute_line(frame: pd.DataFrame, missing: int) -> str:
    """The one-line summary `xorder report` prints."""
    totals = frame.groupby("resource")[["hours", "projected_hours"]].sum()
    spent = [f"{totals.loc[r, 'hours']:.2f} {r.upper()}-hours" for r in ("gpu", "cpu") if r in totals.index]
    line = f"compute: {' and '.join(spent) or '0 hours'} on trained stages (reused stages not counted)"
    if missing:
        ahead = [
            f"{totals.loc[r, 'projected_hours']:.2f} {r.upper()}-hours" for r in ("gpu", "cpu") if r in totals.index
        ]
        unknown = int(frame.drop_duplicates(SLICE)["not_projected"].sum()) if len(frame) else missing
        line += (
            f"; about {' and '.join(ahead) or '0 hours'} more for the {missing} missing cells ({PROJECTION}"
            + (f"; {unknown} without such a cell not projected" if unknown else "")
            + ")"
        )
    return line


def compute_table(frame: pd.DataFrame, look: Look) -> Table | None:
    if frame.empty:
        return None
    rows = [
        [
            look.names(r.target) + (f" (data: {look.names(r.data)})" if r.data else ""),
            look.names(r.model),
            r.resource.upper(),
            str(r.records),
            str(r.trained_stages),
            look.style.num(r.hours),
            str(r.missing),
            look.style.num(r.projected_hours),
            str(r.not_projected),
        ]
        for r in frame.itertuples()
    ]
    return Table(
        "compute",
        "Compute",
        [
            "target",
            "model",
            "device",
            "records",
            "trained stages",
            "hours",
            "missing cells",
            "projected hours",
            "not projected",
        ],
        rows,
        keys=3,
        note=f"Device hours of the stages the records trained (a stage reused from the cache is counted "
        f"once, where it was trained): GPU-hours as recorded, else seconds × processes. Projection: "
        f"{PROJECTION}.",
    )
