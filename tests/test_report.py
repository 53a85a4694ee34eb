"""Result tables: hand-built records whose expected numbers the tests compute on their own (statistics, scipy),
records produced by the pipeline on the demo, byte-identical outputs, malformed and missing records."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import statistics
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import ROOT, run_demo_cell, xorder_cli
from xorder import kinds, report
from xorder.report import paired, plots

LANGS = ["de", "en", "fr"]
PLAIN = ("--raw-names", "--plain")  # identifiers and plain numbers: tables that tests parse by identifier
ORDER_TASKS = {
    "none": ([], "-"),
    "english_only": (["mnli"], "-"),
    "english_first": (["mnli"], "translate_train"),
    "multilingual_first": (["mnli"], "translate_train"),
    "multilingual_only": (["mnli"], "translate_train"),
    "joint": (["mnli"], "translate_train"),
}


def write_record(
    root: Path,
    order: str,
    seed: int,
    scores: dict,
    *,
    target: str = "pawsx",
    model: str = "tiny",
    primary: str = "accuracy",
    predictions: pd.DataFrame | None = None,
    stages: list | None = None,
    notes: list | None = None,
    device: str = "-",
    tasks: list[str] | None = None,
    variant: str | None = None,
) -> Path:
    """A record as the pipeline lays it out: <target>/<order>/<tasks>/<multilingual>/<model>/[<variant>/]seed<k>/
    (records older than variants have none). Selections not given score as en_dev does (`average` only where
    given); `tasks`: the order's default if None."""
    tasks, multilingual = (tasks, ORDER_TASKS[order][1]) if tasks is not None else ORDER_TASKS[order]
    folder = (
        root / target / order / ("+".join(tasks) or "none") / multilingual / model / (variant or "") / f"seed{seed}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    selections = ("en_dev", "oracle", "last", *(["average"] if "average" in scores else []))
    scores = {selection: scores.get(selection, scores["en_dev"]) for selection in selections}
    stage = {
        "name": "target",
        "hash": "0" * 20,
        "tasks": [target],
        "languages": ["en"],
        "steps": 10,
        "seconds": 1.0,
        "reused": False,
    }
    provenance = {key: "-" for key in ("xorder", "torch", "transformers", "started", "finished", "config_hash")}
    metrics = {
        "schema": "xorder.run/1",
        "target": target,
        "order": order,
        "tasks": tasks,
        "multilingual": multilingual,
        "model": model,
        "seed": seed,
        "primary_metric": primary,
        "scores": scores,
        "selected_steps": {},
        "stages": stages or [stage],
        "provenance": {**provenance, "device": device, "git_commit": "0123456789abcdef"},
    }
    if notes is not None:
        metrics["notes"] = notes
    if variant is not None:
        metrics["variant"] = variant
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if predictions is not None:
        predictions.to_parquet(folder / "predictions.parquet", index=False)
    return folder


def grid_scores(seed: int, order: str) -> dict:
    """Arbitrary but reproducible scores: en_dev and oracle selections, dev and test splits, two metrics."""
    rng = random.Random(f"{order}/{seed}")
    out: dict = {}
    for selection in ("en_dev", "oracle"):
        for split in ("dev", "test"):
            out.setdefault(selection, {})[split] = {
                lang: {"accuracy": round(rng.uniform(40, 90), 3), "f1": round(rng.uniform(30, 80), 3)} for lang in LANGS
            }
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def md_table(text: str, title: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The markdown table under the first heading containing `title`, keyed by its first three cells."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and title in line)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("### "):
            break
        if line.startswith(("| ", "|-")):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
    header, body = rows[0], rows[2:]
    return {tuple(r[:3]): dict(zip(header, r)) for r in body}


def fmt(value: float, signed: bool = False) -> str:
    value = round(value, 2) + 0.0
    return f"{value:+.2f}" if signed else f"{value:.2f}"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """none, english_first, multilingual_first with seeds 1-3; english_only with seed 1 only."""
    results = tmp_path / "results"
    for order in ("none", "english_first", "multilingual_first"):
        for seed in (1, 2, 3):
            write_record(results, order, seed, grid_scores(seed, order))
    write_record(results, "english_only", 1, grid_scores(1, "english_only"))
    return results


def run_report(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        rc = report.main(list(args))
    return rc, err.getvalue()


def value(scores: dict, selection: str, split: str, lang: str, metric: str = "accuracy") -> float:
    return scores[selection][split][lang][metric]


@pytest.mark.slow
def test_summary_matches_statistics_module(grid: Path, tmp_path: Path):
    out = tmp_path / "tables"
    rc, err = run_report("--results", str(grid), "--out", str(out), "--resamples", "99")
    assert rc == 0, err
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == [
        "target",
        "data",
        "model",
        "multilingual",
        "order",
        "tasks",
        "selection",
        "split",
        "language",
        "metric",
        "n_seeds",
        "mean",
        "std",
        "seeds",
    ]
    got = {(r["order"], r["selection"], r["split"], r["language"], r["metric"]): r for r in rows}
    checked = 0
    for order in ("none", "english_first", "multilingual_first"):
        for selection in ("en_dev", "oracle"):
            for split in ("dev", "test"):
                for metric in ("accuracy", "f1"):
                    per_seed = {
                        lang: [value(grid_scores(s, order), selection, split, lang, metric) for s in (1, 2, 3)]
                        for lang in LANGS
                    }
                    per_seed["avg"] = [statistics.fmean(per_seed[lang][i] for lang in LANGS) for i in range(3)]
                    per_seed["avg_non_en"] = [
                        statistics.fmean(per_seed[lang][i] for lang in ("de", "fr")) for i in range(3)
                    ]
                    for lang, values in per_seed.items():
                        row = got[(order, selection, split, lang, metric)]
                        assert row["n_seeds"] == "3" and row["seeds"] == "1;2;3"
                        assert float(row["mean"]) == pytest.approx(statistics.fmean(values), abs=5e-5)
                        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=5e-5)
                        checked += 1
    assert checked == 3 * 2 * 2 * 2 * 5
    one = got[("english_only", "en_dev", "test", "de", "accuracy")]
    assert one["n_seeds"] == "1" and one["std"] == ""  # one seed: no standard deviation
    assert one["mean"] == f"{value(grid_scores(1, 'english_only'), 'en_dev', 'test', 'de'):.4f}"
    # english_only has seed 1 only: seeds 2 and 3 are listed as missing, the rest of the grid is complete
    assert read_csv(out / "missing.csv") == [
        {
            "target": "pawsx",
            "data": "",  # records written before variants: no data source known
            "model": "tiny",
            "multilingual": "-",
            "order": "english_only",
            "tasks": "mnli",
            "seed": str(s),
        }
        for s in (2, 3)
    ]
    assert "- pawsx/english_only/mnli/-/tiny/seed2" in (out / "tables.md").read_text()


@pytest.mark.slow
def test_tables_show_means_deltas_gaps_and_selection_computed_independently(grid: Path, tmp_path: Path):
    out = tmp_path / "tables"
    assert run_report("--results", str(grid), "--out", str(out), "--resamples", "99", *PLAIN)[0] == 0
    md = (out / "tables.md").read_text()

    def seeds_of(order: str, lang: str, selection: str = "en_dev") -> list[float]:
        return [value(grid_scores(s, order), selection, "test", lang) for s in (1, 2, 3)]

    main = md_table(md, "pawsx · tiny · test · accuracy (en_dev selection): mean ± std")
    delta = md_table(md, "Δ against the `none` baseline")
    robust = md_table(md, "robustness")
    selection = md_table(md, "oracle − en_dev selection")
    assert list(main)[:3] == [
        ("none", "-", "none"),
        ("mnli", "-", "english_only"),
        ("mnli", "translate_train", "english_first"),
    ]
    assert list(main)[3] == ("mnli", "translate_train", "multilingual_first")  # the two orders side by side
    for order in ("english_first", "multilingual_first"):
        key = ("mnli", "translate_train", order)
        for lang in LANGS:
            values, base = seeds_of(order, lang), seeds_of("none", lang)
            assert main[key][lang] == f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values))}"
            assert delta[key][lang] == fmt(statistics.fmean(values) - statistics.fmean(base), signed=True)
            oracle = seeds_of(order, lang, "oracle")
            assert selection[key][lang] == fmt(statistics.fmean(oracle) - statistics.fmean(values), signed=True)
        gaps = [
            seeds_of(order, "en")[i] - statistics.fmean([seeds_of(order, "de")[i], seeds_of(order, "fr")[i]])
            for i in range(3)
        ]
        assert robust[key]["gap en − non-en"] == f"{fmt(statistics.fmean(gaps))} ± {fmt(statistics.stdev(gaps))}"
        averages = [statistics.fmean(seeds_of(order, lang)[i] for lang in LANGS) for i in range(3)]
        assert robust[key]["seed std of avg"] == fmt(statistics.stdev(averages))
        worst = min(LANGS, key=lambda lang: statistics.fmean(seeds_of(order, lang)))
        assert robust[key]["worst language"] == f"{worst} ({fmt(statistics.fmean(seeds_of(order, worst)))})"
    assert main[("mnli", "-", "english_only")]["seeds"] == "1"
    # no predictions: the order effect is the difference of means, without CI or p
    effect = {r["language"]: r for r in read_csv(out / "order_effect.csv")}
    assert float(effect["avg"]["diff"]) == pytest.approx(
        statistics.fmean(statistics.fmean(seeds_of("english_first", lang)) for lang in LANGS)
        - statistics.fmean(statistics.fmean(seeds_of("multilingual_first", lang)) for lang in LANGS),
        abs=5e-5,
    )
    assert effect["avg"]["p_value"] == "" and effect["avg"]["ci_low"] == ""
    tex = (out / "tables.tex").read_text()
    assert tex.count("\\toprule") == tex.count("\\bottomrule") == md.count("\n### ") - 2  # missing/skipped lists
    assert "english\\_first" in tex and "$\\pm$" in tex


