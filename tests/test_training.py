"""The training loop's record of itself: throughput, the averaged checkpoint, frozen embeddings, trackers that
work, and batches drawn in random length-grouped order."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import compose, demo_overrides, fresh_cache, run_demo_cell, xorder_cli
from xorder import records
from xorder.cell import identify
from xorder.data.batching import LengthGroupedBatchSampler
from xorder.encoders import tiny
from xorder.errors import XorderError
from xorder.pipeline.stage_cache import StageDir

FAST = (
    "trainer.intermediate.max_steps=12",
    "trainer.target.max_steps=12",
    "trainer.eval_every=4",
    "trainer.log_every=4",
    "data.synthetic_examples=200",
)


def test_a_short_run_sees_batches_from_the_whole_length_range():
    """Length grouping alone walks each megabatch longest first; the batches must be drawn in random order, so
    that the first steps of a short run are not the longest rows of the first megabatches."""
    lengths = [10 + i for i in range(320)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)
    batches = list(sampler)
    first = batches[:10]
    assert sorted(i for b in batches for i in b) == list(range(320))
    longest_first = [max(lengths[i] for i in b) for b in first]
    assert longest_first != sorted(longest_first, reverse=True)  # not a longest-to-shortest walk
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 60  # still grouped: random batches of 8 from 320 lengths spread over ~250
    sampler.set_epoch(1)
    assert list(sampler)[:10] != first


@pytest.mark.slow
def test_a_target_run_records_throughput_the_average_and_tensorboard(cache_dir: Path, tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    metrics, record = run_demo_cell(
        cache,
        tmp_path / "results",
        "order=english_only",
        *FAST,
        "trainer.trackers=[tensorboard]",
        "trainer.freeze_embeddings=true",
        "trainer.batch_size=auto",
    )
    for stage in metrics["stages"]:
        speed = stage["throughput"]
        assert speed["samples_per_second"] > 0 and speed["tokens_per_second"] > speed["samples_per_second"]
        assert 0 <= speed["padding_fraction"] < 1 and speed["peak_memory_mb"] > 0
        assert speed["mfu"] is None and speed["gpu_hours"] is None  # a CPU has neither
        assert speed["steady_samples_per_second"] > 0 and speed["steady_mfu"] is None  # past the first log window
        assert 0 < stage["examples"] <= 12 * 32 and stage["total_steps"] == 12
    assert records.validate(metrics) == []
    # batch_size=auto on a CPU: the whole effective batch in one micro-batch
    summary = json.loads(StageDir(cache / "stages" / metrics["stages"][0]["hash"]).summary.read_text())
    assert (summary["hparams"]["batch_size"], summary["hparams"]["grad_accum"]) == (32, 1)
    # the averaged checkpoint is a fourth selection with its own predictions
    assert set(metrics["scores"]) == {"en_dev", "oracle", "last", "average"}
    predictions = pd.read_parquet(record / records.PREDICTIONS)
    average = predictions[predictions["selection"] == "average"]
    assert len(average) == len(predictions[predictions["selection"] == "last"])
    accuracy = 100 * (average[(average.split == "test") & (average.language == "en")].eval("gold == prediction")).mean()
    assert accuracy == pytest.approx(metrics["scores"]["average"]["test"]["en"]["accuracy"])
    # frozen word embeddings: the English stage saved exactly the embeddings it started from
    english = StageDir(cache / "stages" / metrics["stages"][0]["hash"]).model
    base = tiny.path(cache)
    before, after = load_file(str(base / "model.safetensors")), load_file(str(english / "model.safetensors"))
    key = next(k for k in after if k.endswith("word_embeddings.weight"))
    assert torch.equal(before[key], after[key])
    assert not all(torch.equal(before[k], after[k]) for k in after if k in before and "encoder" in k)
    # TensorBoard's event files under the record's runs/, with the names of the HF Trainer, one run per cell
    events = EventAccumulator(str(record / "runs" / "xorder"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/learning_rate",
        "eval/english/en/accuracy",  # an intermediate stage's evaluations, apart from the target's
        "eval/de/accuracy",
        "test/zh/accuracy",
        "selected/average/test/de/accuracy",
        "throughput/target/samples_per_second",
    } <= tags
    # the cell's steps: the target's evaluations follow the English stage's 12 steps
    assert [e.step for e in events.Scalars("eval/en/accuracy")] == [16, 20, 24]
    assert [e.step for e in events.Scalars("train/loss")] == [4, 8, 12, 16, 20, 24]


def test_a_cell_is_one_tracker_run_named_grouped_and_tagged_by_its_axes():
    from xorder.pipeline import tracking

    cfg = compose("experiment=demo", "seed=3")
    seen: dict = {}

    class Accelerator:
        def init_trackers(self, project: str, config: dict, init_kwargs: dict) -> None:
            seen.update(project=project, config=config, **init_kwargs)

    tracking.start(Accelerator(), identify(cfg))
    name = identify(cfg).path
    assert name.endswith("/seed3") and seen["project"] == "xorder"
    assert seen["wandb"]["name"] == seen["mlflow"]["run_name"] == name
    assert seen["wandb"]["group"] == seen["mlflow"]["tags"]["group"] == name.removesuffix("/seed3")
    assert {"target=pawsx", "order=english_first", "tasks=mnli", "model=tiny", "seed=3"} <= set(seen["wandb"]["tags"])
    assert seen["mlflow"]["tags"]["multilingual"] == "translate_train"
    assert seen["config"]["trainer.lr"] == 1e-3  # the science config, flat, as trackers take it


@pytest.mark.slow
def test_a_tracker_without_its_package_stops_with_the_pip_command(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from xorder.pipeline import tracking

    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(XorderError, match=r"trainer.trackers names mlflow, but .* pip install mlflow"):
        tracking.check(["mlflow"])
    missing = next((name for name in ("wandb", "mlflow") if importlib.util.find_spec(name) is None), None)
    if missing is None:
        return  # both installed here: the check above is the whole test
    out = xorder_cli(
        "run", *demo_overrides(cache_dir, tmp_path / "results", "order=none", *FAST, f"trainer.trackers=[{missing}]")
    )
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")]
    assert len(errors) == 1 and f"pip install {missing}" in errors[0] and "Traceback" not in out.stderr
    assert not list((tmp_path / "results").glob("**/metrics.json"))


@pytest.mark.slow
def test_a_diverging_stage_stops_and_writes_no_record(cache_dir: Path, tmp_path: Path):
    for target in ("pawsx", "sts"):
        with pytest.raises(XorderError, match=r"stage target \[\w+\] diverged: .* at step \d+ of 12.*lr=1e\+06"):
            run_demo_cell(cache_dir, tmp_path / "results", "order=none", f"target={target}", *FAST, "trainer.lr=1e6")
    assert not list((tmp_path / "results").glob("**/metrics.json"))
    # from the command line: exit 2 with one line, and `status` calls the cell failed with the reason
    overrides = demo_overrides(cache_dir, tmp_path / "cli", "order=none", *FAST, "trainer.lr=1e6")
    out = xorder_cli("run", *overrides)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")][0].count("diverged") == 1
    status = xorder_cli("status", *overrides)
    cell = next(line for line in status.stdout.splitlines() if "/seed" in line)
    assert status.returncode != 0 and cell.split()[1] == "failed" and "diverged" in status.stdout + status.stderr
    assert not list((tmp_path / "cli").glob("**/metrics.json"))


@pytest.mark.slow
def test_a_joint_stage_trains_the_steps_of_both_sequential_stages(cache_dir: Path, tmp_path: Path):
    metrics, _ = run_demo_cell(
        cache_dir,
        tmp_path / "results",
        "order=joint",
        "trainer.intermediate.max_steps=12",
        "trainer.multilingual.max_steps=8",
        "trainer.target.max_steps=9",
        "target.evaluations=3",
        "trainer.eval_every=100",
        "data.synthetic_examples=200",
    )
    joint, target = metrics["stages"]
    assert joint["steps"] == 12 + 8  # matched: the English stage's 12 steps and the multilingual stage's 8
    summary = StageDir(cache_dir / "stages" / target["hash"]).summary
    assert [entry["step"] for entry in json.loads(summary.read_text())["history"]] == [3, 6, 9]


def test_micro_batches_are_the_largest_that_fit_and_add_up_to_the_effective_batch():
    from xorder.pipeline.batch_plan import split

    assert split(32, 1, lambda n: n <= 12) == (8, 4)  # 12 fits, but only divisors of 32 add up to it
    assert split(32, 2, lambda n: True) == (16, 1)
    assert split(32, 1, lambda n: n <= 1) == (1, 32)
    with pytest.raises(XorderError, match="cannot be split over 3 processes"):
        split(32, 3, lambda n: True)
    with pytest.raises(XorderError, match="not even one example"):
        split(32, 1, lambda n: False)


@pytest.mark.slow
def test_batch_size_auto_hashes_the_effective_batch_not_its_split():
    from conftest import compose
    from xorder.plan import plan

    def target_hash(*overrides: str) -> str:
        return plan(compose("experiment=demo", "order=none", "trainer.batch_size=auto", *overrides), 1)[-1].hash

    assert target_hash("trainer.grad_accum=4") == target_hash("trainer.grad_accum=1")
    assert target_hash("trainer.effective_batch_size=64") != target_hash()


@pytest.mark.slow
def test_speed_switches_that_draw_dropout_differently_enter_the_hash_only_when_set():
    from conftest import compose
    from xorder.plan import plan

    def target_hash(*overrides: str) -> str:
        return plan(compose("experiment=demo", "order=none", *overrides), 1)[-1].hash

    base = target_hash()
    assert target_hash("trainer.compile=null", "trainer.attention=null") == base
    assert len({base, target_hash("trainer.compile=default"), target_hash("trainer.attention=eager")}) == 3


@pytest.mark.slow
def test_a_compiled_encoder_trains_evaluates_and_records_its_steady_rate(cache_dir: Path, tmp_path: Path):
    """trainer.compile end to end (on the CPU: Inductor without CUDA graphs): the encoder runs compiled in training
    and evaluation, batches are padded to the compiled multiple, and the record is complete with a steady rate."""
    from torch._dynamo.utils import counters

    counters.clear()
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    metrics, _ = run_demo_cell(
        cache,
        tmp_path / "results",
        "order=none",
        "trainer.compile=default",
        "trainer.target.max_steps=6",
        "trainer.log_every=2",
        "target.evaluations=1",
        "data.synthetic_examples=200",
    )
    assert counters["stats"]["unique_graphs"] >= 1  # the encoder's forward went through torch.compile
    stage = metrics["stages"][-1]
    summary = json.loads(StageDir(cache / "stages" / stage["hash"]).summary.read_text())
    assert summary["hparams"]["compile"] == "default" and stage["steps"] == 6
    speed = stage["throughput"]
    assert speed["steady_samples_per_second"] > speed["samples_per_second"] > 0  # compilation is in the first window
    assert speed["padding_fraction"] > 0  # synthetic pairs padded up to a multiple of COMPILED_MULTIPLE
    assert records.validate(metrics) == [] and metrics["scores"]["last"]["test"]["en"]["accuracy"] >= 0


@pytest.mark.slow
def test_one_evaluation_is_its_own_average_without_a_second_pass(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With target.evaluations=1 the averaged checkpoint is the final model: its scores are the last evaluation's
    and the evaluation sets are not predicted again (a second full pass cost the real study a third of a cell)."""
    from xorder.pipeline import train

    predicted: list[tuple[str, int]] = []  # (stage, position in data.evals) of every set predicted
    predict = train._Run._predict

    def counted(self: train._Run, chosen: list[int]) -> list:
        predicted.extend((self.stage.name, i) for i in chosen)
        return predict(self, chosen)

    monkeypatch.setattr(train._Run, "_predict", counted)
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    metrics, _ = run_demo_cell(cache, tmp_path / "results", "order=none", *FAST, "target.evaluations=1")
    sets = sorted(i for _, i in predicted)
    assert {stage for stage, _ in predicted} == {"target"} and sets == list(range(len(sets))) and len(sets) > 1
    assert metrics["scores"]["average"] == metrics["scores"]["last"]
