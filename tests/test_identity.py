"""Data identity (issue 20, item 2): a stage's hash covers the content of every file it reads, so a stage trained on
other data is never reused; `touch` alone retrains nothing; hub datasets name their revision."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, compose, fresh_cache
from xorder import records
from xorder.cell import identify
from xorder.data.identity import plan_cell, unpinned
from xorder.errors import XorderError
from xorder.plan import plan

LANGUAGES = ["de", "en", "es", "fr", "ja", "ko", "zh"]


def pawsx_files(root: Path) -> Path:
    """PAWS-X in XTREME's layout (dev-{lang}.tsv, no header), 80 pairs per language, labels alternating."""
    folder = root / "pawsx" / "xtreme_format"
    folder.mkdir(parents=True)
    for lang in LANGUAGES:
        rows = [f"{lang} first sentence {i}.\t{lang} second sentence {i}.\t{i % 2}\n" for i in range(80)]
        (folder / f"dev-{lang}.tsv").write_text("".join(rows))
    return root


def overrides(data_root: Path, cache: Path, results: Path, *extra: str) -> list[str]:
    return [
        "experiment=demo_pawsx_real",
        f"data_root={data_root}",
        f"cache_dir={cache}",
        f"results_dir={results}",
        "target.sources.xtreme.splits.train.split='dev[:60]'",
        "target.sources.xtreme.splits.dev.split='dev[60:]'",
        *extra,
    ]


def swap_first_labels(path: Path) -> None:
    """Swap the labels of the first two rows (0 and 1): the same size, and the modification time put back."""
    before = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    lines[0], lines[1] = lines[0][:-2] + lines[1][-2:], lines[1][:-2] + lines[0][-2:]
    path.write_text("".join(lines))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def hashes(*args: str) -> list[str]:
    return [stage.hash for stage in plan_cell(compose(*args), 1)]


def test_a_stage_hash_follows_the_content_of_its_files_not_their_times(tmp_path: Path):
    data = pawsx_files(tmp_path / "data")
    args = overrides(data, tmp_path / "cache", tmp_path / "results", "order=none")
    first = hashes(*args)
    english = data / "pawsx" / "xtreme_format" / "dev-en.tsv"
    os.utime(english)  # touch
    assert hashes(*args) == first
    swap_first_labels(english)
    swapped = hashes(*args)
    assert swapped != first
    (target,) = plan_cell(compose(*args), 1)
    read = {f.where: f for f in target.data}
    assert read[str(english)].digest.startswith("sha256:") and read[str(english)].read == "target pawsx train/en/dev"


def test_synthetic_stages_keep_their_hashes_and_hub_sources_name_their_revision(tmp_path: Path):
    demo = compose("experiment=demo", f"cache_dir={tmp_path}")
    assert [s.hash for s in plan_cell(demo, 1)] == [s.hash for s in plan(demo, 1)]  # generator version only
    hub = compose("order=english_first", "task=mnli", f"cache_dir={tmp_path}")
    stages = plan_cell(hub, 1)
    target = {f.where: f.digest for f in stages[-1].data}
    assert target["hub:google-research-datasets/paws-x/en"] == "revision:null"
    warnings = unpinned(stages)
    assert any(
        w.startswith("google-research-datasets/paws-x/en is read at revision null, not a pinned commit")
        for w in warnings
    )
    pinned = compose("order=none", "target.sources.hub.revision=" + "a" * 40, f"cache_dir={tmp_path}")
    assert not unpinned(plan_cell(pinned, 1))
    assert [s.hash for s in plan_cell(pinned, 1)] != [s.hash for s in plan_cell(compose("order=none"), 1)]


def hub_sources(node: object, where: str):
    """(where, source) of every hub source in a parsed config file."""
    if isinstance(node, dict):
        if node.get("format") == "hub":
            yield where, node
        for key, value in node.items():
            yield from hub_sources(value, f"{where}.{key}")


def test_every_shipped_hub_source_names_its_revision():
    """A hub source without a pinned commit says so (`revision: null`), never by leaving the key out."""
    found = [
        (where, source)
        for file in sorted((ROOT / "conf").glob("*/*.yaml"))
        for where, source in hub_sources(yaml.safe_load(file.read_text()), str(file.relative_to(ROOT)))
    ]
    assert len(found) >= 13
    assert [where for where, source in found if "revision" not in source] == []


@pytest.mark.slow
def test_a_stage_trained_on_other_data_is_never_reused(cache_dir: Path, tmp_path: Path):
    """The issue's case: PAWS-X rows with their labels swapped, the same size and modification time."""
    from xorder.grid.status import cell_status
    from xorder.pipeline.run import run_cell

    data = pawsx_files(tmp_path / "data")
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    args = overrides(
        data, cache, tmp_path / "results", "order=none", "trainer.target.max_steps=8", "trainer.eval_every=4"
    )
    cfg = compose(*args)
    record = tmp_path / "results" / identify(cfg).path
    metrics = run_cell(identify(cfg), str(record))
    english = data / "pawsx" / "xtreme_format" / "dev-en.tsv"
    listed = {entry["where"]: entry["digest"] for entry in metrics["stages"][0]["data"]}
    assert listed[str(english)].startswith("sha256:")  # the record lists each file it read with its digest
    finished = cell_status(args).state
    assert finished in ("done", "degenerate")  # 8 steps of tiny may learn nothing; finished either way
    os.utime(english)
    assert cell_status(args).state == finished  # touch alone changes nothing
    swap_first_labels(english)
    status = cell_status(args)
    assert status.state == "stale" and f"({english} changed since the record was written)" in status.detail
    with pytest.raises(XorderError, match="holds a record of other data .*dev-en.tsv.*force=true"):
        records.completed(record, identify(cfg), plan_cell(cfg))
    again = run_cell(identify(compose(*args, "force=true")), str(record))
    assert again["stages"][0]["reused"] is False
    assert again["stages"][0]["hash"] != metrics["stages"][0]["hash"]
    assert cell_status(args).state in ("done", "degenerate")  # finished again, on the new data


@pytest.mark.slow
def test_a_record_of_the_same_data_at_another_path_says_the_data_moved(cache_dir: Path, tmp_path: Path):
    """A record read back beside data at another root (a clone of a published study) names the move and the fix,
    not "a different config (differs in: unknown)"."""
    from xorder.pipeline.run import run_cell

    data = pawsx_files(tmp_path / "data")
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    fast = ("order=none", "trainer.target.max_steps=4", "trainer.eval_every=4")
    cfg = compose(*overrides(data, cache, tmp_path / "results", *fast))
    record = tmp_path / "results" / identify(cfg).path
    run_cell(identify(cfg), str(record))
    moved = shutil.copytree(data, tmp_path / "elsewhere")
    again = compose(*overrides(moved, cache, tmp_path / "results", *fast))
    assert identify(again).path == identify(cfg).path
    with pytest.raises(XorderError, match=r"same data read from other paths \(.*data/.* -> .*elsewhere/.*data_root"):
        records.completed(record, identify(again), plan_cell(again))
