"""Every stage learned, or the record says so (issue 20 item 3); useless cells are degenerate, never done (issue 24
item 5). Known answers for each kind's learning test, the notes and marks built on them, and demo cells that cannot
learn."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.metrics import r2_score
from test_report import classification_predictions, md_table, read_csv, write_record

from conftest import run_demo_cell, xorder_cli
from xorder import kinds
from xorder.config import TaskConfig
from xorder.data.stage import EvalSet
from xorder.errors import XorderError
from xorder.kinds.base import Learning, learned
from xorder.pipeline.evaluate import EvalResult, learning
from xorder.pipeline.record_writer import degenerate, learning_notes, unlearned
from xorder.report.command import build, options, parser

CLASSIFICATION, REGRESSION, MLM = kinds.get("classification"), kinds.get("regression"), kinds.get("mlm")


# ------------------------------------------------------------------------------------------------ the tests


def test_classification_beats_the_majority_rate_by_a_binomial_margin():
    """100 dev pairs, 36 of the commonest class (the published study's English stage scored 36/100): the bar is the
    95th percentile of Binomial(100, 0.36); one more right answer than the bar counts as learned, the bar itself
    does not."""
    gold = [0] * 36 + [1] * 32 + [2] * 32
    bar = int(binom.isf(0.05, 100, 0.36))
    stuck = CLASSIFICATION.learning(gold, [0] * 100)
    assert stuck is not None and (stuck.score, stuck.baseline, stuck.examples) == (36.0, 36.0, 100)
    assert not stuck.learned and stuck.margin == pytest.approx(bar + 0.5 - 36.0)
    for right, expected in ((bar, False), (bar + 1, True)):
        pred = [g if i < right else (g + 1) % 3 for i, g in enumerate(gold)]
        assert CLASSIFICATION.learning(gold, pred).learned is expected  # type: ignore[union-attr]
    assert "dev accuracy 36.00 against a majority rate of 36.00 (learned: above" in stuck.describe()
    assert CLASSIFICATION.learning([1] * 50, [1] * 50) is None  # one class: the dev set cannot show learning


def test_a_head_at_the_majority_rate_passes_in_at_most_5_percent_of_dev_sets():
    """The margin's false-alarm rate, measured: 2000 dev sets of 300 examples scored by a head that is right with
    the majority rate's probability (and knows nothing else). Binomial(300, 0.4) exceeds its bar of 134 with
    probability 0.0443; at 134 itself it would be 0.0564."""
    rng = np.random.default_rng(0)
    gold = [0] * 120 + [1] * 90 + [2] * 90  # majority rate 0.4
    passed = 0
    for _ in range(2000):
        right = rng.random(300) < 0.4
        pred = [g if r else (g + 1) % 3 for g, r in zip(gold, right)]
        passed += CLASSIFICATION.learning(gold, pred).learned  # type: ignore[union-attr]
    assert 0.03 <= passed / 2000 <= 0.055


def test_regression_is_judged_by_r2_against_the_gold_mean():
    gold = list(np.linspace(0.0, 5.0, 60))
    good = [g + 0.3 * np.sin(7 * g) for g in gold]
    found = REGRESSION.learning(gold, good)
    assert found is not None and found.learned and found.measure == "r2" and found.baseline == 0.0
    assert found.score == pytest.approx(r2_score(gold, good))
    mean = REGRESSION.learning(gold, [float(np.mean(gold))] * 60)
    assert mean is not None and mean.score == pytest.approx(0.0) and not mean.learned and not mean.beats_baseline
    rng = np.random.default_rng(3)  # a faint true slope under noise: better than the mean, not clearly
    barely = REGRESSION.learning(gold, [float(np.mean(gold)) + 0.05 * (g - 2.5) + rng.normal(0, 0.3) for g in gold])
    assert barely is not None and 0 < barely.score < barely.margin and not barely.learned and barely.beats_baseline


def test_mlm_is_judged_by_the_drop_of_its_dev_loss_from_step_0():
    """Per window: masked tokens (gold) and their summed loss (prediction), the same windows and masks at step 0."""
    rng = np.random.default_rng(1)
    tokens = list(rng.integers(5, 20, 200).astype(float))
    before = [t * 7.0 + rng.normal(0, 2) for t in tokens]
    found = MLM.learning(tokens, [b - 0.5 * t for b, t in zip(before, tokens)], (tokens, before))
    assert found is not None and found.learned and found.measure == "loss" and found.lower_is_better
    assert found.baseline - found.score == pytest.approx(0.5)
    noise = [b + rng.normal(0, 2) for b in before]
    assert not MLM.learning(tokens, noise, (tokens, before)).learned  # type: ignore[union-attr]
    # a hair off every window alike (one step at lr 1e-9): "significant" by t alone, not learning
    hair = MLM.learning(tokens, [b - 1e-7 * t for b, t in zip(before, tokens)], (tokens, before))
    assert hair is not None and hair.beats_baseline and not hair.learned
    assert hair.margin == pytest.approx(0.01 * hair.baseline)
    assert MLM.learning(tokens, before, None) is None  # no step-0 evaluation: no test
    assert MLM.learning(tokens, before, (tokens[:-1], before[:-1])) is None  # not the same windows


def test_a_stage_learned_when_every_tested_head_did():
    good = Learning("accuracy", 60.0, 35.0, 5.0, 300).__dict__
    bad = Learning("accuracy", 36.0, 35.0, 5.0, 300).__dict__
    assert learned({"a": good}) is True and learned({"a": good, "b": bad}) is False
    assert learned({}) is None and learned(None) is None


def test_a_head_is_tested_on_its_dev_sets_pooled_over_languages():
    """Two languages of 60 pairs each, 26 right (43%): neither clears its bar of 26 (Binomial(60, 1/3)), the 120
    together clear theirs (49)."""
    task = TaskConfig(name="xnli_dev", kind="classification")
    gold = [0, 1, 2] * 20
    pred = [g if i < 26 else (g + 1) % 3 for i, g in enumerate(gold)]
    sets = [(EvalSet("xnli_dev", task, "dev", lang, None, None, []), lang) for lang in ("de", "fr")]
    results = [(evalset, EvalResult("xnli_dev", "dev", lang, {}, [], gold, pred)) for evalset, lang in sets]
    assert not CLASSIFICATION.learning(gold, pred).learned  # type: ignore[union-attr]
    pooled = learning(results)
    assert Learning(**pooled["xnli_dev"]).examples == 120 and Learning(**pooled["xnli_dev"]).learned


# ------------------------------------------------------------------------------------------------ the notes


def test_a_stage_that_did_not_learn_gets_a_note_and_one_that_did_does_not():
    stages = [
        {
            "name": "english",
            "hash": "a" * 20,
            "learning": {"xnli_dev": Learning("accuracy", 36.0, 36.0, 8.0, 100).__dict__},
        },
        {
            "name": "multilingual",
            "hash": "b" * 20,
            "learning": {"mlm": Learning("loss", 5.0, 6.0, 0.1, 80, True).__dict__},
        },
        {"name": "target", "hash": "c" * 20, "learning": None},
    ]
    notes = learning_notes(stages)
    assert len(notes) == 2
    assert notes[0].startswith("stage english [aaaaaaaa] did not learn xnli_dev: dev accuracy 36.00 against a majority")
    assert "stage target [cccccccc] was trained by an xorder that did not test whether it learned" in notes[1]


def frame(gold: list, prediction: list, split: str = "test", language: str = "de") -> pd.DataFrame:
    n = len(gold)
    return pd.DataFrame(
        {
            "selection": "en_dev",
            "step": 1,
            "split": split,
            "language": language,
            "id": list(map(str, range(n))),
            "gold": gold,
            "prediction": prediction,
        }
    )


def test_one_value_in_every_set_or_r2_at_most_0_is_degenerate():
    constant = pd.concat([frame([0, 1, 1], [0, 0, 0]), frame([1, 0, 1], [0, 0, 0], language="fr")])
    assert (
        degenerate(constant, [])
        == "the selected (en_dev) model predicts one value (0) in each of its 2 evaluation sets"
    )
    mixed = pd.concat([constant, frame([1, 0, 1], [1, 0, 0], language="es")])
    assert degenerate(mixed, []) is None  # one set where it tells examples apart: not degenerate
    gold = list(np.linspace(0.0, 5.0, 40))
    stuck = frame(gold, [1.0 + 0.01 * g for g in gold], split="dev", language="en")
    assert "R² ≤ 0" in str(degenerate(stuck, unlearned(stuck, REGRESSION, "en")))


# ------------------------------------------------------------------------------------------------ the tables


def mark(folder: Path, **fields: object) -> None:
    path = folder / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def scores(value: float) -> dict:
    return {"en_dev": {"test": {lang: {"accuracy": value} for lang in ("de", "en")}}}


def report(results: Path, include_degenerate: bool = False) -> tuple[str, dict]:
    """tables.md with identifiers and plain numbers, and build's counts."""
    raw = options(parser().parse_args(["--raw-names", "--plain"]))
    done = build(
        results,
        results / "tables",
        resamples=99,
        stream=io.StringIO(),
        options=raw,
        include_degenerate=include_degenerate,
    )
    return (results / "tables" / "tables.md").read_text(), done


def test_degenerate_records_stay_out_of_the_means_and_are_counted(tmp_path: Path):
    for seed, value in ((1, 70.0), (2, 80.0)):
        write_record(tmp_path, "english_only", seed, scores(value))
    mark(write_record(tmp_path, "english_only", 3, scores(50.0)), degenerate="one value everywhere")
    md, done = report(tmp_path)
    assert "3 records (1 degenerate, left out of the means), 0 missing, 0 skipped" in md
    assert done["counts"] == "3 records (1 degenerate, left out of the means), 0 missing, 0 skipped"
    row = md_table(md, "mean ± std over seeds")[("mnli", "-", "english_only ∅")]
    assert row["seeds"] == "2 (+1∅)" and row["de"] == "75.00 ± 7.07"  # seeds 1 and 2 only
    assert "one value everywhere" in md_table(md, "degenerate records")[("mnli", "-", "english_only")]["why"]
    md, _ = report(tmp_path, include_degenerate=True)
    row = md_table(md, "mean ± std over seeds")[("mnli", "-", "english_only ∅")]
    assert row["seeds"] == "3" and row["de"] == "66.67 ± 15.28"


def test_the_order_effect_leaves_degenerate_records_out(tmp_path: Path):
    """Their predictions too: the paired comparison keeps only the seed where both orders learned."""
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 40)
    for seed in (1, 2):
        for order in ("english_first", "multilingual_first"):
            right = {"de": rng.random(40) < 0.7}
            folder = write_record(
                tmp_path, order, seed, scores(70.0), predictions=classification_predictions(right, gold)
            )
            if (order, seed) == ("english_first", 2):
                mark(folder, degenerate="predicts one value (0)")
    report(tmp_path)
    effect = {r["language"]: r for r in read_csv(tmp_path / "tables" / "order_effect.csv")}
    assert effect["de"]["n_seeds"] == "1" and effect["de"]["n_examples"] == "40"


