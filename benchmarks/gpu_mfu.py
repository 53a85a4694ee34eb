"""Training throughput and model FLOPs utilisation (MFU) of xorder's loop at XLM-R Base and XLM-R Large shapes.

THE REAL NUMBERS NEED A GPU: the record's MFU (xorder.pipeline.throughput: 6·N non-embedding parameters plus attention
per trained token, against the device's dense bf16 peak) exists on CUDA devices only. `--quick` runs tiny shapes in fp32
on the CPU, to check that the script works where there is no GPU.

Each shape is a randomly initialised XLMRobertaForMaskedLM with XLM-R's sizes (base: 12 layers, hidden 768; large:
24 layers, hidden 1024; XLM-R's vocabulary of 250,002 rows, 514 positions), built into a temporary directory with
xorder's tiny SentencePiece tokenizer, so no hub is needed. Each is trained by `xorder run` on an order=none
PAWS-X cell (the first 1500 real English dev pairs, ../shared/data) in bf16, batch 32, max_length 128, --steps
steps with no evaluation during training; tokens/s, samples/s, padding, peak GPU memory and MFU come from the
record's stages[].throughput (training time only), whole and steady (after the first logging window, where
compilation and CUDA-graph recording happen). The tiny tokenizer, trained on the synthetic corpus, cuts real
English into about 155 pieces a pair (XLM-R's own: about 55), so nearly every pair is truncated to max_length: the
figures are those of full 128-token sequences, an upper end for XLM-R on PAWS-X's shorter dynamically padded
batches. Each model build and each run is its own process; runs are repeated interleaved (median reported).
`--modes eager,reduce-overhead` trains each shape eager and with `trainer.compile=reduce-overhead` (CUDA graphs) on
the same built model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from harness import DATA, describe, machine, parser, pin_threads, run, run_arm, save, table, verdict, write_arm


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    intermediate: int

    def config(self) -> dict[str, Any]:
        """XLMRobertaConfig's arguments for this shape with XLM-R's vocabulary and positions (no tokenizer ids)."""
        return {
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": POSITIONS,
            "type_vocab_size": 1,
            "layer_norm_eps": 1e-5,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
        }


SHAPES = {"xlmr_base": Shape(768, 12, 12, 3072), "xlmr_large": Shape(1024, 24, 16, 4096)}
QUICK_SHAPES = {"xlmr_base": Shape(32, 2, 2, 64), "xlmr_large": Shape(64, 4, 4, 128)}
EAGER = "eager"  # --modes: no torch.compile
VOCAB_SIZE = 250_002  # XLM-R's
POSITIONS = 514  # XLM-R's: 512 tokens after the padding offset


def build(shape: Shape, out: Path) -> dict[str, Any]:
    """A seeded random XLM-R-shaped masked-LM model and the tiny tokenizer, saved where `model.path` finds them."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

    from xorder.encoders import tiny

    pin_threads()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.ensure(out.parent / "tiny")))
    config = XLMRobertaConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape.config(),
    )
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return {"parameters": sum(p.numel() for p in model.parameters())}


def overrides(name: str, model_dir: Path, work: Path, a: argparse.Namespace) -> list[str]:
    """The `xorder run` overrides of one training of the shape at this script's settings (`a`: --steps, --batch,
    --max-length, --precision, --log-every, --override): a target-only PAWS-X cell, one evaluation at the end."""
    return [
        "experiment=demo_pawsx_real",
        f"model={name}",
        f"model.path={model_dir}",
        "order=none",
        f"data_root={DATA}",
        f"cache_dir={work / 'cache'}",
        f"results_dir={work / 'results'}",
        "target.languages=[en]",
        "target.evaluations=1",
        f"target.max_length={a.max_length}",
        f"trainer.precision={a.precision}",
        "trainer.lr=2e-5",
        f"trainer.batch_size={a.batch}",
        "trainer.grad_accum=1",
        f"trainer.log_every={a.log_every}",
        "trainer.save_every=1000000",
        f"trainer.target.max_steps={a.steps}",
        "trainer.target.epochs=1000",
        "trainer.target.eval_examples=8",
        *a.override,
    ]


def train(name: str, model_dir: Path, work: Path, a: argparse.Namespace, mode: str) -> dict[str, Any]:
    """One `xorder run` of the shape, eager or compiled in `mode`; what its record says about the training."""
    compiled = [] if mode == EAGER else [f"trainer.compile={mode}"]
    run([sys.executable, "-m", "xorder", "run", *overrides(name, model_dir, work, a), *compiled], f"{name} {mode}")
    record = json.loads(next((work / "results").rglob("metrics.json")).read_text())
    stage = record["stages"][-1]
    return {
        **stage["throughput"],
        "steps": stage["steps"],
        "examples": stage["examples"],
        "device": record["provenance"]["device"],
        "precision": record["provenance"]["precision"],
    }


