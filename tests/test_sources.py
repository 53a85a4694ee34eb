"""Data sources: every real release layout in ../shared/data parses with the row counts its README states, the
hub code path runs offline against a local directory in hub layout, a run picks its sources and split
carve-outs from overrides, malformed files stop with one line naming the file, the row and the column, and the
two real-data demo cells run end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import compose, demo_overrides, run_demo_cell, xorder_cli
from xorder.config import SourceConfig, SplitConfig, TaskConfig
from xorder.data import readers
from xorder.data.sources import load_split
from xorder.errors import XorderError
from xorder.plan import plan, to_typed
from xorder.splits import parse_split, prefix_needed

PAWSX = ["de", "en", "es", "fr", "ja", "ko", "zh"]
STSB_MT = ["de", "en", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh"]
STS17 = ["ar-ar", "ar-en", "es-es", "es-en", "es-en-wmt", "en-en", "tr-en"]
FAST = (
    "trainer.intermediate.max_steps=10",
    "trainer.multilingual.max_steps=10",
    "trainer.target.max_steps=10",
    "trainer.eval_every=10",
)


def typed(*overrides: str):
    return to_typed(compose(*overrides))


@dataclass
class Read:
    rows: list[dict]
    fingerprint: str
    where: str


def read(task: TaskConfig, role: str, lang: str, cache_dir: Path, source: SourceConfig | None = None, **kw):
    """Canonical rows of one split (as a list) through the source the config chose for `task`."""
    if source is None:
        source = task.sources[task.source or task.default_source]
    loaded = load_split(task, source, role, lang, cache_dir=str(cache_dir), synthetic_examples=50, **kw)
    return None if loaded is None else Read(list(loaded.dataset), loaded.fingerprint, loaded.where)


def quoted(key: str, value: str) -> str:
    """A Hydra override whose value holds {lang}/{split} placeholders must be quoted."""
    return f"{key}='{value}'"


# --- real layouts -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pawsx_xtreme_layout_dev_2000_per_language_and_test_has_no_labels(shared_data: Path, cache_dir: Path):
    cfg = typed(
        f"data_root={shared_data}",
        "target=pawsx",
        "target.source=xtreme",
        quoted("target.sources.xtreme.path", "${data_root}/pawsx/xtreme_format/{split}-{lang}.tsv"),
    )
    counts = {}
    for lang in PAWSX:
        loaded = read(cfg.target, "dev", lang, cache_dir)
        counts[lang] = len(loaded.rows)
        assert {r["label"] for r in loaded.rows} == {0, 1}
        assert all(r["language"] == lang and r["text_a"] and r["text_b"] for r in loaded.rows)
    assert counts == {lang: 2000 for lang in PAWSX}
    assert sum(r["label"] for r in read(cfg.target, "dev", "en", cache_dir).rows) == 863  # README: 863 paraphrases
    # XTREME's test files carry no labels: asking for them is an error that says so and what to do instead
    source = cfg.target.sources["xtreme"]
    with_test = SourceConfig(**{**vars(source), "splits": {"test": SplitConfig(split="test")}})
    with pytest.raises(
        XorderError, match=r"test-de\.tsv: line 1: expected 3 fields .*found 2; the label column is missing"
    ):
        read(cfg.target, "test", "de", cache_dir, with_test)


@pytest.mark.slow
def test_pawsx_xfinal_and_other_real_pawsx_layouts(shared_data: Path, cache_dir: Path):
    cfg = typed(
        f"data_root={shared_data}",
        "target=pawsx",
        "target.source=xfinal",
        quoted("target.sources.xfinal.path", "${data_root}/pawsx/hf_dummy_xfinal/{lang}/{split}.tsv"),
        quoted("target.translations.xfinal.path", "${data_root}/pawsx/hf_dummy_xfinal/{lang}/{split}.tsv"),
    )
    for lang in PAWSX:  # the original release's x-final/{lang}/dev_2k.tsv with header id sentence1 sentence2 label
        rows = read(cfg.target, "dev", lang, cache_dir).rows
        assert len(rows) == 4 and rows[0]["id"].isdigit()
    translations = cfg.target.translations["xfinal"]
    for lang in ("de", "zh"):  # translated_train.tsv serves multilingual=translate_train
        assert len(read(cfg.target, "train", lang, cache_dir, translations).rows) == 4
    pair = {"text_a": "sentence1", "text_b": "sentence2", "label": "label", "id": "id"}
    supergleber = SourceConfig(
        format="tsv",
        path=str(shared_data / "pawsx/supergleber_de/{split}.tsv"),
        languages=["de"],
        columns=pair,
        splits={"dev": SplitConfig(split="dev")},
    )
    de = read(cfg.target, "dev", "de", cache_dir, supergleber).rows
    assert len(de) == 2000 and sum(r["label"] for r in de) == 831
    export = SourceConfig(
        format="tsv",
        path=str(shared_data / "pawsx/hf_parquet_export/{lang}_{split}.tsv"),
        languages=None,
        columns=pair,
        splits={"dev": SplitConfig(split="validation")},
    )
    assert len(read(cfg.target, "dev", "zh", cache_dir, export).rows) == 2000
    cosent = SourceConfig(
        format="tsv",
        path=str(shared_data / "pawsx/cosent_zh/PAWSX.{split}.data"),
        languages=None,
        fields=["text_a", "text_b", "label"],
        splits={"dev": SplitConfig(split="valid")},
    )
    assert len(read(cfg.target, "dev", "zh", cache_dir, cosent).rows) == 2000


@pytest.mark.slow
def test_xnli_xtreme_layout_2490_per_language_with_word_labels(shared_data: Path, cache_dir: Path):
    cfg = typed(
        f"data_root={shared_data}",
        "target=xnli",
        "target.source=xtreme",
        quoted("target.sources.xtreme.path", "${data_root}/xnli/xtreme_format/{split}-{lang}.tsv"),
    )
    for lang in ("ar", "de", "en", "es", "fr", "tr", "zh"):
        rows = read(cfg.target, "dev", lang, cache_dir).rows
        assert len(rows) == 2490
        assert [sum(r["label"] == k for r in rows) for k in range(3)] == [830, 830, 830]


@pytest.mark.slow
def test_xnli_release_file_with_a_language_column(shared_data: Path, cache_dir: Path):
    """XNLI 1.0 keeps every language in one file: `columns.language` picks one language's rows."""
    task = typed("target=xnli").target
    release = SourceConfig(
        format="tsv",
        path=str(shared_data / "xnli/hf_dummy/xnli.{split}.tsv"),
        languages=None,
        columns={
            "text_a": "sentence1",
            "text_b": "sentence2",
            "label": "gold_label",
            "language": "language",
            "id": "pairID",
        },
        labels={"entailment": 0, "neutral": 1, "contradiction": 2},
        splits={"dev": SplitConfig(split="dev")},
    )
    for lang in ("ar", "de", "sw", "zh"):
        rows = read(task, "dev", lang, cache_dir, release).rows
        assert len(rows) == 1 and rows[0]["language"] == lang
    with pytest.raises(XorderError, match=r"xnli\.dev\.tsv: no rows with 'language' = 'xx' \(found: ar, bg"):
        read(task, "dev", "xx", cache_dir, release)


