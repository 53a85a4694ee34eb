"""The one Accelerate training loop, for every head kind and for multi-task stages.

AdamW (fused where the device has the kernel) with linear warmup and decay, gradient clipping and accumulation,
mixed precision, dynamically padded length-grouped batches, a seeded choice of task per batch (proportional,
tempered or uniform), evaluation every N optimizer steps, early stopping with patience, a resumable checkpoint
every M steps (a process killed mid-stage continues from its last checkpoint and draws exactly the batches it
would have drawn), and for the target the average of its evaluated checkpoints.

The loop synchronises with the device only where it must read something: at logging, evaluation and checkpoint
points. There it also checks that every loss and gradient norm since the last look was finite: a diverged stage
stops with the step and the likely cause, before anything of it is saved or scored."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from xorder.data.batching import Collator, LengthGroupedBatchSampler
from xorder.data.stage import StageData
from xorder.errors import Preempted, XorderError
from xorder.pipeline import checkpoint, optim, tracking
from xorder.pipeline.checkpoint import Averager
from xorder.pipeline.evaluate import EvalResult, learning, nest, nest_key, predict
from xorder.pipeline.model import pad_multiple
from xorder.pipeline.stage_cache import StageDir
from xorder.pipeline.throughput import Meter
from xorder.plan import StageSpec
from xorder.runtime import fsdp

log = logging.getLogger("xorder")


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
    seconds: float = 0.0  # the whole stage so far
    eval_seconds: float = 0.0  # of which evaluation and checkpoints
    evaluated: int = 0  # examples scored over every evaluation (the average's included)
    examples: int = 0  # on this process
    tokens: int = 0  # real (non-pad) tokens on this process
    padded: int = 0  # tokens including padding on this process
    # [training seconds, examples, real tokens] at the first logging point: the steady rate is measured after it,
    # past compilation, CUDA-graph recording and the allocator's first growth
    warm: list[float] | None = None
    losses: list[list[float]] = field(default_factory=list)  # [step, mean training loss] at every logging point
    history: list[dict[str, Any]] = field(default_factory=list)
    average: dict[str, Any] | None = None  # the target's averaged checkpoint: its evaluation
    # per evaluation set of a kind measured from its start: [gold, prediction] before the first step
    start: dict[str, list[list[Any]]] | None = None


@dataclass
class Hooks:
    """What the caller decides: how an evaluation is scored (and named in logs), which of its results show
    whether the heads learned, what happens with its predictions, whether the best weights are kept, whether the
    target's checkpoints are averaged, which sets beyond dev an evaluation scores, and whether the job was asked to
    stop."""

    score_of: Callable[[list[EvalResult]], float | None]
    score_name: str = "validation score"
    learns_on: Callable[[str, str], bool] = lambda split, language: split == "dev"  # (split, language) of a set
    on_eval: Callable[[str, list[EvalResult]], None] | None = None
    keep_best: bool = False
    average: bool = False
    # the target's: which selection's whole model (heads too) to leave in folder.best (en_dev, last, average)
    keep: str | None = None
    # given the history ending in the newest evaluation's dev scores: the keys (evaluate.nest_key) of the other
    # sets it scores, None for all of them (evaluate.landing). The last evaluation scores every set. None: every
    # evaluation scores every set
    landing: Callable[[list[dict[str, Any]]], set[str] | None] | None = None
    stop_requested: Callable[[], bool] | None = None


@dataclass
class Cadence:
    save_every: int = 1000
    log_every: int = 50
    eval_batch_size: int = 64
    num_workers: int = 0
    step_offset: int = 0  # trackers: the steps of the cell's earlier stages (one cell, one run)


def _own_generator(seed: int) -> torch.Generator:
    """Each new iterator over a DataLoader draws a seed from its generator; with the global one, a resumed
    run (which opens its iterators at another moment) would see different dropout masks afterwards."""
    return torch.Generator().manual_seed(seed)


class _Streams:
    """One endless stream of batches per training set, positioned by (epoch, batches consumed)."""

    def __init__(
        self,
        loaders: dict[str, DataLoader],
        samplers: dict[str, LengthGroupedBatchSampler],
        state: LoopState,
        accelerator: Any,
    ) -> None:
        self.loaders, self.samplers, self.state, self.accelerator = loaders, samplers, state, accelerator
        self.iterators: dict[str, Any] = {}

    def _start(self, name: str) -> None:
        epoch = self.state.epochs.setdefault(name, 0)
        skip = self.state.consumed.setdefault(name, 0)
        loader: Any = self.accelerator.skip_first_batches(self.loaders[name], skip) if skip else self.loaders[name]
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


def _loaders(
    stage: StageSpec, data: StageData, tokenizer: Any, cadence: Cadence, pin: bool = False
) -> tuple[Any, Any, Any]:
    """Samplers, training and evaluation loaders; `pin`: batches in page-locked memory, so that the copy to a GPU
    need not wait for the device (a pageable copy synchronises with it every batch)."""
    batch, multiple = stage.hparams.batch_size, pad_multiple(stage.hparams.compile)
    assert isinstance(batch, int), "batch_size=auto is planned before training (run._planned_batch)"
    samplers = {
        ts.name: LengthGroupedBatchSampler(
            list(ts.features["length"]), batch, stage.seed, stage.hparams.group_by_length
        )
        for ts in data.train
    }
    loaders = {
        ts.name: DataLoader(
            ts.features,
            batch_sampler=samplers[ts.name],
            num_workers=cadence.num_workers,
            collate_fn=Collator(ts.kind, tokenizer, ts.mlm_probability, multiple),
            pin_memory=pin,
            generator=_own_generator(stage.seed),
        )
        for ts in data.train
    }
    evals = [
        DataLoader(
            ev.features,
            num_workers=cadence.num_workers,
            batch_sampler=LengthGroupedBatchSampler(
                list(ev.features["length"]), cadence.eval_batch_size, 0, shuffle=False
            ),
            collate_fn=Collator(ev.kind, tokenizer, ev.mlm_probability, multiple),
            pin_memory=pin,
            generator=_own_generator(0),
        )
        for ev in data.evals
    ]
    return samplers, loaders, evals


def train_stage(
    stage: StageSpec,
    data: StageData,
    model: torch.nn.Module,
    tokenizer: Any,
    accelerator: Any,
    folder: StageDir,
    hooks: Hooks,
    cadence: Cadence,
) -> LoopState:
    """Train one stage in `folder` (resuming from its checkpoint if one is there); returns the loop state.
    With `hooks.keep_best`, the weights of the best evaluation are in folder.best when it returns."""
    from transformers import get_linear_schedule_with_warmup

    hp = stage.hparams
    saved = checkpoint.loop_state(folder.checkpoint)
    state = LoopState(**saved) if saved is not None else LoopState()
    samplers, loaders, eval_loaders = _loaders(stage, data, tokenizer, cadence, accelerator.device.type == "cuda")
    accelerator.gradient_accumulation_steps = hp.grad_accum
    if accelerator.ddp_handler is not None:  # only a multi-task stage leaves heads idle in a batch
        accelerator.ddp_handler.find_unused_parameters = len({ts.head for ts in data.train}) > 1
    # in one call: FSDP2 swaps the optimizer's parameters for the sharded ones
    model, optimizer = accelerator.prepare(model, optim.optimizer(model, hp, accelerator))
    sharded = fsdp.active(accelerator)
    if sharded:
        fsdp.prime_adamw(optimizer)
    prepared = accelerator.prepare(*loaders.values(), *eval_loaders)
    prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
    loaders = dict(zip(loaders, prepared[: len(loaders)]))
    eval_loaders = list(prepared[len(loaders) :])

    names = list(loaders)
    heads = {ts.name: ts.head for ts in data.train}
    total, weights = optim.schedule(hp, data, [len(loader) for loader in loaders.values()])
    state.total_steps = total
    eval_every = math.ceil(total / hp.evaluations) if hp.evaluations else hp.eval_every
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
    rng = np.random.default_rng(stage.seed)
    averager = Averager() if hooks.average else None
    if saved is not None:
        checkpoint.load(accelerator, scheduler, averager, folder.checkpoint, folder.best)
        rng.bit_generator.state = state.rng  # type: ignore[assignment]  # saved from this very generator
        log.info("stage %s: resuming at step %d of %d", stage.name, state.step, total)
    streams = _Streams(loaders, samplers, state, accelerator)
    meter = Meter(accelerator.device, state.tokens, state.padded)
    watch_norm = accelerator.mixed_precision != "fp16"  # fp16's loss scaler skips overflowing steps by design
    started = time.time() - state.seconds

    def clock() -> float:
        """Seconds into the stage, across resumptions."""
        return time.time() - started

    run = _Run(stage, data, eval_loaders, model, accelerator, state, hooks, folder, meter, averager, clock)
    run.step_offset = cadence.step_offset
    if saved is None:
        run.evaluate_start()

    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=state.step,
        desc=f"{stage.name} [{stage.hash[:8]}]",
        unit="step",
        disable=not (accelerator.is_local_main_process and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    while state.step < total and not state.stopped_early:
        for _ in range(hp.grad_accum):
            name = names[int(rng.choice(len(names), p=weights))] if len(names) > 1 else names[0]
            batch = streams.next(name)
            batch.pop("row")
            with accelerator.accumulate(model):
                loss, _ = model(heads[name], batch)
                accelerator.backward(loss)
                norm = None
                if accelerator.sync_gradients and hp.max_grad_norm:
                    norm = accelerator.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                    norm = fsdp.full(norm) if sharded else norm
                optimizer.step()
                optimizer.zero_grad()
            meter.add(state.step + 1, loss, batch, norm if watch_norm else None)
            state.examples += int(batch["input_ids"].shape[0])
        scheduler.step()
        state.step += 1
        bar.update(1)
        if state.step % cadence.log_every == 0 or state.step == total:
            run.log(scheduler.get_last_lr()[0], bar)
        if state.step % eval_every == 0 or state.step == total:
            run.evaluate()
        state.seconds = clock()
        ask_stop = hooks.stop_requested is not None and state.step % cadence.log_every == 0 and state.step < total
        stopping = ask_stop and hooks.stop_requested()  # type: ignore[misc]
        if (state.step % cadence.save_every == 0 or stopping) and state.step < total and not state.stopped_early:
            run.save(scheduler, rng)
        if stopping:
            bar.close()
            raise Preempted(
                f"stage {stage.name} stopped at step {state.step} of {total} on request; "
                f"its checkpoint is in {folder.checkpoint}"
            )
    bar.close()
    if hooks.keep == "last":  # the weights of the latest evaluation (the loop ends right after it)
        checkpoint.save_best(model, accelerator, folder.best, heads=True)
    if averager is not None:
        run.evaluate_average()
    if hooks.keep == "average":
        checkpoint.save_best(model, accelerator, folder.best, heads=True)
    state.seconds = clock()
    warm = state.warm or [0.0, 0, 0]
    counts = accelerator.reduce(
        torch.tensor([state.examples, state.tokens, meter.padded, *warm[1:]], device=accelerator.device),
        reduction="sum",
    )
    state.examples, state.tokens, state.padded, examples, tokens = (int(x) for x in counts.tolist())
    if state.warm is not None:
        state.warm = [state.warm[0], examples, tokens]  # over every process, as the totals are
    return state


class _Run:
    """The parts of the loop that look at the device's results: logging, evaluation, checkpoints."""

    def __init__(
        self,
        stage: StageSpec,
        data: StageData,
        eval_loaders: list[Any],
        model: torch.nn.Module,
        accelerator: Any,
        state: LoopState,
        hooks: Hooks,
        folder: StageDir,
        meter: Meter,
        averager: Averager | None,
        clock: Callable[[], float],
    ) -> None:
        self.stage, self.data, self.eval_loaders, self.model = stage, data, eval_loaders, model
        self.accelerator, self.state, self.hooks, self.folder = accelerator, state, hooks, folder
        self.meter, self.averager, self.clock = meter, averager, clock
        self.latest: tuple[int, list[EvalResult]] | None = None  # the step and results of the latest evaluation
        self.step_offset = 0  # the cell's steps before this stage (trackers)

    def check(self) -> float | None:
        """Read the meter (one synchronisation); raise if anything diverged since the last look."""
        mean, tokens, first_bad = self.meter.read()
        self.state.tokens = tokens
        if first_bad >= 0:
            hp = self.stage.hparams
            raise XorderError(
                f"stage {self.stage.name} [{self.stage.hash[:8]}] diverged: the training loss or gradient norm "
                f"became NaN or infinite at step {first_bad} of {self.state.total_steps}, most likely because the "
                f"learning rate is too high (lr={hp.lr:g}; pretrained encoders usually train at 1e-5 to 5e-5). "
                f"Nothing after its last checkpoint was kept, and no record was written"
            )
        return mean

    def log(self, lr: float, bar: Any) -> None:
        mean = self.check()
        state = self.state
        if state.warm is None and state.step < state.total_steps:  # the read above waited for the device
            state.warm = [self.clock() - state.eval_seconds, state.examples, state.tokens]
        if mean is None:
            return
        self.state.losses.append([self.state.step, round(mean, 6)])
        bar.set_postfix(loss=f"{mean:.4f}")
        log.info(
            "stage %s step %d/%d: training loss %.4f, lr %.2e",
            self.stage.name,
            self.state.step,
            self.state.total_steps,
            mean,
            lr,
        )
        self.accelerator.log(tracking.train_values(mean, lr), step=self.step_offset + self.state.step)

    @contextlib.contextmanager
    def _off_the_clock(self) -> Iterator[None]:
        """Time spent evaluating, writing predictions, averaging and saving: not training time (throughput)."""
        began = time.time()
        try:
            yield
        finally:
            self.state.eval_seconds += time.time() - began

    def _predict(self, chosen: list[int]) -> list[EvalResult]:
        """Score the evaluation sets at these positions of data.evals."""
        if not chosen:
            return []
        examples = sum(len(self.data.evals[i].examples) for i in chosen)
        self.state.evaluated += examples
        log.info(
            "stage %s step %d: evaluating %d sets (%d examples)",
            self.stage.name,
            self.state.step,
            len(chosen),
            examples,
        )
        return [predict(self.model, self.data.evals[i], self.eval_loaders[i], self.accelerator) for i in chosen]

    def _score_sets(self) -> tuple[float | None, list[tuple[Any, EvalResult]]]:
        """The dev sets first; then, where hooks.landing says a selection may pick this step (and at the last
        evaluation), the others. Returns the validation score and every set scored with its result, in data.evals
        order."""
        state, hooks, evals = self.state, self.hooks, self.data.evals
        lazy = hooks.landing is not None
        first = [i for i, ev in enumerate(evals) if ev.split == "dev" or not lazy]
        scored = dict(zip(first, self._predict(first)))
        score = hooks.score_of(list(scored.values()))
        self._judge(score)
        if lazy:
            assert hooks.landing is not None
            dev = {"step": state.step, "score": score, "scores": _nested(list(scored.values()))}
            final = state.step == state.total_steps or state.stopped_early
            where = None if final else hooks.landing([*state.history, dev])
            heads = {ev.head for ev in evals}
            rest = [
                i
                for i, ev in enumerate(evals)
                if i not in scored and (where is None or nest_key(ev.head, ev.language, heads) in where)
            ]
            scored.update(zip(rest, self._predict(rest)))
        return score, [(evals[i], scored[i]) for i in sorted(scored)]

    def evaluate(self) -> None:
        self.check()
        with self._off_the_clock():
            self._evaluate()

    def evaluate_start(self) -> None:
        """Before the first step, the dev sets of kinds whose learning test compares the stage's end with its
        start (MLM: the dev loss at step 0)."""
        chosen = [
            (ev, loader)
            for ev, loader in zip(self.data.evals, self.eval_loaders)
            if ev.kind.measured_from_start and self.hooks.learns_on(ev.split, ev.language)
        ]
        if not chosen:
            return
        with self._off_the_clock():
            log.info("stage %s: evaluating %d sets before the first step", self.stage.name, len(chosen))
            results = [predict(self.model, ev, loader, self.accelerator) for ev, loader in chosen]
        self.state.start = {ev.key: [r.gold, r.prediction] for (ev, _), r in zip(chosen, results)}

    def _evaluate(self) -> None:
        state, hooks = self.state, self.hooks
        score, pairs = self._score_sets()
        results = [r for _, r in pairs]
        self.latest = (state.step, results)
        scores = _nested(results)
        kept = [(ev, r) for ev, r in pairs if hooks.learns_on(r.split, r.language)]
        state.history.append(
            {"step": state.step, "score": score, "scores": scores, "learning": learning(kept, state.start)}
        )
        if hooks.on_eval is not None:
            hooks.on_eval(f"step{state.step}", results)
        if self.averager is not None:
            self.averager.add(self.model, self.accelerator)
        log.info(
            "stage %s step %d: %s %s",
            self.stage.name,
            state.step,
            hooks.score_name,
            "n/a" if score is None else f"{score:.2f}",
        )
        self.accelerator.log(
            tracking.eval_values(self.stage.name, self.stage.is_target, scores),
            step=self.step_offset + state.step,
        )
        if (hooks.keep_best or hooks.keep == "en_dev") and state.best_step == state.step:  # a new best (_judge)
            checkpoint.save_best(self.model, self.accelerator, self.folder.best, heads=hooks.keep is not None)

    def _judge(self, score: float | None) -> None:
        """Is this evaluation the best yet, and has patience run out?"""
        state = self.state
        if score is None:
            return
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_step, state.bad_evals = score, state.step, 0
        else:
            state.bad_evals += 1
            patience = self.stage.hparams.patience
            if patience is not None and state.bad_evals >= patience:
                state.stopped_early = True
                log.info(
                    "stage %s: no improvement in %d evaluations, stopping at step %d",
                    self.stage.name,
                    patience,
                    state.step,
                )

    def evaluate_average(self) -> None:
        """Evaluate the mean of the weights of every evaluated checkpoint (the target's `average` selection)."""
        assert self.averager is not None
        with self._off_the_clock():
            if self.averager.count == 1 and self.latest is not None and self.latest[0] == self.state.step:
                results = self.latest[1]  # the mean of one checkpoint is the model as it stands: no second pass
            else:
                self.averager.apply(self.model, self.accelerator)
                results = self._predict(list(range(len(self.data.evals))))
            if self.hooks.on_eval is not None:
                self.hooks.on_eval("average", results)
        self.state.average = {
            "step": self.state.history[-1]["step"],
            "evaluations": self.averager.count,
            "scores": _nested(results),
        }
        log.info(
            "stage %s: the average of %d evaluated checkpoints scores %s",
            self.stage.name,
            self.averager.count,
            "n/a" if self.hooks.score_of(results) is None else f"{self.hooks.score_of(results):.2f}",
        )

    def save(self, scheduler: Any, rng: np.random.Generator) -> None:
        self.check()
        with self._off_the_clock():
            self.state.rng = dict(rng.bit_generator.state)
            self.state.padded = self.meter.padded
            checkpoint.save(self.accelerator, scheduler, asdict(self.state), self.averager, self.folder.checkpoint)


def _nested(results: list[EvalResult]) -> dict[str, Any]:
    return nest([(r.split, r.language, r.head, r.metrics) for r in results])
