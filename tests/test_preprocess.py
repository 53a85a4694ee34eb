"""Preprocessing per head kind on real samples from ../shared/data: tokenization through `datasets.map` with a
cache that a second call reuses, SQuAD answer offsets that map back to the answer text, multiple-choice tensors
with one row per choice, tagging labels on first sub-tokens only, float regression labels, MLM masking."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import datasets
import pytest
import torch

from conftest import compose
from xorder import kinds
from xorder.config import SourceConfig, SplitConfig, TaskConfig
from xorder.data.batching import Collator, LengthGroupedBatchSampler
from xorder.data.encode import encode, fingerprint, tokenizer_identity
from xorder.data.sources import load_split
from xorder.kinds.base import IGNORE
from xorder.pipeline.model import COMPILED_MULTIPLE
from xorder.plan import to_typed


@pytest.fixture(scope="module")
def tokenizer(cache_dir: Path):
    from xorder.encoders import tiny
    from xorder.pipeline.model import load_tokenizer

    return load_tokenizer(str(tiny.ensure(cache_dir)))


def typed(*overrides: str):
    return to_typed(compose(*overrides))


def rows_of(task: TaskConfig, source: SourceConfig, role: str, lang: str, cache_dir: Path) -> list[dict]:
    return list(load_split(task, source, role, lang, cache_dir=str(cache_dir), synthetic_examples=50).dataset)


def features_of(rows, task, tokenizer, tmp_path: Path, *, train: bool, max_length: int = 64, names=None):
    names = list(task.label_names) if names is None else names
    fp = fingerprint(f"test:{len(rows)}:{max_length}", task, tokenizer, max_length, train, names)
    return encode(
        datasets.Dataset.from_list(rows),
        task,
        tokenizer,
        max_length,
        train=train,
        label_names=names,
        fingerprint=fp,
        cache_dir=tmp_path,
    )


@pytest.fixture(scope="module")
def pawsx_rows(shared_data: Path, cache_dir: Path):
    task = typed("target=pawsx").target
    source = SourceConfig(
        format="tsv",
        path=str(shared_data / "pawsx/xtreme_format/{split}-{lang}.tsv"),
        fields=["text_a", "text_b", "label"],
        languages=None,
        splits={"dev": SplitConfig(split="dev[:64]")},
    )
    return task, rows_of(task, source, "dev", "de", cache_dir)


def test_tokenization_is_cached_and_a_second_call_tokenizes_nothing(
    pawsx_rows, tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    task, rows = pawsx_rows
    calls: list[int] = []
    kind = kinds.get("classification")
    inner = kind.encode

    def counting(batch, rows, how):
        calls.append(len(rows))
        return inner(batch, rows, how)

    monkeypatch.setattr(kind, "encode", counting)
    first = features_of(rows, task, tokenizer, tmp_path, train=True)
    assert sum(calls) == 64
    assert len(list((tmp_path / "tokenized").glob("*.arrow"))) == 1
    again = features_of(rows, task, tokenizer, tmp_path, train=True)
    assert sum(calls) == 64  # read from the cache file: the tokenizer never ran
    assert again.to_list() == first.to_list()
    features_of(rows, task, tokenizer, tmp_path, train=True, max_length=32)  # another max length: another entry
    assert sum(calls) == 128 and len(list((tmp_path / "tokenized").glob("*.arrow"))) == 2
    # the fingerprint moves with the tokenizer's content, the task, the max length and train/eval processing
    base = fingerprint("data", task, tokenizer, 64, True, ["a", "b"])
    other_task = replace(task, name="paws2")
    assert (
        len(
            {
                base,
                fingerprint("data", other_task, tokenizer, 64, True, ["a", "b"]),
                fingerprint("data", task, tokenizer, 65, True, ["a", "b"]),
                fingerprint("data", task, tokenizer, 64, False, ["a", "b"]),
                fingerprint("data2", task, tokenizer, 64, True, ["a", "b"]),
            }
        )
        == 5
    )
    left = type(tokenizer).from_pretrained(tokenizer.name_or_path, truncation_side="left")
    assert tokenizer_identity(left) != tokenizer_identity(tokenizer)


@pytest.mark.slow
def test_pairs_and_regression_scores_on_real_rows(
    pawsx_rows, shared_data: Path, cache_dir: Path, tokenizer, tmp_path: Path
):
    task, rows = pawsx_rows
    features = features_of(rows, task, tokenizer, tmp_path, train=True)
    assert (
        features[5]["input_ids"]
        == tokenizer(rows[5]["text_a"], rows[5]["text_b"], truncation=True, max_length=64)["input_ids"]
    )
    batch = Collator(kinds.get("classification"), tokenizer)([features[i] for i in range(8)])
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [r["label"] for r in rows[:8]]
    assert batch["row"].tolist() == list(range(8))
    sts = typed("target=sts").target
    source = SourceConfig(
        format="csv",
        path=str(shared_data / "stsb_multi_mt/stsb-{lang}-{split}.csv"),
        fields=["text_a", "text_b", "label"],
        languages=None,
        splits={"dev": SplitConfig(split="dev[:16]")},
    )
    sts_rows = rows_of(sts, source, "dev", "fr", cache_dir)
    scored = Collator(kinds.get("regression"), tokenizer)(
        [f for f in features_of(sts_rows, sts, tokenizer, tmp_path, train=True)]
    )
    assert scored["labels"].dtype == torch.float32
    assert scored["labels"].tolist() == pytest.approx([r["label"] for r in sts_rows])


def xquad_with_answers(shared_data: Path, tmp_path: Path, n: int = 12) -> Path:
    """Real XQuAD contexts and questions; this copy ships its answers stripped, so each question gets a real span
    of its context as answer: the known answer to the first question, a three-word span late in the others."""
    data = json.loads((shared_data / "squad/xquad.en.json").read_text())
    articles = []
    for k, article in enumerate(data["data"][:n]):
        paragraph = article["paragraphs"][0]
        context, qa = paragraph["context"], paragraph["qas"][0]
        if k == 0:
            text = "308"
        else:
            words = context.split(" ")
            at = int(len(words) * 0.8)
            text = " ".join(words[at : at + 3])
        start = context.index(text, len(context) // 2 if k else 0)
        qa = {**qa, "answers": [{"text": text, "answer_start": start}]}
        articles.append({"title": f"a{k}", "paragraphs": [{"context": context, "qas": [qa]}]})
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps({"version": "1.1", "data": articles}))
    return path


@pytest.mark.slow
def test_squad_answer_offsets_map_back_to_the_answer_text(
    shared_data: Path, cache_dir: Path, tokenizer, tmp_path: Path
):
    squad = replace(typed("task=squad").task["squad"], doc_stride=32)
    source = SourceConfig(
        format="squad_json",
        path=str(xquad_with_answers(shared_data, tmp_path)),
        splits={"dev": SplitConfig(split="dev")},
    )
    rows = rows_of(squad, source, "dev", "en", cache_dir)
    assert rows[0]["question"] == "How many points did the Panthers defense surrender?"
    features = features_of(rows, squad, tokenizer, tmp_path, train=False, max_length=96)
    assert len(features) > len(rows)  # long contexts become several overlapping windows
    found = set()
    for feature in features:
        s, e = feature["start_positions"], feature["end_positions"]
        if s == 0:
            assert e == 0  # the answer is not in this window: both point at <s>
            continue
        row = rows[feature["row"]]
        offsets = feature["offset_mapping"]
        assert offsets[s][0] >= 0 and offsets[e][0] >= 0  # both inside the context, not the question
        assert row["context"][offsets[s][0] : offsets[e][1]] == row["answers"]["text"][0]
        found.add(feature["row"])
    assert found == set(range(len(rows)))  # every answer is recovered from at least one window
    train = features_of(rows, squad, tokenizer, tmp_path, train=True, max_length=96)
    assert "offset_mapping" not in train.column_names
    assert train["start_positions"] == features["start_positions"]
    batch = Collator(kinds.get("extractive_qa"), tokenizer)([features[i] for i in range(4)])
    assert batch["context_mask"].shape == batch["input_ids"].shape
    first = features[0]
    assert batch["context_mask"][0].tolist()[: len(first["input_ids"])] == [
        int(o[0] >= 0) for o in first["offset_mapping"]
    ]


@pytest.mark.slow
def test_multiple_choice_tensors_have_one_row_per_choice(shared_data: Path, cache_dir: Path, tokenizer, tmp_path: Path):
    csqa = typed("task=commonsenseqa").task["commonsenseqa"]
    hub_jsonl = replace(
        csqa.sources["hub_jsonl"],
        path=str(shared_data / "commonsense_qa/full_dev/{split}_rand_split.jsonl"),
        splits={"dev": SplitConfig(split="dev[:6]")},
    )
    rows = rows_of(csqa, hub_jsonl, "dev", "en", cache_dir)
    features = features_of(rows, csqa, tokenizer, tmp_path, train=True)
    batch = Collator(kinds.get("multiple_choice"), tokenizer)([features[i] for i in range(6)])
    assert batch["input_ids"].shape[:2] == (6, 5) and batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["labels"].tolist() == [r["label"] for r in rows]
    for i in (0, 5):
        for c, choice in enumerate(rows[i]["choices"]):
            expected = tokenizer(rows[i]["context"], choice, truncation=True, max_length=64)["input_ids"]
            assert batch["input_ids"][i, c, : len(expected)].tolist() == expected
            assert batch["attention_mask"][i, c].sum().item() == len(expected)
    hellaswag = typed("task=hellaswag").task["hellaswag"]
    local = replace(hellaswag.sources["local"], path=str(shared_data / "hellaswag/hellaswag_{split}.jsonl"))
    rows = rows_of(hellaswag, local, "dev", "en", cache_dir)
    batch = Collator(kinds.get("multiple_choice"), tokenizer)(
        list(features_of(rows, hellaswag, tokenizer, tmp_path, train=True))
    )
    assert batch["input_ids"].shape[:2] == (2, 4) and batch["labels"].tolist() == [3, 3]


def test_tagging_labels_sit_on_first_sub_tokens_only(pawsx_rows, tokenizer, tmp_path: Path):
    _, pairs = pawsx_rows
    tags_of = lambda w: "NUM" if any(ch.isdigit() for ch in w) else "CAP" if w[:1].isupper() else "LOW"  # noqa: E731
    rows = [
        {
            "tokens": r["text_a"].split(),
            "tags": [tags_of(w) for w in r["text_a"].split()],
            "id": r["id"],
            "language": "de",
        }
        for r in pairs[:16]
    ]
    task = TaskConfig(name="tags", kind="tagging", label_names=["CAP", "LOW", "NUM"])
    features = features_of(rows, task, tokenizer, tmp_path, train=True, max_length=128)
    multi_piece_words = 0
    for feature, row in zip(features, rows):
        word_ids = tokenizer(row["tokens"], is_split_into_words=True, truncation=True, max_length=128).word_ids()
        expected, previous = [], None
        for word in word_ids:
            expected.append(IGNORE if word is None or word == previous else task.label_names.index(row["tags"][word]))
            multi_piece_words += word is not None and word == previous
            previous = word
        assert feature["labels"] == expected
        firsts = [label for label in feature["labels"] if label != IGNORE]
        assert len(firsts) == len(row["tokens"])  # one label per word, wherever it splits into pieces
    assert multi_piece_words > 50  # real German words split into several pieces: the check above means something
    batch = Collator(kinds.get("tagging"), tokenizer)([features[0], features[1]])
    short = min(len(features[0]["input_ids"]), len(features[1]["input_ids"]))
    padded = 0 if len(features[0]["input_ids"]) == short else 1
    assert batch["labels"][padded, short:].eq(IGNORE).all()  # padding carries no loss either


def test_mlm_masks_only_real_tokens(pawsx_rows, tokenizer, tmp_path: Path):
    _, pairs = pawsx_rows
    rows = [{"text": r["text_a"], "id": r["id"], "language": "de"} for r in pairs]
    task = TaskConfig(name="mlm", kind="mlm")
    features = features_of(rows, task, tokenizer, tmp_path, train=True, max_length=64)
    torch.manual_seed(0)
    batch = Collator(kinds.get("mlm"), tokenizer, mlm_probability=0.15)(list(features))
    labels, ids = batch["labels"], batch["input_ids"]
    scored = labels != IGNORE
    assert 0.08 < scored.sum().item() / batch["attention_mask"].sum().item() < 0.25
    frame = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]  # <unk> is text here
    special = torch.isin(labels, torch.tensor(frame))
    assert not (scored & special).any()
    assert (ids[scored] == tokenizer.mask_token_id).float().mean() > 0.6  # 80% of chosen positions become <mask>


def test_a_compiled_encoder_sees_lengths_padded_to_its_multiple(pawsx_rows, tokenizer, tmp_path: Path):
    """trainer.compile pads every batch to a multiple of COMPILED_MULTIPLE (a few shapes, a CUDA graph each);
    the padding is masked and, for token-level labels, carries no loss."""
    task, pairs = pawsx_rows
    features = features_of(pairs, task, tokenizer, tmp_path, train=True, max_length=256)
    widths = set()
    for start in range(0, len(features), 8):
        chunk = [features[i] for i in range(start, min(start + 8, len(features)))]
        batch = Collator(kinds.get("classification"), tokenizer, multiple=COMPILED_MULTIPLE)(chunk)
        width, longest = batch["input_ids"].shape[1], max(len(f["input_ids"]) for f in chunk)
        assert width % COMPILED_MULTIPLE == 0 and longest <= width < longest + COMPILED_MULTIPLE
        assert batch["attention_mask"].sum(1).tolist() == [len(f["input_ids"]) for f in chunk]
        widths.add(width)
    dynamic = {max(len(features[i]["input_ids"]) for i in range(s, min(s + 8, len(features)))) for s in range(0, 64, 8)}
    assert len(widths) < len(dynamic)  # fewer shapes than dynamic padding gives
    rows = [{"text": r["text_a"], "id": r["id"], "language": "de"} for r in pairs]
    mlm = features_of(rows, TaskConfig(name="mlm", kind="mlm"), tokenizer, tmp_path, train=True, max_length=64)
    batch = Collator(kinds.get("mlm"), tokenizer, 0.15, COMPILED_MULTIPLE)(list(mlm)[:8])
    assert batch["input_ids"].shape[1] % COMPILED_MULTIPLE == 0
    assert batch["labels"][batch["attention_mask"] == 0].eq(IGNORE).all()


def test_length_grouped_batches_cover_every_row_once_and_repeat_per_epoch():
    lengths = [5 + (i * 37) % 90 for i in range(200)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200)) and len(batches) == len(sampler) == 25
    assert list(LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)) == batches
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 30  # similar lengths share a batch (random batches spread over ~70)
    sampler.set_epoch(1)
    assert list(sampler) != batches
