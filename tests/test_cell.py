"""The cell's identity (`xorder.cell`) is derived once: its tasks and sources agree with what the planned stages
read, and no module below the app reads the composed Hydra config except those that must."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import compose
from xorder.cell import identify
from xorder.plan import MLM, plan

DEMO_CELLS = [
    ("order=none",),  # the baseline: no tasks, no multilingual variant
    ("order=english_first",),
    ("order=multilingual_only", "multilingual=mlm"),  # MLM text only: no tasks
    ("order=joint", "task=[mnli,hellaswag]"),  # translate-train beside English in one stage
    ("order=joint", "task=[mnli,hellaswag]", "multilingual=mlm"),
    ("order=multilingual_first", "task=squad", "target=sts"),
]


@pytest.mark.parametrize("overrides", DEMO_CELLS, ids=lambda o: " ".join(o))
def test_the_identity_agrees_with_the_planned_stages(overrides: tuple[str, ...]):
    cfg = compose("experiment=demo", *overrides)
    cell, stages = identify(cfg), plan(cfg)
    comps = [c for s in stages[:-1] for c in s.components]
    target = stages[-1].components[0].source_name
    assert cell.sources == "+".join([target, *sorted({c.source_name for c in comps} - {target})])
    assert cell.variant.split("-")[0] == cell.sources
    assert list(cell.tasks) == sorted({c.head for c in comps if c.variant != MLM})
    uses_multilingual = any(s.name in ("multilingual", "joint") for s in stages)
    assert (cell.multilingual != "-") == uses_multilingual
    assert cell.path.split("/") == [
        cell.target,
        cell.order,
        "+".join(cell.tasks) or "none",
        cell.multilingual,
        cell.model,
        cell.variant,
        f"seed{cell.seed}",
    ]
    assert cell.axes()["tasks"] == list(cell.tasks) and cell.config.seed == cell.seed


def test_identity_paths_of_demo_cells():
    """Pinned on the code before the identity had one module (records.cell_path): a record folder never moves."""
    path = lambda *o: identify(compose("experiment=demo", *o)).path  # noqa: E731
    assert path("order=none") == "pawsx/none/none/-/tiny/synthetic-fa9e2fe4/seed1"
    assert path("order=multilingual_only", "multilingual=mlm") == (
        "pawsx/multilingual_only/none/mlm/tiny/synthetic-f33ec026/seed1"
    )
    assert path("order=joint", "task=[mnli,hellaswag]", "multilingual=mlm") == (
        "pawsx/joint/hellaswag+mnli/mlm/tiny/synthetic-f33ec026/seed1"
    )
    assert path("trainer.lr=5e-4") == "pawsx/english_first/mnli/translate_train/tiny/synthetic-13393a41/seed1"
    # a cell whose plan fails (hellaswag has no hub translations) still has a folder for its error.txt
    no_source = identify(compose("order=joint", "task=[mnli,hellaswag]")).path
    assert no_source == "pawsx/joint/hellaswag+mnli/translate_train/xlmr_large/hub+none/seed1"


# Modules below the app that may read the composed (Hydra) config, and why.
ALLOWED = {
    "app.py": "the Hydra app: composes the cell",
    "cli.py": "the command line",
    "config_tree.py": "composition itself",
    "checks.py": "validates the raw config (its keys against the schema)",
    "cell.py": "derives the identity once (settings and science config keep ${data_root} symbolic)",
    "plan.py": "to_typed, the one conversion: plan() takes either form",
    "grid/summary.py": "a Hydra callback: reads the hydra node",
    "runtime/directories.py": "a Hydra callback's helper: reads the hydra node",
}


def test_only_the_allowed_modules_read_the_composed_config():
    root = Path(__file__).parent.parent / "src" / "xorder"
    readers = set()
    for file in root.rglob("*.py"):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "omegaconf":
                if any(alias.name == "DictConfig" for alias in node.names):
                    readers.add(file.relative_to(root).as_posix())
    assert readers <= set(ALLOWED), sorted(readers - set(ALLOWED))