@pytest.mark.slow
def test_sts_local_stsb_multi_mt_and_semeval_2017(shared_data: Path, cache_dir: Path):
    cfg = typed(f"data_root={shared_data}", "target=sts", "target.source=local")
    for lang in STSB_MT:
        sizes = [len(read(cfg.target, role, lang, cache_dir).rows) for role in ("train", "dev", "test")]
        assert sizes == [5749, 1500, 1379], lang
    rows = read(cfg.target, "dev", "de", cache_dir).rows
    assert all(isinstance(r["label"], float) and 0 <= r["label"] <= 5 for r in rows)
    for pair in STS17:  # SemEval-2017 input + gold files, found under sts17/ whatever the release folder is called
        loaded = read(cfg.target, "sts17", pair, cache_dir)
        assert len(loaded.rows) == 250, pair
        assert all(0 <= r["label"] <= 5 for r in loaded.rows)
        assert "STS.gs." in loaded.where
    tr_en = read(cfg.target, "sts17", "tr-en", cache_dir)  # 500 inputs for 250 scores: the first 250 are scored
    assert tr_en.rows[0]["text_a"] == "A silhouette of two dogs running by a lake."
    # track 4a (es-en) and 4b (es-en-wmt) are different files
    assert (
        read(cfg.target, "sts17", "es-en", cache_dir).rows[0]["text_a"]
        != read(cfg.target, "sts17", "es-en-wmt", cache_dir).rows[0]["text_a"]
    )


