"""Split specs: which rows of a source a split role reads. A role (train/dev/test/...) names the source's split
with optional slices and unions, as in `datasets`: `dev[:1500]`, `dev[1500:]`, `train[-10%:]`, `R1/dev+R2/dev`.
Pure functions of the configuration, shared by the plan (held-out rows) and the data layer (reading them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from xorder.config import SourceConfig, SplitConfig
from xorder.errors import XorderError

SYNTHETIC_SPLITS = {role: SplitConfig(split=role) for role in ("train", "dev", "test")}
_SLICE = re.compile(r"^(?P<name>.+?)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


@dataclass(frozen=True)
class Part:
    """One readable piece of a split: e.g. 'dev[1500:]' or one round of ANLI."""

    name: str
    start: str | None
    stop: str | None


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


def bound(text: str | None, n: int) -> int | None:
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
            ra = range(*slice(bound(a.start, rows), bound(a.stop, rows)).indices(rows))
            rb = range(*slice(bound(b.start, rows), bound(b.stop, rows)).indices(rows))
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
