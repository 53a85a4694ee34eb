"""Where one training step's time goes at XLM-R shapes on a GPU: the ceiling that xorder's MFU is read against.

gpu_mfu.py measures xorder's whole loop; this script takes the loop apart. One process, one random XLM-R-shaped
encoder (Large by default) with a classification head on the first token, built on the GPU, bf16 autocast over
fp32 weights (what `trainer.precision=bf16` does), batch --batch × --max-length random tokens. Each variant trains
--warmup steps untimed (compilation happens there), then --steps timed steps between two device synchronisations:

  fwd_bwd            forward and backward only: the model's own cost
  step               + gradient clipping at 1.0 and fused AdamW over every parameter (xorder's step, eager)
  step_frozen_emb    the same with the word embeddings frozen (no 250k-row gradient, no AdamW state for it)
  step_batch2x       the same at twice the batch: how far a step is bound by launching kernels, not running them
  step_compiled      the encoder's forward under torch.compile (static shapes), then the same step
  step_cudagraphs    the encoder under torch.compile(mode="reduce-overhead"): CUDA graphs, no launch overhead

For each: ms per step, samples/s, MFU (xorder.pipeline.throughput's count: 6·N over the encoder's layers plus
attention), and how long the host took to enqueue the step (a host that needs as long as the device means a
launch-bound step).
`step` is also profiled for a few steps: device time by kernel class, and the device-busy share of the wall time.
`--quick` runs tiny shapes on the CPU, to check that the script works where there is no GPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from gpu_mfu import QUICK_SHAPES, SHAPES, Shape
from harness import describe, machine, parser, save, table, verdict

VARIANTS = ("fwd_bwd", "step", "step_frozen_emb", "step_batch2x", "step_compiled", "step_cudagraphs")


def build(shape: Shape, device: Any) -> Any:
    """A seeded random XLM-R encoder (250,002-row vocabulary) plus a two-way linear head, on `device`."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(**shape.config())
    torch.manual_seed(0)
    with device:
        encoder = XLMRobertaModel(config, add_pooling_layer=False)
        head = torch.nn.Linear(config.hidden_size, 2)
    return torch.nn.ModuleDict({"encoder": encoder, "head": head})


