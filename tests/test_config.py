"""Every option of every config group composes into the typed schema, and the conf tree ships in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose
from xorder import config_tree, kinds
from xorder.config import XorderConfig
from xorder.plan import plan


def _options(group: str) -> list[str]:
    options = config_tree.options(group)
    assert options, f"config group {group} is empty"
    return options


@pytest.mark.slow
@pytest.mark.parametrize("group", ["model", "order", "multilingual", "target", "trainer", "experiment"])
def test_every_option_composes_typed_and_plans(group: str):
    for option in _options(group):
        cfg = compose(f"{group}={option}", "data.source=synthetic")
        typed = OmegaConf.to_object(cfg)
        assert isinstance(typed, XorderConfig)
        assert getattr(cfg, group if group != "experiment" else "model") is not None
        stages = plan(typed)
        assert stages[-1].name == "target"
        assert len(stages) == len(typed.order.stages) + 1


@pytest.mark.slow
def test_every_task_composes_alone_and_together():
    tasks = _options("task")
    assert {"anli", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "sst2"} <= set(tasks)
    for task in tasks:
        cfg = compose(f"task={task}", "data.source=synthetic")
        spec = OmegaConf.to_object(cfg).task[task]
        assert spec.name == task and spec.kind in kinds.names()
        assert "synthetic" in spec.sources and "synthetic" in spec.translations
    together = compose(f"task=[{','.join(tasks)}]", "order=joint", "data.source=synthetic")
    (joint, _target) = plan(together)
    assert sorted(joint.heads) == sorted(tasks)


@pytest.mark.parametrize("launcher", ["parallel", "local", "slurm"])
def test_launcher_presets_compose(launcher: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="xorder.conf", version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


@pytest.mark.slow
def test_order_files_match_the_design_table():
    expected = {
        "none": [],
        "english_only": ["english"],
        "multilingual_only": ["multilingual"],
        "english_first": ["english", "multilingual"],
        "multilingual_first": ["multilingual", "english"],
        "joint": ["joint"],
    }
    assert {o: list(compose(f"order={o}").order.stages) for o in _options("order")} == expected


@pytest.mark.slow
def test_installed_wheel_finds_its_configs_from_any_directory(tmp_path: Path):
    """A regular (non-editable) install, run from an unrelated directory, composes and lists tasks."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the new venv borrows this environment's dependencies, but xorder itself comes from the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "deps.pth").write_text("\n".join(deps) + "\n")
    target = tmp_path / "wheel-site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    Path(site, "00-xorder.pth").write_text(str(target) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "xorder", "tasks"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "pawsx" in out.stdout and "languages: de en es fr ja ko zh" in out.stdout
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import xorder.conf; print(xorder.conf.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    assert located.startswith(str(target))  # the wheel's copy, not the source tree
