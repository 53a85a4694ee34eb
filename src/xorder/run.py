"""One study cell, start to end: plan -> stages (cached) -> target -> selections -> run record."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from xorder import batch_plan, cell_record, distributed, fsdp, records, tracking
from xorder.advice import learning_rates as advice_for
from xorder.checkpoint import best_backbone
from xorder.config import XorderConfig
from xorder.data.fetch import validate
from xorder.data.stage import DataSettings, prepare
from xorder.evaluate import EvalResult, primary, select
from xorder.model import (
    MultiTaskModel,
    compile_encoder,
    freeze_word_embeddings,
    load_backbone,
    load_tokenizer,
    pad_multiple,
    resolve_path,
    save_backbone,
)
from xorder.plan import StageSpec, plan, stages_hash, to_typed
from xorder.precision import resolve_precision
from xorder.stage_cache import StageCache, StageDir
from xorder.throughput import summarize
from xorder.train import Cadence, Hooks, train_stage

log = logging.getLogger("xorder")


def build_accelerator(cfg: XorderConfig, project_dir: str) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    precision, source = resolve_precision(cfg.trainer.precision)
    fsdp.check_request()
    accelerator = Accelerator(
        cpu=distributed.cpu_backend(),
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False),
        # batches go to the GPU from pinned memory without waiting for it (train._loaders pins them there)
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True),  # heads of other tasks sit idle per batch
            InitProcessGroupKwargs(timeout=distributed.GROUP_TIMEOUT),
        ],
        log_with=list(cfg.trainer.trackers) or None,
        project_dir=project_dir,
    )
    fsdp.configure(accelerator)  # FSDP asked for through Accelerate, also on CPU processes
    if accelerator.is_main_process:
        log.info(
            "mixed precision: %s (%s); processes: %d (%s)",
            precision,
            source,
            accelerator.num_processes,
            fsdp.describe(accelerator),
        )
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
    started = datetime.now(UTC)
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
            stage,
            partial(_train, stage, cfg, source, revision, tokenizer, accelerator),
        )
        log.info(
            "stage %s [%s]: %s in %.1fs",
            stage.name,
            stage.hash[:8],
            "reused" if reused else "trained",
            time.time() - begin,
        )
        entries.append(
            {
                "name": stage.name,
                "hash": stage.hash,
                "tasks": sorted(stage.heads),
                "languages": stage.languages,
                "steps": summary["steps"],
                "total_steps": summary["total_steps"],
                "examples": summary["examples"],
                "seconds": summary["seconds"],
                "throughput": summary["throughput"],
                "reused": reused,
            }
        )
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
        "notes": [*advice, *summary.get("notes", []), *cell_record.cadence_notes(summary["history"])],
        "provenance": cell_record.provenance(accelerator, started, stages_hash(stages)),
    }
    if cfg.trainer.trackers:
        tracking.log_record(accelerator, metrics)
    if accelerator.is_main_process:
        cell_record.write_record(Path(record_dir), dcfg, metrics, cache.dir(target).evals, chosen)
        print(cell_record.summary_table(metrics))
        print(f"record: {Path(record_dir) / records.METRICS}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _train(
    stage: StageSpec,
    cfg: XorderConfig,
    source: str,
    revision: str | None,
    tokenizer: Any,
    accelerator: Any,
    folder: StageDir,
) -> dict[str, Any]:
    from accelerate.utils import set_seed

    set_seed(stage.seed)
    hp, trainer = stage.hparams, cfg.trainer
    settings = DataSettings(str(Path(cfg.cache_dir).expanduser()), cfg.data.synthetic_examples)
    with accelerator.main_process_first():
        data = prepare(stage, tokenizer, settings)
    backbone = load_backbone(source, revision, hp.attention)
    if hp.freeze_embeddings:
        freeze_word_embeddings(backbone)
    model = MultiTaskModel(backbone, stage.heads, data.label_names)
    if stage.is_target:
        hooks = Hooks(
            _target_score(stage, cfg.target.train_language),
            f"{cfg.target.train_language} dev {primary(cfg.target)}",
            on_eval=cell_record.prediction_writer(folder.evals, accelerator),
            average=True,
        )
    else:
        hooks = Hooks(_mean_primary, "dev score (primary metric, mean over tasks)", keep_best=hp.patience is not None)
    hooks.stop_requested = distributed.stop_check(accelerator)  # a stop signal: checkpoint, then requeue
    cadence = Cadence(trainer.save_every, trainer.log_every, trainer.eval_batch_size, trainer.num_workers)
    if hp.batch_size == "auto":
        stage = _planned_batch(stage, cfg, model, data, tokenizer, accelerator)
    if hp.compile is not None:  # after planning: the probe's many batch sizes would each be a CUDA graph
        compile_encoder(backbone, hp.compile)
    state = train_stage(stage, data, model, tokenizer, accelerator, folder, hooks, cadence)
    if not stage.is_target:
        state_dict = fsdp.state_dict(accelerator, model)  # every rank: FSDP gathers shards here
        if hooks.keep_best and folder.best.exists():
            state_dict = best_backbone(folder.best)
        if accelerator.is_main_process:
            save_backbone(accelerator.unwrap_model(model), tokenizer, folder.model, state_dict)
    speed = summarize(
        state.examples,
        state.tokens,
        state.padded,
        state.seconds,
        state.seconds - state.eval_seconds,
        accelerator.num_processes,
        backbone,
        accelerator.device,
        accelerator.mixed_precision,
        state.warm,
    )
    accelerator.free_memory()
    return {
        "name": stage.name,
        "hash": stage.hash,
        "tasks": sorted(stage.heads),
        "languages": stage.languages,
        "steps": state.step,
        "total_steps": state.total_steps,
        "seconds": round(state.seconds, 3),
        "examples": state.examples,
        "tokens": state.tokens,
        "throughput": asdict(speed),
        "best_step": state.best_step,
        "best_score": state.best_score,
        "stopped_early": state.stopped_early,
        "hparams": asdict(stage.hparams),
        "losses": state.losses,
        "history": state.history,
        "average": state.average,
        "label_names": data.label_names,
        "notes": data.notes,
        "processes": accelerator.num_processes,
        "distributed": fsdp.describe(accelerator),
        "precision": accelerator.mixed_precision,
    }


def _planned_batch(
    stage: StageSpec, cfg: XorderConfig, model: Any, data: Any, tokenizer: Any, accelerator: Any
) -> StageSpec:
    """The stage with batch_size=auto turned into the micro-batch and accumulation this device trains it with
    (its hash, which covers the effective batch, is unchanged)."""
    hp = stage.hparams
    assert hp.effective_batch is not None
    key = [cfg.model.path, sorted(ts.task.kind for ts in data.train), hp.max_length, hp.freeze_embeddings]
    probe = batch_plan.longest_rows_probe(model, data.train, tokenizer, accelerator.device, pad_multiple(hp.compile))
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
