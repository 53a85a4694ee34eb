"""Raw rows -> canonical rows of a head kind, checked one by one.

Canonical columns by head kind (a source's `columns` maps them to its own names):
  classification, regression   text_a, text_b (optional), label
  multiple_choice              context, question (optional), choices, label
  extractive_qa                context, question, answers {text: [...], answer_start: [...]}
  tagging                      tokens, tags
  mlm                          text
Every row also gets `id` (the source's, or split-language-row) and `language`.
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
    task: TaskConfig, view: SourceConfig, numbered: list[tuple[int, dict[str, Any]]], where: str, lang: str, split: str
) -> list[dict[str, Any]]:
    kind = task.kind
    mapping = {col: view.columns.get(col, col) for col in (*REQUIRED[kind], *OPTIONAL[kind])}
    id_spec = view.columns.get("id", "id")
    out = []
    for number, row in numbered:
        def fail(column: str, problem: str) -> XorderError:
            return XorderError(f"{where}: row {number}: column {column!r}: {problem}")

        item: dict[str, Any] = {}
        for col, spec in mapping.items():
            value = extract(row, spec)
            if value is _MISSING or (isinstance(value, list) and _MISSING in value):
                if col in REQUIRED[kind]:
                    have = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
                    raise fail(str(spec), f"missing (the row has: {have}); map it with columns.{col}")
                continue
            item[col] = value
        rid = extract(row, id_spec)
        item["id"] = str(rid) if rid is not _MISSING and rid is not None else f"{split}-{lang}-{number}"
        item["language"] = lang
        _check(task, view, item, fail)
        out.append(item)
    return out


def _text(value: Any, column: str, fail: Any, allow_empty: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = ""
    if not isinstance(value, str):
        value = str(value)
    if not value.strip() and not allow_empty:
        raise fail(column, "empty text")
    return value


def _label(task: TaskConfig, view: SourceConfig, value: Any, fail: Any, n_classes: int) -> int:
    if view.labels:
        key = str(value).strip()
        if key not in view.labels:
            raise fail("label", f"value {key!r} is not one of {', '.join(map(str, view.labels))}")
        label = view.labels[key]
    else:
        try:
            as_float = float(str(value).strip())
        except ValueError:
            raise fail("label", f"value {value!r} is not a class number (map names with labels: {{name: id}})") from None
        if not as_float.is_integer():
            raise fail("label", f"value {value!r} is not a whole class number")
        label = int(as_float)
    if not 0 <= label < n_classes:
        raise fail("label", f"class {label} outside 0..{n_classes - 1} ({', '.join(task.label_names) or 'choices'})")
    return label


def _check(task: TaskConfig, view: SourceConfig, item: dict[str, Any], fail: Any) -> None:
    kind = task.kind
    if kind in ("classification", "regression"):
        item["text_a"] = _text(item["text_a"], "text_a", fail)
        if "text_b" in item:
            item["text_b"] = _text(item["text_b"], "text_b", fail)
        if kind == "classification":
            item["label"] = _label(task, view, item["label"], fail, len(task.label_names))
        else:
            try:
                score = float(str(item["label"]).strip()) * view.score_scale
            except ValueError:
                raise fail("label", f"score {item['label']!r} is not a number") from None
            low, high = task.score_range if task.score_range else (-math.inf, math.inf)
            if not math.isfinite(score) or not low <= score <= high:
                raise fail("label", f"score {score} outside {low}..{high}")
            item["label"] = score
    elif kind == "multiple_choice":
        item["context"] = _text(item["context"], "context", fail)
        if "question" in item:
            item["question"] = _text(item["question"], "question", fail, allow_empty=True)
        choices = item["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise fail("choices", "expected a list of at least two answer texts")
        item["choices"] = [_text(c, "choices", fail) for c in choices]
        item["label"] = _label(task, view, item["label"], fail, len(choices))
    elif kind == "extractive_qa":
        context = item["context"] = _text(item["context"], "context", fail)
        item["question"] = _text(item["question"], "question", fail)
        answers = item["answers"]
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise fail("answers", "expected {text: [...], answer_start: [...]}")
        texts, starts = list(answers["text"]), [int(s) for s in answers["answer_start"]]
        if len(texts) != len(starts):
            raise fail("answers", "text and answer_start differ in length")
        for text, start in zip(texts, starts):
            if context[start : start + len(text)] != text:
                raise fail("answers", f"answer {text!r} is not at character {start} of the context")
        item["answers"] = {"text": texts, "answer_start": starts}
    elif kind == "tagging":
        tokens, tags = item["tokens"], item["tags"]
        tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
        tags = tags.split() if isinstance(tags, str) else list(tags)
        if not tokens:
            raise fail("tokens", "no tokens")
        if len(tokens) != len(tags):
            raise fail("tags", f"{len(tags)} tags for {len(tokens)} tokens")
        if task.label_names and any(str(t) not in task.label_names for t in tags):
            bad = next(str(t) for t in tags if str(t) not in task.label_names)
            raise fail("tags", f"tag {bad!r} is not in the task's label set")
        item["tokens"], item["tags"] = [str(t) for t in tokens], [str(t) for t in tags]
    elif kind == "mlm":
        item["text"] = _text(item["text"], "text", fail)
