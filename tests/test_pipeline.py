"""One cell end to end: every order, stage reuse through the cache, resume after SIGKILL, determinism, records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import compose, demo_overrides, fresh_cache, run_demo_cell, xorder_cli
from xorder import records
from xorder.cell import identify

pytestmark = pytest.mark.slow  # whole cells end to end: `pytest -m 'not slow'` leaves them out

FAST = (
    "trainer.intermediate.max_steps=20",
    "trainer.multilingual.max_steps=20",
    "trainer.target.max_steps=20",
    "trainer.eval_every=10",
    "data.synthetic_examples=400",
)
PAWSX = ["de", "en", "es", "fr", "ja", "ko", "zh"]


def reused(metrics: dict) -> dict[str, bool]:
    return {stage["name"]: stage["reused"] for stage in metrics["stages"]}


def test_every_order_runs_and_cells_share_stage_prefixes(cache_dir: Path, tmp_path: Path):
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    run = lambda order: run_demo_cell(cache, tmp_path / "results", f"order={order}", *FAST)[0]  # noqa: E731
    assert reused(run("english_only")) == {"english": False, "target": False}
    assert reused(run("english_first")) == {"english": True, "multilingual": False, "target": False}
    assert reused(run("multilingual_only")) == {"multilingual": False, "target": False}
    # same first stage as multilingual_only; its English stage starts from another encoder, so it is new
    assert reused(run("multilingual_first")) == {"multilingual": True, "english": False, "target": False}
    assert reused(run("joint")) == {"joint": False, "target": False}
    none = run("none")
    assert reused(none) == {"target": False}
    assert none["tasks"] == [] and none["multilingual"] == "-"
    cells = sorted(
        str(p.parent.relative_to(tmp_path / "results")).replace(f"/{p.parent.parent.name}/", "/")
        for p in (tmp_path / "results").glob("**/metrics.json")
    )  # without the variant folder
    assert {p.parent.parent.name.split("-")[0] for p in (tmp_path / "results").glob("**/metrics.json")} == {"synthetic"}
    assert cells == sorted(
        [
            "pawsx/english_only/mnli/-/tiny/seed1",
            "pawsx/english_first/mnli/translate_train/tiny/seed1",
            "pawsx/multilingual_only/mnli/translate_train/tiny/seed1",
            "pawsx/multilingual_first/mnli/translate_train/tiny/seed1",
            "pawsx/joint/mnli/translate_train/tiny/seed1",
            "pawsx/none/none/-/tiny/seed1",
        ]
    )


def test_a_second_target_trains_only_its_target_stage(cache_dir: Path, tmp_path: Path):
    pawsx, _ = run_demo_cell(cache_dir, tmp_path, "order=english_first", *FAST)
    sts, record = run_demo_cell(cache_dir, tmp_path, "order=english_first", "target=sts", *FAST)
    assert [s["hash"] for s in sts["stages"][:2]] == [s["hash"] for s in pawsx["stages"][:2]]
    assert reused(sts) == {"english": True, "multilingual": True, "target": False}
    assert sts["primary_metric"] == "pearson"
    test = sts["scores"]["en_dev"]["test"]
    assert set(test) == {"de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh"}
    assert set(test["de"]) == {"pearson", "spearman"}
    assert set(sts["scores"]["en_dev"]["sts17"]) == {"ar-ar", "ar-en", "es-es", "es-en", "en-en", "tr-en"}
    assert "sts17" not in sts["scores"]["oracle"]  # no dev set in those language pairs to choose on
    predictions = pd.read_parquet(record / records.PREDICTIONS)
    assert predictions["prediction"].dtype.kind == "f"


def test_joint_multi_task_stage_trains_one_head_per_task(cache_dir: Path, tmp_path: Path):
    metrics, _ = run_demo_cell(
        cache_dir, tmp_path, "task=[mnli,qqp,hellaswag]", "order=joint", "multilingual.languages=[de,fr]", *FAST
    )
    joint = metrics["stages"][0]
    assert joint["name"] == "joint" and joint["tasks"] == ["hellaswag", "mnli", "qqp"]
    assert joint["languages"] == ["de", "en", "fr"]
    summary = json.loads((cache_dir / "stages" / joint["hash"] / "summary.json").read_text())
    evaluated = set(summary["history"][-1]["scores"]["dev"])
    assert {"mnli/en", "mnli/de", "qqp/en", "hellaswag/fr"} <= evaluated  # every head is evaluated
    assert metrics["tasks"] == ["hellaswag", "mnli", "qqp"]


def test_record_is_complete_and_matches_the_documented_schema(cache_dir: Path, tmp_path: Path):
    metrics, record = run_demo_cell(cache_dir, tmp_path, "order=english_only", *FAST)
    on_disk = json.loads((record / records.METRICS).read_text())
    assert on_disk == metrics
    assert records.validate(on_disk) == []
    assert records.validate({**on_disk, "scores": {"en_dev": {}}}) != []  # the validator does reject
    for selection in records.SELECTIONS:
        assert set(metrics["scores"][selection]["test"]) == set(PAWSX)
    predictions = pd.read_parquet(record / records.PREDICTIONS)
    assert list(predictions.columns) == ["selection", "step", "split", "language", "id", "item", "gold", "prediction"]
    counts = predictions.groupby(["selection", "split", "language"]).size()
    assert len(counts) == len(records.SELECTIONS) * 2 * 7 and counts.nunique() == 1  # every example once per selection
    en_test = predictions[
        (predictions.selection == "en_dev") & (predictions.split == "test") & (predictions.language == "en")
    ]
    accuracy = 100 * (en_test.gold == en_test.prediction).mean()
    assert accuracy == pytest.approx(metrics["scores"]["en_dev"]["test"]["en"]["accuracy"])
    config = OmegaConf.load(record / records.CONFIG)
    assert config.order.name == "english_only" and "${" not in OmegaConf.to_yaml(config)  # resolved


def test_same_config_and_seed_give_identical_scores(cache_dir: Path, tmp_path: Path):
    first, _ = run_demo_cell(cache_dir, tmp_path / "a", "order=english_only", "seed=3", *FAST)
    fresh = fresh_cache(cache_dir, tmp_path / "fresh-cache")
    second, _ = run_demo_cell(fresh, tmp_path / "b", "order=english_only", "seed=3", *FAST)
    assert not any(reused(second).values())  # trained again from scratch, not read back
    assert second["scores"] == first["scores"]
    other_seed, _ = run_demo_cell(fresh, tmp_path / "c", "order=english_only", "seed=4", *FAST)
    assert other_seed["scores"] != first["scores"]


def test_rerun_skips_a_complete_record_and_refuses_a_different_config(cache_dir: Path, tmp_path: Path):
    args = demo_overrides(cache_dir, tmp_path, "order=none", *FAST)
    assert xorder_cli("run", *args, cwd=tmp_path).returncode == 0
    record = next(tmp_path.glob("**/metrics.json"))
    before = record.stat().st_mtime_ns
    again = xorder_cli("run", *args, cwd=tmp_path)
    assert again.returncode == 0 and "skip: complete record" in again.stdout + again.stderr
    assert record.stat().st_mtime_ns == before
    # another learning rate is another record directory (the record path's variant), never this record
    assert identify(compose(*args, "trainer.lr=5e-4")).path != str(record.parent.relative_to(tmp_path))
    # a complete record of another config in this very directory (as after training on another number of
    # processes, which the path does not show) is never reused silently
    metrics = json.loads(record.read_text())
    metrics["provenance"]["config_hash"] = "0" * 16
    record.write_text(json.dumps(records.seal(record.parent, metrics)))  # sealed as that other run would have
    stale = xorder_cli("run", *args, cwd=tmp_path)
    assert stale.returncode == 2
    assert "holds a record of a different config" in stale.stderr and "force=true" in stale.stderr
    forced = xorder_cli("run", *args, "force=true", cwd=tmp_path)
    assert forced.returncode == 0 and record.stat().st_mtime_ns != before


def kill_after_checkpoint(args: list[str], cwd: Path, cache: Path, step: int) -> int:
    """Start `xorder run ARGS`, SIGKILL it once a stage has a checkpoint at `step` or later; that step."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xorder", "run", *args],
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        found = [
            p for p in cache.glob("stages/*/state/checkpoint/loop.json") if json.loads(p.read_text())["step"] >= step
        ]
        if found:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return json.loads(found[0].read_text())["step"]
        time.sleep(0.2)
    raise AssertionError("no stage reached the checkpoint before the run ended")


