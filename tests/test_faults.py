"""Nothing wrong may look done: damaged caches and records are detected and named, a killed rewrite never leaves
a mixed record, hostile files stop with their line."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from conftest import compose, demo_overrides, fresh_cache, run_demo_cell
from test_sources import pawsx_task, read, tsv_source
from xorder import cell_record, checkpoint, records, tiny
from xorder.config import SourceConfig, SplitConfig
from xorder.data.encode import encode, fingerprint
from xorder.errors import XorderError
from xorder.model import load_tokenizer
from xorder.plan import config_hash
from xorder.stage_cache import StageDir

FAST = (
    "trainer.intermediate.max_steps=8",
    "trainer.target.max_steps=8",
    "trainer.eval_every=4",
    "trainer.log_every=4",
    "trainer.save_every=4",
    "data.synthetic_examples=200",
)


def complete(record: Path, *overrides: str) -> bool:
    cfg = compose(*overrides)
    return records.completed(record, cfg, config_hash(cfg))


@pytest.mark.slow
def test_a_kill_inside_a_forced_rewrite_leaves_no_record_that_looks_done(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = ("order=none", *FAST)
    first, record = run_demo_cell(cache, tmp_path / "results", *args)
    overrides = demo_overrides(cache, tmp_path / "results", *args)
    assert complete(record, *overrides)
    real = cell_record.write_atomic

    def killed_after_predictions(path, data):  # the process dies between two files of the new record
        real(path, data)
        if Path(path).name == records.PREDICTIONS:
            raise KeyboardInterrupt

    monkeypatch.setattr(cell_record, "write_atomic", killed_after_predictions)
    with pytest.raises(KeyboardInterrupt):
        run_demo_cell(cache, tmp_path / "results", *args, "force=true")
    assert not complete(record, *overrides)  # the old metrics.json is gone: never old scores beside new files
    monkeypatch.setattr(cell_record, "write_atomic", real)
    again, _ = run_demo_cell(cache, tmp_path / "results", *args)  # a rerun repairs it, no force needed
    assert complete(record, *overrides) and again["scores"] == first["scores"]
    # damaged predictions make a record incomplete too
    (record / records.PREDICTIONS).write_bytes(b"not parquet")
    assert not complete(record, *overrides)


@pytest.mark.slow
def test_zeroed_bytes_in_cached_weights_stop_the_cell_naming_the_folder(cache_dir: Path, tmp_path: Path):
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    metrics, _ = run_demo_cell(cache, tmp_path / "results", "order=english_only", *FAST)
    english = StageDir(cache / "stages" / metrics["stages"][0]["hash"])
    weights = english.model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1024] = bytes(1024)
    weights.write_bytes(bytes(data))
    with pytest.raises(
        XorderError,
        match=rf"cached stage {english.root} is damaged \(model/model.safetensors is "
        r"missing or changed .*\): delete that folder",
    ):
        run_demo_cell(cache, tmp_path / "results", "order=english_only", "target=sts", *FAST)


@pytest.mark.slow
def test_a_damaged_rng_state_stops_the_resume(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    real = checkpoint.save

    def killed_after_first_checkpoint(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)
    monkeypatch.setattr(checkpoint, "save", real)
    target = next(StageDir(p) for p in (cache / "stages").iterdir() if p.is_dir())
    rng = target.checkpoint / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[:-8])
    with pytest.raises(
        XorderError,
        match=r"resumable checkpoint .* is damaged \(random_states_0.pkl is missing or "
        r"changed\): delete that folder",
    ):
        run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)


@pytest.mark.slow
def test_a_truncated_tokenized_cache_is_tokenized_again(cache_dir: Path, tmp_path: Path):
    tokenizer = load_tokenizer(str(tiny.ensure(cache_dir)))
    task = pawsx_task()
    rows = datasets.Dataset.from_list(
        [
            {"text_a": f"sentence {i}", "text_b": f"other {i}", "label": i % 2, "id": str(i), "language": "en"}
            for i in range(300)
        ]
    )
    fp = fingerprint("truncated", task, tokenizer, 32, True, ["different", "paraphrase"])
    first = encode(
        rows,
        task,
        tokenizer,
        32,
        train=True,
        label_names=["different", "paraphrase"],
        fingerprint=fp,
        cache_dir=tmp_path,
    ).to_list()
    arrow = tmp_path / "tokenized" / f"{fp}.arrow"
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    again = encode(
        rows,
        task,
        tokenizer,
        32,
        train=True,
        label_names=["different", "paraphrase"],
        fingerprint=fp,
        cache_dir=tmp_path,
    )
    assert again.to_list() == first


def test_the_tokenized_cache_key_does_not_depend_on_where_the_tokenizer_lives(cache_dir: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(tiny.ensure(cache_dir), copy)
    task = pawsx_task()
    keys = {
        fingerprint("data", task, load_tokenizer(str(path)), 32, True, ["a", "b"])
        for path in (tiny.ensure(cache_dir), copy)
    }
    assert len(keys) == 1


def test_an_unclosed_quote_is_named_by_the_line_it_opens_on(tmp_path: Path, cache_dir: Path):
    path = tmp_path / "train.csv"
    path.write_text('a,b,1\nc,d,0\n"e,f,1\ng,h,0\ni,j,1\n')
    source = SourceConfig(
        format="csv",
        path=str(path),
        fields=["text_a", "text_b", "label"],
        languages=None,
        splits={"train": SplitConfig(split="train")},
    )
    with pytest.raises(XorderError, match=r"train\.csv: line 3: a quoted field opens on this line and never closes"):
        read(pawsx_task(), "train", "en", cache_dir, source)


def test_an_absurdly_long_row_is_refused_before_tokenization(tmp_path: Path, cache_dir: Path):
    path = tmp_path / "train.tsv"
    path.write_text("A sentence.\tAnother one.\t1\n" + "x" * 2_000_000 + "\tshort.\t0\n")
    with pytest.raises(XorderError, match=r"row 2: column 'text_a': 2,000,000 characters, more than any real example"):
        read(pawsx_task(), "train", "en", cache_dir, tsv_source(path))


@pytest.mark.slow
def test_status_calls_a_record_with_damaged_predictions_damaged(cache_dir: Path, tmp_path: Path):
    from xorder.status import cell_status

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    _, record = run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)
    overrides = demo_overrides(cache, tmp_path / "results", "order=none", *FAST)
    assert cell_status(overrides).state == "done"
    (record / records.PREDICTIONS).write_bytes(b"damaged")
    status = cell_status(overrides)
    assert status.state == "damaged" and "predictions.parquet" in status.detail
