"""Loading run records: every valid metrics.json under a results directory as tidy frames, what was skipped and why."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xorder.records import CONFIG, METRICS, validate
from xorder.report.grid import NO_TASKS, ROW


@dataclass
class Records:
    """Every valid record as tidy frames, plus what was skipped and why."""

    cells: pd.DataFrame  # one row per record: ROW + seed, path, primary_metric, git_commit
    scores: pd.DataFrame  # ROW + seed, selection, split, language, metric, value
    train_language: dict[str, str]  # target -> its training language (excluded from avg_non_en)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def find_records(results: Path, exclude: Path | None = None) -> list[Path]:
    """Every metrics.json below `results` (hidden folders such as .hydra and the output folder left out)."""
    found = []
    for root, dirs, files in os.walk(results):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or Path(root, d).resolve() != exclude))
        if METRICS in files:
            found.append(Path(root) / METRICS)
    return sorted(found)


def check_record(obj: Any) -> str | None:
    """Why a parsed metrics.json cannot be used, or None when it can: the documented schema
    (xorder.records.METRICS_SCHEMA), plus what a schema cannot say (named tasks, a primary metric that is scored)."""
    problems = sorted(validate(obj))
    if problems:
        return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    if not all(obj["tasks"]) or not all(obj[k] for k in ("target", "order", "multilingual", "model")):
        return "an axis (target, order, tasks, multilingual, model) is empty"
    if not any(obj["primary_metric"] in values for splits in obj["scores"].values() for langs in splits.values()
               for values in langs.values()):
        return f"primary metric {obj['primary_metric']!r} appears in no score"
    return None


def _train_language(record_dir: Path) -> str | None:
    """The target's training language from the record's resolved config (read once per target)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    try:
        value = OmegaConf.load(record_dir / CONFIG).get("target", {}).get("train_language")
    except (OSError, ValueError, YAMLError, OmegaConfBaseException, AttributeError):  # costs only the default
        return None
    return value if isinstance(value, str) else None


def load_records(results: Path, exclude: Path | None = None) -> Records:
    """Parse and validate every record; malformed ones are skipped with a reason. Two records of one cell
    (a copied folder, say) keep the one at the cell's own path <target>/<order>/<tasks>/<multilingual>/
    <model>/seed<k>, else the first by path; the other is skipped as a duplicate."""
    parsed, skipped = [], []
    for path in find_records(results, exclude):
        rel = path.parent.relative_to(results).as_posix()
        try:
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            skipped.append((rel, f"unreadable metrics.json ({type(err).__name__}: {err})"))
            continue
        reason = check_record(obj)
        if reason is not None:
            skipped.append((rel, reason))
            continue
        tasks = "+".join(obj["tasks"]) or NO_TASKS
        key = (obj["target"], obj["model"], obj["multilingual"], obj["order"], tasks, obj["seed"])
        home = f"{obj['target']}/{obj['order']}/{tasks}/{obj['multilingual']}/{obj['model']}/seed{obj['seed']}"
        parsed.append((rel != home, rel, key, obj))
    cells, rows, seen = [], [], {}
    train_language: dict[str, str] = {}
    for _, rel, key, obj in sorted(parsed, key=lambda item: item[:2]):
        if key in seen:
            skipped.append((rel, f"duplicate of the record in {seen[key]}"))
            continue
        seen[key] = rel
        target = obj["target"]
        if target not in train_language:
            language = _train_language(results / rel)
            if language:
                train_language[target] = language
        commit = (obj.get("provenance") or {}).get("git_commit")
        cells.append((*key, rel, obj["primary_metric"], commit if isinstance(commit, str) else ""))
        for selection, splits in obj["scores"].items():
            for split, langs in splits.items():
                for lang, values in langs.items():
                    for metric, value in values.items():
                        rows.append((*key, selection, split, lang, metric, float(value)))
    skipped.sort()
    cell_frame = pd.DataFrame(cells, columns=[*ROW, "seed", "path", "primary_metric", "git_commit"])
    scores = pd.DataFrame(rows, columns=[*ROW, "seed", "selection", "split", "language", "metric", "value"])
    return Records(cell_frame, scores, train_language, skipped)
