"""Raw rows -> canonical rows of a head kind, checked one by one, streamed into an Arrow file.

Every kind names its canonical columns (`xorder.kinds`); a source's `columns` maps them to its own names
(dotted paths such as 'question.stem', list paths such as 'choices.*.text', or a list of those gathered into one
list column). Every row also gets `id` (the source's, or split-language-row), `item` (the source item it is a
translation of, the same in every language: see `item_of`) and `language`. An optional
column mapped to null (`columns: {question: null}`) is left out even when the source has a column of that name.
A bad row stops with one line naming the file, the row (and line) and the column. The rows are never held in
memory together: they are written in batches, and the Arrow file is what the rest of the pipeline reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xorder import kinds
from xorder.config import ALIGNMENTS, SourceConfig, TaskConfig
from xorder.data.readers import BATCH, RawRow
from xorder.errors import XorderError

MAX_ROW_CHARS = 1_000_000  # longer than any real example: a damaged file or the wrong one, refused before tokenization
_MISSING = object()


def extract(row: Any, spec: Any) -> Any:
    """Follow a column spec into a raw row: 'name', 'a.b', 'a.*.b' (through a list) or a list of specs."""
    if isinstance(spec, (list, tuple)):
        return [extract(row, s) for s in spec]
    value = row
    parts = str(spec).split(".")
    for i, key in enumerate(parts):
        if key == "*":
            if not isinstance(value, list):
                return _MISSING
            rest = ".".join(parts[i + 1 :])
            return [extract(v, rest) if rest else v for v in value]
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return _MISSING
    return value


def _spec_name(spec: Any) -> str:
    return ", ".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_chars(v) for v in value)
    return 0


class Canonicalizer:
    """Turns the raw rows of one file (or hub split) into canonical rows of the task's kind."""

    def __init__(self, task: TaskConfig, view: SourceConfig, where: str, lang: str, split: str) -> None:
        self.task, self.view, self.where, self.lang, self.split = task, view, where, lang, split
        self.kind = kinds.get(task.kind)
        columns = dict(view.columns or {})
        mapping = {col: columns.get(col, col) for col in self.kind.columns()}
        for col in self.kind.schema:
            if mapping[col] is None:
                raise XorderError(f"{task.name}: columns.{col} is null, but a {task.kind} task needs it")
        self.mapping = {col: spec for col, spec in mapping.items() if spec is not None}
        # an optional column is needed in every row once it is mapped explicitly or found in the first row
        self.needed = set(self.kind.schema) | {c for c in self.kind.optional if c in self.mapping and c in columns}
        self.id_spec = columns.get("id", "id")
        self.aligned = alignment(view)
        self.first = True

    def __call__(self, number: int, named: str, row: Any) -> dict[str, Any]:
        def fail(column: str, problem: str) -> XorderError:
            return XorderError(f"{self.where}: {named}: column {column!r}: {problem}")

        if not isinstance(row, dict):
            raise XorderError(
                f"{self.where}: {named}: expected a record with named columns, found {type(row).__name__}"
            )
        item: dict[str, Any] = {}
        source: dict[str, str] = {}
        for col, spec in self.mapping.items():
            value = extract(row, spec)
            if value is _MISSING or (isinstance(value, list) and _MISSING in value):
                if col in self.needed:
                    have = ", ".join(map(str, row))
                    raise fail(_spec_name(spec), f"missing (the row has: {have}); map it with columns.{col}")
                continue
            if _chars(value) > MAX_ROW_CHARS:
                raise fail(
                    _spec_name(spec),
                    f"{_chars(value):,} characters, more than any real example "
                    f"({MAX_ROW_CHARS:,}): the file is damaged or not this task's data",
                )
            if self.first:
                self.needed.add(col)
            item[col], source[col] = value, _spec_name(spec)
        self.first = False
        rid = extract(row, self.id_spec) if self.id_spec is not None else _MISSING
        self.kind.check(self.task, self.view, item, source, fail)
        item["id"] = str(rid) if rid is not _MISSING and rid is not None else f"{self.split}-{self.lang}-{number}"
        item["item"] = item_of(self.aligned, item["id"], self.split, self.lang, number)
        item["language"] = self.lang
        return item


