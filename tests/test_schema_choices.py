"""Config choices have one source of truth: the Literal each schema field carries (config.py). Every such field is
checked against it (exit 2, one line listing exactly the Literal's values), every value it lists passes, and a new
choice field in the schema fails here until it has a key below."""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

import pytest
from omegaconf import OmegaConf

from conftest import compose
from xorder import checks
from xorder import config as schema
from xorder.errors import XorderError

# schema class -> the key of one of its nodes in experiment=demo
WHERE = {
    schema.TrainerConfig: "trainer",
    schema.MultilingualConfig: "multilingual",
    schema.OrderConfig: "order",
    schema.SourceConfig: "task.mnli.sources.hub",
    schema.SplitConfig: "task.mnli.sources.hub.splits.train",
}


def literal_fields() -> list[tuple[type, str, tuple[str, ...], bool]]:
    """(class, field, the Literal's values, whether the field is a list) of every choice field in the schema, read
    off the annotations here, not through checks."""
    found, seen, todo = [], set(), [schema.XorderConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            stack = [hint]
            while stack:
                tp = stack.pop()
                if dataclasses.is_dataclass(tp):
                    todo.append(tp)  # type: ignore[arg-type]
                elif typing.get_origin(tp) is typing.Literal:
                    found.append((cls, name, typing.get_args(tp), typing.get_origin(hint) is list))
                else:
                    stack.extend(typing.get_args(tp))
    return found


FIELDS = literal_fields()


@pytest.fixture(scope="module")
def demo():
    return compose("experiment=demo")


def _set(cfg: Any, key: str, value: Any) -> Any:
    cfg = copy.deepcopy(cfg)
    OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_every_choice_field_has_a_place_here():
    assert len(FIELDS) >= 11
    assert {cls for cls, *_ in FIELDS} <= set(WHERE)


@pytest.mark.parametrize("cls,name,valid,is_list", FIELDS, ids=[f"{c.__name__}.{n}" for c, n, *_ in FIELDS])
def test_a_value_outside_the_literal_is_refused_listing_its_values(demo, cls, name, valid, is_list):
    key = f"{WHERE[cls]}.{name}"
    bad = [valid[0], "nosuch"] if is_list else "nosuch"
    with pytest.raises(XorderError) as err:
        checks.config(_set(demo, key, bad))
    message = str(err.value)
    shown = f"[{valid[0]},nosuch]" if is_list else "nosuch"
    assert f"{key}={shown} is invalid" in message and ", ".join(valid) in message and "\n" not in message, message
    assert schema.choices(cls, name) == valid


@pytest.mark.parametrize("cls,name,valid,is_list", FIELDS, ids=[f"{c.__name__}.{n}" for c, n, *_ in FIELDS])
def test_every_value_of_the_literal_passes(demo, cls, name, valid, is_list):
    key = f"{WHERE[cls]}.{name}"
    for value in valid:
        if name == "stages" or (name == "kind" and value == "mlm"):
            continue  # an order and the MLM variant need settings of their own (test_checks: every shipped option)
        checks.config(_set(demo, key, [value] if is_list else value))
