"""The one Accelerate training loop, for every head kind and for multi-task stages.

AdamW with linear warmup and decay, gradient clipping and accumulation, mixed precision, dynamically padded
length-grouped batches, a seeded choice of task per batch (proportional, tempered or uniform), evaluation
every N optimizer steps, early stopping with patience, and a resumable checkpoint every M steps: a process
killed mid-stage continues from its last checkpoint and draws exactly the batches it would have drawn."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from xorder.data.batching import Collator, LengthGroupedBatchSampler, sampling_weights
from xorder.data.stage import StageData
from xorder.errors import Preempted
from xorder.evaluate import EvalResult, predict
from xorder.fileio import swap_dir
from xorder.plan import StageHParams, StageSpec
from xorder.stage_cache import StageDir

log = logging.getLogger("xorder")

LOOP_STATE = "loop.json"


@dataclass
class LoopState:
    step: int = 0
    total_steps: int = 0
    epochs: dict[str, int] = field(default_factory=dict)  # per training set: current epoch
    consumed: dict[str, int] = field(default_factory=dict)  # per training set: batches drawn this epoch
    rng: dict[str, Any] | None = None  # the task sampler's generator state
    best_score: float | None = None
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    examples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def mixed_precision(precision: str) -> str:
    """`auto`: bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _own_generator(seed: int) -> torch.Generator:
    """Each new iterator over a DataLoader draws a seed from its generator; with the global one, a resumed
    run (which opens its iterators at another moment) would see different dropout masks afterwards."""
    return torch.Generator().manual_seed(seed)


def _optimizer(model: torch.nn.Module, hp: StageHParams) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, eps=hp.adam_epsilon)


