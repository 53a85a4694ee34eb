"""One split of one task in one language, from wherever it lives, as a canonical Arrow dataset.

A source's `path` (and `name`) may hold `{lang}` and `{split}`; a split role (train/dev/test/...) names the
source's split with optional slices and unions: `dev[:1500]`, `dev[1500:]`, `train[-10%:]`, `R1/dev+R2/dev`.
A column mapped as `columns.language` selects the rows of one language from a file that holds many.

Every part is canonicalised and checked once, into `cache_dir/canonical/<key>.arrow`, a marker beside it written
last; the key comes from the source's configuration and a fingerprint of the raw data taken without reading it
(size and modification time, the hub's fingerprint), so a warm start opens the Arrow file (memory-mapped) and
reads no raw row. Slices are row ranges of that file, random subsets are index selections of it: a 2M-row
translate-train set is never a Python list.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xorder import kinds
from xorder.config import SourceConfig, SplitConfig, TaskConfig
from xorder.data import canonical
from xorder.data.readers import FORMATS, open_raw
from xorder.errors import XorderError
from xorder.fileio import read_json, write_json

CANONICAL_VERSION = 1  # bump when canonical rows of the same raw data change
SYNTHETIC_SPLITS = {role: SplitConfig(split=role) for role in ("train", "dev", "test")}
# Fixed layouts read into known column names; a source's own `columns` still win over these.
FORMAT_COLUMNS: dict[str, dict[str, Any]] = {
    "sts_semeval": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
    "stsb": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
}
_SLICE = re.compile(r"^(?P<name>.+?)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


@dataclass(frozen=True)
class Part:
    """One readable piece of a split: e.g. 'dev[1500:]' or one round of ANLI."""

    name: str
    start: str | None
    stop: str | None


@dataclass
class LoadedSplit:
    dataset: Any  # datasets.Dataset of canonical rows
    fingerprint: str  # changes when the rows read change
    where: str  # human-readable origin, for messages


def splits_of(source: SourceConfig) -> dict[str, SplitConfig]:
    """The split roles a source offers (the synthetic stand-in has train, dev and test unless told otherwise)."""
    return dict(source.splits) or (SYNTHETIC_SPLITS if source.format == "synthetic" else {})


def split_config(source: SourceConfig, role: str) -> SourceConfig | None:
    """The source as seen by one split role, with the split's own overrides applied; None if absent."""
    split: SplitConfig | None = splits_of(source).get(role)
    if split is None or split.split is None:
        return None
    overrides = {k: v for k, v in vars(split).items() if k != "split" and v is not None}
    return replace(source, **overrides, splits={role: split})


def parse_split(spec: str) -> list[Part]:
    """'train_r1+train_r2' or 'dev[:1500]' or 'train[-500:]' -> parts (slices as in `datasets`)."""
    parts = []
    for piece in str(spec).split("+"):
        match = _SLICE.match(piece.strip())
        if not match:
            raise XorderError(f"cannot read split {spec!r}: write NAME, NAME[a:b] or NAME1+NAME2")
        parts.append(Part(match["name"], match["start"], match["stop"]))
    return parts


def _bound(text: str | None, n: int) -> int | None:
    if text is None:
        return None
    if text.endswith("%"):
        return round(n * int(text[:-1]) / 100)
    return int(text)


def overlapping(first: list[Part], second: list[Part], rows: int = 10**9) -> str | None:
    """The split name that two split specs both read rows of (for any number of rows above a few thousand), or
    None: `train[:-2000]` and `train[-2000:]` do not overlap, `train` and `train[-2000:]` do."""
    for a in first:
        for b in second:
            if a.name != b.name:
                continue
            ra = range(*slice(_bound(a.start, rows), _bound(a.stop, rows)).indices(rows))
            rb = range(*slice(_bound(b.start, rows), _bound(b.stop, rows)).indices(rows))
            if max(ra.start, rb.start) < min(ra.stop, rb.stop):
                return a.name
    return None


