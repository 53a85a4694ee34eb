"""`xorder cache`: the stage cache listed with sizes, ages, states and the records that use each stage; cleaning
is a dry run until --yes and never deletes a stage whose lock another process holds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from filelock import FileLock
from test_stage_summary import summary_json

from conftest import xorder_cli
from xorder.errors import XorderError
from xorder.grid import cache_command
from xorder.pipeline.stage_cache import StageDir

USED, UNUSED, PARTIAL, OLD = "a" * 20, "b" * 20, "c" * 20, "d" * 20


def complete_stage(root: Path, name: str, size: int, tasks: list[str]) -> StageDir:
    folder = StageDir(root / "stages" / name)
    folder.model.mkdir(parents=True)
    (folder.model / "model.safetensors").write_bytes(b"\0" * size)
    folder.summary.write_text(json.dumps(summary_json("english", tuple(tasks))))
    folder.done.write_text("{}")
    return folder


@pytest.fixture
def stages(tmp_path: Path) -> tuple[Path, Path]:
    """A cache with a stage a record uses, an unused one, an unfinished one and an unused one 3 days old."""
    root, results = tmp_path / "cache", tmp_path / "results"
    complete_stage(root, USED, 2_000_000, ["mnli"])
    complete_stage(root, UNUSED, 1_000_000, ["qqp"])
    partial = StageDir(root / "stages" / PARTIAL)
    partial.checkpoint.mkdir(parents=True)
    (partial.checkpoint / "loop.json").write_text(json.dumps({"step": 7}))
    old = complete_stage(root, OLD, 500, ["squad"])
    past = time.time() - 3 * 86400
    for path in [old.root, *old.root.rglob("*")]:
        os.utime(path, (past, past))
    record = results / "pawsx" / "english_only" / "mnli" / "-" / "tiny" / "hub" / "seed1"
    record.mkdir(parents=True)
    (record / "metrics.json").write_text(json.dumps({"stages": [{"hash": USED}, {"hash": "e" * 20}]}))
    return root, results


def left(root: Path) -> set[str]:
    return {p.name for p in (root / "stages").iterdir() if p.is_dir()}


def test_list_shows_each_stage_with_size_age_state_and_records(stages: tuple[Path, Path], capsys):
    root, results = stages
    assert cache_command.main(["list", "--cache-dir", str(root), "--results", str(results)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines[USED].split()[1:] == [
        "english:",
        "mnli",
        "2.0",
        "MB",
        "0.0",
        "d",
        "complete",
        "1",
        "(pawsx/english_only/mnli/-/tiny/hub/seed1)",
    ]
    assert lines[UNUSED].split()[-3:] == ["d", "complete", "-"]
    assert lines[PARTIAL].split()[1] == "-" and " partial@7 " in lines[PARTIAL]
    assert " 3.0 d " in lines[OLD]
    assert lines["4"].startswith(f"4 stages, 3.0 MB in {root / 'stages'}")


def test_clean_is_a_dry_run_until_yes(stages: tuple[Path, Path], capsys):
    root, results = stages
    where = ["--cache-dir", str(root), "--results", str(results)]
    assert cache_command.main(["clean", "--unused", *where]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[2] for line in out[:-1]) == [UNUSED, OLD]  # complete and no record: not the partial
    assert out[-1] == "would delete 2 stages, 1.0 MB; run again with --yes to delete"
    assert left(root) == {USED, UNUSED, PARTIAL, OLD}
    assert cache_command.main(["clean", "--older-than", "1", *where]) == 0
    assert "would delete " + OLD in capsys.readouterr().out
    assert cache_command.main(["clean", "--unused", "--yes", *where]) == 0
    assert capsys.readouterr().out.strip() == "deleted 2 stages, 1.0 MB freed"
    assert left(root) == {USED, PARTIAL}
    assert cache_command.main(["clean", "--older-than", "1", "--yes", *where]) == 0  # nothing that old is left
    assert left(root) == {USED, PARTIAL}


@pytest.mark.slow
def test_clean_never_deletes_a_stage_whose_lock_another_process_holds(stages: tuple[Path, Path]):
    root, results = stages
    with FileLock(str(StageDir(root / "stages" / USED).lock)):
        out = xorder_cli("cache", "clean", "--all", "--yes", "--cache-dir", str(root), "--results", str(results))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "deleted 3 stages, 1.0 MB freed (1 in use by a running job, left alone)"
    assert left(root) == {USED}
    assert (StageDir(root / "stages" / USED).model / "model.safetensors").is_file()


@pytest.mark.slow
def test_clean_mistakes_are_one_line(tmp_path: Path):
    with pytest.raises(XorderError, match=r"cache clean needs --unused, --older-than DAYS or --all"):
        cache_command.main(["clean", "--cache-dir", str(tmp_path)])
    with pytest.raises(XorderError, match=r"--older-than -1: give a number of days"):
        cache_command.main(["clean", "--older-than", "-1", "--cache-dir", str(tmp_path)])
    out = xorder_cli("cache", "clean", "--older-than", "soon")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("xorder: error: xorder cache clean: argument --older-than: invalid float value")
