"""A finished grid, run again, skips every cell: its time against the first run's (target: under 5%)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = [
    "-m",
    "experiment=demo",
    "order=english_first,multilingual_first",
    "task=mnli",
    "target=pawsx,sts",
    "seed=1,2",
]  # the demo's own 150 steps a stage: a tiny fraction of any real cell


def run(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xorder", "run", *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        where = [f"cache_dir={tmp}/cache", f"results_dir={tmp}/results"]
        first = run([*GRID, *where], Path(tmp))
        again = run([*GRID, *where], Path(tmp))
    from xorder.config_tree import expand

    cells = len(expand(GRID))
    print(f"{cells} cells: first run {first:.1f} s, rerun {again:.1f} s, ratio {again / first:.1%} (target < 5%)")
    sys.exit(0 if again / first < 0.05 else 1)


if __name__ == "__main__":
    main()
