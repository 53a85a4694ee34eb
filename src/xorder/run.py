"""One study cell, start to end: plan -> stages (cached) -> target -> selections -> run record."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

import xorder
from xorder import batch_plan, distributed, fsdp, records, tracking
from xorder.advice import learning_rates as advice_for
from xorder.config import XorderConfig
from xorder.data.fetch import validate
from xorder.data.stage import DataSettings, prepare
from xorder.evaluate import EvalResult, primary, select
from xorder.fileio import write_atomic, write_json
from xorder.model import (MultiTaskModel, freeze_word_embeddings, load_backbone, load_tokenizer, resolve_path,
                          save_backbone)
from xorder.plan import StageSpec, plan, stages_hash, to_typed
from xorder.stage_cache import StageCache, StageDir
from xorder.checkpoint import best_backbone
from xorder.throughput import summarize
from xorder.train import Cadence, Hooks, train_stage

log = logging.getLogger("xorder")


def build_accelerator(cfg: XorderConfig, project_dir: str) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.utils import GradientAccumulationPlugin

    precision, source = distributed.resolve_precision(cfg.trainer.precision)
    fsdp.check_request()
    accelerator = Accelerator(
        cpu=distributed.cpu_backend(),
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True),  # heads of other tasks sit idle per batch
            InitProcessGroupKwargs(timeout=distributed.GROUP_TIMEOUT),
        ],
        log_with=list(cfg.trainer.trackers) or None,
        project_dir=project_dir,
    )
    fsdp.configure(accelerator)  # FSDP asked for through Accelerate, also on CPU processes
    if accelerator.is_main_process:
        log.info("mixed precision: %s (%s); processes: %d (%s)", precision, source, accelerator.num_processes,
                 fsdp.describe(accelerator))
    return accelerator


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
    tracking.check(list(cfg.trainer.trackers))
    accelerator = build_accelerator(cfg, record_dir)
    stages = plan(cfg, accelerator.num_processes)
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)
    if cfg.trainer.trackers:
        tracking.start(accelerator, dcfg)
    advice = advice_for(cfg)
    for line in advice:
        log.warning("%s", line)
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
                        "languages": stage.languages, "steps": summary["steps"], "total_steps": summary["total_steps"],
                        "examples": summary["examples"], "seconds": summary["seconds"],
                        "throughput": summary["throughput"], "reused": reused})
        source, revision = str(cache.dir(stage).model), None
    target = stages[-1]
    summary = cache.summary(target)
    chosen = select(summary["history"], cfg.target.train_language, primary(cfg.target), summary.get("average"))
    metrics = {
        "schema": records.SCHEMA,
        **records.axes(dcfg),
        "primary_metric": primary(cfg.target),
        "scores": {name: sel["scores"] for name, sel in chosen.items()},
        "selected_steps": {name: sel["steps"] for name, sel in chosen.items()},
        "stages": entries,
        "notes": [*advice, *summary.get("notes", []), *_cadence_notes(summary["history"])],
        "provenance": _provenance(accelerator, started, stages_hash(stages)),
    }
    if cfg.trainer.trackers:
        tracking.log_record(accelerator, metrics)
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
    if hp.freeze_embeddings:
        freeze_word_embeddings(backbone)
    model = MultiTaskModel(backbone, stage.heads, data.label_names)
    if stage.is_target:
        hooks = Hooks(_target_score(stage, cfg.target.train_language),
                      f"{cfg.target.train_language} dev {primary(cfg.target)}",
                      on_eval=_write_predictions(folder.evals, accelerator), average=True)
    else:
        hooks = Hooks(_mean_primary, "dev score (primary metric, mean over tasks)", keep_best=hp.patience is not None)
    hooks.stop_requested = distributed.stop_check(accelerator)  # a stop signal: checkpoint, then requeue
    cadence = Cadence(trainer.save_every, trainer.log_every, trainer.eval_batch_size, trainer.num_workers)
    if hp.batch_size == "auto":
        stage = _planned_batch(stage, cfg, model, data, tokenizer, accelerator)
    state = train_stage(stage, data, model, tokenizer, accelerator, folder, hooks, cadence)
    if not stage.is_target:
        state_dict = fsdp.state_dict(accelerator, model)  # every rank: FSDP gathers shards here
        if hooks.keep_best and folder.best.exists():
            state_dict = best_backbone(folder.best)
        if accelerator.is_main_process:
            save_backbone(accelerator.unwrap_model(model), tokenizer, folder.model, state_dict)
    speed = summarize(state.examples, state.tokens, state.padded, state.seconds,
                      state.seconds - state.eval_seconds, accelerator.num_processes, backbone, accelerator.device,
                      accelerator.mixed_precision)
    accelerator.free_memory()
    return {
        "name": stage.name, "hash": stage.hash, "tasks": sorted(stage.heads), "languages": stage.languages,
        "steps": state.step, "total_steps": state.total_steps, "seconds": round(state.seconds, 3),
        "examples": state.examples, "tokens": state.tokens, "throughput": asdict(speed),
        "best_step": state.best_step, "best_score": state.best_score, "stopped_early": state.stopped_early,
        "hparams": asdict(stage.hparams), "losses": state.losses, "history": state.history, "average": state.average,
        "label_names": data.label_names, "notes": data.notes, "processes": accelerator.num_processes,
        "distributed": fsdp.describe(accelerator), "precision": accelerator.mixed_precision,
    }


def _planned_batch(stage: StageSpec, cfg: XorderConfig, model: Any, data: Any, tokenizer: Any,
                   accelerator: Any) -> StageSpec:
    """The stage with batch_size=auto turned into the micro-batch and accumulation this device trains it with
    (its hash, which covers the effective batch, is unchanged)."""
    hp = stage.hparams
    assert hp.effective_batch is not None
    key = [cfg.model.path, sorted(ts.task.kind for ts in data.train), hp.max_length, hp.freeze_embeddings]
    probe = batch_plan.longest_rows_probe(model, data.train, tokenizer, accelerator.device)
    micro, accumulation = batch_plan.plan(hp.effective_batch, accelerator, key, cfg.cache_dir, probe)
    return replace(stage, hparams=replace(hp, batch_size=micro, grad_accum=accumulation))


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


def _write_predictions(folder: Path, accelerator: Any) -> Callable[[str, list[EvalResult]], None]:
    """Each evaluation's predictions as evals/<tag>.parquet (tag: step<N> or average)."""

    def write(tag: str, results: list[EvalResult]) -> None:
        if not accelerator.is_main_process:
            return
        import pandas as pd

        frames = [pd.DataFrame({"split": r.split, "language": r.language, "id": r.ids, "gold": r.gold,
                                "prediction": r.prediction}) for r in results]
        frame = pd.concat(frames, ignore_index=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{tag}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(folder / f"{tag}.parquet")

    return write


def _write_record(record_dir: Path, dcfg: DictConfig, metrics: dict[str, Any], evals: Path,
                  chosen: dict[str, dict[str, Any]]) -> None:
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
    metrics["notes"] = [*metrics.get("notes", []), *_constant_predictions(predictions)]
    buffer = io.BytesIO()
    predictions.to_parquet(buffer, index=False)
    write_atomic(record_dir / records.PREDICTIONS, buffer.getvalue())
    write_atomic(record_dir / records.CONFIG, OmegaConf.to_yaml(records.science_config(dcfg)))
    metrics["files"] = records.file_digests(record_dir)
    write_json(record_dir / records.METRICS, metrics)


def _cadence_notes(history: list[dict[str, Any]]) -> list[str]:
    """A target evaluated once has one checkpoint: its selections cannot differ, whatever the tables suggest."""
    if len(history) >= 2:
        return []
    note = (f"the target was evaluated {len(history)} time(s): en_dev, oracle, last and average are the same "
            "checkpoint (set target.evaluations, or a smaller trainer.eval_every)")
    log.warning("%s", note)
    return [note]


def _constant_predictions(predictions: Any) -> list[str]:
    """Notes (and warnings) for zero-shot predictions that are one value for every example: a model that
    learned nothing there, whatever its accuracy says."""
    notes = []
    chosen = predictions[predictions["selection"] == "en_dev"]
    for (split, language), part in chosen.groupby(["split", "language"], sort=True):
        if len(part) > 1 and part["prediction"].astype(str).nunique() == 1:
            notes.append(f"{split}/{language}: every en_dev prediction is {part['prediction'].iloc[0]} (a constant "
                         "prediction: the model learned nothing there)")
    for note in notes:
        log.warning("%s", note)
    return notes


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
        "distributed": fsdp.describe(accelerator),  # FSDP, DDP or none
        "precision": accelerator.mixed_precision,
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPUs a parallel cell was pinned to
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
