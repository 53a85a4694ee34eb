"""Test sets scored only where a selection can land, against every test set at every evaluation.

Two arms, each a whole `xorder run experiment=demo_sts_real target.evaluations=10` cell in its own one-thread process
and its own fresh cache (tiny model, synthetic intermediate stages, the real STS target: English STS-B training, 27
evaluation sets of 30,400 examples):

  every     trainer.test_every_eval=true: every dev and test set at each of the 10 evaluations (xorder before issue 23)
  selected  the default: dev sets at every evaluation, a test set where en_dev or the oracle may pick the step, every
            set at the last evaluation and for the average

Measured per arm: the examples the target stage evaluated (its stage summary), the target stage's wall time (the
record's stage seconds, training included) and the part of it not spent training (the stage's seconds less its
examples at its training rate: evaluation and checkpoints), and the whole cell's CPU time (user + system: on a
shared machine far steadier than wall time, which other jobs stretch). The arms must agree on every selection's
scores, steps and predictions (metrics.json's file digests): the benchmark fails when they do not. Needs
../shared/data (`--data-root`).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from harness import DATA, ROOT, child_env, describe, machine, parser, run_arm, save, table, verdict, write_arm

ARMS = ("every", "selected")
CELL = ["experiment=demo_sts_real", "target.evaluations=10"]
QUICK = ["trainer.target.max_steps=20", "target.evaluations=4", "trainer.target.eval_examples=100"]
TARGET = 0.7  # selected / every, examples evaluated


def arm(name: str, data_root: Path, quick: bool, work: Path) -> dict[str, Any]:
    """One cell, from an empty cache: its record and its target stage's evaluation count and seconds."""
    overrides = [
        *CELL,
        *(QUICK if quick else []),
        f"trainer.test_every_eval={name == 'every'}",
        f"data_root={data_root}",
        f"cache_dir={work / 'cache'}",
        f"results_dir={work / 'results'}",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "xorder", "run", *overrides], env=child_env(), cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{name}: xorder run failed:\n{(done.stdout + done.stderr)[-4000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # this arm's process ran this one cell
    metrics = json.loads(next((work / "results").rglob("metrics.json")).read_text())
    target = metrics["stages"][-1]
    summary = json.loads((work / "cache" / "stages" / target["hash"] / "summary.json").read_text())
    return {
        "evaluated": summary["evaluated"],
        "evaluations": len(summary["history"]),
        "target_seconds": target["seconds"],
        # the stage's time less its training time (its examples at its training rate): evaluation and checkpoints
        "eval_seconds": target["seconds"] - target["examples"] / target["throughput"]["samples_per_second"],
        "cell_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "scores": metrics["scores"],
        "selected_steps": metrics["selected_steps"],
        "files": metrics["files"],
    }


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(repeats=1)
    p.add_argument("--data-root", type=Path, default=DATA, help="the shared data folder (default: %(default)s)")
    args = p.parse_args()
    if args.arm:
        with tempfile.TemporaryDirectory() as work:
            write_arm(args.out, arm(args.arm, args.data_root.resolve(), args.quick, Path(work)))
        return
    if not (args.data_root / "stsb_multi_mt").is_dir():
        sys.exit(f"{args.data_root} has no stsb_multi_mt/: pass --data-root <the shared data folder>")
    where = machine()
    print(describe(where))
    flags = ["--data-root", str(args.data_root.resolve()), *(["--quick"] if args.quick else [])]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in ARMS:
                runs[name].append(run_arm(__file__, name, flags, Path(tmp) / f"{name}{repeat}.json"))
    first = {name: runs[name][0] for name in ARMS}
    same = all(
        r[key] == first["every"][key] for r in runs["every"] + runs["selected"] for key in ("scores", "files")
    ) and all(r["selected_steps"] == first["every"]["selected_steps"] for r in runs["selected"])
    rows = {
        name: {
            "evaluated": first[name]["evaluated"],
            "evaluations": first[name]["evaluations"],
            "target_seconds": median(r["target_seconds"] for r in runs[name]),
            "eval_seconds": round(median(r["eval_seconds"] for r in runs[name]), 1),
            "cell_cpu_seconds": round(median(r["cell_cpu_seconds"] for r in runs[name]), 1),
        }
        for name in ARMS
    }
    examples = rows["selected"]["evaluated"] / rows["every"]["evaluated"]
    seconds = rows["selected"]["target_seconds"] / rows["every"]["target_seconds"]
    eval_seconds = rows["selected"]["eval_seconds"] / rows["every"]["eval_seconds"]
    cpu = rows["selected"]["cell_cpu_seconds"] / rows["every"]["cell_cpu_seconds"]
    print(
        table(
            ["arm", "examples evaluated", "evaluations", "target stage s", "of which evaluation s", "cell CPU s"],
            [
                [n, r["evaluated"], r["evaluations"], r["target_seconds"], r["eval_seconds"], r["cell_cpu_seconds"]]
                for n, r in rows.items()
            ],
        )
    )
    print(
        f"selected / every: examples {examples:.3f}x, target stage time {seconds:.3f}x, evaluation time "
        f"{eval_seconds:.3f}x, the cell's CPU time {cpu:.3f}x; identical records: {same}"
    )
    path = save(
        "selected_tests",
        args.quick,
        {
            "machine": where,
            "cell": [*CELL, *(QUICK if args.quick else [])],
            "repeats": args.repeats,
            "arms": rows,
            "examples_ratio": round(examples, 4),
            "seconds_ratio": round(seconds, 4),
            "eval_seconds_ratio": round(eval_seconds, 4),
            "cell_cpu_seconds_ratio": round(cpu, 4),
            "identical_records": same,
            "selected_steps": first["every"]["selected_steps"],
        },
    )
    print(f"wrote {path}")
    if not same:
        sys.exit("the arms' records differ: scoring test sets where selections land changed a number")
    verdict({f"examples evaluated <= {TARGET}x": examples <= TARGET, "identical records": same}, args.quick)


if __name__ == "__main__":
    main()
