"""Raw rows -> canonical rows of a head kind, checked one by one.

Canonical columns by head kind (a source's `columns` maps them to its own names):
  classification, regression   text_a, text_b (optional), label
  multiple_choice              context, question (optional), choices, label
  extractive_qa                context, question, answers {text: [...], answer_start: [...]}
  tagging                      tokens, tags
  mlm                          text
Every row also gets `id` (the source's, or split-language-row) and `language`. An optional column mapped to
null (`columns: {question: null}`) is left out even when the source has a column of that name.
"""

from __future__ import annotations

import math
from typing import Any

from xorder.config import SourceConfig, TaskConfig
from xorder.errors import XorderError

REQUIRED = {
    "classification": ("text_a", "label"),
    "regression": ("text_a", "label"),
    "multiple_choice": ("context", "choices", "label"),
    "extractive_qa": ("context", "question", "answers"),
    "tagging": ("tokens", "tags"),
    "mlm": ("text",),
}
OPTIONAL = {
    "classification": ("text_b",),
    "regression": ("text_b",),
    "multiple_choice": ("question",),
    "extractive_qa": (),
    "tagging": (),
    "mlm": (),
}
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


def canonicalize(
    task: TaskConfig, view: SourceConfig, numbered: list[tuple[int, str, Any]], where: str, lang: str, split: str
) -> list[dict[str, Any]]:
    """`numbered` holds (row number, the row as named in messages, e.g. 'row 7 (line 8)', raw row)."""
    kind = task.kind
    if kind not in REQUIRED:
        raise XorderError(f"{task.name}: unknown head kind {kind!r} (valid: {', '.join(REQUIRED)})")
    columns = dict(view.columns or {})
    mapping = {col: columns.get(col, col) for col in (*REQUIRED[kind], *OPTIONAL[kind])}
    for col in REQUIRED[kind]:
        if mapping[col] is None:
            raise XorderError(f"{task.name}: columns.{col} is null, but a {kind} task needs it")
    mapping = {col: spec for col, spec in mapping.items() if spec is not None}
    # an optional column is needed in every row once it is mapped explicitly or found in the first row
    needed = set(REQUIRED[kind]) | {col for col in OPTIONAL[kind] if col in mapping and col in columns}
    id_spec = columns.get("id", "id")
    out = []
    for number, named, row in numbered:
        def fail(column: str, problem: str) -> XorderError:
            return XorderError(f"{where}: {named}: column {column!r}: {problem}")

        if not isinstance(row, dict):
            raise XorderError(f"{where}: {named}: expected a record with named columns, found {type(row).__name__}")
        item: dict[str, Any] = {}
        for col, spec in mapping.items():
            value = extract(row, spec)
            if value is _MISSING or (isinstance(value, list) and _MISSING in value):
                if col in needed:
                    have = ", ".join(map(str, row))
                    raise fail(_spec_name(spec), f"missing (the row has: {have}); map it with columns.{col}")
                continue
            if not out:
                needed.add(col)
            item[col] = (value, _spec_name(spec))
        rid = extract(row, id_spec) if id_spec is not None else _MISSING
        item["id"] = str(rid) if rid is not _MISSING and rid is not None else f"{split}-{lang}-{number}"
        item["language"] = lang
        _check(task, view, item, fail)
        out.append(item)
    return out


def _spec_name(spec: Any) -> str:
    return ", ".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)


