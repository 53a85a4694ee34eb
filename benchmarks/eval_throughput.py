"""Evaluation throughput (pairs/s) of xorder's evaluation path against the Hugging Face Trainer's `predict`.

Three arms, each in its own one-thread process, repeated interleaved (median reported):

  xorder           xorder.pipeline.evaluate.predict, as a stage evaluates: each language's features from
                   load_split + encode, batches longest-first (LengthGroupedBatchSampler, shuffle=False) with dynamic
                   padding, model and loaders through Accelerate, torch.inference_mode; the time includes its
                   gathering and scoring (metrics per language)
  trainer_padded   Trainer.predict with every pair padded to max_length (run_glue.py's default), batches in order
  trainer_dynamic  Trainer.predict with dynamic padding (DataCollatorWithPadding), batches in order

Same for every arm: all-MiniLM-L6-v2 (model=minilm; xorder's pooled head, the Trainer's pooler and classifier:
the same compute), the first --rows real PAWS-X dev pairs of each of --languages
(../shared/data/pawsx/xtreme_format/dev-<lang>.tsv), eval batch --batch (xorder's default trainer.eval_batch_size,
64), max_length 128, fp32. Time: the prediction calls alone, over every language, after a warm-up prediction of 8
pairs (tokenization, model loading and first-call costs left out of all three).
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
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
    run_arm,
    save,
    table,
    verdict,
    write_arm,
)

PAWSX = DATA / "pawsx" / "xtreme_format"
ARMS = ("xorder", "trainer_padded", "trainer_dynamic")
LABELS = ["different", "paraphrase"]
WARMUP = 8  # pairs predicted before the clock starts: first-call costs (lazy imports, allocations) are not throughput


@dataclass
class Settings:
    languages: list[str]
    rows: int
    batch: int
    max_length: int = 128


def minilm(work: Path) -> tuple[str, Any]:
    from xorder.config import ModelConfig
    from xorder.encoders.base_model import resolve_path
    from xorder.pipeline.model import load_tokenizer

    path = resolve_path(ModelConfig(name="minilm", path="builtin:minilm"), str(work))
    return path, load_tokenizer(path)


def xorder_arm(s: Settings, work: Path) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from xorder.config import SourceConfig, SplitConfig, TaskConfig
    from xorder.data.batching import Collator, LengthGroupedBatchSampler
    from xorder.data.encode import encode, fingerprint
    from xorder.data.sources import load_split
    from xorder.data.stage import EvalSet
    from xorder.pipeline.evaluate import predict
    from xorder.pipeline.model import MultiTaskModel, load_backbone

    path, tokenizer = minilm(work)
    task = TaskConfig(name="pawsx", kind="classification", label_names=LABELS, languages=s.languages)
    source = SourceConfig(
        format="tsv",
        path=str(PAWSX / "{split}-{lang}.tsv"),
        fields=["text_a", "text_b", "label"],
        languages=s.languages,
        splits={"dev": SplitConfig(split=f"dev[:{s.rows}]")},
    )

    def make_loader(evalset: EvalSet) -> DataLoader:
        sampler = LengthGroupedBatchSampler(list(evalset.features["length"]), s.batch, 0, shuffle=False)
        return DataLoader(evalset.features, batch_sampler=sampler, collate_fn=Collator(evalset.kind, tokenizer))

    sets = []
    for lang in s.languages:
        loaded = load_split(task, source, "dev", lang, cache_dir=str(work), synthetic_examples=0)
        assert loaded is not None
        key = fingerprint(loaded.fingerprint, task, tokenizer, s.max_length, False, LABELS)
        features = encode(
            loaded.dataset,
            task,
            tokenizer,
            s.max_length,
            train=False,
            label_names=LABELS,
            fingerprint=key,
            cache_dir=work,
        )
        features = features.add_column("feature", list(range(len(features))))
        sets.append(EvalSet("pawsx", task, "dev", lang, loaded.dataset, features, LABELS))
    first = sets[0]  # its first pairs are the warm-up (a pair is one feature: feature i is row i)
    warm = EvalSet(
        "pawsx",
        task,
        "dev",
        first.language,
        first.examples.select(range(WARMUP)),
        first.features.select(range(WARMUP)),
        LABELS,
    )
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model = MultiTaskModel(load_backbone(path), {"pawsx": task}, {"pawsx": LABELS})
    model, warm_loader, *loaders = accelerator.prepare(model, make_loader(warm), *map(make_loader, sets))
    predict(model, warm, warm_loader, accelerator)
    began = time.perf_counter()
    results = [predict(model, evalset, loader, accelerator) for evalset, loader in zip(sets, loaders)]
    seconds = time.perf_counter() - began
    return {"pairs": sum(len(r.prediction) for r in results), "seconds": seconds, "device": str(accelerator.device)}


def trainer_arm(s: Settings, padded: bool, work: Path) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    datasets.disable_progress_bars()
    path, tokenizer = minilm(work)

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(
            batch["text_a"],
            batch["text_b"],
            truncation=True,
            max_length=s.max_length,
            padding="max_length" if padded else False,
        )

    sets = []
    for lang in s.languages:
        pairs = datasets.load_dataset(
            "csv",
            data_files=str(PAWSX / f"dev-{lang}.tsv"),
            delimiter="\t",
            quoting=csv.QUOTE_NONE,
            column_names=["text_a", "text_b", "label"],
            na_filter=False,
            cache_dir=str(work / "hf"),
            split=f"train[:{s.rows}]",
        )
        sets.append(pairs.map(tokenize, batched=True, remove_columns=["text_a", "text_b"]))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_eval_batch_size=s.batch,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=default_data_collator if padded else DataCollatorWithPadding(tokenizer),
    )
    trainer.predict(sets[0].select(range(WARMUP)))
    began = time.perf_counter()
    outputs = [trainer.predict(features) for features in sets]
    seconds = time.perf_counter() - began
    return {"pairs": sum(len(o.predictions) for o in outputs), "seconds": seconds, "device": str(args.device)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--languages", default="en,de,zh", help="PAWS-X dev languages, comma-separated")
    p.add_argument("--rows", type=int, default=1000, help="pairs per language (PAWS-X dev has 2000)")
    p.add_argument("--batch", type=int, default=64, help="eval batch size of every arm")
    a = p.parse_args()
    if a.quick:
        a.languages, a.rows, a.repeats = "en,de", 32, 1
    s = Settings(a.languages.split(","), a.rows, a.batch)
    if a.arm:
        pin_threads()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            result = xorder_arm(s, work) if a.arm == "xorder" else trainer_arm(s, a.arm == "trainer_padded", work)
        write_arm(
            a.out, {**result, "pairs_per_second": result["pairs"] / result["seconds"], "peak_memory_mb": peak_rss_mb()}
        )
        return
    missing = [lang for lang in s.languages if not (PAWSX / f"dev-{lang}.tsv").is_file()]
    if missing:
        sys.exit(f"needs {', '.join(str(PAWSX / f'dev-{lang}.tsv') for lang in missing)}")
    m = machine()
    print(describe(m))
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    args = ["--languages", a.languages, "--rows", str(s.rows), "--batch", str(s.batch)]
    for repeat in range(a.repeats):
        print(f"repeat {repeat + 1} of {a.repeats}", flush=True)
        for arm in ARMS:
            with tempfile.TemporaryDirectory() as tmp:
                runs[arm].append(run_arm(__file__, arm, args, Path(tmp) / "arm.json"))
    rate = {arm: median([r["pairs_per_second"] for r in runs[arm]]) for arm in ARMS}
    ratios = {arm: rate["xorder"] / rate[arm] for arm in ARMS[1:]}
    print(
        f"\n{runs['xorder'][0]['pairs']} PAWS-X dev pairs ({', '.join(s.languages)}, {s.rows} each), eval batch "
        f"{s.batch}, max_length {s.max_length}, fp32, median of {a.repeats} interleaved runs per arm "
        f"({runs['xorder'][0]['device']})\n"
    )
    print(
        table(
            ["arm", "pairs/s", "runs (pairs/s)", "peak RSS MB", "xorder / arm"],
            [
                [
                    arm,
                    rate[arm],
                    " ".join(f"{r['pairs_per_second']:.1f}" for r in runs[arm]),
                    runs[arm][0]["peak_memory_mb"],
                    f"{ratios[arm]:.2f}x" if arm in ratios else "",
                ]
                for arm in ARMS
            ],
        )
    )
    path = save(
        "eval_throughput",
        a.quick,
        {
            "machine": m,
            "settings": asdict(s),
            "repeats": a.repeats,
            "quick": a.quick,
            "runs": runs,
            "median_pairs_per_second": rate,
            "ratios": ratios,
        },
    )
    print(f"\nresults: {path}")
    verdict({f"xorder / {arm} = {ratios[arm]:.2f}x > 1": ratios[arm] > 1 for arm in ARMS[1:]}, a.quick)


if __name__ == "__main__":
    main()
