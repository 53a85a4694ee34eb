"""The typed stage summary: summary.json as every xorder wrote it reads and writes back unchanged (key order too),
summaries from before the learning tests read with None where they lack a key, the record's stage entry keeps its
keys, and a summary this xorder cannot read stops with the folder to delete."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from xorder.errors import XorderError
from xorder.pipeline.stage_cache import StageCache, StageDir, StageSummary

HASH = "f" * 20


def summary_json(name: str = "english", tasks: tuple[str, ...] = ("mnli",), **changes: Any) -> dict[str, Any]:
    """A summary.json's content, keys in the order run._train has written them since the learning tests."""
    data = {
        "name": name,
        "hash": HASH,
        "tasks": list(tasks),
        "languages": ["en"],
        "steps": 12,
        "total_steps": 12,
        "seconds": 3.5,
        "examples": 96,
        "evaluated": 40,
        "tokens": 4000,
        "throughput": {"examples_per_second": 27.4},
        "best_step": 8,
        "best_score": 0.61,
        "stopped_early": False,
        "hparams": {"lr": 1e-5},
        "losses": [[4, 1.1], [8, 0.9]],
        "history": [{"step": 8, "learning": {"mnli": {"learned": True}}}],
        "learning": {"mnli": {"measure": "accuracy", "score": 61.0, "baseline": 36.0, "margin": 8.0, "examples": 40}},
        "average": None,
        "label_names": {"mnli": ["entailment", "neutral", "contradiction"]},
        "notes": [],
        "processes": 1,
        "distributed": "DDP",
        "precision": "no",
    }
    data.update(changes)
    return data


def test_summary_json_reads_and_writes_back_unchanged():
    saved = {"path": "target_model", "auto_class": "AutoModelForSequenceClassification"}
    for data in (
        summary_json(),
        {"target_model": saved, **summary_json()},
        {k: v for k, v in summary_json().items() if k not in ("evaluated", "learning")},  # before the learning tests
    ):
        assert json.dumps(StageSummary.from_dict(data).to_dict()) == json.dumps(data)


def test_a_summary_from_before_the_learning_tests_reads_with_none():
    old = StageSummary.from_dict({k: v for k, v in summary_json().items() if k not in ("evaluated", "learning")})
    assert (old.evaluated, old.learning, old.target_model) == (None, None, None)
    assert old.record_entry(reused=True, data=[])["learned"] is None


def test_the_record_entry_keeps_the_record_schema():
    summary = StageSummary.from_dict(summary_json())
    entry = summary.record_entry(reused=False, data=[{"read": "x", "digest": "y"}])
    assert list(entry) == [
        *("name", "hash", "tasks", "languages", "steps", "total_steps", "examples", "seconds", "throughput"),
        *("reused", "data", "learned", "learning"),
    ]
    assert (entry["steps"], entry["reused"], entry["data"], entry["learning"]) == (
        12,
        False,
        [{"read": "x", "digest": "y"}],
        summary_json()["learning"],
    )


def test_a_summary_missing_a_key_stops_with_the_folder_to_delete(tmp_path: Path):
    folder = StageDir(tmp_path / "stages" / HASH)
    folder.root.mkdir(parents=True)
    folder.summary.write_text(json.dumps({"name": "english", "tasks": ["mnli"]}))
    folder.done.write_text("{}")
    assert folder.read_summary() is None  # xorder cache / status: shown as unknown
    cache = StageCache(tmp_path / "stages", SimpleNamespace(is_main_process=True, num_processes=1))
    with pytest.raises(XorderError, match=f"cached stage {folder.root} has a summary.json this xorder cannot read"):
        cache.summary(SimpleNamespace(hash=HASH))  # type: ignore[arg-type]


def test_sealed_summary_is_the_dict_on_disk(tmp_path: Path):
    folder = StageDir(tmp_path / "stages" / HASH)
    folder.root.mkdir(parents=True)
    summary = StageSummary.from_dict(summary_json())
    folder.seal(SimpleNamespace(hash=HASH), summary)  # type: ignore[arg-type]
    assert json.loads(folder.summary.read_text()) == summary_json()
    assert folder.read_summary() == summary
