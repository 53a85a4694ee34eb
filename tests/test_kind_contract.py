"""The contract of a head kind, for every registered kind and for one a contributor adds: a kind class that misses
a hook fails when it loads (kinds.get, one line naming the hooks), and a new kind's own metrics get an
order-effect test where the kind gives per-example shares or names a correlation."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xorder import kinds
from xorder.errors import XorderError
from xorder.kinds.base import Kind
from xorder.report import paired
from xorder.report.effects import paired_test

HALF = """
from xorder.kinds.base import OneOfMany


class Half(OneOfMany):
    name = "half"
    schema = {"text_a": str, "label": int}

    def check(self, task, view, item, column, fail):
        pass


KIND = Half()
"""

# a contributor's kind with a metric of its own (a share per example: how many of its labels are right)
LABELWISE = """
import numpy as np

from xorder.kinds import metrics
from xorder.kinds.classification import Classification


def labelwise(gold, pred):
    return float(np.mean([g == p for g, p in zip(gold, pred)]))


class Labelwise(Classification):
    name = "labelwise"
    metrics = {**metrics.CLASSES, "labelwise": labelwise}

    def example_scores(self, metric):
        if metric == "labelwise":
            return lambda gold, pred: (np.asarray(gold) == np.asarray(pred)).astype(float)
        return super().example_scores(metric)


KIND = Labelwise()
"""


@pytest.fixture
def contributed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two kind modules a contributor dropped into xorder.kinds (here: a folder added to the package's path)."""
    (tmp_path / "half.py").write_text(HALF)
    (tmp_path / "labelwise.py").write_text(LABELWISE)
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    kinds.names.cache_clear()
    kinds.get.cache_clear()
    yield
    kinds.names.cache_clear()
    kinds.get.cache_clear()
    for name in ("half", "labelwise"):
        sys.modules.pop(f"xorder.kinds.{name}", None)


def test_a_kind_missing_hooks_fails_when_it_loads_naming_them(contributed: None):
    assert "half" in kinds.names()
    with pytest.raises(XorderError) as err:
        kinds.get("half")
    message = str(err.value)
    assert "head kind 'half' does not load" in message and "\n" not in message, message
    for hook in ("encode", "head", "forward", "synthetic"):
        assert hook in message, message
    assert "check," not in message  # the one hook it has


def test_a_new_kinds_own_metric_gets_a_paired_test(contributed: None):
    assert kinds.get("labelwise").name == "labelwise"
    testable, shares = paired_test("labelwise", "labelwise")
    assert testable and shares is not None
    assert paired_test("labelwise", "f1") == (False, None)  # macro F1 is no mean over examples
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    a, b = np.where(rng.random(200) < 0.8, gold, 1 - gold), np.where(rng.random(200) < 0.6, gold, 1 - gold)
    got = paired.paired_effect(
        [paired.Stratum(1, "de", gold, a, b, np.arange(200))], "labelwise", {"de": ["de"]}, 199, "t", shares
    )["de"]
    assert got["diff"] == pytest.approx(100 * ((a == gold).mean() - (b == gold).mean()))
    assert got["ci_low"] < got["diff"] < got["ci_high"]


def test_paired_tests_follow_each_kind():
    assert paired_test("classification", "accuracy")[0] and paired_test("multiple_choice", "accuracy")[0]
    assert paired_test("regression", "pearson") == (True, None) and paired_test("regression", "spearman")[0]
    assert not paired_test("tagging", "accuracy")[0]  # token accuracy: not a mean over examples
    assert not paired_test("no_such_kind", "accuracy")[0]  # a record of a kind this installation lacks


@pytest.mark.parametrize("name", kinds.names())
def test_every_registered_kind_keeps_the_contract(name: str):
    kind = kinds.get(name)
    assert isinstance(kind, Kind) and not inspect.isabstract(type(kind))
    assert kind.name == name and kind.metrics
    assert set(kind.correlations) <= set(kind.metrics) & set(paired.CORRELATIONS)
    for metric in kind.metrics:
        shares = kind.example_scores(metric)
        assert shares is None or metric not in kind.correlations


def test_the_abstract_hooks_are_the_ones_every_kind_must_write():
    assert Kind.__abstractmethods__ == {"check", "encode", "head", "forward", "predictions", "score", "synthetic"}