def classification_predictions(correct: dict[str, np.ndarray], gold: np.ndarray) -> pd.DataFrame:
    frames = []
    for lang, right in correct.items():
        prediction = np.where(right, gold, 1 - gold)
        frames.append(
            pd.DataFrame(
                {
                    "selection": "en_dev",
                    "step": 10,
                    "split": "test",
                    "language": lang,
                    "id": [f"x{i}" for i in range(len(gold))],
                    "gold": gold,
                    "prediction": prediction,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_order_effect_from_paired_predictions(tmp_path: Path):
    """english_first is right more often in de, equally often in en: the effect, its CI and p follow."""
    results, n = tmp_path / "results", 400
    rng = np.random.default_rng(0)
    expected: dict[str, list[float]] = {"de": [], "en": []}
    for seed in (1, 2):
        gold = rng.integers(0, 2, n)
        both = rng.random(n) < 0.6
        correct = {
            "english_first": {"de": both | (rng.random(n) < 0.5), "en": both},
            "multilingual_first": {"de": both, "en": both},
        }
        for order, right in correct.items():
            scores = {"en_dev": {"test": {lang: {"accuracy": 100 * r.mean()} for lang, r in right.items()}}}
            write_record(results, order, seed, scores, predictions=classification_predictions(right, gold))
        for lang in ("de", "en"):
            expected[lang].append(
                100 * (correct["english_first"][lang].mean() - correct["multilingual_first"][lang].mean())
            )
    out = tmp_path / "tables"
    assert run_report("--results", str(results), "--out", str(out), "--resamples", "999", *PLAIN)[0] == 0
    effect = {r["language"]: r for r in read_csv(out / "order_effect.csv")}
    de, en, avg = effect["de"], effect["en"], effect["avg"]
    assert float(de["diff"]) == pytest.approx(statistics.fmean(expected["de"]), abs=5e-5)
    assert float(avg["diff"]) == pytest.approx(statistics.fmean(expected["de"]) / 2, abs=5e-5)
    assert de["n_seeds"] == "2" and de["n_examples"] == str(2 * n) and avg["n_examples"] == str(4 * n)
    assert 0 < float(de["ci_low"]) < float(de["diff"]) < float(de["ci_high"])
    assert float(de["p_value"]) == pytest.approx(1 / 1000)  # no permutation comes near a 20-point effect
    assert float(en["diff"]) == 0 and float(en["ci_low"]) == float(en["ci_high"]) == 0 and float(en["p_value"]) == 1
    md = md_table((out / "tables.md").read_text(), "order effect")
    assert md[("mnli", "translate_train", "de")]["p"] == "0.0010"
    # these predictions have no `item` (records older than it): each row is a cluster with its seeds, and the
    # table says that translations then count as independent
    assert de["clusters"] == "rows" and de["n_items"] == str(n)
    assert "Records without `item` (written before it)" in (out / "tables.md").read_text()


def test_accuracy_draws_agree_with_scipy_on_one_stratum():
    """The count shortcut for accuracy against scipy's example-level paired tests."""
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 300)
    a = np.where(rng.random(300) < 0.60, gold, (gold + 1) % 3)
    b = np.where(rng.random(300) < 0.55, gold, (gold + 2) % 3)
    stratum = paired.Stratum(1, "de", gold, a, b, np.arange(300))
    shares = kinds.get("classification").example_scores("accuracy")
    got = paired.paired_effect([stratum], "accuracy", {"de": ["de"]}, 9999, "t", shares)["de"]
    ca, cb = (a == gold).astype(float), (b == gold).astype(float)
    assert got["diff"] == pytest.approx(100 * (ca.mean() - cb.mean()))
    ref = stats.permutation_test(
        (ca, cb),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="samples",
        n_resamples=9999,
        rng=0,
        vectorized=True,
    )
    assert got["p_value"] == pytest.approx(ref.pvalue, abs=0.02)
    boot = stats.bootstrap((100 * (ca - cb),), np.mean, method="percentile", n_resamples=9999, rng=0)
    assert got["ci_low"] == pytest.approx(boot.confidence_interval.low, abs=0.5)
    assert got["ci_high"] == pytest.approx(boot.confidence_interval.high, abs=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["pearson", "spearman"])
def test_correlation_draws_agree_with_scipy_on_one_stratum(metric: str):
    """Differently calibrated regressors (offset, scale): the swap test must see only the correlations."""
    rng = np.random.default_rng(2)
    gold = rng.uniform(0, 5, 250)
    a = 2.0 + 0.01 * (gold + rng.normal(0, 1.5, 250))  # tiny spread around 2, like an undertrained model
    b = 10 * (gold + rng.normal(0, 1.9, 250))
    corr = stats.pearsonr if metric == "pearson" else stats.spearmanr
    got = paired.paired_effect(
        [paired.Stratum(1, "de", gold, a, b, np.arange(250))], metric, {"de": ["de"]}, 4999, "t"
    )["de"]
    assert got["diff"] == pytest.approx(100 * (corr(gold, a)[0] - corr(gold, b)[0]))
    za, zb = (paired._z(stats.rankdata(x) if metric == "spearman" else x) for x in (a, b))

    def swapped(x, y, axis):
        diff = 100 * (
            np.array([corr(gold, r)[0] for r in np.atleast_2d(x)])
            - np.array([corr(gold, r)[0] for r in np.atleast_2d(y)])
        )
        return diff.reshape(np.shape(x)[:-1])

    ref = stats.permutation_test(
        (za, zb), swapped, permutation_type="samples", n_resamples=999, rng=0, vectorized=True, batch=999
    )
    assert got["p_value"] == pytest.approx(ref.pvalue, abs=0.04)
    boot = stats.bootstrap(
        (gold, a, b),
        lambda g, x, y: 100 * (corr(g, x)[0] - corr(g, y)[0]),
        paired=True,
        vectorized=False,
        method="percentile",
        n_resamples=999,
        rng=0,
    )
    assert got["ci_low"] == pytest.approx(boot.confidence_interval.low, abs=1.5)
    assert got["ci_high"] == pytest.approx(boot.confidence_interval.high, abs=1.5)


def test_correlation_swap_test_holds_its_level_under_the_null():
    """Two equally good regressors on different scales: about 10% of p-values fall below 0.1. Swapping raw
    outputs instead of standardized ones rejects almost never (measured: 0.7% against 8.7% here)."""
    p_values = []
    for i in range(150):
        rng = np.random.default_rng(100 + i)
        gold = rng.uniform(0, 5, 120)
        a, b = 2.0 + 0.01 * (gold + rng.normal(0, 2, 120)), 10 * (gold + rng.normal(0, 2, 120))
        p_values.append(
            paired.paired_effect(
                [paired.Stratum(1, "de", gold, a, b, np.arange(120))], "pearson", {"de": ["de"]}, 199, f"null{i}"
            )["de"]["p_value"]
        )
    assert 0.04 <= np.mean(np.array(p_values) < 0.1) <= 0.18


@pytest.mark.slow
def test_outputs_are_byte_identical_and_independent_of_location(grid: Path, tmp_path: Path):
    first, second, moved = tmp_path / "a", tmp_path / "b", tmp_path / "elsewhere" / "results"
    assert run_report("--results", str(grid), "--out", str(first), "--resamples", "199")[0] == 0
    shutil.copytree(grid, moved)
    assert run_report("--results", str(moved), "--out", str(second), "--resamples", "199")[0] == 0
    assert run_report("--results", str(grid), "--out", str(first), "--resamples", "199")[0] == 0  # rewrite in place
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert {"summary.csv", "order_effect.csv", "missing.csv", "tables.md", "tables.tex"} <= set(names)
    pngs = [n for n in names if n.endswith(".png")]
    assert "plots/pawsx-tiny-test-heatmap.png" in pngs and "plots/pawsx-tiny-test-mnli-translate_train-bars.png" in pngs
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_malformed_records_are_named_and_skipped_or_fatal_with_strict(grid: Path, tmp_path: Path):
    bad = grid / "pawsx" / "joint" / "mnli" / "translate_train" / "tiny" / "seed1"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text("{not json")
    odd = write_record(grid, "english_only", 2, {"en_dev": {"test": {"de": {"accuracy": "high"}}}})
    copy = grid / "backup" / "pawsx" / "none" / "none" / "-" / "tiny" / "seed1"
    shutil.copytree(grid / "pawsx" / "none" / "none" / "-" / "tiny" / "seed1", copy)
    out = tmp_path / "tables"
    rc, err = run_report("--results", str(grid), "--out", str(out), "--resamples", "99")
    assert rc == 0
    assert "pawsx/joint/mnli/translate_train/tiny/seed1: unreadable metrics.json" in err
    assert f"{odd.relative_to(grid).as_posix()}: scores/en_dev/test/de/accuracy: 'high' is not of type 'number'" in err
    assert "backup/pawsx/none/none/-/tiny/seed1: duplicate of the record in pawsx/none/none/-/tiny/seed1" in err
    md = (out / "tables.md").read_text()
    assert "- pawsx/joint/mnli/translate_train/tiny/seed1: unreadable metrics.json" in md
    assert "3 skipped" in md
    strict_out = tmp_path / "strict"
    result = xorder_cli("report", "--results", str(grid), "--out", str(strict_out), "--strict", "--resamples", "9")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("xorder: error: 3 record(s) skipped under")
    assert "Traceback" not in result.stderr and not strict_out.exists()


@pytest.mark.slow
def test_missing_cells_are_listed_not_a_crash(tmp_path: Path):
    results = tmp_path / "results"
    for seed in (1, 2):
        write_record(results, "english_first", seed, grid_scores(seed, "english_first"))
    write_record(results, "multilingual_first", 1, grid_scores(1, "multilingual_first"))
    write_record(results, "english_only", 1, grid_scores(1, "english_only"))
    out = tmp_path / "tables"
    rc, err = run_report("--results", str(results), "--out", str(out), "--resamples", "99", *PLAIN)
    assert rc == 0, err
    assert [(r["order"], r["multilingual"], r["seed"]) for r in read_csv(out / "missing.csv")] == [
        ("english_only", "-", "2"),
        ("multilingual_first", "translate_train", "2"),
    ]
    md = (out / "tables.md").read_text()
    assert "Δ against the `none` baseline\n\nNo `none` baseline records: run the grid with order=none" in md
    main = md_table(md, "mean ± std over seeds")
    assert main[("mnli", "translate_train", "multilingual_first")]["seeds"] == "1"


@pytest.mark.slow
def test_user_errors_exit_2_in_one_line(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    for args, needle in (
        (["--results", str(tmp_path / "nowhere")], "does not exist"),
        (["--results", str(tmp_path / "empty")], "no complete records"),
    ):
        rc, err = run_report(*args)
        assert rc == 2 and err.count("\n") == 1 and needle in err


@pytest.mark.slow
def test_tables_without_matplotlib_say_how_to_get_plots(grid: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plots, "_matplotlib", lambda: None)
    out = tmp_path / "tables"
    rc, err = run_report("--results", str(grid), "--out", str(out), "--resamples", "9")
    assert rc == 0 and "pip install 'xorder[plots]'" in err
    assert (out / "tables.md").is_file() and not (out / "plots").exists()


@pytest.mark.slow
def test_demo_records_from_the_pipeline(cache_dir: Path, tmp_path: Path):
    """Records written by the real pipeline: script and CLI agree, and the tables carry metrics.json's numbers."""
    results = tmp_path / "results"
    steps = [
        "trainer.intermediate.max_steps=8",
        "trainer.multilingual.max_steps=8",
        "trainer.target.max_steps=8",
        "trainer.eval_every=4",
        "data.synthetic_examples=200",
        "trainer.eval_examples=64",
        "task=mnli",
    ]
    metrics, record = {}, {}
    for order in ("none", "english_first", "multilingual_first"):
        for seed in (1, 2):
            metrics[(order, seed)], record[(order, seed)] = run_demo_cell(
                cache_dir, results, f"order={order}", f"seed={seed}", *steps
            )
    script = ROOT / "scripts" / "make_tables.py"
    # 8 target steps leave most of these cells degenerate (one class everywhere): put them into the means here
    everything = (*PLAIN, "--include-degenerate")
    out = subprocess.run(
        [sys.executable, str(script), "--results", str(results), "--resamples", "999", *everything],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "6 records" in out.stdout and "included in the means), 0 missing, 0 skipped" in out.stdout
    tables = results / "tables"
    cli_out = tmp_path / "cli"
    cli = xorder_cli("report", "--results", str(results), "--out", str(cli_out), "--resamples", "999", *everything)
    assert cli.returncode == 0, cli.stderr
    for name in ("summary.csv", "order_effect.csv", "tables.md", "tables.tex"):
        assert (tables / name).read_bytes() == (cli_out / name).read_bytes()
    summary = {
        (r["order"], r["selection"], r["split"], r["language"], r["metric"]): r
        for r in read_csv(tables / "summary.csv")
    }
    languages = sorted(metrics[("none", 1)]["scores"]["en_dev"]["test"])
    for order, _ in metrics:
        for lang in languages:
            values = [metrics[(order, s)]["scores"]["en_dev"]["test"][lang]["accuracy"] for s in (1, 2)]
            row = summary[(order, "en_dev", "test", lang, "accuracy")]
            assert float(row["mean"]) == pytest.approx(statistics.fmean(values), abs=5e-5)
            assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=5e-5)
    effect = {r["language"]: r for r in read_csv(tables / "order_effect.csv")}
    for lang in languages:  # the paired test rebuilds each order's accuracy from predictions.parquet
        for order in ("english_first", "multilingual_first"):
            assert float(effect[lang][order]) == pytest.approx(
                float(summary[(order, "en_dev", "test", lang, "accuracy")]["mean"]), abs=1e-4
            )
        assert effect[lang]["n_seeds"] == "2"
        # a language where every compared record predicts one class (so its notes say) has no learned model
        constant = all(
            any(note.startswith(f"test/{lang}: every en_dev prediction is") for note in metrics[(order, s)]["notes"])
            for order in ("english_first", "multilingual_first")
            for s in (1, 2)
        )
        assert effect[lang]["learned"] == str(not constant)
        assert effect[lang]["p_value"] == "" if constant else 0 <= float(effect[lang]["p_value"]) <= 1
    # every prediction names its source item: the synthetic test set's translations share theirs
    frame = pd.read_parquet(record[("english_first", 1)] / "predictions.parquet")
    items = frame[(frame["selection"] == "en_dev") & (frame["split"] == "test")].groupby("language")["item"].agg(list)
    assert len(items) == len(languages) and all(got == items.iloc[0] for got in items)
    assert effect["avg"]["clusters"] == "aligned" and effect["avg"]["n_items"] == str(len(items.iloc[0]))
    assert int(effect["avg"]["n_examples"]) == 2 * len(languages) * len(items.iloc[0])
    md = (tables / "tables.md").read_text()
    main = md_table(md, "pawsx (data: synthetic) · tiny · test · accuracy (en_dev selection): mean ± std")
    # 8 steps: rows may carry the marks of unlearned stages (§) and degenerate records (∅) after their order
    assert [(tasks, multilingual, order.split()[0]) for tasks, multilingual, order in main] == [
        ("none", "-", "none"),
        ("mnli", "translate_train", "english_first"),
        ("mnli", "translate_train", "multilingual_first"),
    ]
    assert sorted((tables / "plots").glob("*.png"))


def test_multilingual_only_mlm_cells_are_not_expected_under_a_task():
    """multilingual_only trains on the task's translations (translate_train) but on plain text (mlm): its MLM
    cells have no task, and the grid must not list them missing under one."""
    from xorder.report.grid import missing_cells

    rows = [
        ("sts", "hub", "m", "translate_train", "multilingual_only", "xnli", 1),
        ("sts", "hub", "m", "mlm", "multilingual_only", "none", 1),
        ("sts", "hub", "m", "translate_train", "multilingual_only", "xnli", 2),
        ("sts", "hub", "m", "mlm", "english_first", "xnli", 1),
        ("sts", "hub", "m", "translate_train", "english_first", "xnli", 1),
    ]
    cells = pd.DataFrame(rows, columns=["target", "data", "model", "multilingual", "order", "tasks", "seed"])
    missing = missing_cells(cells)
    assert sorted(map(tuple, missing[["order", "multilingual", "tasks", "seed"]].values.tolist())) == [
        ("english_first", "mlm", "xnli", 2),
        ("english_first", "translate_train", "xnli", 2),
        ("multilingual_only", "mlm", "none", 2),
    ]


def test_a_target_read_from_other_data_is_another_cell_tabled_apart(tmp_path: Path):
    """The demo (synthetic PAWS-X) and `demo_pawsx_real` (PAWS-X from XTREME's files) in one results directory:
    two test sets, so two sets of tables, each labelled with its data; neither record is a duplicate."""
    results = tmp_path / "results"
    for variant, shift in (("synthetic-f33ec026", 0.0), ("xtreme+synthetic-0a1b2c3d", 7.0)):
        for order in ("none", "english_first"):
            scores = {"en_dev": {"test": {lang: {"accuracy": 50.0 + shift + len(order)} for lang in LANGS}}}
            write_record(results, order, 1, scores, variant=variant)
    write_record(results, "none", 1, {"en_dev": {"test": {"de": {"accuracy": 1.0}}}}, variant="synthetic-ffffffff")
    warnings = io.StringIO()
    done = report.build(results, tmp_path / "tables", resamples=9, stream=warnings)
    assert done["records"] == 4 and done["skipped"] == 1  # another settings variant of a cell: still one cell
    assert "synthetic-ffffffff/seed1: duplicate of the record in" in warnings.getvalue()
    md = (tmp_path / "tables" / "tables.md").read_text()
    synthetic = md_table(md, "PAWS-X (data: synthetic) · tiny · test · accuracy (en_dev selection): mean")
    real = md_table(md, "PAWS-X (data: xtreme) · tiny · test · accuracy (en_dev selection): mean")
    row = ("MNLI", "Translate-train", "English-first")
    assert synthetic[row]["de"] == "**63.00**" and real[row]["de"] == "**70.00**"  # bold: the best of its column
    assert synthetic[("-", "-", "Baseline (none)")]["de"] == "54.00"
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert set(summary["data"]) == {"synthetic", "xtreme"}