def test_a_target_whose_every_record_is_degenerate_says_so(tmp_path: Path):
    write_record(tmp_path, "english_only", 1, scores(70.0), target="sts", primary="accuracy")
    for seed in (1, 2):
        mark(write_record(tmp_path, "none", seed, scores(57.5)), degenerate="predicts one value (0)")
    md, _ = report(tmp_path)
    assert "### sts · tiny · test" in md and "### pawsx · tiny · test" not in md  # no table of means for PAWS-X
    table = md_table(md, "pawsx · tiny: degenerate records")
    assert table[("none", "-", "none")]["records"] == "2"
    assert "Every record of this target and model is degenerate" in md and "no model here learned the target" in md


def test_rows_built_on_a_stage_that_did_not_learn_are_marked(tmp_path: Path):
    stage = {
        "name": "english",
        "hash": "e" * 20,
        "tasks": ["mnli"],
        "languages": ["en"],
        "steps": 1,
        "seconds": 1.0,
        "reused": False,
        "learned": False,
    }
    target = {**stage, "name": "target", "hash": "t" * 20, "learned": True}
    write_record(tmp_path, "english_only", 1, scores(60.0), stages=[stage, target])
    write_record(tmp_path, "none", 1, scores(60.0))
    md, _ = report(tmp_path)
    rows = md_table(md, "mean ± std over seeds")
    assert ("mnli", "-", "english_only §") in rows and ("none", "-", "none") in rows
    assert "§: some of the row's records are built on a stage that did not beat its baseline" in md
    assert ("mnli", "-", "english_only §") in md_table(md, "Δ against")