def prefix_needed(part: Part, cap: int | None) -> int | None:
    """How many leading rows of a capped (streamed) source a part needs: 'train[500:]' with a cap of 2000
    reads 2500 rows, 'train[:500]' 500, so the parts of one stream never overlap. None: read everything."""
    if cap is None:
        return None
    start = int(part.start) if part.start and not part.start.endswith("%") else 0
    stop = int(part.stop) if part.stop and not part.stop.endswith("%") else None
    if start < 0 or (stop is not None and stop < 0):
        return cap  # counted from the end: slice within the first `cap` rows
    return start + cap if stop is None else min(stop, start + cap)


def load_split(
    task: TaskConfig, source: SourceConfig, role: str, lang: str, *, cache_dir: str, synthetic_examples: int,
    max_examples: int | None = None,
) -> LoadedSplit | None:
    """Canonical rows of `role` (train/dev/test/...) in `lang`, or None when the source has no such split.

    `max_examples` (or the source's own `max_examples`, the smaller of the two) bounds what is read from hub
    sources and text files: their first rows are streamed once and kept in cache_dir, and a slice such as
    'train[500:]' then reads 500 + max_examples rows. Random subsets are the caller's business."""
    import datasets

    view = split_config(source, role)
    if view is None:
        return None
    if view.languages is not None and lang not in view.languages:
        raise XorderError(
            f"{task.name}: source has no {role} data in {lang!r} (available: {', '.join(view.languages)})"
        )
    if view.format not in FORMATS:
        raise XorderError(f"{task.name}: unknown source format {view.format!r} (valid: {', '.join(FORMATS)})")
    defaults = FORMAT_COLUMNS.get(view.format)
    if defaults:
        view = replace(view, columns={**defaults, **dict(view.columns)})
    spec = view.splits[role].split
    caps = [x for x in (max_examples, view.max_examples) if x is not None]
    cap = min(caps) if caps else None
    pieces, origins, fingerprints = [], [], []
    for part in parse_split(str(spec)):
        whole, key, where = _canonical(task, view, part, lang, role, cache_dir, synthetic_examples, cap)
        n = len(whole)
        start, stop, _ = slice(_bound(part.start, n), _bound(part.stop, n)).indices(n)
        if stop <= start:
            what = f"split {part.name!r}" + (f" sliced [{part.start or ''}:{part.stop or ''}]" if part.start or part.stop else "")
            raise XorderError(f"{where}: {what} is empty ({n} rows before slicing)")
        pieces.append(whole if (start, stop) == (0, n) else whole.select(range(start, stop)))
        origins.append(where)
        fingerprints.append(f"{key}[{start}:{stop}]")
    dataset = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
    digest = hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()[:20]
    return LoadedSplit(dataset, digest, " + ".join(origins))


def _canonical(task: TaskConfig, view: SourceConfig, part: Part, lang: str, role: str, cache_dir: str,
               synthetic_examples: int, cap: int | None) -> tuple[Any, str, str]:
    """The canonical rows of one part before slicing (cached), its cache key and where it comes from."""
    import datasets

    raw = open_raw(task, view, part.name, lang, role, cache_dir, synthetic_examples, prefix_needed(part, cap))
    identity = {"columns": view.columns, "labels": view.labels, "score_scale": view.score_scale,
                "fields": view.fields, "format": view.format}
    task_identity = [task.name, task.kind, list(task.label_names), task.score_range]
    key = hashlib.sha256(json.dumps([CANONICAL_VERSION, raw.fingerprint, identity, task_identity, lang, part.name],
                                    sort_keys=True, default=str).encode()).hexdigest()[:24]
    folder = Path(cache_dir).expanduser() / "canonical"
    path, marker = folder / f"{key}.arrow", folder / f"{key}.json"
    done = read_json(marker)
    if not (isinstance(done, dict) and path.is_file() and path.stat().st_size == done.get("bytes")):
        folder.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        canon = canonical.Canonicalizer(task, view, raw.where, lang, part.name)
        rows = canonical.canonical_rows(raw.rows(), canon, raw.unit, view.columns.get("language"))
        count = canonical.write(rows, task, path)
        dataset = datasets.Dataset.from_file(str(path))
        kinds.get(task.kind).check_split(dataset, raw.where)
        write_json(marker, {"rows": count, "bytes": path.stat().st_size, "where": raw.where})
        return dataset, key, raw.where
    return datasets.Dataset.from_file(str(path)), key, raw.where
