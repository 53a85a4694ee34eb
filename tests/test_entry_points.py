"""The public entry points a contributor starts from document every argument and what they return."""

from __future__ import annotations

import inspect

import pytest

from xorder import kinds, plan, report
from xorder.pipeline import run

ENTRY_POINTS = [run.run_cell, plan.plan, kinds.get, report.build]


@pytest.mark.parametrize("function", ENTRY_POINTS, ids=[f.__qualname__ for f in ENTRY_POINTS])
def test_entry_point_documents_args_and_returns(function):
    doc = inspect.getdoc(function) or ""
    args, _, rest = doc.partition("\nArgs:\n")
    assert args and "\nReturns:\n" in rest, doc
    described = rest.partition("\nReturns:\n")[0]
    for name in inspect.signature(function).parameters:
        assert f"\n    {name}: " in f"\n{described}", f"{function.__qualname__}: {name} is not described"
