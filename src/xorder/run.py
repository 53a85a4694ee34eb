"""One study cell, start to end: plan -> stages (cached) -> target -> selections -> run record."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import xorder
from xorder import records
from xorder.config import XorderConfig
from xorder.data.fetch import validate
from xorder.data.stage import DataSettings, prepare
from xorder.evaluate import EvalResult, primary, select
from xorder.fileio import write_atomic, write_json
from xorder.model import MultiTaskModel, load_backbone, load_tokenizer, resolve_path, save_backbone
from xorder.plan import StageSpec, plan, stages_hash, to_typed
from xorder.stage_cache import StageCache, StageDir
from xorder.train import best_backbone, mixed_precision, train_stage

log = logging.getLogger("xorder")


def build_accelerator(cfg: XorderConfig, project_dir: str) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.utils import GradientAccumulationPlugin

    import torch

    # several CPU processes (torchrun without GPUs) only join one gloo group when Accelerate is told `cpu`
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(
        cpu=multi_cpu,
        mixed_precision=mixed_precision(cfg.trainer.precision),
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True),  # heads of other tasks sit idle per batch
            InitProcessGroupKwargs(timeout=timedelta(hours=12)),  # a rank may wait while another job trains a stage
        ],
        log_with=list(cfg.trainer.trackers) or None,
        project_dir=project_dir,
    )


class _DropTiedWeightNotice(logging.Filter):
    """Accelerate warns on every checkpoint that tied embeddings were saved once: expected, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def quiet_libraries() -> None:
    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    logging.getLogger("accelerate.utils.other").addFilter(_DropTiedWeightNotice())


def run_cell(dcfg: DictConfig, record_dir: str) -> dict[str, Any]:
    """Train (or reuse) every stage of the cell and write its record; returns metrics.json's content."""
    started = datetime.now(timezone.utc)
    quiet_libraries()
    cfg = to_typed(dcfg)
    accelerator = build_accelerator(cfg, record_dir)
    stages = plan(cfg, accelerator.num_processes)
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)
    if cfg.trainer.trackers:
        flat = records.flatten(records.science_config(dcfg))  # trackers take scalars only
        accelerator.init_trackers("xorder", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                    for k, v in flat.items()})
    cache_dir = str(Path(cfg.cache_dir).expanduser())
    base = resolve_path(cfg.model, cache_dir)
    tokenizer = load_tokenizer(base, cfg.model.revision)
    cache = StageCache(Path(cache_dir) / "stages", accelerator)
    log.info("cell %s: %s", records.cell_path(dcfg), " -> ".join(f"{s.name}[{s.hash[:8]}]" for s in stages))
    # every file of every stage still to train is checked before any trains; the first of them reads and
    # checks its own data right before it trains, so only the later ones are read ahead
    with accelerator.main_process_first():
        validate(cfg, [s for s in stages if not cache.dir(s).is_complete()][1:])

    source, revision = base, cfg.model.revision
    entries = []
    for stage in stages:
        begin = time.time()
        summary, reused = cache.obtain(
            stage, lambda folder, stage=stage, source=source, revision=revision: _train(
                stage, cfg, source, revision, tokenizer, accelerator, folder))
        log.info("stage %s [%s]: %s in %.1fs", stage.name, stage.hash[:8], "reused" if reused else "trained",
                 time.time() - begin)
        entries.append({"name": stage.name, "hash": stage.hash, "tasks": sorted(stage.heads),
                        "languages": stage.languages, "steps": summary["steps"], "seconds": summary["seconds"],
                        "reused": reused})
        source, revision = str(cache.dir(stage).model), None
    target = stages[-1]
    summary = cache.summary(target)
    chosen = select(summary["history"], cfg.target.train_language, primary(cfg.target))
    metrics = {
        "schema": records.SCHEMA,
        **records.axes(dcfg),
        "primary_metric": primary(cfg.target),
        "scores": {name: sel["scores"] for name, sel in chosen.items()},
        "selected_steps": {name: sel["steps"] for name, sel in chosen.items()},
        "stages": entries,
        "provenance": _provenance(accelerator, started, stages_hash(stages)),
    }
    if accelerator.is_main_process:
        _write_record(Path(record_dir), dcfg, metrics, cache.dir(target).evals, chosen)
        print(summary_table(metrics))
        print(f"record: {Path(record_dir) / records.METRICS}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _train(stage: StageSpec, cfg: XorderConfig, source: str, revision: str | None, tokenizer: Any,
           accelerator: Any, folder: StageDir) -> dict[str, Any]:
    from accelerate.utils import set_seed

    set_seed(stage.seed)
    hp, trainer = stage.hparams, cfg.trainer
    settings = DataSettings(str(Path(cfg.cache_dir).expanduser()), cfg.data.synthetic_examples)
    with accelerator.main_process_first():
        data = prepare(stage, tokenizer, settings)
    backbone = load_backbone(source, revision)
    model = MultiTaskModel(backbone, stage.heads, data.label_names)
    keep_best = not stage.is_target and hp.patience is not None
    if stage.is_target:
        score_of = _target_score(stage, cfg.target.train_language)
        on_eval = _write_predictions(folder.evals, accelerator)
    else:
        score_of, on_eval = _mean_primary, None
    state = train_stage(stage, data, model, tokenizer, accelerator, folder, score_of=score_of, on_eval=on_eval,
                        keep_best=keep_best, save_every=trainer.save_every, log_every=trainer.log_every,
                        eval_batch_size=trainer.eval_batch_size, num_workers=trainer.num_workers)
    if not stage.is_target:
        state_dict = accelerator.get_state_dict(model)  # every rank: FSDP gathers shards here
        if keep_best and folder.best.exists():
            state_dict = best_backbone(folder.best)
        if accelerator.is_main_process:
            save_backbone(accelerator.unwrap_model(model), tokenizer, folder.model, state_dict)
    accelerator.free_memory()
    return {
        "name": stage.name, "hash": stage.hash, "tasks": sorted(stage.heads), "languages": stage.languages,
        "steps": state.step, "total_steps": state.total_steps, "seconds": round(state.seconds, 3),
        "examples": state.examples, "best_step": state.best_step, "best_score": state.best_score,
        "stopped_early": state.stopped_early, "hparams": asdict(hp), "history": state.history,
        "label_names": data.label_names, "processes": accelerator.num_processes,
        "precision": accelerator.mixed_precision,
    }