@pytest.mark.slow
def test_sts_benchmark_original_csv(shared_data: Path, cache_dir: Path):
    task = typed("target=sts").target
    stsb = SourceConfig(
        format="stsb",
        path=str(shared_data / "stsb/stsbenchmark/sts-{split}.csv"),
        splits={r: SplitConfig(split=r) for r in ("train", "dev", "test")},
    )
    sizes = {role: len(read(task, role, "en", cache_dir, stsb).rows) for role in ("train", "dev", "test")}
    assert sizes == {"train": 5749, "dev": 1500, "test": 1379}
    first = read(task, "train", "en", cache_dir, stsb).rows[0]
    assert (first["text_a"], first["text_b"], first["label"]) == (
        "A plane is taking off.",
        "An air plane is taking off.",
        5.0,
    )
    glue = SourceConfig(
        format="tsv",
        path=str(shared_data / "stsb/glue_hf_dummy/{split}.tsv"),
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "score"},
        splits={"train": SplitConfig(split="train")},
    )
    assert len(read(task, "train", "en", cache_dir, glue).rows) == 3


@pytest.mark.slow
def test_squad_json_xquad_has_1190_questions_with_answers_stripped(shared_data: Path, cache_dir: Path):
    rows = readers.squad_rows(shared_data / "squad/xquad.en.json")
    assert len(rows) == 1190 and all(r["context"] and r["question"] for r in rows)
    # this copy of XQuAD ships every answer as {"text": "", "answer_start": 0}: it cannot train or score a model,
    # and loading it as a labelled split says so on the first question
    cfg = typed(
        f"data_root={shared_data}",
        "task=squad",
        "task.squad.source=local",
        "task.squad.sources.local.path=${data_root}/squad/xquad.en.json",
    )
    with pytest.raises(XorderError, match=r"xquad\.en\.json: question 1: column 'answers': answer '' is not"):
        read(cfg.task["squad"], "dev", "en", cache_dir)


@pytest.mark.slow
def test_commonsenseqa_full_dev_in_hub_schema(shared_data: Path, cache_dir: Path):
    cfg = typed(
        f"data_root={shared_data}",
        "task=commonsenseqa",
        "task.commonsenseqa.source=hub_jsonl",
        quoted(
            "task.commonsenseqa.sources.hub_jsonl.path",
            "${data_root}/commonsense_qa/full_{split}/{split}_rand_split.jsonl",
        ),
    )
    rows = read(cfg.task["commonsenseqa"], "dev", "en", cache_dir).rows
    assert len(rows) == 1221
    assert all(len(r["choices"]) == 5 and 0 <= r["label"] < 5 for r in rows)
    assert "question" not in rows[0]  # the hub's `question` is the context, not a second question field
    # the release layout (question.stem, question.choices[*].text) through the `local` source
    local = typed(f"data_root={shared_data}", "task=commonsenseqa", "task.commonsenseqa.source=local")
    rows = read(local.task["commonsenseqa"], "train", "en", cache_dir).rows
    assert len(rows) == 5 and all(len(r["choices"]) == 5 for r in rows) and "question" not in rows[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, role, path, count",
    [
        ("anli", "train", None, 9),  # R1/train + R2/train + R3/train, 3 rows each
        ("anli", "dev", None, 9),
        ("cosmosqa", "dev", None, 2),
        ("hellaswag", "dev", None, 2),
        ("mnli", "train", "${data_root}/mnli/glue_hf_dummy/{split}.tsv", 3),
        ("mnli", "dev", "${data_root}/mnli/glue_hf_dummy/{split}.tsv", 2),
        ("qqp", "train", "${data_root}/qqp/glue_hf_dummy/{split}.tsv", 3),
        ("sst2", "train", "${data_root}/sst2/glue_hf_dummy/{split}.tsv", 3),
    ],
)
def test_release_format_fixtures_through_the_shipped_local_sources(
    shared_data: Path, cache_dir: Path, task: str, role: str, path: str | None, count: int
):
    extra = [quoted(f"task.{task}.sources.local.path", path)] if path else []
    cfg = typed(f"data_root={shared_data}", f"task={task}", f"task.{task}.source=local", *extra)
    rows = read(cfg.task[task], role, "en", cache_dir).rows
    assert len(rows) == count
    assert all(r["label"] in range(len(cfg.task[task].label_names)) for r in rows)