# ------------------------------------------------------------------------------------------------ demo cells


@pytest.mark.slow
def test_stages_of_one_step_are_noted_the_learning_target_is_not(cache_dir: Path, tmp_path: Path):
    """Stages that cannot learn (one step at a learning rate of 1e-9) get the note and the `unlearned` state in
    `xorder status`: an English classification stage (against its majority rate) and a masked-LM stage (against
    its own dev loss before its first step, which the loop measures); the target after them learns the synthetic
    English task, judged on its English dev set alone (its en_dev selection set), and gets none."""
    from xorder.grid.status import cell_status

    extra = [
        "order=english_first",
        "task=mnli",
        "target=pawsx",
        "multilingual=mlm",
        "trainer.intermediate.max_steps=1",
        "trainer.intermediate.lr=1e-9",
        "trainer.multilingual.max_steps=1",
        "trainer.multilingual.lr=1e-9",
    ]
    metrics, record = run_demo_cell(cache_dir, tmp_path, *extra)
    english, multilingual, target = metrics["stages"]
    assert english["learned"] is False and multilingual["learned"] is False and target["learned"] is True
    test = Learning(**english["learning"]["mnli"])
    assert test.measure == "accuracy" and test.examples == 256 and not test.learned
    mlm = Learning(**multilingual["learning"]["mlm"])
    assert mlm.measure == "loss" and mlm.baseline == pytest.approx(mlm.score, abs=1e-3) and not mlm.learned
    predictions = pd.read_parquet(record / "predictions.parquet")
    english_dev = predictions.query("selection == 'en_dev' and split == 'dev' and language == 'en'")
    assert Learning(**target["learning"]["pawsx"]).examples == len(english_dev)
    notes = [n for n in metrics["notes"] if "did not learn" in n]
    assert len(notes) == 2 and notes[0].startswith(
        f"stage english [{english['hash'][:8]}] did not learn mnli: dev accuracy"
    )
    assert notes[1].startswith(f"stage multilingual [{multilingual['hash'][:8]}] did not learn mlm: dev loss")
    status = cell_status(["experiment=demo", f"cache_dir={cache_dir}", f"results_dir={tmp_path}", *extra])
    assert [state for _, _, state in status.stages] == ["unlearned", "unlearned", "cached"]
    assert status.state == "done"
    assert json.loads((record / "metrics.json").read_text())["stages"][0]["learned"] is False


