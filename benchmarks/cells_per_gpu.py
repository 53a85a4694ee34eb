"""Cells per hour of a small grid at cells_per_gpu = 1, 2 and 4 on one GPU.

The grid: --cells target-only PAWS-X cells (seeds) of a random XLM-R-shaped model (gpu_mfu.py's shapes and cell:
the first 1500 real English dev pairs, --steps steps of batch --batch, one evaluation at the end), run by
`xorder run -m hydra/launcher=parallel hydra.launcher.n_jobs=k cells_per_gpu=k`: k cells at a time share the GPU.
Every k runs new seeds in one results folder and one cache, after an untimed warm-up cell that tokenizes the data
and fills the caches, so each k pays the same per-cell costs (process start, imports, model load, training,
evaluation). k = 2 and 4 run after k = 1 has recorded its peak memory, so xorder checks that k cells fit the GPU.

Measured per k: the grid's wall time, cells per hour (cells / wall time), the ratio to k = 1, each cell's training
samples/s and peak GPU memory from its record. --quick: tiny shapes, fp32, on a CPU (no GPU to share: the cells
just run k at a time). Needs hydra-joblib-launcher (xorder[joblib]).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from statistics import median
from typing import Any

from gpu_mfu import QUICK_SHAPES, SHAPES, overrides, quick_settings, run_options
from harness import describe, machine, parser, run, run_arm, save, table, verdict

KS = (1, 2, 4)


def grid(shape: str, model_dir: Path, work: Path, a: Any, k: int, seeds: list[int]) -> float:
    """The grid of these seeds at k cells per GPU; its wall seconds."""
    began = time.perf_counter()
    run(
        [
            sys.executable,
            "-m",
            "xorder",
            "run",
            "-m",
            "hydra/launcher=parallel",
            f"hydra.launcher.n_jobs={k}",
            f"cells_per_gpu={k}",
            *overrides(shape, model_dir, work, a),
            f"seed={','.join(map(str, seeds))}",
        ],
        f"{len(seeds)} cell(s) at cells_per_gpu={k}",
    )
    return time.perf_counter() - began


def main() -> None:
    p = run_options(parser(__doc__), steps=100)
    p.add_argument("--shape", default="xlmr_base", choices=sorted(SHAPES))
    p.add_argument("--cells", type=int, default=4, help="cells of the grid at each k")
    a = p.parse_args()
    quick_settings(a)
    m = machine()
    print(describe(m))
    if not m["gpu"] and not a.quick:
        sys.exit("no GPU here: cells_per_gpu shares GPUs (--quick checks the script with tiny shapes on a CPU)")
    rows: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = work / "models" / a.shape
        gpu_mfu = str(Path(__file__).with_name("gpu_mfu.py"))
        build = ["--shape", a.shape, "--shapes", a.shape, "--model-dir", str(model_dir), *(["--quick"] * a.quick)]
        parameters = run_arm(gpu_mfu, "build", build, work / "build.json")["parameters"]
        grid(a.shape, model_dir, work, a, 1, [0])  # warm-up: tokenized data, batch plan, compiled kernels
        for index, k in enumerate(KS):
            seeds = list(range(1 + index * a.cells, 1 + (index + 1) * a.cells))
            seconds = grid(a.shape, model_dir, work, a, k, seeds)
            records = [json.loads(path.read_text()) for path in (work / "results").rglob("metrics.json")]
            mine = [r for r in records if r["seed"] in seeds]
            assert len(mine) == len(seeds), f"k={k}: {len(mine)} records of {len(seeds)} cells"
            speed = [r["stages"][-1]["throughput"] for r in mine]
            rows[k] = {
                "seconds": seconds,
                "cells": len(seeds),
                "cells_per_hour": len(seeds) / seconds * 3600,
                "samples_per_second_per_cell": median(t["samples_per_second"] for t in speed),
                "peak_memory_mb": max(t["peak_memory_mb"] for t in speed),
                "visible_devices": sorted({str(r["provenance"]["visible_devices"]) for r in mine}),
            }
    for row in rows.values():
        row["vs_k1"] = row["cells_per_hour"] / rows[1]["cells_per_hour"]
    print(
        f"\n{a.cells} cells per k, random {a.shape} ({parameters / 1e6:.0f}M parameters), {a.steps} steps of batch "
        f"{a.batch}, max_length {a.max_length}, precision {a.precision}\n"
    )
    print(
        table(
            ["cells_per_gpu", "grid s", "cells/hour", "vs k=1", "samples/s per cell", "peak memory MB"],
            [
                [
                    k,
                    r["seconds"],
                    r["cells_per_hour"],
                    f"{r['vs_k1']:.2f}x",
                    r["samples_per_second_per_cell"],
                    r["peak_memory_mb"],
                ]
                for k, r in rows.items()
            ],
        )
    )
    shape = (QUICK_SHAPES if a.quick else SHAPES)[a.shape]
    path = save(
        "cells_per_gpu",
        a.quick,
        {
            "machine": m,
            "shape": a.shape,
            "dimensions": asdict(shape),
            "parameters": parameters,
            "steps": a.steps,
            "batch": a.batch,
            "max_length": a.max_length,
            "precision": a.precision,
            "quick": a.quick,
            "by_cells_per_gpu": rows,
        },
    )
    print(f"\nresults: {path}")
    verdict({}, a.quick)


if __name__ == "__main__":
    main()