@pytest.mark.slow
def test_translate_train_sources_read_local_translations(shared_data: Path, tmp_path: Path, cache_dir: Path):
    """mnli -> XNLI, pawsx -> PAWS-X non-English train, sts -> stsb_multi_mt train; tasks without published
    translations read the user's own from local files in the release layout."""
    for rnd in ("R1", "R2", "R3"):  # German ANLI in the release layout, copied from the English fixture
        (tmp_path / "anli/translate_train/de" / rnd).mkdir(parents=True)
        (tmp_path / "anli/translate_train/de" / rnd / "train.jsonl").write_text(
            (shared_data / "anli" / rnd / "train.jsonl").read_text()
        )
    cfg = typed(
        f"data_root={tmp_path}",
        "task=[anli,sts]",
        "order=multilingual_only",
        "multilingual.languages=[de]",
        "task.anli.translation_source=local",
        "task.sts.translation_source=local",
        f"task.sts.translations.local.path='{shared_data}/stsb_multi_mt/stsb-{{lang}}-{{split}}.csv'",
    )
    multilingual, _ = plan(cfg)
    comps = {c.task.name: c for c in multilingual.components}
    assert (comps["anli"].source_name, comps["anli"].languages) == ("local", ("de",))
    assert len(read(cfg.task["anli"], "train", "de", cache_dir, comps["anli"].source).rows) == 9
    assert len(read(cfg.task["sts"], "train", "de", cache_dir, comps["sts"].source).rows) == 5749
    hub = typed("task=[mnli,pawsx,sts]", "order=multilingual_only")
    paths = {c.task.name: (c.source.path, c.source.splits["train"].split) for c in plan(hub)[0].components}
    assert paths == {
        "mnli": ("facebook/xnli", "train[:-2000]"),
        "pawsx": ("google-research-datasets/paws-x", "train"),
        "sts": ("PhilipMay/stsb_multi_mt", "train"),
    }
    mnli = next(c for c in plan(hub)[0].components if c.task.name == "mnli")
    assert mnli.source.splits["dev"].split == "train[-2000:]"  # never XNLI's validation: the xnli target's dev


# --- splits, sources chosen by overrides ----------------------------------------------------------------


@pytest.mark.slow
def test_split_strings_carve_rows_without_overlap(shared_data: Path, cache_dir: Path):
    task = typed("target=pawsx").target
    base = dict(
        format="tsv",
        path=str(shared_data / "pawsx/xtreme_format/{split}-{lang}.tsv"),
        fields=["text_a", "text_b", "label"],
        languages=PAWSX,
    )
    source = SourceConfig(
        **base,
        splits={
            "train": SplitConfig(split="dev[:1500]"),
            "dev": SplitConfig(split="dev[1500:]"),
            "both": SplitConfig(split="dev[:10]+dev[-10:]"),
            "pct": SplitConfig(split="dev[:10%]"),
        },
    )
    train, dev = read(task, "train", "en", cache_dir, source), read(task, "dev", "en", cache_dir, source)
    assert (len(train.rows), len(dev.rows)) == (1500, 500)
    assert not {r["id"] for r in train.rows} & {r["id"] for r in dev.rows}
    assert dev.rows[0]["id"] == "dev-en-1501"  # ids keep the file's row numbers
    assert train.fingerprint != dev.fingerprint
    assert len(read(task, "both", "en", cache_dir, source).rows) == 20
    assert len(read(task, "pct", "en", cache_dir, source).rows) == 200
    assert [p.name for p in parse_split("R1/dev+R2/dev")] == ["R1/dev", "R2/dev"]
    # the first rows of a stream serve both a dev head and a train tail without overlap
    assert prefix_needed(parse_split("train[:500]")[0], 2000) == 500
    assert prefix_needed(parse_split("train[500:]")[0], 2000) == 2500


@pytest.mark.slow
def test_overrides_choose_each_tasks_source_and_layout(shared_data: Path):
    cfg = typed(
        f"data_root={shared_data}",
        "task=[mnli,qqp]",
        "task.mnli.source=local",
        "target=pawsx",
        "target.source=xtreme",
        quoted("target.sources.xtreme.path", "/elsewhere/{split}-{lang}.tsv"),
        "data.source=synthetic",
        "order=english_first",
    )
    english, multilingual, target = plan(cfg)
    assert {c.task.name: c.source_name for c in english.components} == {"mnli": "local", "qqp": "synthetic"}
    assert english.components[0].source.path == f"{shared_data}/mnli/{{split}}.tsv"
    assert [c.source_name for c in multilingual.components] == ["synthetic", "synthetic"]
    assert (target.components[0].source_name, target.components[0].source.path) == (
        "xtreme",
        "/elsewhere/{split}-{lang}.tsv",
    )
    # another file layout changes the target stage's hash, so the stage cache never mixes data
    other = plan(
        typed(
            f"data_root={shared_data}",
            "task=[mnli,qqp]",
            "task.mnli.source=local",
            "target=pawsx",
            "target.source=xtreme",
            "data.source=synthetic",
            "order=english_first",
        )
    )
    assert other[0].hash == english.hash and other[2].hash != target.hash


