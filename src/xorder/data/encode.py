"""Canonical rows -> model features through a batched `datasets.map`, cached per (data, tokenizer, max length, task,
train/eval) fingerprint under `cache_dir/tokenized`, so a second run or a second cell tokenizes nothing.

A cache entry is complete only when its marker, written after the Arrow file(s), lists their sha256 (a half-written
entry has no marker and is tokenized again); every use checks them (`xorder.storage.integrity`: an untouched file is not
read again), and a file that changed since stops the run with the files to delete, never trains on damaged tokens.
Large sets are tokenized by several processes where the machine has the cores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from xorder import kinds
from xorder.config import TaskConfig
from xorder.errors import XorderError
from xorder.kinds.base import Encoding, Kind
from xorder.storage.fileio import read_json, write_json
from xorder.storage.integrity import Digests, changed_phrase

ENCODE_VERSION = 3
PARALLEL_ROWS = 50_000  # below this, starting worker processes costs more than it saves
_IDENTITIES: dict[int, tuple[Any, str]] = {}


def tokenizer_identity(tokenizer: Any) -> str:
    """Class, size, sides, and a hash of the whole tokenizer definition where the tokenizer has one (fast
    tokenizers): two tokenizers that split text differently never share tokenized data. Where the tokenizer
    lives is left out, so a moved or copied cache_dir stays valid."""
    known = _IDENTITIES.get(id(tokenizer))
    if known is not None and known[0] is tokenizer:
        return known[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    try:
        definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    except Exception:  # a tokenizer without a serializable definition: fall back on its vocabulary size
        definition = str(len(tokenizer))
    content = hashlib.sha256(definition.encode()).hexdigest()[:16]
    identity = (
        f"{type(tokenizer).__name__}:{len(tokenizer)}:{getattr(tokenizer, 'truncation_side', '')}:"
        f"{getattr(tokenizer, 'padding_side', '')}:{content}"
    )
    _IDENTITIES[id(tokenizer)] = (tokenizer, identity)
    return identity


def fingerprint(
    data_fingerprint: str, task: TaskConfig, tokenizer: Any, max_length: int, train: bool, label_names: list[str]
) -> str:
    """The cache key of tokenized data: the rows read (their source, split and slice are in the data
    fingerprint), the task and its head kind, the tokenizer, the max length and train/eval processing."""
    payload = [
        ENCODE_VERSION,
        data_fingerprint,
        task.name,
        task.kind,
        task.doc_stride,
        tokenizer_identity(tokenizer),
        max_length,
        train,
        list(label_names),
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def _workers(rows: int) -> int | None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8) if rows >= PARALLEL_ROWS and cores > 1 else None


def encode(
    dataset: Any,
    task: TaskConfig,
    tokenizer: Any,
    max_length: int,
    *,
    train: bool,
    label_names: list[str],
    fingerprint: str,
    cache_dir: str | os.PathLike[str],
) -> Any:
    """Tokenized features of a canonical dataset, with `row` (the example each feature comes from) and `length`."""

    folder = Path(cache_dir).expanduser() / "tokenized"
    marker = folder / f"{fingerprint}.json"
    digests = Digests(cache_dir)
    cached = _cached(folder, marker, digests)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    work = folder / f".{fingerprint}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        kind = kinds.get(task.kind)
        features = dataset.map(
            _encode,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            cache_file_name=str(work / "data.arrow"),
            new_fingerprint=fingerprint,
            load_from_cache_file=False,
            num_proc=_workers(len(dataset)),
            desc=f"tokenize {task.name}",
            fn_kwargs={"kind": kind, "how": Encoding(tokenizer, max_length, task, train, label_names)},
        )
        files = [Path(f["filename"]) for f in features.cache_files]
        del features
        names = []
        for i, file in enumerate(files):
            name = f"{fingerprint}-{i}.arrow" if len(files) > 1 else f"{fingerprint}.arrow"
            os.replace(file, folder / name)
            names.append(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(marker, {"files": digests.files(folder, names)})
    out = _cached(folder, marker, digests)
    assert out is not None
    return out


def _cached(folder: Path, marker: Path, digests: Digests) -> Any | None:
    """The tokenized dataset a marker describes (None: no complete entry), after checking every file it lists."""
    import datasets

    done = read_json(marker)
    files = done.get("files") if isinstance(done, dict) else None
    if not isinstance(files, dict) or not files or not all(isinstance(d, str) for d in files.values()):
        return None  # no marker (a killed write), or one from before digests: tokenized again
    bad = digests.changed(folder, files)
    if bad:
        raise XorderError(
            f"damaged cache: {changed_phrase([str(folder / name) for name in bad])} since it was tokenized: delete "
            f"{folder / marker.stem}* to tokenize it again"
        )
    parts = [datasets.Dataset.from_file(str(folder / name)) for name in files]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _encode(batch: dict[str, list[Any]], indices: list[int], *, kind: Kind, how: Encoding) -> dict[str, list[Any]]:
    return kind.encode(batch, list(indices), how)
