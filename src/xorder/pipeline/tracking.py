"""Experiment trackers through Accelerate (TensorBoard, MLflow, W&B), set up the way Hugging Face users expect: a
run named after the cell, grouped with its other seeds, tagged with the study axes; TensorBoard's event files
under the record's `runs/`. The training loop logs `train/loss` and `train/learning_rate` and every evaluation's
scores as `eval/<language>/<metric>` (the target's dev sets; its other sets `<split>/<language>/<metric>`, an
intermediate stage's under `eval/<stage>/`), at the cell's step (the steps of its earlier stages plus the stage's
own), so that one cell is one run; the cell logs the selected scores and each stage's throughput at its end."""

from __future__ import annotations

import importlib.util
from typing import Any

from xorder.cell import CellIdentity, flatten
from xorder.errors import XorderError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
PROJECT = "xorder"  # W&B project, MLflow experiment, TensorBoard's folder under the record's runs/
RUNS = "runs"  # the record's folder for TensorBoard (Accelerate's logging_dir), as the HF Trainer names it


def check(trackers: list[str]) -> None:
    """Stop before any work when a tracker's package is missing (Accelerate would only warn and drop it)."""
    for name in trackers:
        package = PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise XorderError(
                f"trainer.trackers names {name}, but the package {package} is not installed: "
                f"pip install {package} (or pip install 'xorder[track]')"
            )


def start(accelerator: Any, cell: CellIdentity) -> None:
    axes = cell.axes()
    name = cell.path
    group = name.rsplit("/", 1)[0]  # the cell without its seed: trackers aggregate the seeds of a group
    tags = {key: "+".join(value) if isinstance(value, list) else str(value) for key, value in axes.items()}
    flat = flatten(cell.science)  # trackers take scalars only
    config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
    accelerator.init_trackers(
        PROJECT,
        config=config,
        init_kwargs={
            "wandb": {"name": name, "group": group, "tags": [f"{k}={v}" for k, v in tags.items()]},
            "mlflow": {"run_name": name, "tags": {**tags, "group": group}},
        },
    )


def train_values(loss: float, learning_rate: float) -> dict[str, float]:
    return {"train/loss": loss, "train/learning_rate": learning_rate}


def eval_values(stage: str, target: bool, scores: dict[str, Any]) -> dict[str, float]:
    """One evaluation's scores ({split: {language: {metric: value}}}; a multi-task stage's languages are
    head/language) under the names of the module docstring."""
    values = {}
    for split, langs in scores.items():
        prefix = "eval" if split == "dev" else split
        prefix = prefix if target else f"eval/{stage}" + ("" if split == "dev" else f"/{split}")
        for lang, metrics in langs.items():
            values.update({f"{prefix}/{lang}/{metric}": value for metric, value in metrics.items()})
    return values


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
