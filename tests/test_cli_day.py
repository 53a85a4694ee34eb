"""A day at the terminal: help for every command, a quiet closed pipe, status exit codes, the line a grid ends
with, the warning for a grid preset run without -m, and record paths that keep variants of a cell apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import compose, demo_overrides, xorder_cli
from xorder import config_tree, records
from xorder.cell import identify
from xorder.data.identity import config_hash
from xorder.grid import summary

FAST = (
    "trainer.intermediate.max_steps=6",
    "trainer.multilingual.max_steps=6",
    "trainer.target.max_steps=6",
    "trainer.eval_every=6",
    "data.synthetic_examples=200",
)


def fake_complete_record(*overrides: str) -> Path:
    """A record that the skip check accepts as complete for this config (no training: the checks are the point)."""
    cfg = compose(*overrides)
    record_dir = Path(cfg.results_dir) / identify(cfg).path
    record_dir.mkdir(parents=True)
    for name in (records.CONFIG, records.PREDICTIONS):
        (record_dir / name).write_text("")
    (record_dir / records.METRICS).write_text(
        json.dumps({"schema": records.SCHEMA, "stages": [], "provenance": {"config_hash": config_hash(cfg)}})
    )
    return record_dir


@pytest.mark.slow
def test_every_command_answers_help():
    for command, needle in (
        ("run", "== Configuration groups =="),
        ("status", "usage: xorder status"),
        ("prepare", "usage: xorder prepare"),
        ("tasks", "usage: xorder tasks"),
        ("report", "usage: xorder report"),
        ("cache", "usage: xorder cache"),
    ):
        out = xorder_cli(command, "--help")
        assert out.returncode == 0, (command, out.stderr)
        assert needle in out.stdout, command
        assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly():
    """`xorder tasks | head -1` where the reader is gone before the listing is written: no traceback, and the
    status of a process that SIGPIPE ended."""
    child = subprocess.Popen([sys.executable, "-m", "xorder", "tasks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # long before the child has composed anything to print
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141
    assert err == ""


@pytest.mark.slow
def test_status_exit_code_says_whether_work_remains(tmp_path: Path):
    cell = demo_overrides(tmp_path / "cache", tmp_path / "results", "order=none")
    grid = ["-m", *cell, "seed=1,2"]
    fake_complete_record(*cell, "seed=1")
    assert xorder_cli("status", *grid).returncode == 1  # seed 2 is missing
    fake_complete_record(*cell, "seed=2")
    done = xorder_cli("status", *grid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("cells: 2 (2 done)")
    records.write_error(Path(tmp_path / "results") / identify(compose(*cell, "seed=3")).path, "no data")
    assert xorder_cli("status", "-m", *cell, "seed=1,2,3").returncode == 3  # a failed cell


@pytest.mark.slow
def test_a_grid_of_finished_cells_ends_with_one_summary_line(tmp_path: Path):
    cell = demo_overrides(tmp_path / "cache", tmp_path / "results", "order=none")
    for seed in (1, 2):
        fake_complete_record(*cell, f"seed={seed}")
    out = xorder_cli("run", "-m", *cell, "seed=1,2")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("grid: ")]
    assert lines == [
        (
            "grid: 2 cells: 0 trained, 0 reused, 2 skipped, 0 failed; next: xorder report --results "
            f"{tmp_path / 'results'}"
        )
    ]
    assert "xorder: error" not in out.stderr


@pytest.mark.slow
def test_a_grid_preset_without_m_warns_before_its_one_cell(tmp_path: Path):
    where = [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}"]
    fake_complete_record("experiment=demo_grid", *where)  # the one cell it runs: skipped, so the test is quick
    out = xorder_cli("run", "experiment=demo_grid", *where)
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if line.startswith("xorder: warning:")]
    assert len(warning) == 1
    assert "a grid over order, task, target, seed" in warning[0] and "without -m only one cell runs" in warning[0]
    assert warning[0].endswith(f"xorder run -m experiment=demo_grid {' '.join(where)}")
    assert "skip: complete record" in out.stdout + out.stderr
    plain = xorder_cli("run", "experiment=demo", *where)  # the same cell (demo_grid only adds sweeps), no grid
    assert plain.returncode == 0 and "xorder: warning" not in plain.stderr
    assert "skip: complete record" in plain.stdout + plain.stderr


def test_the_grid_outcome_is_read_from_the_records(tmp_path: Path):
    start = time.time()
    old = start - 3600

    def cell(
        name: str,
        *,
        metrics: list[bool] | None = None,
        error: bool = False,
        job: float = start + 1,
        written: float = start + 2,
    ) -> None:
        """A record directory whose job started at `job` (Hydra's overrides.yaml) and whose files were written at
        `written`."""
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text("[]\n")
        os.utime(folder / ".hydra" / "overrides.yaml", (job, job))
        if metrics is not None:
            (folder / records.METRICS).write_text(json.dumps({"stages": [{"reused": r} for r in metrics]}))
            os.utime(folder / records.METRICS, (written, written))
        if error:
            records.write_error(folder, "missing data")
            os.utime(folder / records.ERROR, (written, written))

    cell("a/trained", metrics=[True, False])
    cell("a/reused", metrics=[True, True])
    cell("b/skipped", metrics=[False], written=old)
    cell("b/failed", error=True)
    cell("c/unfinished")
    cell("c/other_grid", metrics=[False], job=old, written=old)  # a job of an earlier grid
    done = summary.outcome(tmp_path, start)
    assert (done.trained, done.reused, done.skipped, done.failed, done.unfinished) == (
        ["a/trained"],
        ["a/reused"],
        ["b/skipped"],
        ["b/failed"],
        ["c/unfinished"],
    )
    assert done.line() == "5 cells: 1 trained, 1 reused, 1 skipped, 1 failed, 1 unfinished"


@pytest.mark.slow
def test_record_paths_keep_variants_of_a_cell_apart():
    path = lambda *o: identify(compose(*o)).path  # noqa: E731
    assert path() == "pawsx/english_first/mnli/translate_train/xlmr_large/hub/seed1"  # the defaults: no hash
    demo, real = path("experiment=demo"), path("experiment=demo_pawsx_real")
    assert re.fullmatch(r"pawsx/english_first/mnli/translate_train/tiny/synthetic-[0-9a-f]{8}/seed1", demo)
    assert re.fullmatch(r"pawsx/english_first/mnli/translate_train/tiny/xtreme\+synthetic-[0-9a-f]{8}/seed1", real)
    lr = path("trainer.lr=3e-5")
    assert re.fullmatch(r"pawsx/english_first/mnli/translate_train/xlmr_large/hub-[0-9a-f]{8}/seed1", lr)
    assert path("trainer.lr=3e-5", "seed=2") == lr.replace("seed1", "seed2")  # the seeds of a variant side by side
    assert path("trainer.lr=5e-5") != lr
    assert path("target.source=xtreme").split("/")[5] == "xtreme+hub"
    assert path("multilingual.languages=[de,fr]") != path()
    assert path("order=english_only", "multilingual.languages=[de,fr]") == path("order=english_only")  # unused
    assert path("trainer.log_every=7", "trainer.save_every=9", "cache_dir=/elsewhere") == path()  # no number changes
    assert compose("experiment=demo").results_dir == "results"  # (the path is relative to results_dir)


@pytest.mark.slow
@pytest.mark.parametrize("group", ["model", "order", "multilingual", "target", "task"])
def test_every_shipped_option_is_its_own_reference(group: str):
    """An option used as shipped adds no settings hash: the pure reading of conf/ agrees with Hydra's composition."""
    for option in config_tree.options(group):
        used = ["order=english_first", f"task={option}"] if group == "task" else [f"{group}={option}"]
        assert identify(compose(*used, "data.source=synthetic")).settings == {}, option
    assert identify(compose("trainer=smoke")).settings  # another trainer preset changes the numbers


@pytest.mark.slow
def test_the_demo_and_its_real_pawsx_variant_both_run(cache_dir: Path, tmp_path: Path, shared_data: Path):
    """`make demo`, then the README's next command: two records side by side, not an error."""
    results = tmp_path / "results"
    first = xorder_cli("run", *demo_overrides(cache_dir, results, "order=none", *FAST), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    real = xorder_cli(
        "run",
        *demo_overrides(
            cache_dir, results, "experiment=demo_pawsx_real", "order=none", f"data_root={shared_data}", *FAST
        ),
        cwd=tmp_path,
    )
    assert real.returncode == 0, real.stderr[-2000:]
    variants = sorted(p.parent.parent.name for p in results.glob("**/metrics.json"))
    assert len(variants) == 2 and variants[0].startswith("synthetic-") and variants[1].startswith("xtreme-")
