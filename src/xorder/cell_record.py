"""What a finished cell writes: each target evaluation's predictions, the run record (predictions of the chosen
checkpoints, the config, metrics.json last with their checksums), the notes a reader must see, the provenance,
and the short table printed on the terminal."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import xorder
from xorder import fsdp, kinds, records
from xorder.evaluate import EvalResult
from xorder.fileio import write_atomic, write_json
from xorder.kinds.base import Kind

log = logging.getLogger("xorder")


def prediction_writer(folder: Path, accelerator: Any) -> Callable[[str, list[EvalResult]], None]:
    """Each evaluation's predictions as evals/<tag>.parquet (tag: step<N> or average)."""

    def write(tag: str, results: list[EvalResult]) -> None:
        if not accelerator.is_main_process:
            return
        import pandas as pd

        frames = [
            pd.DataFrame(
                {"split": r.split, "language": r.language, "id": r.ids, "gold": r.gold, "prediction": r.prediction}
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
    record_dir: Path, dcfg: DictConfig, metrics: dict[str, Any], evals: Path, chosen: dict[str, dict[str, Any]]
) -> None:
    """The old metrics.json goes first (a record being rewritten is incomplete, never a mix of two runs), then
    predictions and config, then metrics.json with their checksums: its presence marks the record complete."""
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
    notes = constant_predictions(predictions)
    notes += unlearned(predictions, kinds.get(dcfg.target.kind), dcfg.target.train_language)
    metrics["notes"] = [*metrics.get("notes", []), *notes]
    buffer = io.BytesIO()
    predictions.to_parquet(buffer, index=False)
    write_atomic(record_dir / records.PREDICTIONS, buffer.getvalue())
    write_atomic(record_dir / records.CONFIG, OmegaConf.to_yaml(records.science_config(dcfg)))
    metrics["files"] = records.file_digests(record_dir)
    write_json(record_dir / records.METRICS, metrics)


def cadence_notes(history: list[dict[str, Any]]) -> list[str]:
    """A target evaluated once has one checkpoint: its selections cannot differ, whatever the tables suggest."""
    if len(history) >= 2:
        return []
    note = (
        f"the target was evaluated {len(history)} time(s): en_dev, oracle, last and average are the same "
        "checkpoint (set target.evaluations, or a smaller trainer.eval_every)"
    )
    log.warning("%s", note)
    return [note]


def constant_predictions(predictions: Any) -> list[str]:
    """Notes (and warnings) for zero-shot predictions that are one value for every example: a model that
    learned nothing there, whatever its accuracy says."""
    notes = []
    chosen = predictions[predictions["selection"] == "en_dev"]
    for (split, language), part in chosen.groupby(["split", "language"], sort=True):
        if len(part) > 1 and part["prediction"].astype(str).nunique() == 1:
            notes.append(
                f"{split}/{language}: every en_dev prediction is {part['prediction'].iloc[0]} (a constant "
                "prediction: the model learned nothing there)"
            )
    for note in notes:
        log.warning("%s", note)
    return notes


def unlearned(predictions: Any, kind: Kind, train_language: str) -> list[str]:
    """A note (and warning) when the zero-shot model's predictions on its own training language's dev set show,
    by its kind's test, a head that has not learned yet."""
    chosen = predictions[
        (predictions["selection"] == "en_dev")
        & (predictions["split"] == "dev")
        & (predictions["language"] == train_language)
    ]
    reason = kind.unlearned(chosen["gold"].tolist(), chosen["prediction"].tolist()) if len(chosen) else None
    if reason is None:
        return []
    note = (
        f"dev/{train_language}: the en_dev predictions are {reason}: the {kind.name} head has not learned (train the "
        "target longer: trainer.target.epochs or max_steps)"
    )
    log.warning("%s", note)
    return [note]


def provenance(accelerator: Any, started: datetime, config_hash: str) -> dict[str, Any]:
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "xorder": xorder.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": f"{device} x{accelerator.num_processes}" if accelerator.num_processes > 1 else device,
        "distributed": fsdp.describe(accelerator),  # FSDP, DDP or none
        "precision": accelerator.mixed_precision,
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPUs a parallel cell was pinned to
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": config_hash,
    }


def git_commit() -> str | None:
    here = Path(xorder.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
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
