"""What the leak check costs: comparing a target's evaluation sets with the training and selection data of every stage
of its cell (`xorder.data.stage.check_unseen`, which `xorder run` calls before any stage trains and the target's
preparation repeats).

Cells (canonical data cached first, so that reading raw files is not counted):
  demo               experiment=demo: synthetic data everywhere, exempt from the check (the floor)
  demo_sts_real      the STS target on ../shared/data (stsb_multi_mt, 10 languages x dev/test, and STS 2017), order=none
  real_study_sts     experiment=real_study_sts order=english_first multilingual=translate_train (XNLI dev stages)
  real_study_pawsx   experiment=real_study_pawsx order=english_first multilingual=mlm (premises as masked-LM text)
each timed cold (an empty cache_dir/keys: every key set hashed) and warm (the key sets read back), and
  mnli_size          hashing 392,702 pairs (MNLI's training set size, XNLI English dev rows repeated with a row
                     suffix) into a key set, cold and warm: what one big intermediate training set costs once.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/leak_check.py [--quick]
writes benchmarks/results/leak_check.json (no target: reported in the README's Validity section)."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CELLS = {
    "demo": ["experiment=demo"],
    "demo_sts_real": ["experiment=demo_sts_real", "order=none"],
    "real_study_sts": ["experiment=real_study_sts", "order=english_first", "multilingual=translate_train"],
    "real_study_pawsx": ["experiment=real_study_pawsx", "order=english_first", "multilingual=mlm"],
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the demo cell and 20,000 pairs only")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import datasets

    from xorder.config import SourceConfig, SplitConfig, TaskConfig
    from xorder.config_tree import compose
    from xorder.data import leaks
    from xorder.data.fetch import validate
    from xorder.data.sources import load_split
    from xorder.data.stage import DataSettings, check_unseen
    from xorder.plan import plan, to_typed

    datasets.disable_progress_bars()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cells = {"demo": CELLS["demo"]} if args.quick else CELLS
        for name, overrides in cells.items():
            cfg = to_typed(compose([*overrides, f"data_root={args.data}", f"cache_dir={tmp}", "model=tiny"]))
            stages, settings = plan(cfg), DataSettings(tmp, cfg.data.synthetic_examples)
            validate(cfg, stages)  # canonical data cached: the check's own cost is what remains
            shutil.rmtree(Path(tmp) / "keys", ignore_errors=True)
            check = partial(check_unseen, stages, settings)
            results[name] = {"cold_s": timed(check), "warm_s": timed(check)}
            print(name, results[name], flush=True)
        rows = 20_000 if args.quick else 392_702
        task = TaskConfig(name="xnli_dev", kind="classification", label_names=["a", "b", "c"])
        source = SourceConfig(
            format="tsv",
            path=str(args.data / "xnli/xtreme_format/{split}-{lang}.tsv"),
            fields=["text_a", "text_b", "label"],
            labels={"entailment": 0, "neutral": 1, "contradiction": 2},
            splits={"dev": SplitConfig(split="dev")},
        )
        base = load_split(task, source, "dev", "en", cache_dir=tmp, synthetic_examples=0).dataset
        copies = -(-rows // len(base))
        big = datasets.concatenate_datasets([base] * copies).select(range(rows))
        big = big.map(lambda row, i: {"text_b": f"{row['text_b']} {i}"}, with_indices=True)
        results["mnli_size"] = {
            "rows": rows,
            "cold_s": timed(lambda: leaks.seen("x", big, task, "mnli-size", tmp, False)),
            "warm_s": timed(lambda: leaks.seen("x", big, task, "mnli-size", tmp, False)),
        }
        print("mnli_size", results["mnli_size"], flush=True)
    out = ROOT / "benchmarks" / "results" / ("leak_check.quick.json" if args.quick else "leak_check.json")
    machine = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
