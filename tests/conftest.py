"""Shared fixtures: offline hub, one torch thread, one cache (tiny model, synthetic data, stages) per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session (XORDER_TEST_CACHE reuses one across sessions), one per pytest-xdist worker:
    tests assert which stages a run trained and which it reused, so workers must not share stages."""
    chosen = os.environ.get("XORDER_TEST_CACHE")
    path = (
        Path(chosen) / os.environ.get("PYTEST_XDIST_WORKER", "main")
        if chosen
        else tmp_path_factory.mktemp("xorder-cache")
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def fresh_cache(session_cache: Path, path: Path) -> Path:
    """An empty stage cache that borrows the session's built models (the tiny model takes seconds to build)."""
    from xorder.encoders import tiny

    tiny.ensure(session_cache)
    path.mkdir(parents=True)
    (path / "models").symlink_to(session_cache / "models", target_is_directory=True)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def xorder_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`xorder ARGS` in a fresh process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "xorder", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def demo_overrides(cache_dir: Path, results_dir: Path, *extra: str) -> list[str]:
    return ["experiment=demo", f"cache_dir={cache_dir}", f"results_dir={results_dir}", *extra]


def compose(*overrides: str):
    from xorder.config_tree import compose as compose_config

    return compose_config(list(overrides))


def run_demo_cell(cache_dir: Path, results_dir: Path, *extra: str) -> tuple[dict, Path]:
    """One cell in this process (no Hydra app): returns metrics.json's content and the record directory."""
    from xorder.cell import identify
    from xorder.pipeline.run import run_cell

    cell = identify(compose(*demo_overrides(cache_dir, results_dir, *extra)))
    record_dir = Path(results_dir) / cell.path
    return run_cell(cell, str(record_dir)), record_dir