def alignment(view: SourceConfig) -> str:
    """How the view's rows in different languages correspond (config.ALIGNMENTS): its own `aligned`, else `id`
    for the synthetic stand-in (example i is the same meaning in every language), else `none`."""
    if view.aligned is not None:
        return view.aligned
    return "id" if view.format == "synthetic" else "none"


def item_of(aligned: str, rid: str, split: str, lang: str, number: int) -> str:
    """The source item a row belongs to: its id (`id`), its row number in the split part (`row`: translations
    keep the row order), or, unaligned, the row itself (its language and id)."""
    if aligned == "id":
        return rid
    if aligned == "row":
        return f"{split}-{number}"
    if aligned == "none":
        return f"{lang}:{rid}"
    raise XorderError(f"aligned={aligned} is invalid: must be one of {', '.join(ALIGNMENTS)}")


def named(number: int, line: int | None, unit: str) -> str:
    """How a row is named in messages: 'row 7', or 'row 7 (line 8)' when the two differ."""
    return f"{unit} {number}" + (f" (line {line})" if line is not None and line != number else "")


def write(rows: Iterator[dict[str, Any]], task: TaskConfig, path: Path) -> int:
    """Stream canonical rows into an Arrow file at `path` (written under a temporary name, then renamed);
    returns the number of rows. The columns are the kind's schema plus the optional columns the rows have."""
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter

    kind = kinds.get(task.kind)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    batch: list[dict[str, Any]] = []
    writer: ArrowWriter | None = None
    count = 0

    def flush(schema_rows: list[dict[str, Any]]) -> ArrowWriter:
        nonlocal writer
        if writer is None:
            present = schema_rows[0] if schema_rows else {}
            fields = [
                (col, _arrow(kind.columns()[col])) for col in kind.columns() if col in kind.schema or col in present
            ]
            schema = pa.schema([*fields, ("id", pa.string()), ("item", pa.string()), ("language", pa.string())])
            writer = ArrowWriter(schema=schema, path=str(tmp), writer_batch_size=BATCH)
        if schema_rows:
            writer.write_batch({name: [r.get(name) for r in schema_rows] for name in writer.schema.names})
        return writer

    try:
        for item in rows:
            batch.append(item)
            count += 1
            if len(batch) >= BATCH:
                flush(batch)
                batch = []
        flush(batch).finalize()
        writer.close()  # type: ignore[union-attr]
        os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return count


def _arrow(kind_type: Any) -> Any:
    import pyarrow as pa

    if isinstance(kind_type, list):
        return pa.list_(_arrow(kind_type[0]))
    if isinstance(kind_type, dict):
        return pa.struct([(name, _arrow(value)) for name, value in kind_type.items()])
    return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}[kind_type]


def canonical_rows(
    raw: Iterator[RawRow], canon: Canonicalizer, unit: str, language_spec: Any
) -> Iterator[dict[str, Any]]:
    """Canonical rows of one language: with `language_spec` (a column holding each row's language) only the
    rows of `canon.lang`, numbered as in the file; an error if the file has none."""
    found: set[str] = set()
    kept = 0
    for number, line, row in raw:
        if language_spec is not None:
            language = str(extract(row, language_spec))
            if language != canon.lang:
                if len(found) < 50:
                    found.add(language)
                continue
        kept += 1
        yield canon(number, named(number, line, unit), row)
    if language_spec is not None and not kept:
        raise XorderError(
            f"{canon.where}: no rows with {language_spec!r} = {canon.lang!r} (found: {', '.join(sorted(found)[:20])})"
        )
