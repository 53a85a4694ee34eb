"""Training throughput on real PAWS-X English pairs (../shared/data) with all-MiniLM-L6-v2, batch 32, max
length 128: xorder's length-grouped batches with dynamic padding, against shuffled batches with dynamic
padding, against shuffled batches padded to max_length. Same model, same steps, one process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from xorder import kinds
from xorder.config import ModelConfig, SourceConfig, SplitConfig, TaskConfig
from xorder.data.batching import Collator, LengthGroupedBatchSampler
from xorder.data.encode import encode, fingerprint
from xorder.data.sources import load_split
from xorder.encoders.base_model import resolve_path
from xorder.pipeline.model import MultiTaskModel, load_backbone, load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pawsx" / "xtreme_format"
STEPS, BATCH, MAX_LENGTH = 40, 32, 128


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"needs {DATA}")
    torch.set_num_threads(1)
    cache = Path("/tmp/xorder-bench-cache")
    task = TaskConfig(name="pawsx", kind="classification", label_names=["different", "paraphrase"])
    source = SourceConfig(
        format="tsv",
        path=str(DATA / "{split}-{lang}.tsv"),
        fields=["text_a", "text_b", "label"],
        splits={"train": SplitConfig(split="dev")},
    )
    loaded = load_split(task, source, "train", "en", cache_dir=str(cache), synthetic_examples=0)
    assert loaded is not None
    rows = loaded.dataset
    path = resolve_path(ModelConfig(name="minilm", path="builtin:minilm"), str(cache))
    tokenizer = load_tokenizer(path)
    fp = fingerprint("bench-pawsx-en-dev", task, tokenizer, MAX_LENGTH, True, task.label_names)
    features = encode(
        rows, task, tokenizer, MAX_LENGTH, train=True, label_names=task.label_names, fingerprint=fp, cache_dir=cache
    )
    lengths = features["length"]
    kind = kinds.get("classification")
    padded = Collator(kind, tokenizer)
    collate = padded.inner.inner  # the kind's transformers DataCollatorWithPadding
    collate.padding, collate.max_length = "max_length", MAX_LENGTH
    setups = {
        "length-grouped, dynamic padding": (
            LengthGroupedBatchSampler(lengths, BATCH, 1, True),
            Collator(kind, tokenizer),
        ),
        "shuffled, dynamic padding": (LengthGroupedBatchSampler(lengths, BATCH, 1, False), Collator(kind, tokenizer)),
        f"shuffled, padded to {MAX_LENGTH}": (LengthGroupedBatchSampler(lengths, BATCH, 1, False), padded),
    }
    rates = {}
    for name, (sampler, collate) in setups.items():
        torch.manual_seed(0)
        model = MultiTaskModel(load_backbone(path), {"pawsx": task}, {"pawsx": task.label_names})
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
        loader = iter(DataLoader(features, batch_sampler=sampler, collate_fn=collate))
        tokens, start = 0, time.perf_counter()
        for _ in range(STEPS):
            batch = next(loader)
            batch.pop("row")
            tokens += int(batch["input_ids"].numel())
            loss, _ = model("pawsx", batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - start
        rates[name] = STEPS * BATCH / seconds
        print(f"{name:<32} {rates[name]:6.1f} samples/s  ({tokens / (STEPS * BATCH):5.1f} tokens per pair)")
    values = list(rates.values())
    print(f"grouped / padded = {values[0] / values[2]:.2f}x, shuffled dynamic / padded = {values[1] / values[2]:.2f}x")
    sys.exit(0 if values[0] > values[1] > values[2] else 1)


if __name__ == "__main__":
    main()
