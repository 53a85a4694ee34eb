"""One split of one task in one language, from wherever it lives, as a canonical Arrow dataset.

A source's `path` (and `name`) may hold `{lang}` and `{split}`; a split role (train/dev/test/...) names the
source's split with optional slices and unions: `dev[:1500]`, `dev[1500:]`, `train[-10%:]`, `R1/dev+R2/dev`.
A column mapped as `columns.language` selects the rows of one language from a file that holds many.

Every part is canonicalised and checked once, into `cache_dir/canonical/<key>.arrow`, a marker beside it written
last with the file's sha256 (checked on every use); the key comes from the source's configuration and a
fingerprint of the raw data (the content digest of a local file, remembered per stamp by `xorder.storage.integrity`; the
hub's fingerprint), so a warm start opens the Arrow file (memory-mapped) and reads no raw row. Slices are row ranges
of that file, random subsets are index selections of it: a 2M-row translate-train set is never a Python list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xorder import kinds
from xorder.config import SourceConfig, TaskConfig
from xorder.data import canonical
from xorder.data.hub import read_hub
from xorder.data.readers import FORMATS, open_raw
from xorder.errors import XorderError
from xorder.splits import Part, bound, parse_split, prefix_needed, split_config
from xorder.storage.fileio import read_json, write_json
from xorder.storage.integrity import Digests

CANONICAL_VERSION = 2  # bump when canonical rows of the same raw data change (2: an `item` column)
# Fixed layouts read into known column names; a source's own `columns` still win over these.
FORMAT_COLUMNS: dict[str, dict[str, Any]] = {
    "sts_semeval": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
    "stsb": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
}


@dataclass
class LoadedSplit:
    dataset: Any  # datasets.Dataset of canonical rows
    fingerprint: str  # changes when the rows read change
    where: str  # human-readable origin, for messages


def load_split(
    task: TaskConfig,
    source: SourceConfig,
    role: str,
    lang: str,
    *,
    cache_dir: str,
    synthetic_examples: int,
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
        start, stop, _ = slice(bound(part.start, n), bound(part.stop, n)).indices(n)
        if stop <= start:
            what = f"split {part.name!r}" + (
                f" sliced [{part.start or ''}:{part.stop or ''}]" if part.start or part.stop else ""
            )
            raise XorderError(f"{where}: {what} is empty ({n} rows before slicing)")
        pieces.append(whole if (start, stop) == (0, n) else whole.select(range(start, stop)))
        origins.append(where)
        fingerprints.append(f"{key}[{start}:{stop}]")
    dataset = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
    digest = hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()[:20]
    return LoadedSplit(dataset, digest, " + ".join(origins))


def _canonical(
    task: TaskConfig,
    view: SourceConfig,
    part: Part,
    lang: str,
    role: str,
    cache_dir: str,
    synthetic_examples: int,
    cap: int | None,
) -> tuple[Any, str, str]:
    """The canonical rows of one part before slicing (cached), its cache key and where it comes from."""
    import datasets

    need = prefix_needed(part, cap)
    if view.format == "hub":
        raw = read_hub(view, part.name, lang, cache_dir, need)
    else:
        raw = open_raw(task, view, part.name, lang, role, cache_dir, synthetic_examples, need)
    identity = {
        "columns": view.columns,
        "labels": view.labels,
        "score_scale": view.score_scale,
        "fields": view.fields,
        "format": view.format,
        "aligned": canonical.alignment(view),
    }
    task_identity = [task.name, task.kind, list(task.label_names), task.score_range]
    key = hashlib.sha256(
        json.dumps(
            [CANONICAL_VERSION, raw.fingerprint, identity, task_identity, lang, part.name], sort_keys=True, default=str
        ).encode()
    ).hexdigest()[:24]
    folder = Path(cache_dir).expanduser() / "canonical"
    path, marker = folder / f"{key}.arrow", folder / f"{key}.json"
    digests = Digests(cache_dir)
    done = read_json(marker)
    if isinstance(done, dict) and isinstance(done.get("sha256"), str):
        if not path.is_file() or digests.file(path) != done["sha256"]:
            raise XorderError(
                f"damaged cache: {path} is missing or changed since it was written: delete {folder / key}.* to "
                f"read {raw.where} again"
            )
        return datasets.Dataset.from_file(str(path)), key, raw.where
    folder.mkdir(parents=True, exist_ok=True)  # no marker (a killed write, or one from before digests): read it
    marker.unlink(missing_ok=True)
    canon = canonical.Canonicalizer(task, view, raw.where, lang, part.name)
    rows = canonical.canonical_rows(raw.rows(), canon, raw.unit, view.columns.get("language"))
    count = canonical.write(rows, task, path)
    dataset = datasets.Dataset.from_file(str(path))
    kinds.get(task.kind).check_split(dataset, raw.where)
    write_json(marker, {"rows": count, "sha256": digests.file(path), "where": raw.where})
    return dataset, key, raw.where
