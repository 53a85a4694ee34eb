"""The cost of `xorder rank`: 9 candidate intermediate tasks (the demo's synthetic stand-ins, every head kind: mnli,
qqp, anli, sst2, hellaswag, commonsenseqa, cosmosqa, squad, ccg) for the STS target, model=me5_small
(multilingual-e5-small), 1,000 examples per task and for the target, methods semb and logme, one torch thread.
Target (issue 21): at most 10 minutes on this 2-core CPU. The model is built and the data tokenized by a warm-up
run first, so the figure is the ranking itself (reading cached data, forward passes, scoring)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import RESULTS, ROOT, child_env, parser

TASKS = "mnli,qqp,anli,sst2,hellaswag,commonsenseqa,cosmosqa,squad,ccg"
TARGET_SECONDS = 600


def command(cache: Path, results: Path, examples: int, model: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xorder",
        "rank",
        "experiment=demo",
        f"model={model}",
        "target=sts",
        f"task=[{TASKS}]",
        "trainer.max_length=128",  # the real study's; the synthetic texts are shorter than that anyway
        f"cache_dir={cache}",
        f"results_dir={results}",
        "--examples",
        str(examples),
        "--methods",
        "semb,logme",
    ]


def run(cmd: list[str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"xorder rank failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return time.perf_counter() - began


def main() -> None:
    args = parser(__doc__).parse_args()
    examples, model = (60, "tiny") if args.quick else (1000, "me5_small")
    with tempfile.TemporaryDirectory() as tmp:
        cache, results = Path(tmp) / "cache", Path(tmp) / "results"
        warm = run(command(cache, results, examples, model))  # builds the model, materializes and tokenizes
        seconds = sorted(run(command(cache, results, examples, model)) for _ in range(args.repeats))
        ranking = (results / "ranking" / "sts" / model / "ranking.csv").read_text()
    median = seconds[len(seconds) // 2]
    result = {
        "command": " ".join(command(Path("CACHE"), Path("RESULTS"), examples, model)[2:]),
        "threads": 1,
        "first_run_seconds": round(warm, 1),
        "seconds": [round(s, 1) for s in seconds],
        "median_seconds": round(median, 1),
        "target_seconds": TARGET_SECONDS,
        "met": median <= TARGET_SECONDS,
        "ranking_csv": ranking,
    }
    name = "rank_cost.quick.json" if args.quick else "rank_cost.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"first run (model build, data, tokenizing): {warm:.0f} s; ranking: median {median:.0f} s of {seconds}")
    print(f"target <= {TARGET_SECONDS} s: {'met' if result['met'] else 'MISSED'}")
    sys.exit(0 if result["met"] or args.quick else 1)


if __name__ == "__main__":
    main()
