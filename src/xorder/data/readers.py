"""Raw rows of one split part, from wherever they live: the hub (or a local directory in hub layout), delimited
and JSON files, parquet, SQuAD json, the SemEval STS and STS Benchmark layouts, plain text, and the synthetic
stand-in.

A reader names its origin and a fingerprint of it *before* reading a row (a local file's content digest, remembered
per stamp by `xorder.storage.integrity`; the hub's own fingerprint; a kept prefix's name), so that a warm start finds
its caches without reading raw data; the rows themselves are a generator, read once, never a list of the whole file.
Rows carry the line they start on, so that messages point at the line a user would open. Text must be UTF-8: a bad byte
is named by its line."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError
from xorder.storage.integrity import Digests

LOCAL_FORMATS = ("tsv", "csv", "jsonl", "json", "parquet", "squad_json", "sts_semeval", "stsb", "text")
FORMATS = ("hub", *LOCAL_FORMATS, "synthetic")
csv.field_size_limit(2**31 - 1)  # long contexts exceed csv's 128 KiB; absurd rows are refused by canonical.py
_PLACEHOLDER = re.compile(r"\{(?!lang\}|split\})[^{}]*\}")
BATCH = 1000

RawRow = tuple[int, int | None, Any]  # (row number from 1, line it starts on or None, raw row)


@dataclass
class Raw:
    """A readable split part: where it comes from, a fingerprint that changes when its content may have, and
    its rows (a generator function: nothing is read until it is called)."""

    where: str
    fingerprint: str
    rows: Callable[[], Iterator[RawRow]]
    unit: str = "row"  # how a row is named in messages ("question" for SQuAD json)


def fill(template: str, lang: str, split: str) -> str:
    return template.replace("{lang}", lang).replace("{split}", split)


def open_raw(
    task: TaskConfig,
    view: SourceConfig,
    split: str,
    lang: str,
    role: str,
    cache_dir: str,
    synthetic_examples: int,
    need: int | None,
) -> Raw:
    """The raw rows of split `split` (one part of a role's split spec) in `lang` from a local or synthetic source
    (the hub's: `data.hub.read_hub`); `need`: how many leading rows a capped read needs (None: all). A local file's
    fingerprint is the sha256 of its content (remembered per stamp: an untouched file is not read for it)."""
    if view.format == "synthetic":
        from xorder.data import synthetic

        path = synthetic.materialize(
            Path(cache_dir).expanduser(), task.name, task.kind, split, lang, synthetic_examples
        )
        return Raw(str(path), "/".join(path.parts[-3:]), lambda: _jsonl(path))  # version/task/split-lang-n
    files = local_files(task, view, split, lang, role)
    digests = Digests(cache_dir)
    fingerprint = ":".join(digests.file(file) for file in files)
    if view.format == "sts_semeval":
        return Raw(f"{files[0]} + {files[1].name}", fingerprint, lambda: _semeval(files[0], files[1], lang))
    path = files[0]
    if view.format == "text" and need is not None:
        fingerprint += f":first{need}"
    readers: dict[str, Callable[[], Iterator[RawRow]]] = {
        "tsv": lambda: _table(path, "\t", view.fields),
        "csv": lambda: _table(path, ",", view.fields),
        "jsonl": lambda: _jsonl(path),
        "text": lambda: _text(path, need),
        "stsb": lambda: _stsb(path),
        "squad_json": lambda: _numbered(squad_rows(path)),
        "json": lambda: _numbered(_json_rows(path)),
        "parquet": lambda: parquet_rows(path),
    }
    return Raw(str(path), fingerprint, readers[view.format], "question" if view.format == "squad_json" else "row")


def local_files(task: TaskConfig, view: SourceConfig, split: str, lang: str, role: str) -> list[Path]:
    """The files a local source reads for split `split` in `lang` (a SemEval STS pair: its sentences and its
    scores), found without reading them; a missing one is an error naming the path."""
    if not view.path:
        raise XorderError(f"{task.name}: a {view.format} source needs a path")
    template = str(view.path)
    stray = _PLACEHOLDER.search(template)
    if stray:
        raise XorderError(
            f"{task.name}: path {template!r} holds {stray.group()}; only {{lang}} and {{split}} are filled in"
        )
    path = Path(fill(template, lang, split)).expanduser()
    if view.format == "sts_semeval":
        return _semeval_files(path, lang)
    if not path.is_file():
        hint = (
            ""
            if path.parent.is_dir()
            else f" (nor does the folder {path.parent}: check data_root or the source's path)"
        )
        raise XorderError(f"{task.name}: no {role} file for {lang!r}: {path} does not exist{hint}")
    return [path]


def _numbered(rows: Iterable[Any]) -> Iterator[RawRow]:
    return ((i, None, row) for i, row in enumerate(rows, 1))


def lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, newline kept; a byte-order mark is dropped; bad UTF-8 names its line."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise XorderError(
                        f"{path}: line {number}: not UTF-8 text ({err.reason} at byte {err.start + 1} "
                        "of the line); convert the file to UTF-8"
                    ) from None
                yield number, line[1:] if number == 1 and line.startswith("\ufeff") else line
    except OSError as err:
        raise XorderError(f"{path}: cannot read it ({err.strerror or err})") from None


def _table(path: Path, sep: str, fields: list[str] | None) -> Iterator[RawRow]:
    """A delimited file; with `fields` it has no header row. TSV files are read without quote handling (GLUE and
    XTREME files carry bare quotes); CSV files with it (fields may span lines). A row with the wrong number of
    fields is an error naming the line the row starts on."""
    records: Iterator[tuple[int, int, list[str]]]
    if sep == "\t":
        records = ((n, n, line.rstrip("\r\n").split("\t")) for n, line in lines(path) if line.strip("\r\n"))
    else:
        records = _csv_records(path)
    header = [str(f) for f in fields] if fields else None
    number = 0
    for line, end, values in records:
        if header is None:
            header = [h.strip() for h in values]
            continue
        if len(values) != len(header):
            hint = ""
            if end > line:
                hint = f"; the row runs from line {line} to line {end}: a quote opened on line {line} closes late?"
            elif len(values) == len(header) - 1 and header[-1] == "label":
                hint = (
                    "; the label column is missing (a file without labels can neither train nor score a model: "
                    "if it is a test file released without them, evaluate on a slice of dev instead, e.g. "
                    "dev: {split: 'dev[1500:]'})"
                )
            raise XorderError(
                f"{path}: line {line}: expected {len(header)} fields ({', '.join(header)}), found {len(values)}{hint}"
            )
        number += 1
        yield number, line, dict(zip(header, values))
    if header is None:
        raise XorderError(f"{path}: the file is empty")


def _csv_records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """CSV records with the lines each starts and ends on; a quoted field that never closes is named by the
    line it opens on."""
    reader = csv.reader((line for _, line in lines(path)), strict=True)
    start = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            problem = (
                "a quoted field opens on this line and never closes"
                if "end of data" in str(err)
                else f"unreadable csv ({err})"
            )
            raise XorderError(f"{path}: line {start}: {problem}") from None
        if values:
            yield start, reader.line_num, values
        start = reader.line_num + 1


def _jsonl(path: Path) -> Iterator[RawRow]:
    number = 0
    for line_number, line in lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise XorderError(f"{path}: line {line_number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise XorderError(f"{path}: line {line_number}: expected a JSON object, found {type(row).__name__}")
        number += 1
        yield number, line_number, row


def _text(path: Path, need: int | None) -> Iterator[RawRow]:
    """One row per non-empty line (a paragraph or document); a capped read stops after `need` rows."""
    number = 0
    for line_number, line in lines(path):
        if line.strip():
            number += 1
            yield number, line_number, {"text": line.strip()}
            if need is not None and number >= need:
                return


def _stsb(path: Path) -> Iterator[RawRow]:
    """STS Benchmark csv: tab-separated genre, file, year, id, score, sentence1, sentence2 (some rows carry two
    more source columns, and quotes are bare text)."""
    number = 0
    for line_number, line in lines(path):
        if not line.strip("\r\n"):
            continue
        values = line.rstrip("\r\n").split("\t")
        if len(values) < 7:
            raise XorderError(
                f"{path}: line {line_number}: expected at least 7 tab-separated fields (genre, file, "
                f"year, id, score, sentence1, sentence2), found {len(values)}"
            )
        number += 1
        yield (
            number,
            line_number,
            {
                "genre": values[0],
                "id": f"{values[1]}-{values[2]}-{values[3]}",
                "score": values[4],
                "sentence1": values[5],
                "sentence2": values[6],
            },
        )


def _json_rows(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise XorderError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start + 1})") from None
    except json.JSONDecodeError as err:
        raise XorderError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    rows = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise XorderError(f"{path}: expected a list of objects (or {{'data': [...]}})")
    return rows


def squad_rows(path: Path) -> list[dict[str, Any]]:
    """SQuAD v1.1/v2.0 json: articles -> paragraphs -> questions, one row per question (the hub's columns)."""
    rows = []
    for article in _json_rows(path):
        for paragraph in article.get("paragraphs", []) if isinstance(article, dict) else []:
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append(
                    {
                        "id": qa.get("id"),
                        "title": article.get("title", ""),
                        "context": paragraph.get("context"),
                        "question": qa.get("question"),
                        "answers": {
                            "text": [x.get("text") for x in answers],
                            "answer_start": [x.get("answer_start") for x in answers],
                        },
                    }
                )
    if not rows:
        raise XorderError(f"{path}: no questions found (expected SQuAD json: data -> paragraphs -> qas)")
    return rows


def parquet_rows(path: Path, need: int | None = None) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
            for row in batch.to_pylist():
                number += 1
                yield number, None, row
                if need is not None and number >= need:
                    return
    except XorderError:
        raise
    except Exception as err:  # pyarrow raises ArrowInvalid and friends for a damaged file
        raise XorderError(f"{path}: not a readable parquet file ({' '.join(str(err).split())[:160]})") from None


def _semeval_files(folder: Path, pair: str) -> list[Path]:
    """SemEval-2017 Task 1: STS.input.track*.{pair}.txt (s1<TAB>s2) and its STS.gs.track*.{pair}.txt (scores),
    found anywhere under `folder`. 'es-en' is track 4a, 'es-en-wmt' track 4b."""
    if not folder.is_dir():
        raise XorderError(
            f"{folder}: no such folder (the SemEval STS release: STS.input.track*.txt + STS.gs.track*.txt)"
        )
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
    return [source, gold]


def _semeval(source: Path, gold: Path, pair: str) -> Iterator[RawRow]:
    """The scored pairs of a SemEval STS track. Track 6 (tr-en) ships 500 inputs for 250 scores: the first 250
    inputs are the scored ones."""
    pairs = [line for _, line in lines(source)]
    scores = [line for _, line in lines(gold)]
    if len(scores) > len(pairs):
        raise XorderError(f"{gold}: {len(scores)} scores for {len(pairs)} sentence pairs in {source.name}")
    for number, (line, score) in enumerate(zip(pairs, scores), 1):
        values = line.rstrip("\r\n").split("\t")
        if len(values) < 2:
            raise XorderError(
                f"{source}: line {number}: expected two tab-separated sentences, found {len(values)} field"
            )
        yield (
            number,
            number,
            {"sentence1": values[0], "sentence2": values[1], "score": score.strip(), "id": f"{pair}-{number}"},
        )
