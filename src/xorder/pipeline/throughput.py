"""How fast a stage trained, for every record: samples and real (non-pad) tokens per second, the padding fraction,
peak memory, and on GPUs the model FLOPs utilisation against the device's peak and the GPU-hours spent.

The loop counts on the device and reads the counters at its logging points only, so that measuring adds no host
synchronisation per step. Model FLOPs per trained token are 6·N (forward and backward through the N parameters of
the encoder's layers) plus the attention's 12·layers·hidden·(mean sequence length) (PaLM, Chowdhery et al. 2022,
app. B)."""

from __future__ import annotations

import math
import resource
import sys
from dataclasses import dataclass

import torch

from xorder.pipeline.model import encoder_of

# Dense peak TFLOP/s per GPU by name fragment and precision (vendor datasheets; tf32 is what fp32 matmuls use).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "no": 494.7},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "no": 378.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "no": 494.7},
    "A100": {"bf16": 312.0, "fp16": 312.0, "no": 156.0},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "no": 183.0},
    "A10": {"bf16": 125.0, "fp16": 125.0, "no": 62.5},
    "V100": {"bf16": 0.0, "fp16": 125.0, "no": 15.7},
}


class Meter:
    """Device-side counters of one stage's training: loss sum, real and padded tokens, and the first step whose
    loss or gradient norm was not finite."""

    def __init__(self, device: torch.device, tokens: int = 0, padded: int = 0) -> None:
        self.device = device
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.micro = 0
        self.tokens = torch.tensor(tokens, device=device, dtype=torch.int64)
        self.padded = padded
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)

    def add(self, step: int, loss: torch.Tensor, batch: dict[str, torch.Tensor], norm: torch.Tensor | None) -> None:
        loss = loss.detach().float()
        finite = torch.isfinite(loss) if norm is None else torch.isfinite(loss) & torch.isfinite(norm.float())
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, step, self.first_bad)
        self.loss += loss.double()
        self.micro += 1
        mask = batch.get("attention_mask")
        ids = batch["input_ids"]
        self.tokens += mask.sum() if mask is not None else ids.numel()
        self.padded += ids.numel()

    def read(self) -> tuple[float | None, int, int]:
        """(mean loss since the last read, or None; real tokens so far; the first non-finite step or -1); one
        host synchronisation."""
        values = torch.stack([self.loss, self.tokens.double(), self.first_bad.double()]).tolist()
        mean = values[0] / self.micro if self.micro else None
        self.loss.zero_()
        self.micro = 0
        return mean, int(values[1]), int(values[2])


@dataclass
class Throughput:
    samples_per_second: float
    tokens_per_second: float
    padding_fraction: float
    peak_memory_mb: float
    mfu: float | None
    gpu_hours: float | None
    # the same after the first logging window (compilation, CUDA-graph recording, warm-up): what a longer run gets
    steady_samples_per_second: float | None
    steady_mfu: float | None


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory of this process, or its peak resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def peak_tflops(device_name: str, precision: str) -> float | None:
    for fragment, table in PEAK_TFLOPS.items():
        if fragment in device_name:
            return table.get(precision) or None
    return None


def flops_per_token(backbone: torch.nn.Module, mean_length: float) -> float:
    """6·N plus attention per token trained on, N counting the encoder's layers only: its embeddings are lookups
    and its pooler runs once per sequence. Never the whole backbone: a masked-LM model's named_parameters lists
    the word embedding under its tied decoder (transformers 5), which would add a 250k-row matrix that a task
    stage never multiplies by. Heads are left out (a task head is per sequence; the MLM head scores the 15%
    masked positions only): the figure errs low, never high."""
    encoder = encoder_of(backbone)
    skipped = ("embeddings.", "pooler.")
    params = sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith(skipped))
    config = getattr(backbone, "config", None)
    layers = getattr(config, "num_hidden_layers", 0)
    hidden = getattr(config, "hidden_size", 0)
    return 6.0 * params + 12.0 * layers * hidden * mean_length


def summarize(
    examples: int,
    tokens: int,
    padded: int,
    seconds: float,
    train_seconds: float,
    processes: int,
    backbone: torch.nn.Module,
    device: torch.device,
    precision: str,
    warm: list[float] | None = None,
) -> Throughput:
    """Per-stage figures: rates over the training time (evaluation and checkpoints excluded), and over the part of
    it after `warm` ([training seconds, examples, real tokens] at the first logging point; None: the stage was
    shorter than one logging window); GPU-hours over the whole stage on every process."""

    def rate(n: float, n_seconds: float, digits: int) -> float:
        return round(n / n_seconds, digits) if n_seconds > 0 else math.nan

    peak = peak_tflops(torch.cuda.get_device_name(device), precision) if device.type == "cuda" else None

    def mfu(n_examples: float, n_tokens: float, n_seconds: float) -> float | None:
        if not peak or n_seconds <= 0 or n_examples <= 0:
            return None
        flops = flops_per_token(backbone, n_tokens / n_examples) * n_tokens
        return round(flops / n_seconds / (peak * 1e12 * processes), 4)

    steady = steady_mfu = None
    if warm is not None and train_seconds - warm[0] > 0 and examples > warm[1]:
        later = (examples - warm[1], tokens - warm[2], train_seconds - warm[0])
        steady, steady_mfu = rate(later[0], later[2], 3), mfu(*later)
    return Throughput(
        samples_per_second=rate(examples, train_seconds, 3),
        tokens_per_second=rate(tokens, train_seconds, 1),
        padding_fraction=round(1 - tokens / padded, 4) if padded else 0.0,
        peak_memory_mb=round(peak_memory_mb(device), 1),
        mfu=mfu(examples, tokens, train_seconds),
        gpu_hours=round(seconds * processes / 3600, 4) if device.type == "cuda" else None,
        steady_samples_per_second=steady,
        steady_mfu=steady_mfu,
    )
