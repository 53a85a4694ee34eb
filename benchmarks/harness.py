"""What the side-by-side benchmarks share: every arm in its own one-thread subprocess (clean peak memory, no thread
contention between arms), repeats interleaved so that a machine that slows down mid-run slows every arm alike, the
machine they ran on, and the results as JSON plus a markdown table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the shared data beside the project (XORDER_SHARED_DATA elsewhere, e.g. from a git worktree)
DATA = Path(os.environ.get("XORDER_SHARED_DATA", ROOT.parent / "shared" / "data"))
# where `save` writes (XORDER_BENCH_RESULTS: elsewhere, e.g. a GPU suite that must not overwrite the CPU figures)
RESULTS = Path(os.environ.get("XORDER_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
# One torch/BLAS thread and no tokenizer threads: on a 2-core machine two threads make speed swing tenfold.
ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
PACKAGES = ("torch", "transformers", "datasets", "accelerate", "xorder")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every benchmark takes; `--arm`/`--out` are how a script runs one of its own arms."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that the script works, no numbers")
    p.add_argument("--repeats", type=int, default=2, help="runs of each arm, interleaved; the median is reported")
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p


def pin_threads() -> None:
    import torch

    torch.set_num_threads(1)


def child_env() -> dict[str, str]:
    return {**os.environ, **ENV}


def run(cmd: Sequence[str], what: str) -> None:
    """Run one arm; on failure show the end of its output and stop the benchmark."""
    began = time.perf_counter()
    done = subprocess.run(list(cmd), env=child_env(), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    print(f"  {what}: {time.perf_counter() - began:.0f} s", flush=True)


def run_arm(script: str, arm: str, args: Sequence[str], out: Path) -> dict[str, Any]:
    """Run `script --arm arm` in a fresh interpreter; the arm writes its result to `out`."""
    run([sys.executable, str(Path(script).resolve()), "--arm", arm, "--out", str(out), *args], arm)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def write_arm(out: Path, result: dict[str, Any]) -> None:
    out.write_text(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (the CPU figure xorder's records carry)."""
    import torch

    from xorder.pipeline.throughput import peak_memory_mb

    return peak_memory_mb(torch.device("cpu"))


def machine() -> dict[str, Any]:
    """CPU model, cores, load, accelerator and package versions: what a reader needs to judge the numbers."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = ""
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip().replace("\n", ", ")
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads_per_arm": int(ENV["OMP_NUM_THREADS"]),
        "gpu": gpu or None,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def describe(m: dict[str, Any]) -> str:
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = ", ".join(f"{x:.2f}" for x in m["load_average"])
    if m["load_average"][0] > 0.25 * m["usable_cores"]:
        load += " (a busy machine: the numbers are noise; run the real measurement on a quiet one)"
    versions = ", ".join(f"{name} {m[name]}" for name in PACKAGES if m.get(name))
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['threads_per_arm']} thread per arm"
        f"{gpu}; load average at start {load}; Python {m['python']}, {versions}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, quick: bool, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json; a --quick run writes <name>.quick.json (ignored by git) and never
    overwrites a real measurement."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'.quick' if quick else ''}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def verdict(checks: dict[str, bool], quick: bool) -> None:
    """Exit 1 when a target is missed (never for --quick, whose numbers mean nothing)."""
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {what}")
    if quick:
        print("(--quick: tiny settings, the targets are not judged)")
        sys.exit(0)
    sys.exit(0 if all(checks.values()) else 1)