@pytest.mark.slow
def test_lr_10_predicts_one_class_everywhere_and_is_degenerate_not_done(cache_dir: Path, tmp_path: Path):
    overrides = [
        "experiment=demo",
        f"cache_dir={cache_dir}",
        f"results_dir={tmp_path}",
        "order=none",
        "target=pawsx",
        "trainer.lr=10",
    ]
    metrics, _ = run_demo_cell(cache_dir, tmp_path, *overrides[3:])
    assert metrics["degenerate"].startswith("the selected (en_dev) model predicts one value")
    assert any(n.startswith("degenerate cell: ") for n in metrics["notes"])
    status = xorder_cli("status", *overrides)
    line = next(line for line in status.stdout.splitlines() if line.startswith("pawsx/"))
    assert status.returncode == 1 and line.split()[1] == "degenerate", status.stdout
    assert "predicts one value" in status.stdout and "cells: 1 (1 degenerate)" in status.stdout
    md, done = report(tmp_path)
    assert done["degenerate"] == 1 and "1 records (1 degenerate, left out of the means)" in md


# ------------------------------------------------------------------------------------------------ bad values


def test_the_longest_row_is_what_the_position_embeddings_hold_when_the_tokenizer_does_not_say(cache_dir: Path):
    """RoBERTa's family counts positions from after the padding index: the tiny model's 514 positions hold 512
    tokens (as XLM-R's do), which a tokenizer without a model_max_length does not tell."""
    from xorder.encoders import tiny
    from xorder.pipeline.model import length_range, load_tokenizer

    path = str(tiny.ensure(cache_dir))
    tokenizer = load_tokenizer(path)
    assert length_range(path, None, tokenizer) == (6, 512)
    tokenizer.model_max_length = int(1e30)  # what transformers sets when a tokenizer names no length
    assert length_range(path, None, tokenizer) == (6, 512)


