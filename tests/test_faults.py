"""Nothing wrong may look done: damaged caches and records are detected and named, a killed rewrite never leaves
a mixed record, hostile files stop with their line."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from conftest import compose, demo_overrides, fresh_cache, run_demo_cell
from test_sources import pawsx_task, read, tsv_source
from xorder import records
from xorder.cell import identify
from xorder.config import SourceConfig, SplitConfig
from xorder.data.encode import encode, fingerprint
from xorder.data.identity import plan_cell
from xorder.encoders import tiny
from xorder.errors import XorderError
from xorder.pipeline import checkpoint, record_writer
from xorder.pipeline.model import load_tokenizer
from xorder.pipeline.stage_cache import StageDir

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
    return records.completed(record, identify(cfg), plan_cell(cfg))


@pytest.mark.slow
def test_a_kill_inside_a_forced_rewrite_leaves_no_record_that_looks_done(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = ("order=none", *FAST)
    first, record = run_demo_cell(cache, tmp_path / "results", *args)
    overrides = demo_overrides(cache, tmp_path / "results", *args)
    assert complete(record, *overrides)
    real = record_writer.write_atomic

    def killed_after_predictions(path, data):  # the process dies between two files of the new record
        real(path, data)
        if Path(path).name == records.PREDICTIONS:
            raise KeyboardInterrupt

    monkeypatch.setattr(record_writer, "write_atomic", killed_after_predictions)
    with pytest.raises(KeyboardInterrupt):
        run_demo_cell(cache, tmp_path / "results", *args, "force=true")
    assert not complete(record, *overrides)  # the old metrics.json is gone: never old scores beside new files
    monkeypatch.setattr(record_writer, "write_atomic", real)
    again, _ = run_demo_cell(cache, tmp_path / "results", *args)  # a rerun repairs it, no force needed
    assert complete(record, *overrides) and again["scores"] == first["scores"]


def edit_score(metrics: bytes) -> bytes:
    """metrics.json with its first en_dev score changed by hand."""
    doc = json.loads(metrics)
    language = next(iter(doc["scores"]["en_dev"]["test"].values()))
    language["accuracy"] += 1.0
    return json.dumps(doc, indent=2).encode()


EDITS = {
    records.METRICS: edit_score,  # issue 24, item 4: one score edited by hand
    records.CONFIG: lambda text: text.replace(b"lr: 0.001\n", b"lr: 0.002\n", 1),  # item 9: the config edited
    records.PREDICTIONS: lambda data: data[:-8] + bytes(8),
}


@pytest.mark.slow
def test_a_hand_edited_record_is_damaged_for_status_run_and_report(cache_dir: Path, tmp_path: Path):
    """One cell; each of its files edited in turn (and put back): every edit is named, never done or tabled."""
    from xorder.grid.status import cell_status
    from xorder.report.load import load_records

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = ("order=none", *FAST)
    _, record = run_demo_cell(cache, tmp_path / "results", *args)
    overrides = demo_overrides(cache, tmp_path / "results", *args)
    complete_state = cell_status(overrides).state
    assert complete_state in ("done", "degenerate")  # 8 steps may learn nothing: complete all the same
    for name, edit in EDITS.items():
        original = (record / name).read_bytes()
        edited = edit(original)
        assert edited != original and len(edited) > 0
        (record / name).write_bytes(edited)
        status = cell_status(overrides)
        assert status.state == "damaged", name
        assert f"({name} is missing or changed since it was written): run the cell again with force=true" in (
            status.detail
        )
        with pytest.raises(XorderError, match=rf"record .* is damaged \({name} is missing or changed .*force=true"):
            complete(record, *overrides)  # what a rerun checks first: it stops, it neither skips nor retrains silently
        skipped = dict(load_records(tmp_path / "results").skipped)
        assert f"damaged: {name} is missing or changed" in skipped[identify(compose(*overrides)).path]
        assert not complete(record, *overrides, "force=true")  # force=true reruns it
        (record / name).write_bytes(original)
        assert cell_status(overrides).state == complete_state


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


def killed_at_first_checkpoint(cache: Path, results: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> StageDir:
    """Run a cell that dies right after its first checkpoint; the stage folder it leaves."""
    real = checkpoint.save

    def killed(*a, **kw):
        real(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        run_demo_cell(cache, results, *args, *FAST)
    monkeypatch.setattr(checkpoint, "save", real)
    return next(StageDir(p) for p in (cache / "stages").iterdir() if p.is_dir() and (p / "state").is_dir())


@pytest.mark.slow
def test_a_checkpoint_whose_rng_or_loop_state_is_damaged_or_does_not_load_stops_the_resume(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import pickle
    from datetime import date

    from xorder.storage.integrity import MANIFEST, of_file

    cache = fresh_cache(cache_dir, tmp_path / "cache")
    target = killed_at_first_checkpoint(cache, tmp_path / "results", monkeypatch, "order=none")
    rng = target.checkpoint / "random_states_0.pkl"
    original = rng.read_bytes()
    rng.write_bytes(original[:-8])
    with pytest.raises(
        XorderError,
        match=r"resumable checkpoint .* is damaged \(random_states_0.pkl is missing or changed\): delete that folder",
    ):
        run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)
    # issue 24, item 6: a pickle torch's restricted loader refuses, with its manifest digest updated to match
    rng.write_bytes(pickle.dumps({"random_state": date(2020, 1, 1)}, protocol=2))
    manifest = json.loads((target.checkpoint / MANIFEST).read_text())
    manifest[rng.name] = of_file(rng)
    (target.checkpoint / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        XorderError,
        match=r"resumable checkpoint .* cannot be resumed: random_states_0.pkl does not load \(.*\): delete that "
        r"folder to train the stage from its beginning",
    ):
        run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)
    (target.checkpoint / "loop.json").write_text('{"step": 4')  # the loop's own state, cut short
    with pytest.raises(XorderError, match=r"resumable checkpoint .* is damaged \(loop.json is missing or unreadable\)"):
        run_demo_cell(cache, tmp_path / "results", "order=none", *FAST)


@pytest.mark.slow
def test_damaged_best_weights_stop_the_resume(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 24, item 1: 8 flipped bytes in state/best/backbone.pt of a killed stage, then a rerun."""
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    english = killed_at_first_checkpoint(cache, tmp_path / "results", monkeypatch, "order=english_only")
    best = english.best / "backbone.pt"
    data = bytearray(best.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    best.write_bytes(bytes(data))
    with pytest.raises(
        XorderError,
        match=rf"best weights in {english.best} are damaged \(backbone.pt is missing or changed since they were "
        rf"saved\): delete {english.state} to train the stage from its beginning",
    ):
        run_demo_cell(cache, tmp_path / "results", "order=english_only", *FAST)


def tokenize(rows, tokenizer, cache: Path, key: str):
    labels = ["different", "paraphrase"]
    task = pawsx_task()
    fp = fingerprint(key, task, tokenizer, 32, True, labels)
    return encode(rows, task, tokenizer, 32, train=True, label_names=labels, fingerprint=fp, cache_dir=cache), fp


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "same size"])
def test_a_damaged_tokenized_cache_stops_naming_what_to_delete(
    damage: str, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Issue 24, item 2: one changed byte (the same size) or a truncated file in each of several Arrow files."""
    from xorder.data import encode as encode_module

    monkeypatch.setattr(encode_module, "PARALLEL_ROWS", 100)  # two worker processes: two Arrow files
    monkeypatch.setattr(encode_module, "_workers", lambda rows: 2)
    tokenizer = load_tokenizer(str(tiny.ensure(cache_dir)))
    rows = datasets.Dataset.from_list(
        [
            {"text_a": f"sentence {i}", "text_b": f"other {i}", "label": i % 2, "id": str(i), "language": "en"}
            for i in range(300)
        ]
    )
    _, fp = tokenize(rows, tokenizer, tmp_path, damage)
    arrows = sorted((tmp_path / "tokenized").glob(f"{fp}*.arrow"))
    assert len(arrows) == 2
    for arrow in arrows:
        data = bytearray(arrow.read_bytes())
        if damage == "truncated":
            data = data[: len(data) // 2]
        else:
            data[-200] ^= 0x01
        arrow.write_bytes(bytes(data))
    with pytest.raises(
        XorderError,
        match=rf"damaged cache: .*{fp}-0.arrow, .*{fp}-1.arrow are missing or changed since it was tokenized: "
        rf"delete .*tokenized/{fp}\* to tokenize it again",
    ):
        tokenize(rows, tokenizer, tmp_path, damage)
    for path in (tmp_path / "tokenized").glob(f"{fp}*"):  # what the message says to do
        path.unlink()
    again, _ = tokenize(rows, tokenizer, tmp_path, damage)
    assert len(again) == len(rows)


def test_a_damaged_canonical_cache_stops_naming_what_to_delete(tmp_path: Path):
    path = tmp_path / "train.tsv"
    path.write_text("".join(f"sentence {i}.\tother {i}.\t{i % 2}\n" for i in range(50)))
    first = read(pawsx_task(), "train", "en", tmp_path, tsv_source(path))
    arrow = next((tmp_path / "canonical").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[-100] ^= 0x01
    arrow.write_bytes(bytes(data))
    with pytest.raises(
        XorderError, match=rf"damaged cache: {arrow} is missing or changed since it was written: delete"
    ):
        read(pawsx_task(), "train", "en", tmp_path, tsv_source(path))
    for stale in (tmp_path / "canonical").glob(f"{arrow.stem}.*"):
        stale.unlink()
    assert read(pawsx_task(), "train", "en", tmp_path, tsv_source(path)).rows == first.rows


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
def test_a_damaged_built_model_is_built_again(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """Issue 24, item 3: flipped bytes in the built model under cache/models; the builder is deterministic."""
    import logging

    built = tiny.ensure(tmp_path)
    weights = built / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="xorder"):
        assert tiny.ensure(tmp_path) == built
    assert (
        f"the built model {built} is damaged (model.safetensors is missing or changed since it was built): "
        "building it again" in caplog.text
    )
    assert weights.read_bytes() == original


def test_damaged_synthetic_data_is_generated_again(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    import logging

    from xorder.data import synthetic

    path = synthetic.materialize(tmp_path, "pawsx", "classification", "train", "en", 100)
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"label": 1', b'"label": 0', 1))
    with caplog.at_level(logging.WARNING, logger="xorder"):
        assert synthetic.materialize(tmp_path, "pawsx", "classification", "train", "en", 100) == path
    assert f"the synthetic data {path} is missing or changed since it was generated: generating it again" in caplog.text
    assert path.read_bytes() == original
