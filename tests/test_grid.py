"""Grids: skip finished cells, continue half-finished grids, share stages between concurrent cells, report
status, and run one cell on two processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import demo_overrides, fresh_cache, xorder_cli
from xorder import records
from xorder.grid.status import cell_status

pytestmark = pytest.mark.slow  # whole cells end to end: `pytest -m 'not slow'` leaves them out

FAST = (
    "trainer.intermediate.max_steps=10",
    "trainer.target.max_steps=10",
    "trainer.eval_every=10",
    "data.synthetic_examples=200",
)


def metrics_files(root: Path) -> dict[str, float]:
    return {str(p.parent.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("**/metrics.json")}


def trained(root: Path) -> list[str]:
    """Hashes of the stages the records say were trained (not reused)."""
    return [
        s["hash"] for p in root.glob("**/metrics.json") for s in json.loads(p.read_text())["stages"] if not s["reused"]
    ]


def test_rerun_skips_finished_cells_and_continues_a_partial_grid(cache_dir: Path, tmp_path: Path):
    results = tmp_path / "results"
    args = demo_overrides(cache_dir, results, *FAST, "order=english_only")
    first = xorder_cli("run", "-m", *args, "target=pawsx,sts", "seed=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    done = metrics_files(results)
    assert len(done) == 2

    grid = xorder_cli("run", "-m", *args, "target=pawsx,sts", "seed=1,2", cwd=tmp_path)  # half finished
    assert grid.returncode == 0, grid.stderr[-2000:]
    after = metrics_files(results)
    assert len(after) == 4
    assert {k: after[k] for k in done} == done  # finished cells untouched
    assert (grid.stdout + grid.stderr).count("skip: complete record") == 2
    assert "grid: 4 cells: 2 trained, 0 reused, 2 skipped, 0 failed; next: xorder report" in grid.stdout

    # the whole grid again: every cell skipped, and the skip path never imports torch
    code = (
        "import sys; from xorder import cli; rc = cli.main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    again = subprocess.run(
        [sys.executable, "-c", code, "run", "-m", *args, "target=pawsx,sts", "seed=1,2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("skip: complete record") == 4
    assert "grid: 4 cells: 0 trained, 0 reused, 4 skipped, 0 failed" in again.stdout
    assert again.stdout.strip().endswith("no torch")
    assert metrics_files(results) == after


def test_concurrent_cells_train_a_shared_stage_once(cache_dir: Path, tmp_path: Path):
    """Two worker processes start two cells that need the same English stage: one trains it, one waits."""
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    results = tmp_path / "results"
    out = xorder_cli(
        "run",
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        *demo_overrides(cache, results, *FAST, "order=english_only"),
        "target=pawsx,sts",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    stages = [json.loads(p.read_text())["stages"] for p in results.glob("**/metrics.json")]
    assert len(stages) == 2
    english = [cell[0] for cell in stages]
    assert english[0]["hash"] == english[1]["hash"]
    assert sorted(s["reused"] for s in english) == [False, True]  # trained once, reused once
    assert len(trained(results)) == 3  # one English stage and two targets


def test_status_reports_done_missing_failed_and_running(cache_dir: Path, tmp_path: Path):
    results = tmp_path / "results"
    args = demo_overrides(
        cache_dir, results, *FAST, "task=qqp", "task.qqp.translation_source=local", f"data_root={tmp_path / 'nowhere'}"
    )
    # a target that learns (a cell predicting one class everywhere is degenerate, not done): 60 steps on 2000 rows
    args += ["trainer.target.max_steps=60", "data.synthetic_examples=2000"]
    # english_first needs QQP translations from local files that are not there; english_only does not:
    # the grid goes on past the failing cell, then exits 2 naming it
    out = xorder_cli("run", "-m", *args, "order=english_only,english_first", "seed=1", cwd=tmp_path)
    assert out.returncode == 2
    failed_path = cell_status([*args, "order=english_first", "seed=1"]).path  # where status looks: the same
    error = out.stderr.strip().splitlines()[-2:]
    assert error[0] == "xorder: error: 1 cell of the grid failed (the others ran):"
    assert error[1].startswith(f"  {failed_path}: qqp: no train file for 'de': ")
    assert "grid: 2 cells: 1 trained, 0 reused, 0 skipped, 1 failed; next: fix what failed" in out.stdout
    assert (out.stdout + out.stderr).count("does not exist") == 1  # the reason is said once
    assert len(metrics_files(results)) == 1

    status = xorder_cli("status", "-m", *args, "order=english_only,english_first", "seed=1,2", cwd=tmp_path)
    assert status.returncode == 3, status.stderr  # some cell failed
    lines = status.stdout.splitlines()
    variant = r"[a-z+]+-[0-9a-f]{8}"  # the data sources and the hash of the settings that differ from conf/
    assert any(re.match(rf"pawsx/english_only/qqp/-/tiny/{variant}/seed1 +done ", line) for line in lines)
    assert any(re.match(rf"pawsx/english_only/qqp/-/tiny/{variant}/seed2 +missing ", line) for line in lines)
    assert any(line.startswith(f"{failed_path} ") and " failed " in line for line in lines)
    # the finished cell's English stage is in the cache (`unlearned` where its few steps learned nothing)
    assert re.search(r"english\[[0-9a-f]{8}\]:(cached|unlearned)", status.stdout)
    assert lines[-1].startswith("cells: 4 (1 done, 1 failed, 2 missing)")

    failed = cell_status([*args, "order=english_first", "seed=1"])
    assert failed.state == "failed" and "does not exist" in failed.detail

    record_dir = results / cell_status([*args, "order=english_only", "seed=2"]).path
    with records.cell_lock(record_dir):
        assert cell_status([*args, "order=english_only", "seed=2"]).state == "running"
    assert cell_status([*args, "order=english_only", "seed=2"]).state == "missing"


def test_status_sees_a_stage_that_can_resume(cache_dir: Path, tmp_path: Path):
    from xorder.pipeline.checkpoint import LOOP_STATE
    from xorder.pipeline.stage_cache import StageDir

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = demo_overrides(cache, tmp_path / "results", *FAST, "order=english_only")
    english = cell_status(args).stages[0]
    assert english[2] == "missing"
    checkpoint = StageDir(cache / "stages" / english[1]).checkpoint
    checkpoint.mkdir(parents=True)
    (checkpoint / LOOP_STATE).write_text(json.dumps({"step": 7}))
    assert cell_status(args).stages[0][2] == "partial@7"


def test_one_cell_on_two_processes_writes_one_record(cache_dir: Path, tmp_path: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    results = tmp_path / "results"
    out = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "xorder",
            "run",
            *demo_overrides(cache, results, *FAST, "order=english_only"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    written = list(results.glob("**/metrics.json"))
    assert len(written) == 1 and len(re.findall(r"^record: ", out.stdout, re.MULTILINE)) == 1
    metrics = json.loads(written[0].read_text())
    assert records.validate(metrics) == []
    assert metrics["provenance"]["device"].endswith("x2")
    summary = json.loads((cache / "stages" / metrics["stages"][-1]["hash"] / "summary.json").read_text())
    assert summary["processes"] == 2
    assert not list(results.glob("**/" + records.PREDICTIONS + ".*"))  # no stray temporary files


def test_cells_that_differ_only_in_an_unused_axis_share_one_record(cache_dir: Path, tmp_path: Path):
    """The baseline does not depend on the task: a grid over tasks runs it once, and reruns stay clean."""
    results = tmp_path / "results"
    args = demo_overrides(cache_dir, results, *FAST, "order=none", "task=mnli,squad")
    for _ in range(2):
        out = xorder_cli("run", "-m", *args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
    assert [re.sub(r"/synthetic-[0-9a-f]{8}/", "/", p) for p in metrics_files(results)] == [
        "pawsx/none/none/-/tiny/seed1"
    ]
    assert not list(results.glob("**/" + records.ERROR))
