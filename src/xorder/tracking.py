"""Experiment trackers through Accelerate (TensorBoard, MLflow, W&B), set up the way their users expect: a run
named after the cell, grouped with the rest of its grid, tagged with the study axes; TensorBoard's event files in
the run record. The training loop logs losses, learning rates and every evaluation's scores; the cell logs the
selected scores and each stage's throughput at its end."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from omegaconf import DictConfig

from xorder import records
from xorder.errors import XorderError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
GRID = "XORDER_GRID"  # set by `xorder run -m` for every cell of one grid


def check(trackers: list[str]) -> None:
    """Stop before any work when a tracker's package is missing (Accelerate would only warn and drop it)."""
    for name in trackers:
        package = PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise XorderError(
                f"trainer.trackers names {name}, but the package {package} is not installed: "
                f"pip install {package} (or pip install 'xorder[track]')"
            )


def start(accelerator: Any, dcfg: DictConfig) -> None:
    axes = records.axes(dcfg)
    name = records.cell_path(dcfg)
    group = os.environ.get(GRID) or name.rsplit("/", 1)[0]  # a grid, or the seeds of this cell
    tags = {key: "+".join(value) if isinstance(value, list) else str(value) for key, value in axes.items()}
    flat = records.flatten(records.science_config(dcfg))  # trackers take scalars only
    config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
    accelerator.init_trackers(
        "tracking",
        config=config,
        init_kwargs={
            "wandb": {"name": name, "group": group, "tags": [f"{k}={v}" for k, v in tags.items()]},
            "mlflow": {"run_name": name, "tags": {**tags, "grid": group}},
        },
    )


def log_record(accelerator: Any, metrics: dict[str, Any]) -> None:
    """The selected scores of every selection, split and language, and each trained stage's throughput."""
    values = {
        f"selected/{selection}/{split}/{lang}/{metric}": value
        for selection, splits in metrics["scores"].items()
        for split, langs in splits.items()
        for lang, scores in langs.items()
        for metric, value in scores.items()
    }
    for stage in metrics["stages"]:
        if not stage["reused"]:
            values.update(
                {
                    f"throughput/{stage['name']}/{key}": value
                    for key, value in stage.get("throughput", {}).items()
                    if value is not None
                }
            )
    accelerator.log(values)