def run_options(p: argparse.ArgumentParser, steps: int = 300) -> argparse.ArgumentParser:
    """The settings of each training (`overrides`), shared with cells_per_gpu.py."""
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps per run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--log-every", type=int, default=25, help="the steady rate is measured after the first window")
    p.add_argument("--precision", default="bf16", help="trainer.precision (--quick: no, i.e. fp32)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="an extra `xorder run` override, e.g. trainer.attention=sdpa",
    )
    return p


def quick_settings(a: argparse.Namespace) -> None:
    """--quick: a few fp32 steps of small batches, once (tiny shapes, on a CPU)."""
    if a.quick:
        a.steps, a.batch, a.log_every, a.precision, a.repeats = 4, 8, 2, "no", 1


def main() -> None:
    p = run_options(parser(__doc__))
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    p.add_argument(
        "--modes",
        default=EAGER,
        help="comma-separated: eager and/or trainer.compile modes (reduce-overhead, ...), each on the same built model",
    )
    p.add_argument("--shape", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    quick_settings(a)
    if unknown := sorted(set(a.shapes.split(",")) - set(SHAPES)):
        p.error(f"unknown shapes {unknown} (valid: {', '.join(SHAPES)})")
    shapes = {name: (QUICK_SHAPES if a.quick else SHAPES)[name] for name in a.shapes.split(",")}
    if a.arm:  # the only arm run through --arm: building a model
        write_arm(a.out, build(shapes[a.shape], a.model_dir))
        return
    m = machine()
    print(describe(m))
    if not m["gpu"] and not a.quick:
        sys.exit(
            "no GPU here: XLM-R shapes would train for hours and the record carries no MFU on a CPU "
            "(--quick checks the script with tiny shapes)"
        )
    modes = a.modes.split(",")
    label = {(name, mode): name if mode == EAGER else f"{name} {mode}" for name in shapes for mode in modes}
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in label.values()}
    parameters = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in shapes:
            args = ["--shape", name, "--model-dir", str(work / "models" / name), *(["--quick"] if a.quick else [])]
            parameters[name] = run_arm(__file__, "build", args, work / "build.json")["parameters"]
        for repeat in range(a.repeats):
            print(f"repeat {repeat + 1} of {a.repeats}", flush=True)
            for (name, mode), key in label.items():
                with tempfile.TemporaryDirectory(dir=work) as run_dir:
                    runs[key].append(train(name, work / "models" / name, Path(run_dir), a, mode))
    keys = (
        "samples_per_second",
        "tokens_per_second",
        "padding_fraction",
        "peak_memory_mb",
        "mfu",
        "steady_samples_per_second",
        "steady_mfu",
    )
    summary = {
        name: {key: None if any(r[key] is None for r in rs) else median([r[key] for r in rs]) for key in keys}
        for name, rs in runs.items()
    }
    device = runs[next(iter(runs))][0]["device"]
    print(
        f"\nrandom XLM-R shapes, {a.steps} steps of batch {a.batch}, max_length {a.max_length}, precision "
        f"{a.precision}, median of {a.repeats} interleaved runs per shape ({device})\n"
    )
    print(
        table(
            [
                "shape",
                "parameters (M)",
                "samples/s",
                "tokens/s",
                "padding",
                "peak memory MB",
                "MFU",
                "steady samples/s",
                "steady MFU",
            ],
            [
                [
                    name,
                    f"{parameters[name.split()[0]] / 1e6:.0f}",
                    v["samples_per_second"],
                    v["tokens_per_second"],
                    v["padding_fraction"],
                    v["peak_memory_mb"],
                    v["mfu"],
                    v["steady_samples_per_second"],
                    v["steady_mfu"],
                ]
                for name, v in summary.items()
            ],
        )
    )
    path = save(
        "gpu_mfu",
        a.quick,
        {
            "machine": m,
            "shapes": {name: asdict(shape) for name, shape in shapes.items()},
            "parameters": parameters,
            "vocab_size": VOCAB_SIZE,
            "steps": a.steps,
            "batch": a.batch,
            "max_length": a.max_length,
            "precision": a.precision,
            "modes": modes,
            "repeats": a.repeats,
            "quick": a.quick,
            "runs": runs,
            "summary": summary,
        },
    )
    print(f"\nresults: {path}")
    verdict({}, a.quick)


if __name__ == "__main__":
    main()
