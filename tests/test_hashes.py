"""Stage hashes are the stage cache's keys: a refactor that changes one silently retrains (and orphans) every
user's cached stages. These were computed on the code before the kind-module refactor (stage format 2). A
deliberate change of what a stage computes bumps plan.STAGE_FORMAT, which changes every hash and nothing else:
so the pins are checked with the format they were computed under."""

from __future__ import annotations

import pytest

from conftest import compose
from xorder import plan as plan_module
from xorder.plan import plan

PINNED = [
    (("experiment=demo",), ["ec2c15f08b20d7f38e51", "3ec94f7000a02f047213", "bfd37e74fe0883e2efde"]),
    (
        ("experiment=demo", "order=multilingual_first", "task=squad", "target=sts"),
        ["47bd3aa1f5319ee15212", "10ac0e88537f7f172a4c", "c334838cefe175c4184a"],
    ),
    # joint stages now match the sequential orders' budget by default; `sum` is the budget these were pinned with
    (
        ("experiment=demo", "order=joint", "task=[mnli,hellaswag]", "multilingual=mlm", "trainer.joint_budget=sum"),
        ["5e33ea0c29f3f82c6612", "02c7a72f201bfafdf451"],
    ),
    (
        ("experiment=demo", "order=english_first", "task=ccg", "seed=2"),
        ["2fe7c4db3b8ec0cfa3a9", "89f8a038a08cf01ae801", "90e9729f3278be0b563e"],
    ),
    (("experiment=demo_pawsx_real", "order=none"), ["40cae54d95ceb87bf47a"]),
    (
        ("experiment=demo_sts_real", "order=multilingual_only", "multilingual=mlm"),
        ["6134388e20f38453cc5f", "9cf2d2bcaf751d920055"],
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
