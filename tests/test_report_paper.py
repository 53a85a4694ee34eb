"""Paper-ready report output: display names, digits, bold best values, minus signs, wide LaTeX tables,
300-dpi PNG + PDF plots with a chance or baseline line, the avg_non_en heatmap, --compare and --cite."""

from __future__ import annotations

import io
import math
import re
import statistics
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_report import PLAIN, grid_scores, md_table, read_csv, run_report, value, write_record

from xorder.report import catalog, plots
from xorder.report.aggregate import per_seed, summarize
from xorder.report.grid import AVG, AVG_NON_EN, missing_cells
from xorder.report.load import load_records
from xorder.report.names import DEFAULT_NAMES, RAW, Names
from xorder.report.render import Style
from xorder.report.tables import View, views

ORDERS = ("none", "english_only", "english_first", "multilingual_first")


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """Four orders x seeds 1-3, three languages (de, en, fr)."""
    results = tmp_path / "results"
    for order in ORDERS:
        for seed in (1, 2, 3):
            write_record(results, order, seed, grid_scores(seed, order))
    return results


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Table tests skip the plots (rendering them takes most of a report's time)."""
    monkeypatch.setattr(plots, "_matplotlib", lambda: None)


def seed_mean(order: str, lang: str) -> float:
    return statistics.fmean(value(grid_scores(s, order), "en_dev", "test", lang) for s in (1, 2, 3))


def one_view(results: Path) -> View:
    records = load_records(results)
    summary = summarize(per_seed(records))
    [view] = views(summary, records, missing_cells(records.cells))
    return view


def report(results: Path, out: Path, *args: str) -> str:
    rc, err = run_report("--results", str(results), "--out", str(out), "--resamples", "49", *args)
    assert rc == 0, err
    return (out / "tables.md").read_text()


def test_display_names_by_default_identifiers_with_raw_names_and_overrides_from_a_file(
    grid: Path, tmp_path: Path, no_plots: None
):
    named = report(grid, tmp_path / "named")
    main = md_table(named, "PAWS-X · tiny · test · accuracy (en_dev selection): mean ± std")
    assert list(main) == [
        ("-", "-", "Baseline (none)"),
        ("MNLI", "-", "English-only"),
        ("MNLI", "Translate-train", "English-first"),
        ("MNLI", "Translate-train", "Multilingual-first"),
    ]
    names = tmp_path / "names.yaml"
    names.write_text(yaml.safe_dump({"mnli": "MultiNLI", "tiny": "Tiny encoder", "english_first": "EN→ML"}))
    custom = md_table(report(grid, tmp_path / "custom", "--names", str(names)), "PAWS-X · Tiny encoder · test")
    assert ("MultiNLI", "Translate-train", "EN→ML") in custom  # overridden and added; built-ins kept
    raw = md_table(report(grid, tmp_path / "raw", "--raw-names"), "pawsx · tiny · test · accuracy (en_dev")
    assert ("mnli", "translate_train", "english_first") in raw and ("none", "-", "none") in raw
    for name in ("summary.csv", "order_effect.csv", "missing.csv"):  # the CSV files keep identifiers
        assert (tmp_path / "named" / name).read_bytes() == (tmp_path / "raw" / name).read_bytes()


@pytest.mark.slow
def test_names_file_mistakes_exit_2_in_one_line(grid: Path, tmp_path: Path):
    bad = tmp_path / "names.yaml"
    for text in ("- a list\n", "mnli: [not, a, string]\n"):
        bad.write_text(text)
        rc, err = run_report("--results", str(grid), "--names", str(bad))
        assert rc == 2 and err.count("\n") == 1 and "--names" in err
    rc, err = run_report("--results", str(grid), "--names", str(tmp_path / "nowhere.yaml"))
    assert rc == 2 and "cannot read" in err


@pytest.mark.slow
def test_digits_bold_best_and_real_minus_in_markdown_and_latex(grid: Path, tmp_path: Path, no_plots: None):
    md = report(grid, tmp_path / "out", "--digits", "3")
    main = md_table(md, "mean ± std over seeds")
    for lang in ("de", "en", "fr"):
        means = {order: seed_mean(order, lang) for order in ORDERS}
        best = max(means, key=means.get)
        for (_, _, order), row in main.items():
            cell = row[lang]
            order_id = {v: k for k, v in DEFAULT_NAMES.items()}[order]
            assert re.fullmatch(r"\*?\*?\d+\.\d{3} ± \d+\.\d{3}\*?\*?", cell), cell  # three digits
            assert cell.startswith("**") == (order_id == best), (lang, order, cell)
    delta = md_table(md, "Δ against the `none` baseline")
    cells = [c for row in delta.values() for k, c in row.items() if k in ("de", "en", "fr")]
    negative = [c for c in cells if "−" in c]
    assert negative and not any(re.search(r"-\d", c) for c in cells)  # U+2212, never a hyphen-minus
    tex = (tmp_path / "out" / "tables.tex").read_text()
    assert "\\textbf{" in tex and "$-$" in tex and "**" not in tex
    plain = report(grid, tmp_path / "plain", "--plain")
    assert "**" not in plain and "−0." not in md_table(plain, "Δ against")[("MNLI", "-", "English-only")]["de"]
    rc, err = run_report("--results", str(grid), "--digits", "9")
    assert rc == 2 and "--digits" in err


def test_wide_latex_tables_span_both_columns(tmp_path: Path, no_plots: None):
    """Nine languages: main table 12 numeric columns -> table*; the robustness table (6) stays a table."""
    results = tmp_path / "results"
    langs = ["ar", "de", "en", "es", "fr", "hi", "ru", "sw", "zh"]
    for order in ("none", "english_first"):
        for seed in (1, 2):
            write_record(
                results,
                order,
                seed,
                {"en_dev": {"test": {lang: {"accuracy": 50.0 + seed + i} for i, lang in enumerate(langs)}}},
            )
    report(results, tmp_path / "out")
    tex = (tmp_path / "out" / "tables.tex").read_text()
    blocks = re.findall(r"\\begin\{(table\*?)\}.*?\\label\{tab:([^}]+)\}\n\\end\{(table\*?)\}", tex, re.DOTALL)
    envs = {label: begin for begin, label, end in blocks if begin == end}
    assert len(envs) == len(blocks)  # every table ends in the environment it began
    assert envs["pawsx-tiny-test-main"] == "table*" and envs["pawsx-tiny-test-robust"] == "table"


@pytest.mark.slow
def test_plots_are_300_dpi_png_and_pdf_without_timestamps(grid: Path, tmp_path: Path):
    report(grid, tmp_path / "a")
    report(grid, tmp_path / "b")
    folder = tmp_path / "a" / "plots"
    pngs, pdfs = sorted(folder.glob("*.png")), sorted(folder.glob("*.pdf"))
    assert pngs and [p.stem for p in pngs] == [p.stem for p in pdfs]
    for png in pngs:
        with Image.open(png) as image:
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"CreationDate" not in data and b"Matplotlib" not in data
        assert data == (tmp_path / "b" / "plots" / pdf.name).read_bytes()


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_accuracy_bars_show_chance_from_the_classes_else_the_baseline_mean(grid: Path):
    view = one_view(grid)
    assert load_records(grid).target("pawsx").classes == 2  # PAWS-X's labels from the packaged target file
    fig = plots.bar_plots(view, Names(DEFAULT_NAMES), classes=2)["pawsx-tiny-test-mnli---bars"]
    assert "chance (100/2 classes)" in legend_texts(fig)
    assert [line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"] == [50.0]
    fig = plots.bar_plots(view, Names(DEFAULT_NAMES), classes=0)["pawsx-tiny-test-mnli---bars"]
    assert "Baseline (none) mean (chance unknown)" in legend_texts(fig)
    [segments] = [c.get_segments() for c in fig.axes[0].collections if c.get_label().startswith("Baseline")]
    assert [s[0][1] for s in segments] == pytest.approx(
        [seed_mean("none", lang) for lang in ("de", "en", "fr")]
        + [view.get(("none", "-", "none"), c)[0] for c in (AVG, AVG_NON_EN)]
    )
    pearson = View(view.target, view.data, view.model, view.split, "pearson", view.languages, view.rows, view.means)
    fig = plots.bar_plots(pearson, RAW, classes=2)["pawsx-tiny-test-mnli---bars"]
    assert not any("chance" in t or "Baseline" in t for t in legend_texts(fig))


def test_a_records_own_label_names_decide_the_chance_level(tmp_path: Path):
    folder = write_record(tmp_path / "results", "none", 1, grid_scores(1, "none"), target="mytarget")
    assert load_records(tmp_path / "results").target("mytarget").classes == 0  # not packaged, no config
    (folder / "config.yaml").write_text(yaml.safe_dump({"target": {"label_names": ["a", "b", "c"]}}))
    assert load_records(tmp_path / "results").target("mytarget").classes == 3


def test_heatmap_shows_the_non_english_average(grid: Path):
    view = one_view(grid)
    fig = plots.heatmap(view, RAW)["pawsx-tiny-test-heatmap"]
    shown = fig.axes[0].images[0].get_array()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    orders = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    for i, label in enumerate(labels):
        tasks, _, multilingual = label.partition(" / ")
        for j, order in enumerate(orders):
            expected = view.get((tasks, multilingual or "-", order), AVG_NON_EN)[0]
            if math.isfinite(expected):
                assert shown[i, j] == pytest.approx(expected)
                assert shown[i, j] != pytest.approx(view.get((tasks, multilingual or "-", order), AVG)[0])
            else:
                assert np.ma.is_masked(shown[i, j])
    assert "avg_non_en" in fig.axes[0].get_title()


@pytest.mark.slow
def test_cite_prints_bibtex_for_xorder_and_the_datasets_in_the_records(tmp_path: Path, no_plots: None):
    results = tmp_path / "results"
    write_record(results, "english_first", 1, grid_scores(1, "english_first"))  # pawsx target, mnli task
    write_record(results, "none", 1, grid_scores(1, "none"), target="mystery")
    out = io.StringIO()
    with redirect_stdout(out):
        rc, err = run_report("--results", str(results), "--out", str(tmp_path / "t"), "--resamples", "9", "--cite")
    assert rc == 0, err
    printed = out.getvalue()
    bib = (tmp_path / "t" / "references.bib").read_text()
    assert printed.endswith(bib)
    for key in (
        "@software{xorder,",
        "@inproceedings{phang-etal-2020-english,",
        "@inproceedings{yang-etal-2019-paws,",
        "@inproceedings{williams-etal-2018-broad,",
        "% mystery: not a task shipped with xorder",
    ):
        assert key in bib, key
    assert "rajpurkar" not in bib and "conneau" not in bib  # SQuAD and XNLI are not in these records


BRIEF = {
    "pawsx": [("Yang", "2019")],
    "sts": [("Cer", "2017"), ("May", "2021")],
    "xnli": [("Conneau", "2018")],
    "mnli": [("Williams", "2018")],
    "qqp": [("Iyer", "2017"), ("Wang", "2018")],
    "anli": [("Nie", "2020")],
    "squad": [("Rajpurkar", "2016")],
    "hellaswag": [("Zellers", "2019")],
    "commonsenseqa": [("Talmor", "2019")],
    "cosmosqa": [("Huang", "2019")],
    "sst2": [("Socher", "2013")],
    "ccg": [("Hockenmaier", "2007")],
}


@pytest.mark.parametrize("name", sorted(BRIEF))
def test_every_packaged_task_cites_its_dataset(name: str):
    text = catalog.citation(name)
    entries = re.findall(r"@(\w+)\{([\w-]+),(.*?)\n\}", text, re.DOTALL)
    assert len(entries) == len(BRIEF[name]) and text.count("{") == text.count("}")
    for (kind, _, body), (author, year) in zip(entries, BRIEF[name]):
        assert kind in ("inproceedings", "article", "misc")
        fields = dict(re.findall(r"^\s*(\w+) = \{(.*?)\},?$", body, re.MULTILINE | re.DOTALL))
        assert fields["author"].startswith(author) and fields["year"] == year and fields["title"]


@pytest.mark.slow
def test_compare_chooses_the_pair_of_the_order_effect(grid: Path, tmp_path: Path, no_plots: None):
    md = report(grid, tmp_path / "out", "--compare", "english_only,english_first", *PLAIN)
    rows = {r["language"]: r for r in read_csv(tmp_path / "out" / "order_effect.csv")}
    assert list(next(iter(rows.values())))[13:15] == ["english_only", "english_first"]
    for lang in ("de", "en", "fr"):  # english_only has no multilingual variant: it pairs with translate_train
        assert float(rows[lang]["diff"]) == pytest.approx(
            seed_mean("english_only", lang) - seed_mean("english_first", lang), abs=5e-5
        )
    assert "english_only − english_first" in md
    for bad, needle in (("english_first", "two different orders"), ("joint,english_first", "no records of order")):
        rc, err = run_report("--results", str(grid), "--out", str(tmp_path / "x"), "--compare", bad)
        assert rc == 2 and err.count("\n") == 1 and needle in err


def test_bold_marks_the_best_of_a_column_unless_the_whole_column_ties():
    values = [[70.0, 50.0, math.nan], [80.004, 50.0, 1.0], [80.001, 50.0, 2.0]]
    assert Style().best(values, 4) == {(1, 4), (2, 4), (2, 6)}  # 80.00 twice at 2 digits; 50.00 everywhere
    assert Style(digits=3).best(values, 4) == {(1, 4), (2, 6)}
    assert Style(bold=False).best(values, 4) == frozenset()