class _Streams:
    """One endless stream of batches per training set, positioned by (epoch, batches consumed)."""

    def __init__(self, loaders: dict[str, DataLoader], samplers: dict[str, LengthGroupedBatchSampler],
                 state: LoopState, accelerator: Any) -> None:
        self.loaders, self.samplers, self.state, self.accelerator = loaders, samplers, state, accelerator
        self.iterators: dict[str, Any] = {}

    def _start(self, name: str) -> None:
        epoch = self.state.epochs.setdefault(name, 0)
        skip = self.state.consumed.setdefault(name, 0)
        loader = self.accelerator.skip_first_batches(self.loaders[name], skip) if skip else self.loaders[name]
        # the sampler itself holds the epoch: Accelerate's wrappers do not always pass set_epoch through
        self.samplers[name].set_epoch(epoch)
        loader.set_epoch(epoch)
        self.iterators[name] = iter(loader)

    def next(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self.iterators:
            self._start(name)
        try:
            batch = next(self.iterators[name])
        except StopIteration:
            self.state.epochs[name] += 1
            self.state.consumed[name] = 0
            self._start(name)
            batch = next(self.iterators[name])
        self.state.consumed[name] += 1
        return batch


def train_stage(
    stage: StageSpec,
    data: StageData,
    model: torch.nn.Module,
    tokenizer: Any,
    accelerator: Any,
    folder: StageDir,
    *,
    score_of: Callable[[list[EvalResult]], float | None],
    on_eval: Callable[[int, list[EvalResult]], None] | None = None,
    keep_best: bool = False,
    save_every: int = 1000,
    log_every: int = 50,
    eval_batch_size: int = 64,
    num_workers: int = 0,
    stop_requested: Callable[[], bool] | None = None,
) -> LoopState:
    """Train one stage in `folder` (resuming from its checkpoint if one is there); returns the loop state.
    With `keep_best`, the weights of the best evaluation are in folder.best when it returns. `stop_requested`
    (asked every `log_every` steps, on every rank) makes the loop save a checkpoint and raise `Preempted`."""
    from transformers import get_linear_schedule_with_warmup

    hp = stage.hparams
    state = _load_loop_state(folder.checkpoint)
    resumed = state is not None
    state = state or LoopState()

    samplers = {ts.name: LengthGroupedBatchSampler(list(ts.features["length"]), hp.batch_size, stage.seed,
                                                   hp.group_by_length) for ts in data.train}
    loaders = {
        ts.name: DataLoader(ts.features, batch_sampler=samplers[ts.name], num_workers=num_workers,
                            collate_fn=Collator(ts.kind, tokenizer, ts.mlm_probability),
                            generator=_own_generator(stage.seed))
        for ts in data.train
    }
    eval_loaders = [
        DataLoader(
            ev.features, num_workers=num_workers,
            batch_sampler=LengthGroupedBatchSampler(list(ev.features["length"]), eval_batch_size, 0, shuffle=False),
            collate_fn=Collator(ev.kind, tokenizer, ev.mlm_probability), generator=_own_generator(0),
        )
        for ev in data.evals
    ]
    accelerator.gradient_accumulation_steps = hp.grad_accum
    if accelerator.ddp_handler is not None:  # only a multi-task stage leaves heads idle in a batch
        accelerator.ddp_handler.find_unused_parameters = len({ts.head for ts in data.train}) > 1
    model = accelerator.prepare(model)  # before the optimizer sees its parameters, as FSDP needs
    optimizer = accelerator.prepare(_optimizer(model, hp))
    prepared = accelerator.prepare(*loaders.values(), *eval_loaders)
    prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
    loaders = dict(zip(loaders, prepared[: len(loaders)]))
    eval_loaders = list(prepared[len(loaders):])

    names = list(loaders)
    heads = {ts.name: ts.head for ts in data.train}
    micro_per_epoch = sum(len(loader) for loader in loaders.values())
    ga = hp.grad_accum
    total = math.ceil(hp.epochs * micro_per_epoch / ga)
    if hp.max_steps is not None:
        total = min(total, hp.max_steps)
    total = max(total, 1)
    state.total_steps = total
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
    weights = sampling_weights([len(ts.features) for ts in data.train], hp.sampling, hp.sampling_temperature)
    rng = np.random.default_rng(stage.seed)
    if resumed:
        accelerator.load_state(str(folder.checkpoint))
        scheduler.load_state_dict(torch.load(folder.checkpoint / "scheduler.pt", weights_only=True))
        rng.bit_generator.state = state.rng
        log.info("stage %s: resuming at step %d of %d", stage.name, state.step, total)
    streams = _Streams(loaders, samplers, state, accelerator)

    eval_every = hp.eval_every
    patience = hp.patience
    model.train()
    started = time.time() - state.seconds
    losses: list[float] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state.step, desc=f"{stage.name} [{stage.hash[:8]}]", unit="step",
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    while state.step < total and not state.stopped_early:
        for _ in range(ga):
            name = names[int(rng.choice(len(names), p=weights))] if len(names) > 1 else names[0]
            batch = streams.next(name)
            batch.pop("row")
            with accelerator.accumulate(model):
                loss, _ = model(heads[name], batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and hp.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(float(loss.detach()))
            state.examples += int(batch["input_ids"].shape[0])
        scheduler.step()
        state.step += 1
        bar.update(1)
        if state.step % log_every == 0 or state.step == total:
            mean_loss = float(np.mean(losses)) if losses else float("nan")
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            log.info("stage %s step %d/%d loss %.4f lr %.2e", stage.name, state.step, total, mean_loss,
                     scheduler.get_last_lr()[0])
            accelerator.log({f"{stage.name}/loss": mean_loss, f"{stage.name}/lr": scheduler.get_last_lr()[0]},
                            step=state.step)
            losses = []
        if state.step % eval_every == 0 or state.step == total:
            _evaluate(stage, data, eval_loaders, model, accelerator, state, score_of, on_eval, keep_best, folder,
                      patience)
        state.seconds = time.time() - started
        if state.step % save_every == 0 and state.step < total and not state.stopped_early:
            state.rng = rng.bit_generator.state
            _save_checkpoint(accelerator, scheduler, state, folder.checkpoint)
        if stop_requested is not None and state.step % log_every == 0 and state.step < total and stop_requested():
            if state.step % save_every != 0:
                state.rng = rng.bit_generator.state
                _save_checkpoint(accelerator, scheduler, state, folder.checkpoint)
            bar.close()
            raise Preempted(f"stage {stage.name} stopped at step {state.step} of {total} on request; "
                            f"its checkpoint is in {folder.checkpoint}")
    bar.close()
    state.seconds = time.time() - started
    return state


def _evaluate(stage: StageSpec, data: StageData, loaders: list[Any], model: torch.nn.Module, accelerator: Any,
              state: LoopState, score_of: Callable[[list[EvalResult]], float | None],
              on_eval: Callable[[int, list[EvalResult]], None] | None, keep_best: bool, folder: StageDir,
              patience: int | None) -> None:
    results = [predict(model, ev, loader, accelerator) for ev, loader in zip(data.evals, loaders)]
    score = score_of(results)
    entry = {"step": state.step, "score": score,
             "scores": _nest([(r.split, r.language, r.head, r.metrics) for r in results])}
    state.history.append(entry)
    if on_eval is not None:
        on_eval(state.step, results)
    log.info("stage %s step %d: eval score %s", stage.name, state.step, "n/a" if score is None else f"{score:.2f}")
    if score is None:
        return
    accelerator.log({f"{stage.name}/eval_score": score}, step=state.step)
    if state.best_score is None or score > state.best_score:
        state.best_score, state.best_step, state.bad_evals = score, state.step, 0
        if keep_best:
            _save_best(model, accelerator, folder.best)
    else:
        state.bad_evals += 1
        if patience is not None and state.bad_evals >= patience:
            state.stopped_early = True
            log.info("stage %s: no improvement in %d evaluations, stopping at step %d", stage.name, patience, state.step)


def _nest(items: list[tuple[str, str, str, dict[str, float]]]) -> dict[str, Any]:
    """[(split, lang, head, metrics)] -> {split: {lang: metrics}} (heads of a multi-task stage: head/lang)."""
    heads = {head for _, _, head, _ in items}
    out: dict[str, Any] = {}
    for split, lang, head, values in items:
        key = lang if len(heads) == 1 else f"{head}/{lang}"
        out.setdefault(split, {})[key] = values
    return out


def _save_best(model: torch.nn.Module, accelerator: Any, path: Path) -> None:
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({k: v for k, v in state_dict.items() if k.startswith("backbone.")}, tmp / "backbone.pt")
        swap_dir(tmp, path)
    accelerator.wait_for_everyone()


def best_backbone(path: Path) -> dict[str, torch.Tensor]:
    """The backbone weights saved at the best evaluation (keys start with 'backbone.')."""
    return torch.load(path / "backbone.pt", map_location="cpu", weights_only=True)


def _save_checkpoint(accelerator: Any, scheduler: Any, state: LoopState, checkpoint: Path) -> None:
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's RNG state is in tmp before it is renamed
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / LOOP_STATE).write_text(json.dumps(asdict(state)))
        swap_dir(tmp, checkpoint)
    accelerator.wait_for_everyone()


def _load_loop_state(checkpoint: Path) -> LoopState | None:
    path = checkpoint / LOOP_STATE
    if not path.is_file():
        return None
    return LoopState(**json.loads(path.read_text()))
