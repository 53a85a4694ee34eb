"""What the report makes of what records hold: non-finite scores (never averaged away), seeds missing a
language, training budgets, compute hours, languages a multilingual stage did not train on, notes, and the
`average` checkpoint selection."""

from __future__ import annotations

import io
import math
import statistics
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import (
    PLAIN,
    classification_predictions,
    grid_scores,
    md_table,
    read_csv,
    run_report,
    value,
    write_record,
)

from xorder.records import CONSTANT_NOTE, SELECTIONS
from xorder.report import plots
from xorder.report.aggregate import SUMMARY_COLUMNS
from xorder.report.names import RAW
from xorder.report.render import NA
from xorder.report.render import PLAIN as PLAIN_STYLE
from xorder.report.tables import Look, View, selections_table

LANGS = ("de", "en", "fr")
TRIO = ("none", "english_first", "multilingual_first")


@pytest.fixture(autouse=True)
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read tables; rendering plots would take most of their time."""
    monkeypatch.setattr(plots, "_matplotlib", lambda: None)


def report(results: Path, out: Path, *args: str) -> tuple[str, str]:
    rc, err = run_report("--results", str(results), "--out", str(out), "--resamples", "49", *PLAIN, *args)
    assert rc == 0, err
    return (out / "tables.md").read_text(), err


def with_nan(results: Path, bad: object) -> Path:
    """none / english_first / multilingual_first x seeds 1-3; english_first seed 2 scores `bad` in de."""
    for order in TRIO:
        for seed in (1, 2, 3):
            scores = grid_scores(seed, order)
            if (order, seed) == ("english_first", 2):
                scores["en_dev"]["test"]["de"]["accuracy"] = bad
            write_record(results, order, seed, scores)
    return results / "pawsx" / "english_first" / "mnli" / "translate_train" / "tiny" / "seed2"


@pytest.mark.slow
@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_a_non_finite_score_is_an_error_under_strict(tmp_path: Path, bad: object):
    folder = with_nan(tmp_path / "results", bad)
    rc, err = run_report("--results", str(tmp_path / "results"), "--out", str(tmp_path / "t"), "--strict")
    last = err.strip().splitlines()[-1]  # after the warnings, one error line naming the file and the key
    assert rc == 2 and last.startswith("xorder: error: malformed record (--strict): ")
    assert f"{folder.relative_to(tmp_path / 'results').as_posix()}/metrics.json: scores/en_dev/test/de/accuracy" in last
    assert not (tmp_path / "t").exists()


def test_a_non_finite_score_is_marked_never_averaged_away(tmp_path: Path):
    folder = with_nan(tmp_path / "results", math.nan)
    md, err = report(tmp_path / "results", tmp_path / "t")
    rel = folder.relative_to(tmp_path / "results").as_posix()
    warned = [line for line in err.splitlines() if "not finite" in line or " is NaN" in line]
    assert len(warned) == 1 and rel in warned[0] and "scores/en_dev/test/de/accuracy is NaN" in warned[0]
    main = md_table(md, "mean ± std over seeds")
    row = main[("mnli", "translate_train", "english_first")]
    assert row["de"] == row["avg"] == row["avg_non_en"] == NA and row["seeds"] == "3"
    assert row["fr"] != NA and main[("mnli", "translate_train", "multilingual_first")]["de"] != NA
    assert md_table(md, "Δ against")[("mnli", "translate_train", "english_first")]["de"] == NA
    assert "n/a‡: a score behind this number is not finite" in md and f"- {rel}: metrics.json" in md
    summary = {
        (r["order"], r["selection"], r["split"], r["language"], r["metric"]): r
        for r in read_csv(tmp_path / "t" / "summary.csv")
    }
    de = summary[("english_first", "en_dev", "test", "de", "accuracy")]
    assert de["mean"] == "" and de["n_seeds"] == "3" and de["seeds"] == "1;2;3"
    assert summary[("english_first", "oracle", "test", "de", "accuracy")]["mean"] != ""  # other selections intact


def test_each_number_shows_how_many_seeds_are_behind_it(tmp_path: Path):
    """Seed 3 of english_first has no fr score: fr and the averages rest on 2 seeds, de and en on 3."""
    results = tmp_path / "results"
    for order in TRIO:
        for seed in (1, 2, 3):
            scores = grid_scores(seed, order)
            if (order, seed) == ("english_first", 3):
                for selection in scores.values():
                    del selection["test"]["fr"]
            write_record(results, order, seed, scores)
    md, _ = report(results, tmp_path / "t")
    row = md_table(md, "mean ± std over seeds")[("mnli", "translate_train", "english_first")]
    fr = [value(grid_scores(s, "english_first"), "en_dev", "test", "fr") for s in (1, 2)]
    assert row["seeds"] == "3" and "(n=" not in row["de"] + row["en"]
    assert row["fr"] == f"{statistics.fmean(fr):.2f} ± {statistics.stdev(fr):.2f} (n=2)"
    assert row["avg"].endswith(" (n=2)") and row["avg_non_en"].endswith(" (n=2)")
    summary = {
        (r["order"], r["selection"], r["split"], r["language"]): r
        for r in read_csv(tmp_path / "t" / "summary.csv")
        if r["metric"] == "accuracy"
    }
    assert summary[("english_first", "en_dev", "test", "fr")]["n_seeds"] == "2"
    assert summary[("english_first", "en_dev", "test", "avg")]["seeds"] == "1;2"


def stage(
    name: str,
    key: str,
    steps: int,
    *,
    examples: int | None = None,
    seconds: float = 3600.0,
    reused: bool = False,
    languages: tuple[str, ...] = ("en",),
    gpu_hours: float | None = None,
) -> dict:
    out = {
        "name": name,
        "hash": key,
        "tasks": ["mnli"],
        "languages": list(languages),
        "steps": steps,
        "seconds": seconds,
        "reused": reused,
    }
    if examples is not None:
        out["examples"] = examples
    if gpu_hours is not None:
        out["throughput"] = {
            "samples_per_second": 1.0,
            "tokens_per_second": 1.0,
            "padding_fraction": 0.1,
            "peak_memory_mb": 1.0,
            "mfu": 0.3,
            "gpu_hours": gpu_hours,
        }
    return out


def test_budget_table_gives_steps_and_examples_per_stage_and_order(tmp_path: Path):
    results = tmp_path / "results"
    expected = {}
    for order, names in (
        ("english_first", ("english", "multilingual")),
        ("multilingual_first", ("multilingual", "english")),
    ):
        for seed in (1, 2):
            stages = [
                stage(n, f"{order}{seed}{n}", 100 * (i + 1) * seed, examples=3200 * (i + 1) * seed)
                for i, n in enumerate(names)
            ] + [stage("target", f"t{order}{seed}", 10, examples=320)]
            write_record(results, order, seed, grid_scores(seed, order), stages=stages)
            for s in stages:
                expected.setdefault((order, s["name"]), []).append((s["steps"], s["examples"]))
    md, _ = report(results, tmp_path / "t")
    table = md_table(md, "training budget")
    for order in ("english_first", "multilingual_first"):
        row = table[("mnli", "translate_train", order)]
        assert row["seeds"] == "2"
        for name in ("english", "multilingual", "target"):
            steps, examples = zip(*expected[(order, name)])
            assert row[f"{name} steps"] == f"{statistics.fmean(steps):,.0f}"
            assert row[f"{name} examples"] == f"{statistics.fmean(examples):,.0f}"
        totals = [sum(expected[(order, name)][i][0] for name in ("english", "multilingual", "target")) for i in (0, 1)]
        assert row["total steps"] == f"{statistics.fmean(totals):,.0f}"
    assert "Examples: not in these records" not in md  # records without `examples` (older ones) say so:
    write_record(tmp_path / "older", "english_first", 1, grid_scores(1, "english_first"))
    older, _ = report(tmp_path / "older", tmp_path / "t3")
    assert "Examples: not in these records" in older
    assert list(md_table(older, "training budget")[("mnli", "translate_train", "english_first")]) == [
        "task",
        "multilingual",
        "order",
        "seeds",
        "target steps",
        "total steps",
    ]


@pytest.mark.slow
def test_compute_sums_trained_stages_once_and_projects_the_missing_cells(tmp_path: Path):
    results = tmp_path / "results"
    gpu = "NVIDIA H100 80GB HBM3 x4"
    shared = stage("english", "shared-english", 100, seconds=7200, gpu_hours=8.0)  # trained by seed 1's cell
    for seed in (1, 2):
        stages = [
            dict(shared, reused=seed == 2),
            stage("multilingual", f"ml{seed}", 50, seconds=3600, gpu_hours=4.0),
            stage("target", f"t{seed}", 10, seconds=1800, gpu_hours=2.0),
        ]
        write_record(results, "english_first", seed, grid_scores(seed, "english_first"), stages=stages, device=gpu)
    write_record(
        results,
        "multilingual_first",
        1,
        grid_scores(1, "multilingual_first"),
        device=gpu,
        stages=[stage("target", "mf-t1", 10, seconds=900)],
    )  # no gpu_hours (older record): 0.25 h x 4 GPUs
    write_record(
        results,
        "none",
        1,
        grid_scores(1, "none"),
        device="x86_64 x2",
        stages=[stage("target", "cpu-t1", 10, seconds=5400)],
    )  # CPU: 1.5 h x 2 processes
    out = io.StringIO()
    with redirect_stdout(out):
        rc, err = run_report("--results", str(results), "--out", str(tmp_path / "t"), "--resamples", "9")
    assert rc == 0, err
    rows = {r["resource"]: r for r in read_csv(tmp_path / "t" / "compute.csv")}
    spent = {"english_first": [8.0 + 4.0 + 2.0, 4.0 + 2.0], "multilingual_first": [1.0]}  # the reused stage: 0
    assert float(rows["gpu"]["hours"]) == pytest.approx(sum(map(sum, spent.values())))
    assert rows["gpu"]["trained_stages"] == "6" and rows["gpu"]["records"] == "4"
    assert float(rows["cpu"]["hours"]) == pytest.approx(1.5 * 2)
    # seed 2 is missing for multilingual_first and none: projected at the mean of their recorded cells
    assert rows["gpu"]["missing"] == "2" and rows["gpu"]["not_projected"] == "0"
    assert float(rows["gpu"]["projected_hours"]) == pytest.approx(statistics.fmean(spent["multilingual_first"]))
    assert float(rows["cpu"]["projected_hours"]) == pytest.approx(3.0)
    [line] = [ln for ln in out.getvalue().splitlines() if ln.startswith("compute:")]
    assert line.startswith(f"compute: {sum(map(sum, spent.values())):.2f} GPU-hours and 3.00 CPU-hours on trained")
    assert "about 1.00 GPU-hours and 3.00 CPU-hours more for the 2 missing cells (each missing cell costs" in line
    assert (
        md_table((tmp_path / "t" / "tables.md").read_text(), "Compute")[("PAWS-X", "tiny", "GPU")]["hours"] == "21.00"
    )


def test_languages_the_multilingual_stage_did_not_train_on_are_marked(tmp_path: Path):
    results = tmp_path / "results"
    for order in ("english_first", "multilingual_first"):
        for seed in (1, 2):
            stages = [
                stage("english", f"e{order}{seed}", 10),
                stage("target", f"t{order}{seed}", 10),
                stage("multilingual", f"m{order}{seed}", 10, languages=("de", "es")),
            ]
            write_record(results, order, seed, grid_scores(seed, order), stages=stages)
    md, _ = report(results, tmp_path / "t")
    effect = md_table(md, "order effect")
    languages = [key[2] for key in effect]
    assert languages == ["de", "en", "fr†", "avg", "avg_non_en"]  # en: the target's own training language
    assert "†: not among the languages the multilingual stage trained on" in md
    tex = (tmp_path / "t" / "tables.tex").read_text()
    assert "fr$^{\\dagger}$" in tex


def test_notes_are_printed_under_their_targets_tables(tmp_path: Path):
    results = tmp_path / "results"
    note = "12 sts17 en-de pairs left out: they overlap STS-B training sentences"
    for seed in (1, 2):
        write_record(results, "english_first", seed, grid_scores(seed, "english_first"), notes=[note])
    write_record(results, "none", 1, grid_scores(1, "none"), target="zeta", notes=[])
    md, _ = report(results, tmp_path / "t")
    pawsx_end = md.index("### zeta · tiny")
    assert md.index(f"- {note} (2 records)") < pawsx_end  # under pawsx's tables, before the next target's
    assert md.index("Notes of the pawsx · tiny records:") > md.index("### pawsx · tiny · test · accuracy: training")
    assert md.count(note) == 1 and "Notes of the zeta" not in md
    assert "12 sts17 en-de pairs left out" in (tmp_path / "t" / "tables.tex").read_text()


def test_average_selection_stands_beside_the_other_selections():
    """The selections table from a summary holding all four selections (the record writer adds `average`)."""
    rows, row = [], ("mnli", "translate_train", "english_first")
    means = {"en_dev": 60.0, "oracle": 64.0, "last": 58.5, "average": 61.25}
    for selection, mean in means.items():
        rows.append(
            (
                "pawsx",
                "",
                "tiny",
                row[1],
                row[2],
                row[0],
                selection,
                "test",
                "avg_non_en",
                "accuracy",
                2,
                mean,
                1.0,
                "1;2",
            )
        )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    view = View(
        "pawsx", "", "tiny", "test", "accuracy", ["de", "avg_non_en"], [row], {(*row, "avg_non_en"): (60.0, 1.0, 2)}
    )
    table = selections_table(view, Look(RAW, PLAIN_STYLE), summary)
    assert table.columns[3:] == ["en_dev", "oracle", "last", "average"]
    assert table.rows[0][3:] == [f"{m:.2f} ± 1.00" for m in means.values()]
    assert "average: checkpoints averaged over the target's evaluations" in table.note


@pytest.mark.skipif("average" not in SELECTIONS, reason="the record schema does not have the average selection yet")
def test_average_selection_from_records(tmp_path: Path):
    results = tmp_path / "results"
    for seed in (1, 2):
        scores = grid_scores(seed, "english_first")
        scores["average"] = scores["oracle"]
        write_record(results, "english_first", seed, scores)
    md, _ = report(results, tmp_path / "t")
    table = md_table(md, "checkpoint selection, avg_non_en")
    assert list(table[("mnli", "translate_train", "english_first")])[3:] == ["en_dev", "oracle", "last", "average"]


def test_a_column_where_no_compared_cell_learned_gets_no_best_no_difference_and_no_interval(tmp_path: Path):
    """In de every cell predicts one class (a different one for the baseline, so the column's numbers differ): no
    bold best there, and the Δ and order-effect rows say "no learned model"; en learned and keeps all of it."""
    results, n = tmp_path / "results", 40
    gold = np.random.default_rng(0).integers(0, 2, n)
    for order in TRIO:
        for seed in (1, 2):
            rng = np.random.default_rng([seed, len(order)])
            constant = 1 if order == "none" else 0
            right = {"de": gold == constant, "en": rng.random(n) < 0.5 + 0.1 * TRIO.index(order)}
            frame = classification_predictions(right, gold)
            frame["item"] = frame["id"]
            scores = {"en_dev": {"test": {lang: {"accuracy": 100 * r.mean()} for lang, r in right.items()}}}
            note = f"test/de: every en_dev prediction is {constant} ({CONSTANT_NOTE})"
            write_record(results, order, seed, scores, predictions=frame, notes=[note])
    out = tmp_path / "t"
    assert run_report("--results", str(results), "--out", str(out), "--resamples", "49", "--raw-names")[0] == 0
    md = (out / "tables.md").read_text()  # numbers as in a paper: bold best, a real minus sign
    main = md_table(md, "mean ± std")
    assert not any(row["de"].startswith("**") for row in main.values())
    assert any(row["en"].startswith("**") for row in main.values())
    delta = md_table(md, "Δ against")
    assert {row["de"] for row in delta.values()} == {"no learned model"}
    assert all(row["en"].strip("*")[0] in "+−" for row in delta.values())
    effect = md_table(md, "order effect")
    assert effect[("mnli", "translate_train", "de")]["95% CI"] == "no learned model"
    assert effect[("mnli", "translate_train", "en")]["95% CI"].startswith("[")
    assert effect[("mnli", "translate_train", "avg")]["95% CI"].startswith("[")  # en learned: the average is a number
    learned = {r["language"]: r["learned"] for r in read_csv(out / "order_effect.csv")}
    assert learned["de"] == "False" and learned["en"] == learned["avg"] == "True"
    assert md.count("no learned model: every compared cell predicts one value there") == 2  # Δ and order effect
    assert "Bold: the best value of each column, among the cells that learned a model there" in md


def test_a_head_that_did_not_learn_marks_every_language_of_its_record():
    from xorder.report.load import _no_learned_model

    notes = [
        "test/de: every en_dev prediction is 1 (a constant prediction: the model learned nothing there)",
        "sts17/en-en: every en_dev prediction is 2.5 (a constant prediction: the model learned nothing there)",
        "dev/en: the en_dev predictions are no closer to the gold scores than their mean is (R² -0.20); its "
        "correlations are artifacts: the regression head has not learned (train the target longer: ...)",
        "test/en: 3 of 100 pairs excluded from evaluation (3 in the target's training data)",
    ]
    assert _no_learned_model(notes) == [("test", "de"), ("sts17", "en-en"), ("*", "*")]
