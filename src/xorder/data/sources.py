"""Reading one split of one task in one language from wherever it lives, into canonical columns.

Formats: the hub (or a local directory laid out like a hub repository), generic tsv/csv/jsonl/json/parquet
files with a column mapping (which covers the XTREME, GLUE, PAWS-X x-final and stsb_multi_mt layouts),
SQuAD json, the SemEval STS input + gold files, the STS Benchmark csv, plain text, and the synthetic
stand-in. Every row is checked on the way in (see `canonical.py`); a bad file stops the run with one
line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from xorder.config import SourceConfig, SplitConfig, TaskConfig
from xorder.data.canonical import canonicalize
from xorder.errors import XorderError

LOCAL_FORMATS = ("tsv", "csv", "jsonl", "json", "parquet", "squad_json", "sts_semeval", "stsb", "text")
FORMATS = ("hub", *LOCAL_FORMATS, "synthetic")
SYNTHETIC_SPLITS = {role: SplitConfig(split=role) for role in ("train", "dev", "test")}
_SLICE = re.compile(r"^(?P<name>.+?)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


@dataclass(frozen=True)
class Part:
    """One readable piece of a split: e.g. 'dev[1500:]' or one round of ANLI."""

    name: str
    start: str | None
    stop: str | None


@dataclass
class LoadedSplit:
    rows: list[dict[str, Any]]  # canonical rows
    fingerprint: str  # changes when the data read changes
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
    for piece in spec.split("+"):
        match = _SLICE.match(piece.strip())
        if not match:
            raise XorderError(f"cannot read split {spec!r}: write NAME, NAME[a:b] or NAME1+NAME2")
        parts.append(Part(match["name"], match["start"], match["stop"]))
    return parts


def _slice(rows: list[Any], part: Part) -> list[Any]:
    def bound(text: str | None) -> int | None:
        if text is None:
            return None
        if text.endswith("%"):
            return round(len(rows) * int(text[:-1]) / 100)
        return int(text)

    return rows[bound(part.start) : bound(part.stop)]


def _fill(template: str, lang: str, split: str) -> str:
    return template.replace("{lang}", lang).replace("{split}", split)


def load_split(
    task: TaskConfig, source: SourceConfig, role: str, lang: str, *, cache_dir: str, synthetic_examples: int,
    max_examples: int | None = None,
) -> LoadedSplit | None:
    """Canonical rows of `role` (train/dev/test/...) in `lang`, or None when the source has no such split.
    `max_examples` bounds what is read from streamed corpora and text files; subsets are the caller's."""
    view = split_config(source, role)
    if view is None:
        return None
    if view.languages is not None and lang not in view.languages:
        raise XorderError(
            f"{task.name}: source has no {role} data in {lang!r} (available: {', '.join(view.languages)})"
        )
    if view.format not in FORMATS:
        raise XorderError(f"{task.name}: unknown source format {view.format!r} (valid: {', '.join(FORMATS)})")
    spec = view.splits[role].split
    cap = min(x for x in (max_examples, view.max_examples) if x is not None) if (max_examples or view.max_examples) else None
    rows: list[dict[str, Any]] = []
    origins: list[str] = []
    fingerprints: list[str] = []
    for part in parse_split(spec):
        raw, where, fingerprint = _read(task, view, part.name, lang, role, cache_dir, synthetic_examples, cap)
        start = len(rows)
        rows += canonicalize(task, view, _slice(list(enumerate(raw, 1)), part), where, lang, part.name)
        origins.append(where)
        fingerprints.append(f"{fingerprint}[{part.start}:{part.stop}]")
        if not rows[start:]:
            raise XorderError(f"{where}: split {part.name!r} is empty")
    digest = hashlib.sha256(json.dumps([fingerprints, _identity(view)], sort_keys=True, default=str).encode())
    return LoadedSplit(rows, digest.hexdigest()[:20], " + ".join(origins))


def _identity(view: SourceConfig) -> dict[str, Any]:
    return {"columns": view.columns, "labels": view.labels, "score_scale": view.score_scale, "fields": view.fields}


