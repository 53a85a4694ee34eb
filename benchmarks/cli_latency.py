"""`xorder --help` answers in under a second: no heavy import on the way (torch, transformers, Hydra)."""

from __future__ import annotations

import subprocess
import sys
import time


def best_of(cmd: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    bare = best_of([sys.executable, "-c", "pass"])
    help_ = best_of([sys.executable, "-m", "xorder", "--help"])
    tasks = best_of([sys.executable, "-m", "xorder", "tasks"], n=2)
    print(
        f"python -c pass {bare:.3f} s | xorder --help {help_:.3f} s ({help_ / bare:.1f}x bare) | "
        f"xorder tasks {tasks:.2f} s"
    )
    sys.exit(0 if help_ < 1.0 else 1)


if __name__ == "__main__":
    main()
