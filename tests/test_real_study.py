"""The real small study's presets (README "A real small study"): what each of its cells trains and evaluates. The
committed tables in results/real_study/ depend on these settings; scripts/real_study.sh runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, compose
from xorder.plan import plan

MULTILINGUAL = {"ar", "de", "es", "fr", "tr", "zh"}


@pytest.mark.parametrize(("target", "epochs", "max_steps", "eval_cap"), [("sts", 5, None, 320), ("pawsx", 1, 20, 40)])
def test_a_real_study_cell_trains_what_the_readme_says(
    shared_data: Path, target: str, epochs: int, max_steps: int | None, eval_cap: int
):
    cfg = compose(
        f"experiment=real_study_{target}",
        f"data_root={shared_data}",
        "order=english_first",
        "multilingual=translate_train",
        "seed=1",
    )
    assert cfg.model.name == "me5_small"
    english, multilingual, last = plan(cfg, processes=1)
    assert (english.name, multilingual.name, last.name) == ("english", "multilingual", "target")
    (task,) = english.components
    # the English stage: every training pair, 2 epochs at 1e-4, judged on every held-out pair (it must learn)
    assert task.task.name == "xnli_dev" and task.languages == ("en",) and english.hparams.max_examples_per_task == 1998
    assert task.source.splits["train"].split == "dev[:1998]" and task.source.splits["dev"].split == "dev[1998:]"
    assert (english.hparams.epochs, english.hparams.lr, english.hparams.eval_examples) == (2, 1e-4, 500)
    (translated,) = multilingual.components
    assert translated.variant == "translate_train" and set(translated.languages) == MULTILINGUAL
    # the multilingual stage as much as the English one: 333 pairs in each of 6 languages, 2 epochs at 1e-4
    assert translated.max_examples == 333 and multilingual.hparams.max_examples_per_task == 1998
    assert (multilingual.hparams.epochs, multilingual.hparams.lr, multilingual.hparams.eval_examples) == (2, 1e-4, 500)
    assert last.hparams.lr == 5e-5 and last.hparams.max_examples_per_task == 500
    for stage in (english, multilingual, last):
        assert stage.hparams.freeze_embeddings
    # the target: English training only, one evaluation at its end, capped evaluation sets
    assert last.languages == ["en"] and last.components[0].task.name == target
    assert (last.hparams.epochs, last.hparams.max_steps) == (epochs, max_steps)
    assert last.hparams.evaluations == 1 and last.hparams.eval_cap == eval_cap


def test_the_study_sweeps_five_orders_two_multilingual_variants_three_seeds():
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "experiment"
    for target in ("sts", "pawsx"):
        params = OmegaConf.load(conf / f"real_study_{target}.yaml").hydra.sweeper.params
        assert params.order.split(",") == [
            "none",
            "english_only",
            "multilingual_only",
            "english_first",
            "multilingual_first",
        ]
        assert params.multilingual.split(",") == ["translate_train", "mlm"] and params.seed.split(",") == [
            "1",
            "2",
            "3",
        ]


def test_the_committed_tables_are_what_the_committed_records_give(tmp_path: Path):
    """A reader recomputes every mean and interval of results/real_study/ from its committed records (metrics.json,
    predictions.parquet): the report is byte-identical for the same records."""
    from xorder import report

    study = ROOT / "results" / "real_study"
    records = str(study / "records")
    assert report.main(["--results", records, "--out", str(tmp_path / "main")]) == 0
    against_none = ["--out", str(tmp_path / "vs_none"), "--compare", "english_first,none"]
    assert report.main(["--results", records, *against_none]) == 0
    for made, committed in ((tmp_path / "main", study), (tmp_path / "vs_none", study / "vs_none")):
        for name in ("tables.md", "summary.csv", "order_effect.csv"):
            assert (made / name).read_text() == (committed / name).read_text(), f"{committed / name} differs"
