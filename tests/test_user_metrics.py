"""Metrics users bring: `evaluate:<id or path>` in a task's or target's metrics, loaded with Hugging Face
`evaluate`, scored per language and selection like the built-in metrics, recorded and tabled the same way; a hub id
offline fails with one line saying how to fetch it. The module used here ships in tests/metrics/."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, compose, run_demo_cell
from xorder.errors import XorderError
from xorder.kinds import metrics

EXACT_SHARE = f"evaluate:{ROOT / 'tests' / 'metrics' / 'exact_share'}"  # the share of exact matches, 0-1
FAST = ("order=none", "trainer.target.max_steps=8", "trainer.eval_every=4", "data.synthetic_examples=200")


@pytest.mark.slow
def test_an_evaluate_metric_is_scored_recorded_and_tabled_like_a_built_in_one(cache_dir: Path, tmp_path: Path):
    from xorder.report import build

    results = tmp_path / "results"
    scored, _ = run_demo_cell(cache_dir, results, *FAST, f"target.metrics=[accuracy,{EXACT_SHARE}]")
    assert scored["primary_metric"] == "accuracy"
    compared = 0
    for selection, splits in scored["scores"].items():
        for split, languages in splits.items():
            for language, values in languages.items():
                # the same predictions: exact_share is accuracy as a fraction
                where = (selection, split, language)
                assert values[EXACT_SHARE] == pytest.approx(values["accuracy"] / 100, abs=1e-6), where
                compared += 1
    assert compared == 4 * 2 * 7  # every selection, split (dev, test) and language of PAWS-X
    build(results, tmp_path / "tables", resamples=9, include_degenerate=True)  # a few steps: plumbing, not learning
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    mine = summary[(summary["metric"] == EXACT_SHARE) & (summary["selection"] == "en_dev")]
    assert {"de", "en", "zh", "avg", "avg_non_en"} <= set(mine["language"])
    accuracy = summary[(summary["metric"] == "accuracy") & (summary["selection"] == "en_dev")]
    both = mine.merge(accuracy, on=["split", "language"], suffixes=("", "_accuracy"))
    assert len(both) == len(mine) and all(
        math.isclose(a, b / 100, abs_tol=1e-4) for a, b in zip(both["mean"], both["mean_accuracy"])
    )


def test_a_local_module_scores_and_picks_the_number_it_is_named_after():
    share = metrics.external(EXACT_SHARE)
    assert share([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5  # (gold, predictions): two of four agree
    assert metrics.external(f"{EXACT_SHARE}#examples")([0, 1, 1], [0, 1, 1]) == 3.0  # `#key` picks another number
    with pytest.raises(XorderError, match=r"returns exact_share, examples: name the number .*#KEY"):
        metrics.external(f"{EXACT_SHARE}#nope")([1], [1])
    with pytest.raises(XorderError, match=r"failed on this task's predictions and references"):
        share([["Paris"]], ["Rome"])  # QA answers where the module declares class ids


def test_offline_a_hub_metric_fails_with_one_line_saying_how_to_fetch_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metrics.external.cache_clear()
    with pytest.raises(XorderError) as caught:
        metrics.check_external(["accuracy", "evaluate:bleu"])
    message = str(caught.value)
    assert "\n" not in message
    assert "this machine is offline: run `xorder prepare` with the same overrides where there is internet" in message
    assert "evaluate:./path/to/bleu" in message
    with pytest.raises(XorderError, match=r"no evaluate module at \./nosuch"):
        metrics.external("evaluate:./nosuch")


def test_the_config_checks_accept_evaluate_metrics_where_a_kind_scores_them():
    assert list(compose("experiment=demo", f"target.metrics=[accuracy,{EXACT_SHARE}]").target.metrics)[1] == EXACT_SHARE
    with pytest.raises(XorderError, match=r"'evaluate:' is not a classification metric \(accuracy, f1 or evaluate:"):
        compose("experiment=demo", "target.metrics=[accuracy,'evaluate:']")
    with pytest.raises(XorderError, match=r"is not a mlm metric \(accuracy\)$"):  # masked tokens: no evaluate metrics
        compose("experiment=demo", "multilingual=mlm", f"multilingual.text.metrics=[{EXACT_SHARE}]")
