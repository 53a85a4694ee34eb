"""The README cannot drift: its generated blocks (between `<!-- BEGIN generated: NAME` and `<!-- END generated:
NAME -->`) must be what scripts/readme.py produces from the code. After a change that moves them, run
`python scripts/readme.py` and commit the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def check(*blocks: str, extra: tuple[str, ...] = (), timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "readme.py"), "--check", "--blocks", ",".join(blocks), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_config_groups_and_the_demo_grid_counts_in_the_readme_are_the_codes():
    """Every option of conf/ (me5_small, xnli_dev, real_study*, ...), the grid's cells and its shared stages, and the
    real study's tables as results/real_study/tables.md has them."""
    out = check("quickstart", "config-groups", "grid-counts", "real-study")
    assert out.returncode == 0, f"README.md differs from the code (python scripts/readme.py rewrites it):\n{out.stdout}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_demo_cell_and_the_demo_grid_tables_in_the_readme_come_from_a_run(cache_dir: Path, tmp_path: Path):
    """The demo grid's PAWS-X cells, trained (about 4 minutes on 2 cores with an empty stage cache): the table
    `make demo` prints and the tables `make grid` + `make tables` give, as the README shows them."""
    out = check("demo-cell", "demo-grid", extra=("--cache-dir", str(cache_dir), "--work", str(tmp_path)), timeout=1700)
    assert out.returncode == 0, f"README.md differs from the code (python scripts/readme.py rewrites it):\n{out.stdout}"
