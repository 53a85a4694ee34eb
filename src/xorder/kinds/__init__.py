"""Head kinds, one module each (classification, regression, multiple_choice, extractive_qa, tagging, mlm): a
module of this package that defines `KIND` is a kind, so adding a kind is adding one file."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from xorder.errors import XorderError
from xorder.kinds.base import Kind

# modules of this package that are not kinds: what the kinds share
_NOT_KINDS = ("base", "heads", "lexicon", "metrics")


@cache
def names() -> tuple[str, ...]:
    """The kinds this installation has, found without importing them."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_KINDS))


@cache
def get(name: str) -> Kind:
    """The kind registered as `name`: the `KIND` of the module xorder.kinds.<name>.

    Args:
        name: a kind's name, as a task's `kind` gives it (one of `names()`).

    Returns:
        The kind's one instance (cached: every caller shares it).

    Raises:
        XorderError: `name` is no kind of this installation (the valid ones listed), or its class lacks a hook
            that `Kind` marks @abstractmethod (the missing hooks named), so a half-written kind stops when it
            loads, not mid-training.
    """
    if name not in names():
        raise XorderError(f"unknown head kind {name!r} (valid: {', '.join(names())})")
    try:
        kind: Kind = importlib.import_module(f"{__name__}.{name}").KIND
    except TypeError as err:  # `KIND = SomeKind()` of a class that misses a hook
        if "abstract" not in str(err):
            raise
        raise XorderError(
            f"head kind {name!r} does not load: {err} (every kind implements the hooks that xorder.kinds.base.Kind "
            "marks @abstractmethod)"
        ) from None
    return kind
