"""Reading one split of one task in one language from wherever it lives, into canonical columns.

Formats: the hub (or a local directory laid out like a hub repository: data files plus a README.md whose YAML
`configs:` names the configs and splits), generic tsv/csv/jsonl/json/parquet files with a column mapping (which
covers the XTREME, GLUE, PAWS-X x-final and stsb_multi_mt layouts), SQuAD json, the SemEval STS input + gold
files, the STS Benchmark csv, plain text, and the synthetic stand-in. Every row is checked on the way in (see
`canonical.py`); a bad file stops the run with one line naming the file, the row and the column.

A source's `path` (and `name`) may hold `{lang}` and `{split}`; a split role (train/dev/test/...) names the
source's split with optional slices and unions: `dev[:1500]`, `dev[1500:]`, `train[-10%:]`, `R1/dev+R2/dev`.
A column mapped as `columns.language` selects the rows of one language from a file that holds many.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from xorder.config import SourceConfig, SplitConfig, TaskConfig
from xorder.data.canonical import canonicalize, extract
from xorder.errors import XorderError

LOCAL_FORMATS = ("tsv", "csv", "jsonl", "json", "parquet", "squad_json", "sts_semeval", "stsb", "text")
FORMATS = ("hub", *LOCAL_FORMATS, "synthetic")
SYNTHETIC_SPLITS = {role: SplitConfig(split=role) for role in ("train", "dev", "test")}
# Fixed layouts read into known column names; a source's own `columns` still win over these.
FORMAT_COLUMNS: dict[str, dict[str, Any]] = {
    "sts_semeval": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
    "stsb": {"text_a": "sentence1", "text_b": "sentence2", "label": "score", "id": "id"},
}
csv.field_size_limit(2**31 - 1)  # long contexts (reading comprehension) exceed csv's default 128 KiB per field
_SLICE = re.compile(r"^(?P<name>.+?)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")
_PLACEHOLDER = re.compile(r"\{(?!lang\}|split\})[^{}]*\}")


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


@dataclass
class Raw:
    """What a reader found: raw rows, where they came from, a fingerprint of the bytes read, and for line-based
    files the line each row starts on (so that messages point at the line a user would open)."""

    rows: list[dict[str, Any]]
    where: str
    fingerprint: str
    lines: list[int] | None = None
    unit: str = "row"  # how a row is named in messages ("question" for SQuAD json)
    exhausted: bool = True  # False when a capped read stopped before the end of the data
    extra: dict[str, Any] = field(default_factory=dict)


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


def _slice(rows: list[Any], part: Part) -> list[Any]:
    return rows[_bound(part.start, len(rows)) : _bound(part.stop, len(rows))]


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


def _fill(template: str, lang: str, split: str) -> str:
    return template.replace("{lang}", lang).replace("{split}", split)


def load_split(
    task: TaskConfig, source: SourceConfig, role: str, lang: str, *, cache_dir: str, synthetic_examples: int,
    max_examples: int | None = None,
) -> LoadedSplit | None:
    """Canonical rows of `role` (train/dev/test/...) in `lang`, or None when the source has no such split.

    `max_examples` (or the source's own `max_examples`, the smaller of the two) bounds what is read from hub
    sources and text files: their first rows are streamed once and kept in cache_dir, and a slice such as
    'train[500:]' then reads 500 + max_examples rows. Random subsets are the caller's business."""
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
    rows: list[dict[str, Any]] = []
    origins: list[str] = []
    fingerprints: list[str] = []
    for part in parse_split(spec):
        raw = _read(task, view, part, lang, role, cache_dir, synthetic_examples, cap)
        numbered = _numbered(raw, view, lang)
        start = len(rows)
        rows += canonicalize(task, view, _slice(numbered, part), raw.where, lang, part.name)
        origins.append(raw.where)
        fingerprints.append(f"{raw.fingerprint}[{part.start}:{part.stop}]")
        if not rows[start:]:
            what = f"split {part.name!r}" + (f" sliced [{part.start or ''}:{part.stop or ''}]" if part.start or part.stop else "")
            raise XorderError(f"{raw.where}: {what} is empty ({len(numbered)} rows before slicing)")
    digest = hashlib.sha256(json.dumps([fingerprints, _identity(view), lang], sort_keys=True, default=str).encode())
    return LoadedSplit(rows, digest.hexdigest()[:20], " + ".join(origins))


def _identity(view: SourceConfig) -> dict[str, Any]:
    return {"columns": view.columns, "labels": view.labels, "score_scale": view.score_scale, "fields": view.fields}


def _numbered(raw: Raw, view: SourceConfig, lang: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(row number, how to name it in a message, row), restricted to `lang` when a column holds the language."""
    out = []
    for i, row in enumerate(raw.rows):
        where = f"{raw.unit} {i + 1}"
        if raw.lines is not None and raw.lines[i] != i + 1:
            where += f" (line {raw.lines[i]})"
        out.append((i + 1, where, row))
    spec = view.columns.get("language")
    if spec is None:
        return out
    mine = [item for item in out if str(extract(item[2], spec)) == lang]
    if not mine:
        found = sorted({str(extract(row, spec)) for row in raw.rows})
        raise XorderError(f"{raw.where}: no rows with {spec!r} = {lang!r} (found: {', '.join(found[:20])})")
    return mine


def _read(task: TaskConfig, view: SourceConfig, part: Part, lang: str, role: str, cache_dir: str,
          synthetic_examples: int, cap: int | None) -> Raw:
    """Raw rows of one split part, where they came from, and a fingerprint of what was read."""
    split = part.name
    if view.format == "synthetic":
        from xorder.data import synthetic

        path = synthetic.materialize(Path(cache_dir).expanduser() / "synthetic", task.name, task.kind, split, lang,
                                     synthetic_examples)
        return Raw(_read_jsonl(path)[0], str(path), "/".join(path.parts[-3:]))  # version/task/split-lang-n
    if view.format == "hub":
        return _read_hub(view, split, lang, cache_dir, prefix_needed(part, cap))
    if not view.path:
        raise XorderError(f"{task.name}: a {view.format} source needs a path")
    template = str(view.path)
    stray = _PLACEHOLDER.search(template)
    if stray:
        raise XorderError(f"{task.name}: path {template!r} holds {stray.group()}; only {{lang}} and {{split}} are filled in")
    path = Path(_fill(template, lang, split)).expanduser()
    try:
        return _read_local(task, view, part, path, lang, role, cap)
    except UnicodeDecodeError as err:
        raise XorderError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise XorderError(f"{path}: cannot read it ({err.strerror or err})") from None


def _read_local(task: TaskConfig, view: SourceConfig, part: Part, path: Path, lang: str, role: str,
                cap: int | None) -> Raw:
    if view.format == "sts_semeval":
        return _read_semeval(path, lang)
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (nor does the folder {path.parent}: check data_root or the source's path)"
        raise XorderError(f"{task.name}: no {role} file for {lang!r}: {path} does not exist{hint}")
    stat = path.stat()
    fingerprint = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if view.format in ("tsv", "csv"):
        rows, lines = _read_table(path, "\t" if view.format == "tsv" else ",", view.fields)
    elif view.format == "jsonl":
        rows, lines = _read_jsonl(path)
    elif view.format == "text":
        rows, lines = _read_text(path, prefix_needed(part, cap))
    elif view.format == "stsb":
        rows, lines = _read_stsb(path)
    elif view.format == "squad_json":
        return Raw(_read_squad(path), str(path), fingerprint, unit="question")
    elif view.format == "json":
        rows, lines = _read_json(path), None
    else:
        rows, lines = _read_parquet(path), None
    return Raw(rows, str(path), fingerprint, lines)


def _read_table(path: Path, sep: str, fields: list[str] | None) -> tuple[list[dict[str, Any]], list[int]]:
    """A delimited file; with `fields` it has no header row. TSV files are read without quote handling
    (GLUE and XTREME files carry bare quotes); CSV files are read with it (fields may span lines). A row with
    the wrong number of fields is an error."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        records: Iterable[tuple[int, list[str]]]
        if sep == "\t":
            records = ((n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(handle, 1) if line.strip("\r\n"))
        else:
            reader = csv.reader(handle)
            records = ((reader.line_num, values) for values in reader if values)
        records = iter(records)
        if fields:
            header = [str(f) for f in fields]
        else:
            first = next(records, None)
            if first is None:
                raise XorderError(f"{path}: the file is empty")
            header = [h.strip() for h in first[1]]
        rows, lines = [], []
        try:
            for line, values in records:
                if len(values) != len(header):
                    hint = ""
                    if len(values) == len(header) - 1 and header[-1] == "label":
                        hint = ("; the file has no labels (XTREME's test files ship without them): evaluate on a slice "
                                "of dev instead, e.g. dev: {split: 'dev[1500:]'}")
                    raise XorderError(f"{path}: line {line}: expected {len(header)} fields ({', '.join(header)}), "
                                      f"found {len(values)}{hint}")
                rows.append(dict(zip(header, values)))
                lines.append(line)
        except csv.Error as err:
            raise XorderError(f"{path}: line {reader.line_num}: unreadable csv ({err})") from err
    return rows, lines


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise XorderError(f"{path}: line {number}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise XorderError(f"{path}: line {number}: expected a JSON object, found {type(row).__name__}")
            rows.append(row)
            lines.append(number)
    return rows, lines


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise XorderError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
    rows = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise XorderError(f"{path}: expected a list of objects (or {{'data': [...]}})")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises ArrowInvalid and friends for a damaged file
        raise XorderError(f"{path}: not a readable parquet file ({' '.join(str(err).split())[:160]})") from err


def _read_squad(path: Path) -> list[dict[str, Any]]:
    """SQuAD v1.1/v2.0 json: articles -> paragraphs -> questions, one row per question (the hub's columns)."""
    data = _read_json(path)
    rows = []
    for article in data:
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


def _read_stsb(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """STS Benchmark csv: tab-separated genre, file, year, id, score, sentence1, sentence2 (some rows carry
    two more source columns, and quotes are bare text)."""
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip("\r\n"):
                continue
            values = line.rstrip("\r\n").split("\t")
            if len(values) < 7:
                raise XorderError(f"{path}: line {number}: expected at least 7 tab-separated fields (genre, file, "
                                  f"year, id, score, sentence1, sentence2), found {len(values)}")
            rows.append({"genre": values[0], "id": f"{values[1]}-{values[2]}-{values[3]}", "score": values[4],
                         "sentence1": values[5], "sentence2": values[6]})
            lines.append(number)
    return rows, lines


def _read_text(path: Path, need: int | None) -> tuple[list[dict[str, Any]], list[int]]:
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append({"text": line.strip()})
                lines.append(number)
                if need is not None and len(rows) >= need:
                    break
    return rows, lines


def _read_semeval(folder: Path, pair: str) -> Raw:
    """SemEval-2017 Task 1: STS.input.track*.{pair}.txt (s1<TAB>s2) with STS.gs.track*.{pair}.txt (scores),
    found anywhere under `folder`. 'es-en' is track 4a, 'es-en-wmt' track 4b. Track 6 (tr-en) ships 500
    inputs for 250 scores: the first 250 inputs are the scored ones."""
    if not folder.is_dir():
        raise XorderError(f"{folder}: no such folder (the SemEval STS release: STS.input.track*.txt + STS.gs.track*.txt)")
    wmt = pair.endswith("-wmt")
    base = pair[: -len("-wmt")] if wmt else pair
    inputs = sorted(folder.rglob(f"STS.input.track*.{base}.txt"))
    if len(inputs) > 1:
        inputs = [p for p in inputs if p.name.split(".")[2].endswith("b" if wmt else "a")]
    if not inputs:
        raise XorderError(f"{folder}: no STS.input.track*.{base}.txt file for {pair!r}")
    source = inputs[0]
    gold_name = source.name.replace("STS.input.", "STS.gs.")
    gold = next(folder.rglob(gold_name), None)
    if gold is None:
        raise XorderError(f"{folder}: no gold scores {gold_name} beside {source.name}")
    pairs = source.read_text(encoding="utf-8-sig").splitlines()
    scores = gold.read_text(encoding="utf-8-sig").splitlines()
    if len(scores) > len(pairs):
        raise XorderError(f"{gold}: {len(scores)} scores for {len(pairs)} sentence pairs in {source.name}")
    rows = []
    for number, (line, score) in enumerate(zip(pairs, scores), 1):
        values = line.rstrip("\r\n").split("\t")
        if len(values) < 2:
            raise XorderError(f"{source}: line {number}: expected two tab-separated sentences, found {len(values)} field")
        rows.append({"sentence1": values[0], "sentence2": values[1], "score": score.strip(), "id": f"{pair}-{number}"})
    stat, gstat = source.stat(), gold.stat()
    fingerprint = f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{gstat.st_size}:{gstat.st_mtime_ns}"
    return Raw(rows, f"{source} + {gold.name}", fingerprint)


def hub_location(view: SourceConfig, split: str, lang: str) -> tuple[str, str | None, str]:
    path = _fill(str(view.path or ""), lang, split)
    name = _fill(view.name, lang, split) if view.name else None
    where = f"{path}{'/' + name if name else ''} [{split}]" + (f" @ {view.revision}" if view.revision else "")
    return path, name, where


def _read_hub(view: SourceConfig, split: str, lang: str, cache_dir: str, need: int | None) -> Raw:
    """`datasets.load_dataset` on a hub id or a local directory in hub layout. A capped read (large text
    corpora, capped translate-train sets) streams the first rows once and keeps them in cache_dir, so compute
    nodes read them offline; a later read that needs no more rows than are kept reuses them."""
    import datasets

    if not view.path:
        raise XorderError("a hub source needs a path (a hub id or a local directory in hub layout)")
    path, name, where = hub_location(view, split, lang)
    if need is not None:
        folder, key = stream_store(cache_dir, path, name, split, view.revision)
        kept = _kept(folder, key, need)
        if kept is not None:
            return _read_kept(kept, need, where)
    if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
        raise XorderError(f"{where}: no such directory (a local hub-layout source is a folder with the data files "
                          "and a README.md whose YAML `configs:` lists them)")
    try:
        if need is None:
            ds = datasets.load_dataset(path, name, split=split, revision=view.revision)
            return Raw(ds.to_list(), where, f"{where}:{ds._fingerprint}")
        return _read_stream(path, name, split, view.revision, need, where, cache_dir)
    except XorderError:
        raise
    except Exception as err:  # datasets raises builtins and its own types for unreachable or unknown data
        if isinstance(err, (FileNotFoundError, ConnectionError, OSError, ValueError, RuntimeError, NotImplementedError)) \
                or type(err).__module__.startswith(("datasets", "huggingface_hub", "requests", "httpx", "fsspec")):
            raise hub_error(where, err) from err
        raise


def stream_store(cache_dir: str, path: str, name: str | None, split: str, revision: str | None) -> tuple[Path, str]:
    key = hashlib.sha256(json.dumps([path, name, split, revision]).encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / "corpora", key


def _read_stream(path: str, name: str | None, split: str, revision: str | None, need: int, where: str,
                 cache_dir: str) -> Raw:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import datasets

    folder, key = stream_store(cache_dir, path, name, split, revision)
    stream = datasets.load_dataset(path, name, split=split, revision=revision, streaming=True)
    rows = list(stream.take(need))
    exhausted = len(rows) < need
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{key}-{len(rows)}{'-all' if exhausted else ''}.parquet"
    tmp = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(kept)
    return _read_kept(kept, need, where)


def _read_kept(kept: Path, need: int, where: str) -> Raw:
    import pyarrow.parquet as pq

    rows = pq.read_table(kept).to_pylist()[:need]
    return Raw(rows, where, f"{where}:{kept.name}:{kept.stat().st_size}:{need}", exhausted=len(rows) < need)


def _kept(folder: Path, key: str, need: int) -> Path | None:
    """A stored prefix of the stream with at least `need` rows (or all there is), if one exists."""
    if not folder.is_dir():
        return None
    for candidate in sorted(folder.glob(f"{key}-*.parquet")):
        count, _, rest = candidate.stem[len(key) + 1 :].partition("-")
        if count.isdigit() and (int(count) >= need or rest == "all"):
            return candidate
    return None


def offline() -> bool:
    def on(name: str) -> bool:
        return os.environ.get(name, "0").strip().lower() not in ("0", "", "false", "no", "off")

    return on("HF_HUB_OFFLINE") or on("HF_DATASETS_OFFLINE")


def hub_error(where: str, err: Exception) -> XorderError:
    first = " ".join(str(err).split())[:200]
    unreachable = isinstance(err, (ConnectionError, FileNotFoundError)) or "offline" in first.lower() \
        or type(err).__name__ in ("OfflineModeIsEnabled", "LocalEntryNotFoundError")
    if unreachable and offline():
        return XorderError(
            f"{where} is not in the datasets cache and this machine is offline (HF_HUB_OFFLINE=1): run `xorder prepare` "
            "with the same overrides on a machine with internet and the same HF_HOME, then run here again"
        )
    if unreachable:
        return XorderError(f"cannot reach {where} ({first}); check the hub id, or run `xorder prepare` where there is "
                           "internet and set HF_HUB_OFFLINE=1 here")
    if "script" in first.lower():
        return XorderError(f"cannot load {where} ({first}); the dataset's main branch needs a loading script: pin "
                           "its parquet conversion with revision: refs/convert/parquet in the source")
    return XorderError(f"cannot load {where}: {first}")