def _read(
    task: TaskConfig, view: SourceConfig, split: str, lang: str, role: str, cache_dir: str, synthetic_examples: int,
    cap: int | None,
) -> tuple[list[dict[str, Any]], str, str]:
    """Raw rows of one split part, where they came from, and a fingerprint of what was read."""
    if view.format == "synthetic":
        from xorder.data import synthetic

        path = synthetic.materialize(Path(cache_dir).expanduser() / "synthetic", task.name, task.kind, split, lang,
                                     synthetic_examples)
        return _read_jsonl(path), str(path), path.name
    if view.format == "hub":
        return _read_hub(view, split, lang, cache_dir, cap)
    if not view.path:
        raise XorderError(f"{task.name}: a {view.format} source needs a path")
    path = Path(_fill(view.path, lang, split)).expanduser()
    if view.format == "sts_semeval":
        return _read_semeval(path, lang)
    if not path.is_file():
        raise XorderError(f"{task.name}: no {role} file for {lang!r}: {path} does not exist")
    fingerprint = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    reader = {
        "tsv": lambda: _read_table(path, "\t", view.fields),
        "csv": lambda: _read_table(path, ",", view.fields),
        "jsonl": lambda: _read_jsonl(path),
        "json": lambda: _read_json(path),
        "parquet": lambda: _read_parquet(path),
        "squad_json": lambda: _read_squad(path),
        "stsb": lambda: _read_stsb(path),
        "text": lambda: _read_text(path, cap),
    }[view.format]
    return reader(), str(path), fingerprint


