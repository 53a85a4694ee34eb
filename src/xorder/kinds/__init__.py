"""Head kinds, one module each (classification, regression, multiple_choice, extractive_qa, tagging, mlm): a
module of this package that defines `KIND` is a kind, so adding a kind is adding one file."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from xorder.errors import XorderError
from xorder.kinds.base import Kind


@cache
def names() -> tuple[str, ...]:
    """The kinds this installation has, found without importing them."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"))


@cache
def get(name: str) -> Kind:
    if name not in names():
        raise XorderError(f"unknown head kind {name!r} (valid: {', '.join(names())})")
    kind: Kind = importlib.import_module(f"{__name__}.{name}").KIND
    return kind