@pytest.mark.parametrize("length", [3, 100000])
def test_a_max_length_the_model_cannot_take_stops_before_any_work(cache_dir: Path, tmp_path: Path, length: int):
    """Issue 24 item 7: 3 leaves no room for a pair's special tokens (the tokenizer then silently stops
    truncating); 100000 runs past the tiny model's 512 positions on the first long row."""
    message = rf"target.max_length={length} is invalid: model tiny takes 6 to 512 tokens per row"
    with pytest.raises(XorderError, match=message):
        run_demo_cell(cache_dir, tmp_path, "order=none", f"target.max_length={length}")
    with pytest.raises(XorderError, match=r"trainer.max_length=600 is invalid: model tiny takes 6 to 512"):
        run_demo_cell(cache_dir, tmp_path, "order=english_only", "task=mnli", "trainer.max_length=600")
    assert not (cache_dir / "stages").exists() or not any(tmp_path.rglob("metrics.json"))


def test_a_name_that_is_not_one_folder_is_refused_and_nothing_is_written_outside(cache_dir: Path, tmp_path: Path):
    """Issue 24 item 8: model.name=../../../../../escape_m would put the record outside results_dir (here: in
    tmp_path/a)."""
    results = tmp_path / "a" / "results"
    for override, key in (("model.name=../../../../../escape_m", "model.name"), ("target.name=../../x", "target.name")):
        out = xorder_cli("run", "experiment=demo", override, f"results_dir={results}", f"cache_dir={cache_dir}")
        errors = [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")]
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert errors[0].startswith(f"xorder: error: {key}=") and "no / or \\, and not . or .." in errors[0]
    assert list(tmp_path.rglob("*")) == []  # not the record (it would be under tmp_path/a), not even results_dir


def test_nan_in_the_base_model_names_the_weights_not_the_learning_rate(cache_dir: Path, tmp_path: Path):
    """Issue 24 item 10: a NaN planted in a model's weights (a local model folder: a damaged built model under
    cache_dir/models would be built again, by its digest)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from xorder.encoders import tiny

    local = tmp_path / "local-model"
    shutil.copytree(tiny.ensure(cache_dir), local)
    weights = local / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in sorted(tensors) if k.endswith("attention.self.query.weight"))
    tensors[name][0, 0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(
        XorderError, match=r"has weights that are not finite \(NaN or infinite\) in .*query.weight"
    ) as err:
        run_demo_cell(cache_dir, tmp_path / "results", "order=none", f"model.path={local}")
    assert "learning rate" not in str(err.value)
