"""Display names: what the tables and plots call a target, model, order, task or multilingual variant
(PAWS-X for `pawsx`, English-first for `english_first`); identifiers stay in the CSV files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xorder.errors import XorderError
from xorder.records import NOT_APPLICABLE
from xorder.report.grid import NO_TASKS

DEFAULT_NAMES: dict[str, str] = {
    # targets and tasks
    "pawsx": "PAWS-X",
    "sts": "STS",
    "xnli": "XNLI",
    "mnli": "MNLI",
    "qqp": "QQP",
    "anli": "ANLI",
    "squad": "SQuAD",
    "hellaswag": "HellaSwag",
    "commonsenseqa": "CommonsenseQA",
    "cosmosqa": "Cosmos QA",
    "sst2": "SST-2",
    "ccg": "CCG",
    # models
    "xlmr_large": "XLM-R Large",
    "xlmr_base": "XLM-R Base",
    "minilm": "MiniLM",
    "me5_small": "multilingual-E5-small",
    # orders
    "none": "Baseline (none)",
    "english_only": "English-only",
    "multilingual_only": "Multilingual-only",
    "english_first": "English-first",
    "multilingual_first": "Multilingual-first",
    "joint": "Joint",
    # multilingual variants
    "translate_train": "Translate-train",
    "mlm": "MLM",
}


@dataclass(frozen=True)
class Names:
    """identifier -> display name; identifiers without one are shown as they are (all of them when `raw`)."""

    names: dict[str, str] = field(default_factory=dict)
    raw: bool = False

    def __call__(self, identifier: str) -> str:
        return self.names.get(identifier, identifier)

    def tasks(self, tasks: str) -> str:
        """A task set (`mnli+squad`): each task named; the baseline's `none` is an unused axis, shown as `-`."""
        if self.raw:
            return tasks
        return NOT_APPLICABLE if tasks == NO_TASKS else " + ".join(self(t) for t in tasks.split("+"))

    def row(self, row: tuple[str, str, str]) -> list[str]:
        """The key cells of a table row: tasks, multilingual variant, order."""
        tasks, multilingual, order = row
        return [self.tasks(tasks), self(multilingual), self(order)]


RAW = Names(raw=True)
PAPER = Names(DEFAULT_NAMES)


def load_names(path: Path | None, raw: bool) -> Names:
    """The built-in names, overridden and extended by a yaml mapping in `path`; none at all with `raw`."""
    if raw:
        return RAW
    if path is None:
        return PAPER
    try:
        extra = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise XorderError(f"--names {path}: cannot read it ({type(err).__name__})") from err
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise XorderError(f"--names {path}: expected a yaml mapping of identifier: display name, e.g. `mnli: MultiNLI`")
    return Names({**DEFAULT_NAMES, **extra})