# --- the hub code path, offline against a local directory in hub layout ------------------------------------


def write_hub_dir(root: Path, languages=("en", "de"), rows: int = 6) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    configs = []
    for lang in languages:
        files = []
        for split in ("train", "validation"):
            table = pa.table(
                {
                    "id": [f"{split}-{i}" for i in range(rows)],
                    # validation pairs differ from training pairs, as a real dataset's do
                    "sentence1": [
                        f"{lang} first sentence {i}" + ("" if split == "train" else " (held out)") for i in range(rows)
                    ],
                    "sentence2": [f"{lang} second sentence {i}" for i in range(rows)],
                    "label": [i % 2 for i in range(rows)],
                }
            )
            (root / lang).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / lang / f"{split}-00000-of-00001.parquet")
            files.append(f"  - split: {split}\n    path: {lang}/{split}-*")
        configs.append(f"- config_name: {lang}\n  data_files:\n" + "\n".join(files))
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n# a dataset in hub layout\n")
    return root


def test_hub_format_reads_a_local_directory_in_hub_layout_offline(tmp_path: Path, cache_dir: Path):
    hub = write_hub_dir(tmp_path / "paws-like")
    cfg = typed(
        "target=pawsx",
        quoted("target.sources.hub.path", str(hub)),
        "target.sources.hub.splits.dev.split='validation[2:]'",
    )
    task = cfg.target
    assert (task.source or task.default_source) == "hub"
    train = read(task, "train", "de", cache_dir)
    assert (
        len(train.rows) == 6 and train.rows[0]["text_a"] == "de first sentence 0" and train.rows[0]["id"] == "train-0"
    )
    assert len(read(task, "dev", "en", cache_dir).rows) == 4
    with pytest.raises(XorderError, match=r"cannot load .*paws-like/fr \[train\]: BuilderConfig 'fr' not found"):
        read(task, "train", "fr", cache_dir, SourceConfig(**{**vars(task.sources["hub"]), "languages": None}))


@pytest.mark.slow
def test_capped_hub_reads_stream_once_and_are_served_from_cache_dir(tmp_path: Path):
    hub = write_hub_dir(tmp_path / "corpus", languages=("de",), rows=10)
    task = TaskConfig(name="mlm", kind="mlm")
    source = SourceConfig(
        format="hub",
        path=str(hub),
        name="{lang}",
        languages=None,
        columns={"text": "sentence1"},
        splits={"train": SplitConfig(split="train[2:]"), "dev": SplitConfig(split="train[:2]")},
    )
    cache = tmp_path / "cache"
    train = read(task, "train", "de", cache, source, max_examples=5)
    dev = read(task, "dev", "de", cache, source, max_examples=5)
    texts = [r["text"] for r in dev.rows + train.rows]  # one shuffled stream: dev its first 2 rows, train the next 5
    assert len(train.rows) == 5 and len(dev.rows) == 2 and len(set(texts)) == 7
    assert set(texts) <= {f"de first sentence {i}" for i in range(10)}
    assert texts != [f"de first sentence {i}" for i in range(7)]  # a random sample, not the corpus's first rows
    stored = sorted(p.name for p in (cache / "corpora").glob("*.parquet"))
    assert len(stored) == 1 and stored[0].endswith("-7.parquet")  # dev's 2 rows came from train's 7
    hub.rename(tmp_path / "gone")  # the source is no longer there: the kept rows still serve
    assert read(task, "train", "de", cache, source, max_examples=5).rows == train.rows


# --- malformed files: XorderError naming file, row and column; exit 2 from the CLI ------------------------


def pawsx_task() -> TaskConfig:
    return typed("target=pawsx").target


def tsv_source(path: Path, **kw) -> SourceConfig:
    return SourceConfig(
        format="tsv",
        path=str(path),
        fields=["text_a", "text_b", "label"],
        languages=None,
        splits={"train": SplitConfig(split="train")},
        **kw,
    )