def _mean_primary(results: list[EvalResult]) -> float | None:
    """An intermediate stage's validation score: each head's primary metric averaged over its dev sets,
    then over heads, so eleven MLM languages do not outvote one task."""
    by_head: dict[str, list[float]] = {}
    for r in results:
        if r.metrics:
            by_head.setdefault(r.head, []).append(r.metrics[next(iter(r.metrics))])
    means = [sum(v) / len(v) for v in by_head.values()]
    return sum(means) / len(means) if means else None


def _target_score(stage: StageSpec, train_language: str):
    metric = primary(stage.components[0].task)

    def score(results: list[EvalResult]) -> float | None:
        return next((r.metrics[metric] for r in results if r.split == "dev" and r.language == train_language), None)

    return score


def _write_predictions(folder: Path, accelerator: Any):
    def write(step: int, results: list[EvalResult]) -> None:
        if not accelerator.is_main_process:
            return
        import pandas as pd

        frames = [pd.DataFrame({"split": r.split, "language": r.language, "id": r.ids, "gold": r.gold,
                                "prediction": r.prediction}) for r in results]
        frame = pd.concat(frames, ignore_index=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".step{step}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(folder / f"step{step}.parquet")

    return write


def _write_record(record_dir: Path, dcfg: DictConfig, metrics: dict[str, Any], evals: Path,
                  chosen: dict[str, dict[str, Any]]) -> None:
    """Predictions and config first, metrics.json last: its presence marks the record complete."""
    import io

    import pandas as pd

    frames = []
    cache: dict[int, pd.DataFrame] = {}
    for selection, sel in chosen.items():
        for split, langs in sel["steps"].items():
            for lang, step in langs.items():
                if step not in cache:
                    cache[step] = pd.read_parquet(evals / f"step{step}.parquet")
                frame = cache[step]
                part = frame[(frame["split"] == split) & (frame["language"] == lang)].copy()
                part.insert(0, "selection", selection)
                part.insert(1, "step", step)
                frames.append(part)
    predictions = pd.concat(frames, ignore_index=True)
    buffer = io.BytesIO()
    predictions.to_parquet(buffer, index=False)
    write_atomic(record_dir / records.PREDICTIONS, buffer.getvalue())
    write_atomic(record_dir / records.CONFIG, OmegaConf.to_yaml(records.science_config(dcfg)))
    write_json(record_dir / records.METRICS, metrics)


def _provenance(accelerator: Any, started: datetime, config_hash: str) -> dict[str, Any]:
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "xorder": xorder.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": f"{device} x{accelerator.num_processes}" if accelerator.num_processes > 1 else device,
        "precision": accelerator.mixed_precision,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config_hash,
    }


def _git_commit() -> str | None:
    here = Path(xorder.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def summary_table(metrics: dict[str, Any]) -> str:
    """A short per-language table of the zero-shot (en_dev) scores, for the terminal."""
    scores = metrics["scores"]["en_dev"]
    metric = metrics["primary_metric"]
    splits = list(scores)
    langs = sorted({lang for split in splits for lang in scores[split]})
    title = f"{metrics['target']} / {metrics['order']} / {'+'.join(metrics['tasks']) or 'none'} / " \
            f"{metrics['multilingual']} / {metrics['model']} / seed {metrics['seed']}: {metric}, en_dev selection"
    width = max(6, *(len(l) for l in langs)) if langs else 6
    lines = [title, f"{'':<{width}} " + " ".join(f"{s:>8}" for s in splits)]
    for lang in langs:
        cells = [f"{scores[s][lang][metric]:8.2f}" if lang in scores[s] else f"{'':>8}" for s in splits]
        lines.append(f"{lang:<{width}} " + " ".join(cells))
    return "\n".join(lines)