def test_killed_cell_resumes_without_retraining_finished_stages(cache_dir: Path, tmp_path: Path):
    """SIGKILL during the target stage, after its first checkpoint; the rerun reuses the English stage,
    resumes the target where it was saved, and ends with the scores of an uninterrupted run."""
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = demo_overrides(
        cache,
        tmp_path / "results",
        "order=english_only",
        "trainer.intermediate.max_steps=20",
        "trainer.target.max_steps=120",
        "trainer.target.epochs=10",
        "trainer.save_every=20",
        "trainer.eval_every=40",
        "data.synthetic_examples=400",
    )
    saved_step = kill_after_checkpoint(args, tmp_path, cache, 40)
    assert not list((tmp_path / "results").glob("**/metrics.json"))  # nothing half-written

    rerun = xorder_cli("run", *args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming at step {saved_step} of 120" in rerun.stdout + rerun.stderr
    metrics = json.loads(next((tmp_path / "results").glob("**/metrics.json")).read_text())
    assert reused(metrics) == {"english": True, "target": False}
    assert metrics["stages"][1]["steps"] == 120

    fresh = fresh_cache(cache_dir, tmp_path / "fresh")
    uninterrupted, _ = run_demo_cell(fresh, tmp_path / "uninterrupted", *args[3:])
    assert uninterrupted["scores"] == metrics["scores"]  # the resumed run drew exactly the same batches


def test_killed_mlm_stage_resumes_exactly(cache_dir: Path, tmp_path: Path):
    """The same for a masked-LM stage, whose masks are random: a resumed stage sees the very same masks."""
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = demo_overrides(
        cache,
        tmp_path / "results",
        "order=multilingual_only",
        "multilingual=mlm",
        "multilingual.languages=[de,fr]",
        "trainer.multilingual.max_steps=80",
        "trainer.multilingual.epochs=10",
        "trainer.target.max_steps=10",
        "trainer.save_every=20",
        "trainer.eval_every=20",
        "data.synthetic_examples=400",
    )
    kill_after_checkpoint(args, tmp_path, cache, 40)
    assert xorder_cli("run", *args, cwd=tmp_path).returncode == 0
    resumed = json.loads(next((tmp_path / "results").glob("**/metrics.json")).read_text())
    fresh = fresh_cache(cache_dir, tmp_path / "fresh")
    uninterrupted, _ = run_demo_cell(fresh, tmp_path / "uninterrupted", *args[3:])
    mlm = resumed["stages"][0]["hash"]
    histories = [json.loads((c / "stages" / mlm / "summary.json").read_text())["history"] for c in (cache, fresh)]
    assert histories[0] == histories[1]  # masked-token accuracy at every evaluation, before and after the kill
    assert uninterrupted["scores"] == resumed["scores"]


def test_early_stopping_keeps_the_best_evaluation(cache_dir: Path, tmp_path: Path):
    """With a learning rate too small to change the score, the stage stops after `patience` evaluations
    without improvement and keeps the weights of its best evaluation."""
    metrics, _ = run_demo_cell(
        cache_dir,
        tmp_path,
        "order=english_only",
        "trainer.intermediate.lr=1e-12",
        "trainer.intermediate.max_steps=100",
        "trainer.intermediate.epochs=50",
        "trainer.eval_every=10",
        "trainer.patience=2",
        "trainer.target.max_steps=10",
        "data.synthetic_examples=400",
    )
    english = metrics["stages"][0]
    assert english["steps"] == 30  # best at 10, no better at 20 and 30: stop
    summary = json.loads((cache_dir / "stages" / english["hash"] / "summary.json").read_text())
    assert summary["stopped_early"] and summary["best_step"] == 10
    assert [h["step"] for h in summary["history"]] == [10, 20, 30]
