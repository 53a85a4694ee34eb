"""`xorder rank` and the report's check of it: answers known by construction (a near copy of the target ranks
first; LogME equals the reference implementation's value), determinism for a seed, the files it writes, one-line
errors, and Spearman / Regret@k of `xorder report` computed independently."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_report import grid_scores, write_record

from conftest import xorder_cli
from xorder import cli, report
from xorder.rank.logme import logme

# The fixed matrix and labels of the LogME check, and the reference values. Computed once with the reference
# implementation, https://github.com/thuml/LogME at commit 56551ca (LogME.py, class LogME, default fixed-point
# solver), numpy 2.4.6, numba 0.68.1: LogME(regression=False).fit(F, Y_CLASSES) and
# LogME(regression=True).fit(F, Y_SCORES); REFERENCE_WEIGHTS is that regression fit's `ms`.
_I, _J = np.arange(40)[:, None], np.arange(6)[None, :]
F = np.sin(0.7 * (_I + 1) * (_J + 1)) + 0.1 * _J
Y_CLASSES = np.arange(40) % 3
Y_SCORES = 2 * F[:, 0] - F[:, 3] + 0.3 * np.cos(np.arange(40))
REFERENCE_CLASSIFICATION = -0.44995112510945745
REFERENCE_REGRESSION = -0.3654830509912667
REFERENCE_WEIGHTS = [1.98261374, 0.01367434, 0.00702307, -0.98667878, 0.00830241, 0.00667175]


def test_logme_equals_the_reference_implementation_on_a_fixed_matrix():
    assert logme(F, Y_CLASSES, regression=False).evidence == pytest.approx(REFERENCE_CLASSIFICATION, abs=1e-9)
    fit = logme(F, Y_SCORES, regression=True)
    assert fit.evidence == pytest.approx(REFERENCE_REGRESSION, abs=1e-9)
    assert fit.weights[0] == pytest.approx(REFERENCE_WEIGHTS, abs=1e-7)


def test_logme_prefers_features_that_explain_the_labels():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200, 4))
    labels = (noise[:, 0] > 0).astype(int)
    informative = np.column_stack([labels * 2.0 - 1 + 0.1 * rng.normal(size=200), noise[:, 1:]])
    assert logme(informative, labels, False).evidence > logme(noise[:, 1:], labels, False).evidence


WORDS = ["".join(random.Random(i).choices("bdfgklmnprstvz", k=5)) for i in range(300)]


def pairs(seed: int, n: int) -> list[tuple[str, str, float]]:
    """Sentence pairs of made-up words (nothing like the synthetic tasks' lexicon) with a 0-5 score."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first = rng.sample(WORDS, 6)
        kept = rng.randint(0, 6)
        second = first[:kept] + rng.sample(WORDS, 6 - kept)
        out.append((" ".join(first), " ".join(second), round(5 * kept / 6, 2)))
    return out


def write_data(root: Path, target_rows: int = 160, copy_rows: int = 160) -> Path:
    """A local STS target (stsb_multi_mt layout) and an MNLI-layout task whose pairs are the target's, 10% of them
    replaced, labelled from the target's scores: the near copy."""
    target = pairs(1, target_rows)
    (root / "stsb_multi_mt").mkdir(parents=True)
    with open(root / "stsb_multi_mt" / "stsb-en-train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(target)
    copy = [row if i % 10 else pairs(1000 + i, 1)[0] for i, row in enumerate(target[:copy_rows])]
    (root / "mnli").mkdir()
    with open(root / "mnli" / "train.tsv", "w") as handle:
        handle.write("sentence1\tsentence2\tgold_label\n")
        for a, b, score in copy:
            label = "entailment" if score > 3.5 else "neutral" if score > 1.5 else "contradiction"
            handle.write(f"{a}\t{b}\t{label}\n")
    return root


def rank_args(data: Path, cache_dir: Path, results: Path, *extra: str) -> list[str]:
    return [
        "rank",
        "model=tiny",
        "target=sts",
        "task=[mnli,qqp,hellaswag,squad]",
        "data.source=synthetic",
        "target.source=local",
        "task.mnli.source=local",
        f"data_root={data}",
        f"cache_dir={cache_dir}",
        f"results_dir={results}",
        "trainer.max_length=64",
        "--examples",
        "120",
        *extra,
    ]


def read_ranking(results: Path) -> list[dict[str, str]]:
    with open(results / "ranking" / "sts" / "tiny" / "ranking.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_near_copy_of_the_target_ranks_first_and_a_seed_gives_the_same_scores(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    data = write_data(tmp_path / "data")
    results = tmp_path / "results"
    args = rank_args(data, cache_dir, results, "--methods", "semb,logme")
    assert cli.main(args) == 0
    printed = capsys.readouterr()
    rows = read_ranking(results)
    semb = {r["task"]: r for r in rows if r["method"] == "semb"}
    assert semb["mnli"]["rank"] == "1", rows
    assert float(semb["mnli"]["score"]) > max(float(r["score"]) for t, r in semb.items() if t != "mnli")
    logme_rows = {r["task"]: r for r in rows if r["method"] == "logme"}
    # extractive QA labels spans, not sequences: no score, no rank, a note; a multiple-choice task has its head
    assert logme_rows["squad"]["score"] == "" and logme_rows["squad"]["rank"] == "" and logme_rows["squad"]["note"]
    assert math.isfinite(float(logme_rows["hellaswag"]["score"]))
    assert all(int(r["examples"]) == 120 for r in rows)
    assert "ranking of 4 candidate(s) for target sts, model tiny" in printed.out
    assert "embed mnli" in printed.err  # the progress bar, on stderr

    record = json.loads((results / "ranking" / "sts" / "tiny" / "ranking.json").read_text())
    assert record["seed"] == 1 and record["model"]["name"] == "tiny" and record["examples_per_task"] == 120
    target_file = data / "stsb_multi_mt" / "stsb-en-train.csv"
    import hashlib

    assert record["read"]["target"]["files"] == [
        {
            "path": str(target_file),
            "bytes": target_file.stat().st_size,
            "sha256": hashlib.sha256(target_file.read_bytes()).hexdigest(),
        }
    ]
    assert record["read"]["target"]["rows_used"] == 120 and record["read"]["target"]["rows_available"] == 160

    again = tmp_path / "again"
    assert cli.main(rank_args(data, cache_dir, again, "--methods", "semb,logme")) == 0
    assert [(r["task"], r["score"]) for r in read_ranking(again)] == [(r["task"], r["score"]) for r in rows]
    other = tmp_path / "other"
    assert cli.main(rank_args(data, cache_dir, other, "--methods", "semb", "seed=2")) == 0
    assert {r["task"]: r["score"] for r in read_ranking(other)} != {t: r["score"] for t, r in semb.items()}


def test_semb_multilingual_scores_each_tasks_translations_against_the_target_dev_languages(
    cache_dir: Path, tmp_path: Path
):
    results = tmp_path / "results"
    args = [
        "rank",
        "experiment=demo",
        "task=[mnli,qqp]",
        "target=pawsx",
        "multilingual.languages=[de,fr]",
        f"cache_dir={cache_dir}",
        f"results_dir={results}",
        "--methods",
        "semb_multilingual",
        "--examples",
        "40",
    ]
    assert cli.main(args) == 0
    with open(results / "ranking" / "pawsx" / "tiny" / "ranking.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["method"], r["multilingual"], r["task"]) for r in rows} == {
        ("semb_multilingual", "translate_train", "mnli"),
        ("semb_multilingual", "translate_train", "qqp"),
    }
    assert all(int(r["examples"]) == 40 for r in rows)  # 20 per language, de and fr
    record = json.loads((results / "ranking" / "pawsx" / "tiny" / "ranking.json").read_text())
    assert sorted(record["read"]["multilingual"]["translate_train"]["target_dev"]) == ["de", "fr"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["task=[nosuch]"], "nosuch"),
        (
            ["target.sources.local.splits.train.languages=[de]"],
            "target sts has no en training data to rank against (its local source has train data in de only)",
        ),
        (["--examples", "20", "--methods", "logme"], "--examples 20 is too few for logme (at least 50)"),
        (["--methods", "semb,bogus"], "unknown method 'bogus'"),
    ],
)
def test_bad_input_exits_2_in_one_line(cache_dir: Path, tmp_path: Path, extra: list[str], message: str):
    data = write_data(tmp_path / "data")
    done = xorder_cli(*rank_args(data, cache_dir, tmp_path / "results"), *extra)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xorder: error:") and message in lines[0], done.stderr


def test_a_task_with_too_few_examples_for_a_method_exits_2(cache_dir: Path, tmp_path: Path):
    data = write_data(tmp_path / "data", copy_rows=30)
    done = xorder_cli(*rank_args(data, cache_dir, tmp_path / "results", "--examples", "60"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "xorder: error: task mnli: 30 train example(s) in 'en', too few for logme (at least 50); leave the task "
        "out or choose the methods with --methods"
    ]


def test_report_checks_a_ranking_against_the_realised_gains(tmp_path: Path):
    """Four tasks with known seed means; the ranking's scores put the second best first. Spearman from scipy on the
    gains, Regret@k from Poth et al.'s formula by hand."""
    results = tmp_path / "results"
    means = {"mnli": 70.0, "qqp": 66.0, "squad": 60.0, "hellaswag": 64.0}  # non-English average, every seed
    baseline = 62.0
    jitter = {1: -1.0, 2: 0.0, 3: 1.0}

    def scores(level: float, seed: int) -> dict:
        out = grid_scores(seed, "none")
        for selection in out.values():
            for split in selection.values():
                for lang in ("de", "fr"):
                    split[lang]["accuracy"] = level + jitter[seed] * (1 if lang == "de" else 0.5)
        return out

    translated = {"mnli": 61.0, "qqp": 65.0, "squad": 63.0}  # multilingual_only with each task's translations
    for seed in jitter:
        write_record(results, "none", seed, scores(baseline, seed))
        for task, level in means.items():
            write_record(results, "english_only", seed, scores(level, seed), tasks=[task])
        for task, level in translated.items():
            write_record(results, "multilingual_only", seed, scores(level, seed), tasks=[task])
    predicted = {"qqp": 0.9, "mnli": 0.8, "hellaswag": 0.5, "squad": 0.1}
    folder = results / "ranking" / "pawsx" / "tiny"
    folder.mkdir(parents=True)
    with open(folder / "ranking.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["target", "model", "method", "multilingual", "task", "score", "rank", "examples", "seconds", "note"]
        )
        for i, (task, score) in enumerate(sorted(predicted.items(), key=lambda kv: -kv[1]), 1):
            writer.writerow(["pawsx", "tiny", "semb", "", task, score, i, 100, 1.0, ""])
        for task, score in {"mnli": 0.7, "qqp": 0.9, "squad": 0.8}.items():  # the right order: regret 0, rho 1
            writer.writerow(["pawsx", "tiny", "semb_multilingual", "translate_train", task, score, "", 100, 1.0, ""])
    out = tmp_path / "tables"
    done = report.build(results, out, resamples=99)
    assert done["ranking_checks"] == 2
    with open(out / "ranking_check.csv", newline="") as handle:
        row, multilingual = list(csv.DictReader(handle))
    assert (multilingual["method"], multilingual["multilingual"], multilingual["best"]) == (
        "semb_multilingual",
        "translate_train",
        "qqp",
    )
    assert float(multilingual["spearman"]) == pytest.approx(1.0) and float(multilingual["regret_at_1"]) == 0.0
    tasks = sorted(means)
    gains = [means[t] - baseline for t in tasks]
    expected = stats.spearmanr([predicted[t] for t in tasks], gains).statistic
    assert float(row["spearman"]) == pytest.approx(expected, abs=1e-4)
    assert float(row["regret_at_1"]) == pytest.approx((70.0 - 66.0) / 70.0 * 100, abs=1e-4)
    assert float(row["regret_at_3"]) == pytest.approx(0.0, abs=1e-9)
    assert (row["best"], row["predicted_best"], row["candidates"], row["seeds"]) == ("mnli", "qqp", "4", "3")
    assert float(row["gain_spread"]) == pytest.approx(10.0, abs=1e-4)
    # a task's per-seed gain (de +-1, fr +-0.5 around the baseline's own) is constant: no seed spread
    assert float(row["gain_seed_std"]) == pytest.approx(0.0, abs=1e-9)
    tables = (out / "tables.md").read_text()
    assert "### Ranking check" in tables and "| pawsx | — | tiny | semb | — | test | 4 | 3 |" in tables
    assert "Note: the seed std of every gain is under half the spread between candidates." in tables


def test_the_check_says_when_seeds_cannot_tell_noise_from_ranking():
    import pandas as pd

    from xorder.report.ranking import CHECK_COLUMNS, markdown

    base = dict.fromkeys(CHECK_COLUMNS, "x") | {"gain_spread": 4.0, "spearman": 0.5, "regret_at_1": 1.0}
    rows = [base | {"gain_seed_std": 3.0}, base | {"gain_seed_std": math.nan}, base | {"gain_seed_std": 1.0}]
    text = "\n".join(markdown(pd.DataFrame(rows, columns=CHECK_COLUMNS).assign(regret_at_3=0.0), 2))
    assert "in 1 of 3 rows the seed std of a gain is at least half the spread" in text
    assert "in 1 of 3 rows no candidate has two seeds paired with `none`" in text
    assert "under half" not in text