GOOD = "A sentence.\tAnother sentence.\t1\n"


@pytest.mark.parametrize(
    "content, needle",
    [
        (GOOD * 3 + "only one field\n", r"line 4: expected 3 fields \(text_a, text_b, label\), found 1"),
        (GOOD * 6 + "A.\tB.\t2\n", r"row 7: column 'label': label 2 is outside 0\.\.1 \(different, paraphrase\)"),
        (GOOD + "A.\tB.\tyes\n", r"row 2: column 'label': label 'yes' is not a class number"),
        (GOOD * 2 + "A.\t \t0\n", r"row 3: column 'text_b': empty text"),
        ("", r"split 'train' is empty"),
    ],
)
def test_malformed_tsv_names_file_row_and_column(tmp_path: Path, cache_dir: Path, content: str, needle: str):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    with pytest.raises(XorderError, match=needle) as err:
        read(pawsx_task(), "train", "en", cache_dir, tsv_source(path))
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_byte_order_marks_are_skipped_and_other_encodings_named(tmp_path: Path, cache_dir: Path):
    path = tmp_path / "train.tsv"
    path.write_bytes(("\ufeff" + GOOD * 2).encode("utf-8"))
    rows = read(pawsx_task(), "train", "en", cache_dir, tsv_source(path)).rows
    assert rows[0]["text_a"] == "A sentence."
    path.write_bytes(GOOD.encode() * 2 + "Ça va.\tOui.\t1\n".encode("latin-1"))
    with pytest.raises(
        XorderError, match=r"train\.tsv: line 3: not UTF-8 text \(invalid continuation byte at byte 1 of the line"
    ):
        read(pawsx_task(), "train", "en", cache_dir, tsv_source(path))


def test_malformed_scores_labels_json_and_missing_columns(tmp_path: Path, cache_dir: Path):
    sts = typed("target=sts").target
    csv_path = tmp_path / "stsb.csv"
    csv_path.write_text('"A, b",c,3.2\nd,e,7.5\n')
    scores = SourceConfig(
        format="csv",
        path=str(csv_path),
        fields=["text_a", "text_b", "label"],
        languages=None,
        splits={"train": SplitConfig(split="train")},
    )
    with pytest.raises(XorderError, match=r"stsb\.csv: row 2: column 'label': score 7\.5 is outside 0\.\.5"):
        read(sts, "train", "en", cache_dir, scores)
    csv_path.write_text("a,b,high\n")
    with pytest.raises(XorderError, match=r"stsb\.csv: row 1: column 'label': score 'high' is not a number"):
        read(sts, "train", "en", cache_dir, scores)
    xnli = typed("target=xnli").target
    words = tmp_path / "dev.tsv"
    words.write_text("p\th\tentailment\np\th\tmaybe\n")
    labelled = tsv_source(words, labels={"entailment": 0, "neutral": 1, "contradiction": 2})
    with pytest.raises(XorderError, match=r"dev\.tsv: row 2: column 'label': label 'maybe' is not one of entailment"):
        read(xnli, "train", "en", cache_dir, labelled)
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"premise": "p", "hypothesis": "h", "label": 0}) + "\n\n{not json\n")
    nli = SourceConfig(
        format="jsonl",
        path=str(jsonl),
        columns={"text_a": "premise", "text_b": "hypothesis"},
        splits={"train": SplitConfig(split="train")},
    )
    with pytest.raises(XorderError, match=r"train\.jsonl: line 3: not valid JSON"):
        read(xnli, "train", "en", cache_dir, nli)
    jsonl.write_text(
        json.dumps({"premise": "p", "hypothesis": "h", "label": 0})
        + "\n\n"
        + json.dumps({"premise": "p", "label": 1})
        + "\n"
    )
    with pytest.raises(
        XorderError,
        match=r"train\.jsonl: row 2 \(line 3\): column 'hypothesis': missing \(the row has: "
        r"premise, label\); map it with columns\.text_b",
    ):
        read(xnli, "train", "en", cache_dir, nli)


