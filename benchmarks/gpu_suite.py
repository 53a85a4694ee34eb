"""The GPU suite's steps (run through gpu_suite.sh, which installs what the machine lacks): each benchmark in its
own process with a time limit, its JSON into --out, then one summary (gpu_suite.json) and one markdown table
(gpu_suite.md) of the figures that matter for a grid's cost.

  gpu_mfu           XLM-R Large (random weights), bf16, batch 32 x 128, eager and trainer.compile=reduce-overhead
  train_vs_trainer  xorder's loop against the HF Trainer (padded, dynamic), MiniLM-shaped, --bf16
  cells_per_gpu     a grid of 4 XLM-R Base cells at cells_per_gpu 1, 2 and 4: cells per hour

The limits add up to 7.5 minutes on an H100/H200 (the compiled run spends about 100 s compiling and recording CUDA
graphs); a step that runs out of time is recorded as such and the suite goes on. --quick: the same steps with tiny
shapes, fp32, on a CPU: a check that the suite works, no numbers; there TORCH_COMPILE_DISABLE=1 runs the compiled arm's
code path (trainer.compile set, batches padded for it) eagerly, since a 2-core CPU spends many minutes compiling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import describe, machine, table

HERE = Path(__file__).resolve().parent


def steps(quick: bool, minilm: str | None) -> list[tuple[str, list[str], int]]:
    """(name, script and arguments, seconds allowed)."""
    if quick:
        return [
            ("gpu_mfu", ["gpu_mfu.py", "--quick", "--shapes", "xlmr_large", "--modes", "eager,reduce-overhead"], 600),
            ("train_vs_trainer", ["train_vs_trainer.py", "--quick"], 600),
            ("cells_per_gpu", ["cells_per_gpu.py", "--quick", "--cells", "2"], 900),
        ]
    model = ["--model-dir", minilm] if minilm else []
    return [
        (
            "gpu_mfu",
            ["gpu_mfu.py", "--shapes", "xlmr_large", "--modes", "eager,reduce-overhead", "--steps", "100"],
            210,
        ),
        ("train_vs_trainer", ["train_vs_trainer.py", "--bf16", "--steps", "150", "--log-every", "25", *model], 90),
        ("cells_per_gpu", ["cells_per_gpu.py", "--steps", "50", "--cells", "4"], 150),
    ]


def run_step(name: str, argv: list[str], limit: int, out: Path, log: Any, env: dict[str, str]) -> dict[str, Any]:
    """One benchmark, its output appended to the log; its exit status, seconds and JSON result (None if none)."""
    began, started = time.perf_counter(), time.time()
    print(f"== {name}: {' '.join(argv)} (at most {limit} s)", file=log, flush=True)
    try:
        code: int | str = subprocess.run(
            [sys.executable, str(HERE / argv[0]), "--repeats", "1", *argv[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "XORDER_BENCH_RESULTS": str(out), **env},
            timeout=limit,
        ).returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    seconds = time.perf_counter() - began
    found = sorted(out.glob(f"{name}*.json"), key=lambda p: p.stat().st_mtime)
    result = json.loads(found[-1].read_text()) if found and found[-1].stat().st_mtime >= started else None
    print(f"   {name}: exit {code}, {seconds:.0f} s", flush=True)
    return {"exit": code, "seconds": round(seconds, 1), "result": result}


def figures(done: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """(step, measure, value) rows of the summary table."""
    rows: list[list[Any]] = []
    mfu = done["gpu_mfu"]["result"]
    for key, v in (mfu or {}).get("summary", {}).items():
        mode = key.split(" ", 1)[1] if " " in key else "eager"
        rows += [
            ["gpu_mfu", f"{mode}: samples/s (steady)", f"{v['samples_per_second']} ({v['steady_samples_per_second']})"],
            ["gpu_mfu", f"{mode}: MFU (steady)", f"{v['mfu']} ({v['steady_mfu']})"],
            ["gpu_mfu", f"{mode}: peak memory MB", v["peak_memory_mb"]],
        ]
    trainer = done["train_vs_trainer"]["result"]
    if trainer:
        rates = trainer["median_samples_per_second"]
        rows += [["train_vs_trainer", f"{arm}: samples/s", rate] for arm, rate in rates.items()]
        rows += [["train_vs_trainer", f"xorder / {arm}", f"{r:.2f}x"] for arm, r in trainer["ratios"].items()]
    cells = done["cells_per_gpu"]["result"]
    for k, v in (cells or {}).get("by_cells_per_gpu", {}).items():
        rows.append(
            [
                "cells_per_gpu",
                f"k={k}: cells/hour (vs k=1; peak MB)",
                f"{v['cells_per_hour']:.0f} ({v['vs_k1']:.2f}x; {v['peak_memory_mb']:.0f})",
            ]
        )
    return rows


def random_minilm(folder: Path) -> str:
    """all-MiniLM-L6-v2's config and tokenizer with seeded random weights where its weights (90 MB) did not travel:
    the loops are compared on its shapes, and every arm loads the same weights."""
    if not any(folder.glob("*.safetensors")):
        import torch
        from transformers import AutoConfig, AutoModel

        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return str(folder.resolve())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes on a CPU: checks that the suite works")
    p.add_argument("--out", type=Path, required=True, help="where the JSON, the table and the log go")
    p.add_argument(
        "--minilm", type=Path, help="all-MiniLM-L6-v2's config and tokenizer where its package is not installed"
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    where = machine()
    print(describe(where), flush=True)
    began = time.perf_counter()
    done = {}
    with (a.out / "gpu_suite.log").open("a") as log:
        for name, argv, limit in steps(a.quick, a.minilm and random_minilm(a.minilm)):
            done[name] = run_step(name, argv, limit, a.out, log, {"TORCH_COMPILE_DISABLE": "1"} if a.quick else {})
    total = time.perf_counter() - began
    rows = figures(done)
    timing = [[name, d["exit"], d["seconds"]] for name, d in done.items()]
    text = "\n\n".join(
        [
            f"# GPU suite{' (--quick: tiny shapes, no numbers)' if a.quick else ''}\n\n{describe(where)}",
            table(["step", "exit", "seconds"], [*timing, ["all", "", round(total, 1)]]),
            table(["step", "measure", "value"], rows),
        ]
    )
    (a.out / "gpu_suite.md").write_text(text + "\n")
    summary = {"machine": where, "quick": a.quick, "seconds": round(total, 1), "steps": done, "figures": rows}
    (a.out / "gpu_suite.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)
    print(f"\n{a.out / 'gpu_suite.md'}, {a.out / 'gpu_suite.json'} ({total:.0f} s)")
    sys.exit(0 if all(d["result"] is not None for d in done.values()) else 1)


if __name__ == "__main__":
    main()
