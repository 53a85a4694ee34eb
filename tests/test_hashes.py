"""Stage hashes are the stage cache's keys: a refactor that changes one silently retrains (and orphans) every
user's cached stages. These were computed on the code before the kind-module refactor (stage format 2). A
deliberate change of what a stage computes bumps plan.STAGE_FORMAT, which changes every hash and nothing else:
so the pins are checked with the format they were computed under."""

from __future__ import annotations

import pytest

from conftest import compose
from xorder import plan as plan_module
from xorder.plan import plan

# tiny v2 (XLM-R's 512 positions) is another base model: its cells' first hashes before it were ec2c15f08b20d7f38e51,
# 47bd3aa1f5319ee15212, 5e33ea0c29f3f82c6612, 2fe7c4db3b8ec0cfa3a9, 8ebf1638e6227b0d5dad and 6134388e20f38453cc5f
PINNED = [
    (("experiment=demo",), ["154046f32442439a3cae", "06ae794f501aaa0c5aab", "ed939b18ac04217d4169"]),
    (
        ("experiment=demo", "order=multilingual_first", "task=squad", "target=sts"),
        ["a22ba810c89404b80bfc", "e198ab7eabf1530e41e0", "eaaa3b035f8129bd3499"],
    ),
    # joint stages now match the sequential orders' budget by default; `sum` is the budget these were pinned with
    (
        ("experiment=demo", "order=joint", "task=[mnli,hellaswag]", "multilingual=mlm", "trainer.joint_budget=sum"),
        ["ff1643c660fabd24ead1", "d0bebbbb5d8bf2a0e31b"],
    ),
    (
        ("experiment=demo", "order=english_first", "task=ccg", "seed=2"),
        ["aa1634b66543885d4036", "f455c5851693c53aa911", "15585c03eb3efaa5e5c8"],
    ),
    # these two targets read sources with `aligned: row`, part of a target's identity since its evaluation sets
    # leave out every translation of a leaked item (before: 40cae54d95ceb87bf47a and 9cf2d2bcaf751d920055)
    (("experiment=demo_pawsx_real", "order=none"), ["0f9186f46ce5b231b12b"]),
    (
        ("experiment=demo_sts_real", "order=multilingual_only", "multilingual=mlm"),
        ["0a11faec9ff0c7eb39d6", "91490df7bb558795b045"],
    ),
]


@pytest.mark.parametrize("overrides,expected", PINNED, ids=[" ".join(o) for o, _ in PINNED])
def test_stage_hashes_of_demo_cells_are_pinned(
    overrides: tuple[str, ...], expected: list[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(plan_module, "STAGE_FORMAT", 2)
    assert [stage.hash for stage in plan(compose(*overrides), 1)] == expected


def test_a_new_stage_format_changes_every_hash():
    overrides = PINNED[0][0]
    assert not set(stage.hash for stage in plan(compose(*overrides), 1)) & set(PINNED[0][1])


def test_hash_neutral_hyperparameters_keep_hashes_until_used():
    base = [stage.hash for stage in plan(compose("experiment=demo", "trainer.freeze_embeddings=false"), 1)]
    assert base == [stage.hash for stage in plan(compose("experiment=demo"), 1)]
    frozen = [stage.hash for stage in plan(compose("experiment=demo", "trainer.freeze_embeddings=true"), 1)]
    assert not set(frozen) & set(base)