def test_missing_language_file_and_squad_offsets(tmp_path: Path, cache_dir: Path):
    task = pawsx_task()
    source = tsv_source(tmp_path / "{split}-{lang}.tsv")
    with pytest.raises(XorderError, match=r"no train file for 'de': .*train-de\.tsv does not exist"):
        read(task, "train", "de", cache_dir, source)
    limited = SourceConfig(**{**vars(source), "languages": ["en", "fr"]})
    with pytest.raises(XorderError, match=r"pawsx: source has no train data in 'ko' \(available: en, fr\)"):
        read(task, "train", "ko", cache_dir, limited)
    squad = typed("task=squad").task["squad"]
    data = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "The cat sat on the mat.",
                        "qas": [
                            {"id": "q1", "question": "Who sat?", "answers": [{"text": "cat", "answer_start": 4}]},
                            {"id": "q2", "question": "Where?", "answers": [{"text": "the mat", "answer_start": 3}]},
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    squad_json = SourceConfig(format="squad_json", path=str(path), splits={"dev": SplitConfig(split="dev")})
    with pytest.raises(
        XorderError, match=r"dev\.json: question 2: column 'answers': answer 'the mat' is not at character 3"
    ):
        read(squad, "dev", "en", cache_dir, squad_json)


def bad_pawsx_tree(root: Path, bad_line: str = "Sentence 6.\tOther sentence 6.\tparaphrase") -> Path:
    """XTREME layout with a bad 7th line in the English training file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pawsx").mkdir(exist_ok=True)
    lines = [f"Sentence {i}.\tOther sentence {i}.\t{i % 2}" for i in range(10)]
    lines[6] = bad_line
    (root / "pawsx" / "train-en.tsv").write_text("\n".join(lines) + "\n")
    for lang in PAWSX:
        (root / "pawsx" / f"dev-{lang}.tsv").write_text("\n".join(lines[:6]) + "\n")
    return root


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        (
            "Sentence 6.\tOther sentence 6.\tparaphrase",
            "row 7: column 'label': label 'paraphrase' is not a class number "
            "(map names to ids with labels: {name: id})",
        ),
        ("Sentence 6.\t\t1", "row 7: column 'text_b': empty text"),
        (
            "Sentence 6.\tOther sentence 6.",
            "line 7: expected 3 fields (text_a, text_b, label), found 2; the label column "
            "is missing (a file without labels can neither train nor score a model: if it "
            "is a test file released without them, evaluate on a slice of dev instead, "
            "e.g. dev: {split: 'dev[1500:]'})",
        ),
    ],
)
@pytest.mark.slow
def test_cli_run_on_a_malformed_file_exits_2_with_one_line(
    tmp_path: Path, cache_dir: Path, bad_line: str, problem: str
):
    data = bad_pawsx_tree(tmp_path / "data", bad_line)
    out = xorder_cli(
        "run",
        *demo_overrides(cache_dir, tmp_path / "results", "order=none", "target.source=xtreme", f"data_root={data}"),
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")]
    assert errors == [f"xorder: error: {data}/pawsx/train-en.tsv: {problem}"]
    assert not list((tmp_path / "results").glob("**/metrics.json"))


# --- the real-data demo cells -----------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_pawsx_real_trains_on_english_dev_head_and_scores_every_language_on_dev_tail(
    shared_data: Path, cache_dir: Path, tmp_path: Path
):
    cfg = compose("experiment=demo_pawsx_real")
    assert cfg.data_root == "../shared/data" and cfg.target.source == "xtreme"
    metrics, record = run_demo_cell(
        cache_dir, tmp_path, "experiment=demo_pawsx_real", f"data_root={shared_data}", "order=none", *FAST
    )
    dev = metrics["scores"]["en_dev"]["dev"]
    assert set(dev) == set(PAWSX) and set(metrics["scores"]["en_dev"]) == {"dev"}  # no unlabelled test split
    assert all(0 <= dev[lang]["accuracy"] <= 100 for lang in PAWSX)
    import pandas as pd

    predictions = pd.read_parquet(record / "predictions.parquet")
    ids = predictions[(predictions.selection == "en_dev") & (predictions.language == "de")]["id"]
    # rows 1501-2000 only (never a training pair's translation), less the translations of the English dev pairs that
    # PAWS-X repeats in the English training rows, which the record notes name
    assert ids.str.removeprefix("dev-de-").astype(int).between(1501, 2000).all()
    (selection,) = [n for n in metrics["notes"] if n.startswith("dev/en:") and "kept" in n]
    repeated = int(selection.split()[1])
    assert repeated > 0 and "the target's training data" in selection
    assert len(ids) == 500 - repeated
    assert f"dev/de: {repeated} of 500 pairs excluded from evaluation ({repeated} translations" in " ".join(
        metrics["notes"]
    )


@pytest.mark.slow
def test_demo_sts_real_scores_stsb_multi_mt_and_sts17(shared_data: Path, cache_dir: Path, tmp_path: Path):
    metrics, _ = run_demo_cell(
        cache_dir,
        tmp_path,
        "experiment=demo_sts_real",
        f"data_root={shared_data}",
        "order=none",
        "target.languages=[de,en,zh]",
        *FAST,
    )
    scores = metrics["scores"]["en_dev"]
    assert set(scores) == {"dev", "test", "sts17"}
    assert set(scores["dev"]) == set(scores["test"]) == {"de", "en", "zh"}
    assert set(scores["sts17"]) == set(STS17)
    assert all(set(v) == {"pearson", "spearman"} for v in scores["sts17"].values())


def test_same_shaped_synthetic_splits_of_two_tasks_never_share_a_fingerprint(cache_dir: Path):
    cfg = typed("task=[mnli,anli]", "data.source=synthetic")
    mnli, anli = (
        read(cfg.task[t], "train", "en", cache_dir, cfg.task[t].sources["synthetic"]) for t in ("mnli", "anli")
    )
    assert mnli.rows[0]["text_a"] != anli.rows[0]["text_a"] and mnli.fingerprint != anli.fingerprint


@pytest.mark.slow
def test_sts17_pairs_that_are_in_the_selection_set_are_excluded_from_evaluation(shared_data: Path, cache_dir: Path):
    """STS 2017's en-en track is 125 pairs of STS-B dev (the en_dev selection set) and 125 of STS-B test: the
    shared pairs leave the evaluation set, with a note, and the others are noted as STS-B test pairs. STS-B's own
    test set repeats 12 training pairs and 4 dev pairs (one is in both): they leave too, and so do their
    translations in every other language (stsb_multi_mt is row-aligned). Nothing else does."""
    from xorder.data.stage import DataSettings, prepare
    from xorder.encoders import tiny
    from xorder.pipeline.model import load_tokenizer

    cfg = to_typed(
        compose("experiment=demo_sts_real", f"data_root={shared_data}", "order=none", f"cache_dir={cache_dir}")
    )
    target = plan(cfg)[-1]
    data = prepare(target, load_tokenizer(str(tiny.ensure(cache_dir))), DataSettings(str(cache_dir), 50))
    sizes = {(ev.split, ev.language): len(ev.examples) for ev in data.evals}
    assert sizes[("sts17", "en-en")] == 125
    assert sizes[("sts17", "es-es")] == 250 and sizes[("dev", "en")] == 1500 and sizes[("test", "en")] == 1364
    assert sizes[("test", "de")] == sizes[("test", "zh")] == 1364
    items = {(ev.split, ev.language): ev.examples["item"] for ev in data.evals}
    assert items[("test", "de")] == items[("test", "en")]  # the same source pairs, in the same order
    test_notes = [n for n in data.notes if n.startswith("test/")]
    assert (
        "test/en: 15 of 1379 pairs excluded from evaluation (12 in the target's training data; 4 in the "
        "target's selection data)" in test_notes
    )
    assert (
        "test/de: 15 of 1379 pairs excluded from evaluation (15 translations of pairs excluded in another "
        "language)" in test_notes
    )
    assert "sts17/en-en: 125 of 250 pairs excluded from evaluation (125 in the target's selection data)" in data.notes
    assert (
        "sts17/en-en: 125 of its 125 evaluation pairs are pairs of test/en too (the same source pairs: not "
        "independent evidence)" in data.notes
    )
    assert not [n for n in data.notes if n.startswith(("sts17/es", "sts17/ar", "sts17/tr"))]


def test_two_local_hub_folders_of_the_same_name_are_read_apart(tmp_path: Path, cache_dir: Path):
    """`datasets` caches a local folder under its name: a second folder of that name (or the same folder edited)
    must not be served the first one's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    task = pawsx_task()
    rows = []
    for k, text in enumerate(("old text", "new text")):
        hub = write_hub_dir(tmp_path / f"v{k}" / "same-name", languages=("en",), rows=3)
        table = pq.read_table(hub / "en" / "train-00000-of-00001.parquet").to_pylist()
        table[0]["sentence1"] = text
        pq.write_table(pa.Table.from_pylist(table), hub / "en" / "train-00000-of-00001.parquet")
        source = SourceConfig(**{**vars(task.sources["hub"]), "path": str(hub), "languages": None})
        rows.append(read(task, "train", "en", cache_dir, source).rows[0]["text_a"])
    assert rows == ["old text", "new text"]
