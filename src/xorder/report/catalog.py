"""What the packaged task and target files (xorder.conf) say about a name that a record holds: records keep
names only, so the report reads a dataset's citation and a target's classes from the files shipped with xorder."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

_NAME = re.compile(r"[A-Za-z0-9_]+")
_INCLUDE = re.compile(r"^/target/([A-Za-z0-9_]+)@")  # conf/task/pawsx.yaml: defaults: [/target/pawsx@pawsx]


def _read(group: str, name: str) -> dict[str, Any] | None:
    path = files("xorder.conf") / group / f"{name}.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


@cache
def task_config(name: str) -> dict[str, Any] | None:
    """The packaged config of a task or target (`conf/task/<name>.yaml` under its name key, following a
    defaults include of a target, else `conf/target/<name>.yaml`), or None for a name xorder does not ship."""
    if not _NAME.fullmatch(name):
        return None
    task = _read("task", name) or {}
    if isinstance(task.get(name), dict):
        return task[name]
    for entry in task.get("defaults") or []:
        match = _INCLUDE.match(entry) if isinstance(entry, str) else None
        if match:
            return _read("target", match.group(1))
    return _read("target", name)


def citation(name: str) -> str | None:
    """The dataset's BibTeX (its task file's `citation:`), "" when the file has none, None for an unknown name."""
    config = task_config(name)
    if config is None:
        return None
    value = config.get("citation") or ""
    return value.strip() if isinstance(value, str) else ""


def label_names(name: str) -> list[str]:
    """A target's class names from its packaged file (empty for regression targets and unknown names)."""
    config = task_config(name) or {}
    names = config.get("label_names") or []
    return [str(n) for n in names] if isinstance(names, list) else []
