"""The examples a ranking reads: a fixed random sample of one split of one task in one language, read and
tokenized through the pipeline's own data path (sources, canonical caches, `encode`), as the sequences the
encoder sees, with a label per sequence where the head kind has one, and the record of what was read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xorder import kinds
from xorder.data.encode import encode, fingerprint
from xorder.data.sources import LoadedSplit, load_split
from xorder.data.stage import read_cap, subset
from xorder.errors import XorderError
from xorder.plan import Component
from xorder.storage.integrity import Digests

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Sample:
    """One (task, split, language) sample as encoder inputs: one sequence per example, or one per choice of a
    multiple-choice example, or one per window of a long QA context."""

    task: str
    role: str
    language: str
    examples: int
    sequences: list[dict[str, list[int]]]
    labels: np.ndarray | None  # one per sequence: a class id or a score; None where the kind labels tokens or nothing
    regression: bool
    read: dict[str, Any] = field(default_factory=dict)  # what was read: files and digests, rows, sample ids


@dataclass(frozen=True)
class Reading:
    """How a ranking reads: where the caches are, the synthetic size, the seed that draws every sample."""

    cache_dir: str
    synthetic_examples: int
    seed: int
    max_length: int  # trainer.max_length; a task's own max_length wins, as in training


def draw(comp: Component, role: str, lang: str, n: int, reading: Reading, tokenizer: Any) -> Sample:
    """A sample of at most `n` examples of the component's `role` split in `lang`; the same draw for the same seed."""
    task = comp.task
    loaded = load_split(
        task,
        comp.source,
        role,
        lang,
        cache_dir=reading.cache_dir,
        synthetic_examples=reading.synthetic_examples,
        max_examples=read_cap(comp) if role == "train" else None,
    )
    if loaded is None:
        raise XorderError(f"{task.name}: the {comp.source_name} source has no {role} split")
    rows = subset(loaded.dataset, n, f"rank/{reading.seed}/{task.name}/{comp.variant}/{role}/{lang}")
    kind = kinds.get(task.kind)
    names = kind.label_names(task, rows)
    max_length = task.max_length or reading.max_length
    ids = hashlib.sha256(repr(rows["id"]).encode()).hexdigest()[:16]
    key = fingerprint(f"{loaded.fingerprint}:rank:{ids}", task, tokenizer, max_length, True, names)
    features = encode(
        rows, task, tokenizer, max_length, train=True, label_names=names, fingerprint=key, cache_dir=reading.cache_dir
    )
    sequences, labels = _sequences(features)
    read = {
        "task": task.name,
        "variant": comp.variant,
        "source": comp.source_name,
        "split": role,
        "language": lang,
        "rows_available": len(loaded.dataset),
        "rows_used": len(rows),
        "sample_ids_sha256": ids,
        "fingerprint": loaded.fingerprint,
        "files": source_files(loaded),
    }
    return Sample(
        task.name, role, lang, len(rows), sequences, labels, labels is not None and labels.dtype.kind == "f", read
    )


def _sequences(features: Any) -> tuple[list[dict[str, list[int]]], np.ndarray | None]:
    """The encoder's input sequences and a label for each where the features carry one label per example: a
    class id or a score for a sequence, the right choice for a choice's sequence (1) and the others (0). Token
    labels (tagging) and span positions (QA) are no label of a sequence: None."""
    keys = [k for k in MODEL_KEYS if k in features.column_names]
    columns = features.select_columns(keys).to_dict()
    raw_labels = features["labels"] if "labels" in features.column_names else None
    per_example = raw_labels is not None and all(not isinstance(v, list) for v in raw_labels)
    sequences: list[dict[str, list[int]]] = []
    labels: list[float] = []
    for i, ids in enumerate(columns["input_ids"]):
        nested = bool(ids) and isinstance(ids[0], list)  # a multiple-choice feature: one sequence per choice
        for choice in range(len(ids)) if nested else [None]:
            sequences.append({k: columns[k][i][choice] if nested else columns[k][i] for k in keys})
            if per_example:
                assert raw_labels is not None
                labels.append(int(raw_labels[i] == choice) if nested else raw_labels[i])
    if not per_example:
        return sequences, None
    assert raw_labels is not None
    regression = isinstance(raw_labels[0], float)  # a score per example (the regression kind's labels)
    return sequences, np.asarray(labels, dtype=np.float64 if regression else np.int64)


def source_files(loaded: LoadedSplit) -> list[dict[str, Any]]:
    """The local files a split was read from, with their size and sha256 (the hub and the synthetic stand-in name
    their origin and fingerprint instead). Kept small and separate so that it can defer to a project-wide lister
    of a source's files and digests once there is one."""
    digests = Digests(None)
    out: list[dict[str, Any]] = []
    for where in loaded.where.split(" + "):
        path = Path(where)
        if path.is_file():
            files = {str(path): digests.file(path)}
        elif path.is_dir():
            files = {str(path / name): digest for name, digest in digests.files(path).items()}
        else:
            out.append({"origin": where})
            continue
        out += [{"path": name, "bytes": Path(name).stat().st_size, "sha256": digest} for name, digest in files.items()]
    return out