def _text(value: Any, column: str, fail: Any, allow_empty: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = ""
    if isinstance(value, (dict, list, tuple)):
        raise fail(column, f"expected text, found a {type(value).__name__} (map a text field with columns)")
    if not isinstance(value, str):
        value = str(value)
    if not value.strip() and not allow_empty:
        raise fail(column, "empty text")
    return value


def _label(task: TaskConfig, view: SourceConfig, value: Any, column: str, fail: Any, n_classes: int) -> int:
    if view.labels:
        key = str(value).strip()
        if key not in view.labels:
            raise fail(column, f"label {key!r} is not one of {', '.join(map(str, view.labels))}")
        label = view.labels[key]
    else:
        if isinstance(value, bool) or value is None:
            raise fail(column, f"label {value!r} is not a class number")
        try:
            as_float = float(str(value).strip())
        except ValueError:
            raise fail(column, f"label {value!r} is not a class number (map names to ids with labels: {{name: id}})") from None
        if not as_float.is_integer():
            raise fail(column, f"label {value!r} is not a whole class number")
        label = int(as_float)
    if not 0 <= label < n_classes:
        names = ", ".join(task.label_names) if task.kind != "multiple_choice" else f"{n_classes} choices"
        raise fail(column, f"label {label} is outside 0..{n_classes - 1} ({names or 'no label names'})")
    return label


def _check(task: TaskConfig, view: SourceConfig, item: dict[str, Any], fail: Any) -> None:
    """Check and convert the (value, source column) pairs of `item` in place into canonical values."""
    kind = task.kind
    col = {key: pair[1] for key, pair in item.items() if isinstance(pair, tuple)}
    for key in col:
        item[key] = item[key][0]
    if kind in ("classification", "regression"):
        item["text_a"] = _text(item["text_a"], col["text_a"], fail)
        if "text_b" in item:
            item["text_b"] = _text(item["text_b"], col["text_b"], fail)
        if kind == "classification":
            if not task.label_names:
                raise XorderError(f"{task.name}: a classification task needs label_names")
            item["label"] = _label(task, view, item["label"], col["label"], fail, len(task.label_names))
        else:
            raw = item["label"]
            try:
                if isinstance(raw, bool) or raw is None:
                    raise ValueError
                score = float(str(raw).strip()) * view.score_scale
            except ValueError:
                raise fail(col["label"], f"score {raw!r} is not a number") from None
            low, high = task.score_range if task.score_range else (-math.inf, math.inf)
            if not math.isfinite(score):
                raise fail(col["label"], f"score {raw!r} is not a finite number")
            if not low <= score <= high:
                scaled = f" (after score_scale {view.score_scale:g})" if view.score_scale != 1 else ""
                raise fail(col["label"], f"score {score:g}{scaled} is outside {low:g}..{high:g}")
            item["label"] = score
    elif kind == "multiple_choice":
        item["context"] = _text(item["context"], col["context"], fail)
        if "question" in item:
            item["question"] = _text(item["question"], col["question"], fail, allow_empty=True)
        choices = item["choices"]
        if not isinstance(choices, (list, tuple)) or len(choices) < 2:
            raise fail(col["choices"], "expected a list of at least two answer texts "
                                       "(map several fields as a list: choices: [answer0, answer1, ...])")
        item["choices"] = [_text(c, col["choices"], fail) for c in choices]
        item["label"] = _label(task, view, item["label"], col["label"], fail, len(choices))
    elif kind == "extractive_qa":
        context = item["context"] = _text(item["context"], col["context"], fail)
        item["question"] = _text(item["question"], col["question"], fail)
        answers = item["answers"]
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise fail(col["answers"], "expected {text: [...], answer_start: [...]}")
        texts, starts = list(answers["text"] or []), list(answers["answer_start"] or [])
        if len(texts) != len(starts):
            raise fail(col["answers"], f"{len(texts)} answer texts but {len(starts)} answer_start values")
        try:
            starts = [int(s) for s in starts]
        except (TypeError, ValueError):
            raise fail(col["answers"], f"answer_start {starts!r} holds something other than character offsets") from None
        for text, start in zip(texts, starts):
            if not isinstance(text, str) or not text:
                raise fail(col["answers"], f"answer {text!r} is not a non-empty text")
            if start < 0 or context[start : start + len(text)] != text:
                raise fail(col["answers"], f"answer {text!r} is not at character {start} of the context")
        item["answers"] = {"text": texts, "answer_start": starts}
    elif kind == "tagging":
        tokens, tags = item["tokens"], item["tags"]
        tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
        tags = tags.split() if isinstance(tags, str) else list(tags)
        if not tokens:
            raise fail(col["tokens"], "no tokens")
        if len(tokens) != len(tags):
            raise fail(col["tags"], f"{len(tags)} tags for {len(tokens)} tokens")
        if task.label_names:
            bad = next((str(t) for t in tags if str(t) not in task.label_names), None)
            if bad is not None:
                raise fail(col["tags"], f"tag {bad!r} is not in the task's label set")
        item["tokens"], item["tags"] = [str(t) for t in tokens], [str(t) for t in tags]
    elif kind == "mlm":
        item["text"] = _text(item["text"], col["text"], fail)