def _read_table(path: Path, sep: str, fields: list[str] | None) -> list[dict[str, Any]]:
    """A delimited file; with `fields` it has no header row. TSV files are read without quote handling
    (GLUE and XTREME files carry bare quotes); a row with the wrong number of fields is an error."""
    with open(path, newline="", encoding="utf-8") as handle:
        if sep == "\t":
            lines = (line.rstrip("\r\n") for line in handle)
            records: Iterable[list[str]] = (line.split("\t") for line in lines if line)
        else:
            records = csv.reader(handle)
        records = iter(records)
        header = list(fields) if fields else next(records, None)
        if header is None:
            raise XorderError(f"{path}: the file is empty")
        rows = []
        for number, values in enumerate(records, 1):
            if len(values) != len(header):
                line = number + (0 if fields else 1)
                raise XorderError(
                    f"{path}: line {line}: expected {len(header)} fields ({', '.join(header)}), found {len(values)}"
                )
            rows.append(dict(zip(header, values)))
    return rows


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise XorderError(f"{path}: line {number}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise XorderError(f"{path}: line {number}: expected a JSON object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise XorderError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
    rows = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise XorderError(f"{path}: expected a list of objects (or {{'data': [...]}})")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _read_squad(path: Path) -> list[dict[str, Any]]:
    """SQuAD v1.1/v2.0 json: articles -> paragraphs -> questions, one row per question."""
    data = _read_json(path)
    rows = []
    for a, article in enumerate(data, 1):
        for paragraph in article.get("paragraphs", []) if isinstance(article, dict) else []:
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({
                    "id": qa.get("id"), "title": article.get("title", ""), "context": paragraph.get("context"),
                    "question": qa.get("question"),
                    "answers": {"text": [x.get("text") for x in answers],
                                "answer_start": [x.get("answer_start") for x in answers]},
                })
    if not rows:
        raise XorderError(f"{path}: no questions found (expected SQuAD json: data -> paragraphs -> qas)")
    return rows


def _read_stsb(path: Path) -> list[dict[str, Any]]:
    """STS Benchmark csv: tab-separated genre, file, year, id, score, sentence1, sentence2 (some rows carry
    two more source columns, and quotes are bare text)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            values = line.rstrip("\r\n").split("\t")
            if len(values) < 7:
                raise XorderError(f"{path}: line {number}: expected at least 7 tab-separated fields, found {len(values)}")
            rows.append({"genre": values[0], "id": f"{values[2]}-{values[3]}", "score": values[4],
                         "sentence1": values[5], "sentence2": values[6]})
    return rows


def _read_text(path: Path, cap: int | None) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append({"text": line.strip()})
                if cap is not None and len(rows) >= cap:
                    break
    return rows


def _read_semeval(folder: Path, pair: str) -> tuple[list[dict[str, Any]], str, str]:
    """SemEval-2017 Task 1: STS.input.track*.{pair}.txt (s1<TAB>s2) with STS.gs.track*.{pair}.txt (scores).
    'es-en' is track 4a, 'es-en-wmt' track 4b. Track 6 (tr-en) ships 500 inputs for 250 scores: the first
    250 inputs are the scored ones."""
    base, _, variant = pair.partition("-wmt") if pair.endswith("-wmt") else (pair, "", "")
    inputs = sorted(folder.rglob(f"STS.input.track*.{base}.txt"))
    if len(inputs) > 1:
        inputs = [p for p in inputs if p.name.split(".")[2].endswith("b" if pair.endswith("-wmt") else "a")]
    if not inputs:
        raise XorderError(f"{folder}: no STS.input.track*.{base}.txt file for {pair!r}")
    source = inputs[0]
    gold = next(folder.rglob(source.name.replace("STS.input.", "STS.gs.")), None)
    if gold is None:
        raise XorderError(f"{folder}: no gold scores {source.name.replace('STS.input.', 'STS.gs.')} beside {source.name}")
    pairs = [line.rstrip("\r\n").split("\t") for line in source.read_text(encoding="utf-8").splitlines()]
    scores = [line.strip() for line in gold.read_text(encoding="utf-8").splitlines()]
    if len(scores) > len(pairs):
        raise XorderError(f"{gold}: {len(scores)} scores for {len(pairs)} sentence pairs in {source.name}")
    rows = []
    for number, (values, score) in enumerate(zip(pairs, scores), 1):
        if len(values) < 2:
            raise XorderError(f"{source}: line {number}: expected two tab-separated sentences")
        rows.append({"sentence1": values[0], "sentence2": values[1], "score": score, "id": f"{pair}-{number}"})
    stat = source.stat()
    return rows, str(source), f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{gold.stat().st_size}"


def _read_hub(
    view: SourceConfig, split: str, lang: str, cache_dir: str, cap: int | None
) -> tuple[list[dict[str, Any]], str, str]:
    """`datasets.load_dataset` on a hub id or a local directory in hub layout. A capped read (large text
    corpora) streams the first rows once and keeps them in cache_dir, so compute nodes read them offline."""
    import datasets

    path = _fill(view.path or "", lang, split)
    name = _fill(view.name, lang, split) if view.name else None
    where = f"{path}{'/' + name if name else ''} [{split}]"
    try:
        if cap is None:
            ds = datasets.load_dataset(path, name, split=split, revision=view.revision)
            return ds.to_list(), where, f"{where}:{ds._fingerprint}"
        store = Path(cache_dir).expanduser() / "corpora" / hashlib.sha256(
            json.dumps([path, name, split, view.revision, cap]).encode()).hexdigest()[:20]
        if not (store / "dataset_info.json").exists():
            stream = datasets.load_dataset(path, name, split=split, revision=view.revision, streaming=True)
            ds = datasets.Dataset.from_list(list(stream.take(cap)))
            ds.save_to_disk(str(store))
        ds = datasets.load_from_disk(str(store))
        return ds.to_list(), where, f"{where}:{cap}"
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as err:
        raise _hub_error(where, err) from err
    except Exception as err:  # datasets raises its own types for unreachable or unknown repositories
        if type(err).__module__.startswith(("datasets", "huggingface_hub", "requests", "httpx")):
            raise _hub_error(where, err) from err
        raise


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0") not in ("0", "", "false")


def _hub_error(where: str, err: Exception) -> XorderError:
    first = " ".join(str(err).split())[:200]
    return XorderError(
        f"cannot load {where} ({first}); if this machine has no internet, run `xorder prepare` with the same "
        "overrides where there is, then set HF_HUB_OFFLINE=1 here"
    )
