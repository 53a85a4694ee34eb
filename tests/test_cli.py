"""The command line: dispatch, Hydra overrides and -m, errors users can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import demo_overrides, xorder_cli


@pytest.mark.slow
def test_help_lists_commands_without_heavy_imports():
    code = (
        "import sys; from xorder import cli; rc = cli.main(['--help']); "
        "print(sorted(m for m in ('torch', 'hydra', 'transformers', 'datasets') if m in sys.modules)); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("run", "prepare", "status", "report", "tasks"):
        assert f"  {command} " in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"  # --help imports none of the heavy libraries


@pytest.mark.slow
def test_unknown_command_exits_2_with_usage():
    out = xorder_cli("sideways")
    assert out.returncode == 2
    assert out.stderr.startswith("usage: xorder {")
    assert "unknown command 'sideways'" in out.stderr


@pytest.mark.slow
def test_unknown_option_names_valid_choices_without_traceback():
    for override, group, valid in (("task=nosuch", "task", "mnli"), ("order=sideways", "order", "english_first")):
        out = xorder_cli("run", override)
        assert out.returncode == 2, out.stderr
        assert f"Could not find '{group}/" in out.stderr
        assert f"\t{valid}" in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_misspelt_key_and_wrong_type_fail_before_any_work(tmp_path: Path):
    for override, needle in (
        ("trainer.lrr=1", "unknown key trainer.lrr: did you mean trainer.lr?"),
        ("trainer.lr=fast", "could not be converted to Float"),
    ):
        out = xorder_cli("run", override, f"results_dir={tmp_path}")
        assert out.returncode == 2
        assert needle in out.stderr
        assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())  # nothing was run, nothing written


@pytest.mark.slow
def test_overrides_reach_the_composed_config():
    out = xorder_cli("run", "--cfg", "job", "task=[qqp,hellaswag]", "order=joint", "trainer.lr=3e-5", "seed=7")
    assert out.returncode == 0, out.stderr
    assert "  qqp:\n" in out.stdout and "  hellaswag:\n" in out.stdout and "  mnli:\n" not in out.stdout
    assert "name: joint" in out.stdout
    assert "lr: 3.0e-05" in out.stdout
    assert "seed: 7" in out.stdout


@pytest.mark.slow
def test_multirun_runs_every_cell(cache_dir: Path, tmp_path: Path):
    steps = ["trainer.target.max_steps=8", "trainer.eval_every=8"]
    out = xorder_cli("run", "-m", *demo_overrides(cache_dir, tmp_path, "order=none", "seed=1,2", *steps), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = sorted(tmp_path.glob("**/metrics.json"))
    assert [r.parent.name for r in records] == ["seed1", "seed2"]
    assert {json.loads(r.read_text())["seed"] for r in records} == {1, 2}


@pytest.mark.slow
def test_tasks_lists_every_task_and_target_with_languages():
    out = xorder_cli("tasks")
    assert out.returncode == 0, out.stderr
    for name in ("anli", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "sst2"):
        assert f"\n  {name} " in out.stdout
    assert "languages: de en es fr ja ko zh" in out.stdout  # pawsx
    assert "languages: ar bg de el en es fr hi ru sw th tr ur vi zh" in out.stdout  # xnli
    for order in ("none", "english_only", "multilingual_only", "english_first", "multilingual_first", "joint"):
        assert f"\n  {order} " in out.stdout
    assert "translate_train" in out.stdout and "\n  mlm " in out.stdout
