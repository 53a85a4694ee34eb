"""One study cell, start to end: plan -> stages (cached) -> target -> selections -> run record."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from xorder import console, records
from xorder.advice import learning_rates as advice_for
from xorder.cell import CellIdentity
from xorder.config import XorderConfig
from xorder.data.fetch import validate
from xorder.data.identity import plan_cell, unpinned
from xorder.data.stage import DataSettings, check_unseen, prepare
from xorder.encoders.base_model import resolve_path
from xorder.errors import XorderError
from xorder.kinds.metrics import check_external
from xorder.pipeline import batch_plan, record_writer, tracking
from xorder.pipeline.checkpoint import best_backbone
from xorder.pipeline.evaluate import EvalResult, landing, primary, select
from xorder.pipeline.model import (
    MultiTaskModel,
    compile_encoder,
    freeze_word_embeddings,
    length_range,
    load_backbone,
    load_tokenizer,
    pad_multiple,
    save_backbone,
    save_target,
)
from xorder.pipeline.stage_cache import StageCache, StageDir, StageSummary
from xorder.pipeline.throughput import summarize
from xorder.pipeline.train import Cadence, Hooks, train_stage
from xorder.plan import StageSpec, stages_hash
from xorder.runtime import distributed, fsdp
from xorder.runtime.precision import resolve_precision

log = logging.getLogger("xorder")
TARGET_SCRATCH = ".target"  # in the record directory: the target stage of a cell whose model is saved


def build_accelerator(cfg: XorderConfig, project_dir: str) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, ProjectConfiguration

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
        project_config=ProjectConfiguration(project_dir=project_dir, logging_dir=str(Path(project_dir, tracking.RUNS))),
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


def run_cell(cell: CellIdentity, record_dir: str) -> dict[str, Any]:
    """Train (or reuse from the stage cache) every stage of one cell and write its record; every process of a
    distributed launch calls it, the main one writes.

    Args:
        cell: the cell's identity (`xorder.cell.identify`), with its typed config (checked by `checks.config`).
        record_dir: the cell's record folder (metrics.json, predictions.parquet, config.yaml go there).

    Returns:
        metrics.json's content: the cell's axes, scores and selected steps per selection, one entry per stage
        (`StageSummary.record_entry`), notes and provenance.

    Raises:
        XorderError: a problem a user can fix (data, lengths, a damaged cache, a stage that cannot be saved), with
            one line saying what to do.
    """
    started = datetime.now(UTC)
    quiet_libraries()
    cfg = cell.config
    tracking.check(list(cfg.trainer.trackers))
    accelerator = build_accelerator(cfg, record_dir)
    stages = plan_cell(cfg, accelerator.num_processes)
    check_external([metric for stage in stages for task in stage.heads.values() for metric in task.metrics])
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)
    for line in unpinned(stages):
        log.warning("%s", line)
    if cfg.trainer.trackers:
        tracking.start(accelerator, cell)
    advice = advice_for(cfg)
    for line in advice:
        log.warning("%s", line)
    cache_dir = str(Path(cfg.cache_dir).expanduser())
    base = resolve_path(cfg.model, cache_dir)
    tokenizer = load_tokenizer(base, cfg.model.revision)
    _check_lengths(stages, cfg.model.name, length_range(base, cfg.model.revision, tokenizer))
    cache = StageCache(Path(cache_dir) / "stages", accelerator)
    log.info("cell %s: %s", cell.path, " -> ".join(f"{s.name}[{s.hash[:8]}]" for s in stages))
    # every file of every stage still to train is checked before any trains; the first of them reads and
    # checks its own data right before it trains, so only the later ones are read ahead
    settings = DataSettings(cache_dir, cfg.data.synthetic_examples)
    with accelerator.main_process_first():
        validate(cfg, [s for s in stages if not cache.dir(s).is_complete()][1:])
        if not cache.dir(stages[-1]).is_complete():
            check_unseen(stages, settings)  # a target that would evaluate on another stage's data: before any trains

    source, revision = base, cfg.model.revision
    target = stages[-1]
    saving = cfg.trainer.save_target_model
    # a target whose model is saved trains beside the record, never from the cache (whose copy kept no weights)
    target_dir = StageDir(Path(record_dir) / TARGET_SCRATCH) if saving else cache.dir(target)
    entries: list[dict[str, Any]] = []
    for stage in stages:
        begin = time.time()
        export = Path(record_dir) / records.TARGET_MODEL if saving and stage is target else None
        offset = sum(e["steps"] for e in entries)
        train = partial(
            _train, stage, stages[: stage.index], cfg, source, revision, tokenizer, accelerator, offset, export
        )
        summary, reused = (_train_in(target_dir, train, accelerator), False) if export else cache.obtain(stage, train)
        log.info(
            "stage %s [%s]: %s in %.1fs",
            stage.name,
            stage.hash[:8],
            "reused" if reused else "trained",
            time.time() - begin,
        )
        entries.append(summary.record_entry(reused, records.data_entries(stage)))
        source, revision = str(cache.dir(stage).model), None
    chosen = select(summary.history, cfg.target.train_language, primary(cfg.target), summary.average)
    metrics = {
        "schema": records.SCHEMA,
        **cell.axes(),
        "primary_metric": primary(cfg.target),
        "scores": {name: sel["scores"] for name, sel in chosen.items()},
        "selected_steps": {name: sel["steps"] for name, sel in chosen.items()},
        "stages": entries,
        "notes": [
            *advice,
            *summary.notes,
            *record_writer.cadence_notes(summary.history),
            *record_writer.learning_notes(entries),
        ],
        "provenance": record_writer.provenance(accelerator, started, stages_hash(stages), cfg.model.path),
    }
    if saving:
        selection = cfg.trainer.target_model_selection
        step = next(step for langs in chosen[selection]["steps"].values() for step in langs.values())
        saved = summary.target_model or {}  # the main process saved it
        metrics[records.TARGET_MODEL] = {**saved, "selection": selection, "step": step}
    if cfg.trainer.trackers:
        tracking.log_record(accelerator, metrics)
    if accelerator.is_main_process:
        record_writer.write_record(Path(record_dir), cell, metrics, target_dir.evals, chosen)
        if saving:
            shutil.rmtree(target_dir.root, ignore_errors=True)
        console.say(record_writer.summary_table(metrics))
        console.say(f"record: {Path(record_dir) / records.METRICS}")
        for note in metrics["notes"]:  # the last word on the console: what the table alone does not say
            log.warning("note: %s", note)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


_LENGTH_KEYS = {"target": "target", "mlm": "multilingual.text"}  # else task.<name>


def _check_lengths(stages: list[StageSpec], model: str, valid: tuple[int, int]) -> None:
    """Every max_length a stage reads its rows with (a task's own, else the trainer's) within what the model takes,
    before anything is trained: too short silently trains untruncated, too long fails on the first long row."""
    low, high = valid
    for stage in stages:
        for comp in stage.components:
            value = comp.task.max_length or stage.hparams.max_length
            if not low <= value <= high:
                where = _LENGTH_KEYS.get(comp.variant, f"task.{comp.task.name}")
                key = f"{where}.max_length" if comp.task.max_length else "trainer.max_length"
                raise XorderError(
                    f"{key}={value} is invalid: model {model} takes {low} to {high} tokens per row ({low - 2} special "
                    f"tokens of a text pair and one token of each text, up to its {high} positions)"
                )


def _train(
    stage: StageSpec,
    earlier: list[StageSpec],
    cfg: XorderConfig,
    source: str,
    revision: str | None,
    tokenizer: Any,
    accelerator: Any,
    step_offset: int,
    export: Path | None,
    folder: StageDir,
) -> StageSummary:
    """Train one stage in `folder`; `export`: where the target's selected model goes as a Hugging Face folder."""
    from accelerate.utils import set_seed

    set_seed(stage.seed)
    hp, trainer = stage.hparams, cfg.trainer
    settings = DataSettings(str(Path(cfg.cache_dir).expanduser()), cfg.data.synthetic_examples)
    with accelerator.main_process_first():
        data = prepare(stage, tokenizer, settings, earlier)
    backbone = load_backbone(source, revision, hp.attention)
    if hp.freeze_embeddings:
        freeze_word_embeddings(backbone)
    model = MultiTaskModel(backbone, stage.heads, data.label_names)
    if stage.is_target:
        language = cfg.target.train_language
        hooks = Hooks(
            _target_score(stage, language),
            f"{language} dev {primary(cfg.target)}",
            learns_on=lambda split, lang: split == "dev" and lang == language,  # the selection set
            on_eval=record_writer.prediction_writer(folder.evals, accelerator),
            average=True,
            keep=cfg.trainer.target_model_selection if export else None,
            landing=None
            if trainer.test_every_eval
            else partial(landing, train_language=cfg.target.train_language, primary_metric=primary(cfg.target)),
        )
    else:
        hooks = Hooks(_mean_primary, "dev score (primary metric, mean over tasks)", keep_best=hp.patience is not None)
    hooks.stop_requested = distributed.stop_check(accelerator)  # a stop signal: checkpoint, then requeue
    cadence = Cadence(trainer.save_every, trainer.log_every, trainer.eval_batch_size, trainer.num_workers, step_offset)
    if hp.batch_size == "auto":
        stage = _planned_batch(stage, cfg, model, data, tokenizer, accelerator)
    if hp.compile is not None:  # after planning: the probe's many batch sizes would each be a CUDA graph
        compile_encoder(backbone, hp.compile)
    state = train_stage(stage, data, model, tokenizer, accelerator, folder, hooks, cadence)
    # the weights the stage hands on: its best evaluation's (kept best weights; the target's en_dev choice), else
    # its last
    kept = state.best_step if state.best_step >= 0 and (stage.is_target or hooks.keep_best) else state.step
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
    saved = None
    if export is not None and accelerator.is_main_process:
        if not folder.best.exists():
            raise XorderError(
                f"no evaluation on {cfg.target.train_language} dev chose a target checkpoint to save: set "
                "trainer.target_model_selection=last or average"
            )
        head = next(iter(stage.heads))
        auto = save_target(
            accelerator.unwrap_model(model), head, data.label_names[head], tokenizer, best_backbone(folder.best), export
        )
        saved = {"path": records.TARGET_MODEL, "auto_class": auto}
    accelerator.free_memory()
    return StageSummary(
        name=stage.name,
        hash=stage.hash,
        tasks=sorted(stage.heads),
        languages=stage.languages,
        steps=state.step,
        total_steps=state.total_steps,
        seconds=round(state.seconds, 3),
        examples=state.examples,
        evaluated=state.evaluated,
        tokens=state.tokens,
        throughput=asdict(speed),
        best_step=state.best_step,
        best_score=state.best_score,
        stopped_early=state.stopped_early,
        hparams=asdict(stage.hparams),
        losses=state.losses,
        history=state.history,
        learning=next((e["learning"] for e in state.history if e["step"] == kept), {}),
        average=state.average,
        label_names=data.label_names,
        notes=data.notes,
        processes=accelerator.num_processes,
        distributed=fsdp.describe(accelerator),
        precision=accelerator.mixed_precision,
        target_model=saved,
    )


def _train_in(folder: StageDir, train: Callable[[StageDir], StageSummary], accelerator: Any) -> StageSummary:
    """A stage trained in a folder of its own, outside the stage cache (resumable there like any stage)."""
    if accelerator.is_main_process:
        folder.root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return train(folder)


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