def measure(a: argparse.Namespace, variant: str) -> dict[str, Any]:
    """Build, train `variant` for warmup + timed steps; its timings."""
    import torch
    import torch.nn.functional as F

    from xorder.pipeline.throughput import flops_per_token, peak_tflops

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = build((QUICK_SHAPES if a.quick else SHAPES)[a.shape], device)
    encoder, head = model["encoder"], model["head"]
    if variant == "step_frozen_emb":
        encoder.get_input_embeddings().weight.requires_grad_(False)
    forward: Callable[..., Any] = encoder.forward
    if variant == "step_compiled":
        forward = torch.compile(encoder.forward, dynamic=False)
    if variant == "step_cudagraphs":
        forward = torch.compile(encoder.forward, mode="reduce-overhead", dynamic=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True) if variant != "fwd_bwd" else None
    batch = a.batch * (2 if variant == "step_batch2x" else 1)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 250_000, (batch, a.max_length), generator=generator).to(device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (batch,), generator=generator).to(device)
    dtype = torch.bfloat16 if cuda else torch.float32

    def one_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            states = forward(input_ids=ids, attention_mask=mask).last_hidden_state
            loss = F.cross_entropy(head(states[:, 0]).float(), labels)
        loss.backward()
        if optimizer is not None:
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            optimizer.step()
        model.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    began = time.perf_counter()
    for _ in range(a.warmup):
        one_step()
    sync()
    warmup_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(a.steps):
        one_step()
    enqueued = time.perf_counter() - began
    sync()
    seconds = time.perf_counter() - began
    per_token = flops_per_token(encoder, float(a.max_length))
    peak = peak_tflops(torch.cuda.get_device_name(), "bf16") if cuda else None
    tokens_per_s = a.steps * batch * a.max_length / seconds
    result = {
        "variant": variant,
        "batch": batch,
        "ms_per_step": 1000 * seconds / a.steps,
        "host_ms_per_step": 1000 * enqueued / a.steps,
        "samples_per_second": a.steps * batch / seconds,
        "mfu": per_token * tokens_per_s / (peak * 1e12) if peak else None,
        "warmup_seconds": warmup_s,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    if variant == "step" and cuda:
        result["profile"] = profile(one_step, a.profile_steps)
    return result


def profile(one_step: Callable[[], None], steps: int) -> dict[str, Any]:
    """Device time per step by kernel class (matmuls, attention, optimizer, the rest) and the busy share."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.cuda.synchronize()
    began = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            one_step()
        torch.cuda.synchronize()
    wall_ms = 1000 * (time.perf_counter() - began) / steps
    classes = {"matmul": ("gemm", "cutlass", "matmul", "nvjet", "sm90"), "attention": ("attention", "fmha", "flash")}
    classes |= {"optimizer": ("adam",), "elementwise": ("elementwise", "vectorized", "reduce", "layer_norm")}
    by_class: dict[str, float] = {}
    top = []
    for event in prof.key_averages():
        device_us = event.self_device_time_total  # kernels only: an operator's own device time is its kernels'
        if not device_us:
            continue
        key = event.key.lower()
        kind = next((name for name, marks in classes.items() if any(m in key for m in marks)), "other")
        by_class[kind] = by_class.get(kind, 0.0) + device_us / 1000 / steps
        top.append((device_us / 1000 / steps, event.count // steps, event.key[:90]))
    busy = sum(by_class.values())
    top.sort(reverse=True)
    return {
        "wall_ms_per_step": wall_ms,
        "device_ms_per_step": busy,
        "busy_fraction": busy / wall_ms,
        "by_class_ms": {k: round(v, 3) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"ms": round(ms, 3), "per_step": n, "kernel": name} for ms, n, name in top[:15]],
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--shape", default="xlmr_large", choices=list(SHAPES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens there)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    a = p.parse_args()
    variants = a.variants.split(",")
    if unknown := sorted(set(variants) - set(VARIANTS)):
        p.error(f"unknown variants {unknown} (valid: {', '.join(VARIANTS)})")
    m = machine()
    print(describe(m))
    if a.quick:
        a.batch, a.max_length, a.warmup, a.steps = 4, 16, 1, 2
        variants = [v for v in variants if v != "step_cudagraphs"]  # CUDA graphs need CUDA
    elif not m["gpu"]:
        raise SystemExit("no GPU here: this script measures GPU steps (--quick checks it with tiny shapes)")
    import torch

    torch.set_num_threads(1)
    results = []
    for variant in variants:
        results.append(measure(a, variant))
        r = results[-1]
        print(f"  {variant}: {r['ms_per_step']:.1f} ms/step (warmup {r['warmup_seconds']:.0f} s)", flush=True)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print(f"\n{a.shape}, batch {a.batch} x {a.max_length} tokens, bf16 autocast, {a.steps} timed steps\n")
    print(
        table(
            ["variant", "batch", "ms/step", "host ms/step", "samples/s", "MFU", "warmup s", "peak MB"],
            [
                [
                    r["variant"],
                    r["batch"],
                    r["ms_per_step"],
                    r["host_ms_per_step"],
                    r["samples_per_second"],
                    r["mfu"],
                    r["warmup_seconds"],
                    r["peak_memory_mb"],
                ]
                for r in results
            ],
        )
    )
    for r in results:
        if "profile" in r:
            prof = r["profile"]
            print(
                f"\nprofile of `{r['variant']}`: wall {prof['wall_ms_per_step']:.1f} ms/step, device busy "
                f"{prof['device_ms_per_step']:.1f} ms ({prof['busy_fraction']:.0%}); by class (ms/step): "
                + ", ".join(f"{k} {v:.2f}" for k, v in prof["by_class_ms"].items())
            )
            print(table(["ms/step", "calls/step", "kernel"], [list(k.values()) for k in prof["top_kernels"]]))
    path = save("gpu_step", a.quick, {"machine": m, "settings": vars(a) | {"out": None}, "results": results})
    print(f"\nresults: {path}")
    verdict({}, a.quick)


if __name__ == "__main__":
    main()
