"""Evaluation: predictions per feature become scores per example; the three checkpoint selections."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets
import pytest
import torch

from conftest import compose
from xorder import tiny
from xorder.data.encode import encode
from xorder.data.stage import EvalSet
from xorder.evaluate import score, select
from xorder.model import load_tokenizer
from xorder.plan import to_typed


@pytest.mark.slow
def test_extractive_answers_are_scored_per_example_across_windows(cache_dir: Path, tmp_path: Path):
    """A long context is cut into several windows (features); each prediction must be decoded with its own
    feature's offsets and credited to its own example."""
    tokenizer = load_tokenizer(str(tiny.ensure(cache_dir)))
    task = dataclasses.replace(to_typed(compose("experiment=demo", "task=squad")).task["squad"], doc_stride=16)
    long_context = " ".join(f"the cup sees the lamp {i} ." for i in range(30)) + " the cat is there ."
    rows = [
        {
            "id": "long",
            "question": "who is there ?",
            "context": long_context,
            "answers": {"text": ["cat"], "answer_start": [long_context.index("cat")]},
        }
    ]
    for k in range(3):
        context = f"the lamp {k} sees the dog here ."
        rows.append(
            {
                "id": f"short{k}",
                "question": "who is there ?",
                "context": context,
                "answers": {"text": ["dog"], "answer_start": [context.index("dog")]},
            }
        )
    examples = datasets.Dataset.from_list(rows)
    features = encode(
        examples, task, tokenizer, 48, train=False, label_names=[], fingerprint="qa-windows", cache_dir=tmp_path
    )
    features = features.add_column("feature", list(range(len(features))))
    assert len(features) > len(rows) + 2  # the long context really spans several windows
    # an oracle: every window predicts its own gold span, windows without the answer predict nothing
    spans = [
        [float(f["start_positions"]), float(f["end_positions"]), 10.0 if f["start_positions"] else -10.0]
        for f in features
    ]
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))  # as gathered: any order
    result = score(EvalSet("squad", task, "dev", "en", examples, features, []), order, [torch.tensor(spans)[order]])
    assert result.metrics == {"f1": 100.0, "exact_match": 100.0}
    assert sorted(result.ids) == ["long", "short0", "short1", "short2"]
    assert dict(zip(result.ids, result.prediction))["long"] == "cat"


def history(*entries: tuple[int, float, float, float, float]) -> list[dict]:
    """(step, en dev, de dev, en test, de test) -> the history format of the target stage."""
    return [
        {
            "step": s,
            "scores": {
                "dev": {"en": {"accuracy": ed}, "de": {"accuracy": dd}},
                "test": {"en": {"accuracy": et}, "de": {"accuracy": dt}},
            },
        }
        for s, ed, dd, et, dt in entries
    ]


def test_selections_choose_their_checkpoints():
    chosen = select(
        history((10, 70, 60, 71, 61), (20, 80, 55, 79, 54), (30, 80, 65, 78, 66), (40, 75, 50, 74, 52)),
        "en",
        "accuracy",
    )
    assert chosen["en_dev"]["steps"]["test"] == {"en": 20, "de": 20}  # best English dev, earliest of a tie
    assert chosen["en_dev"]["scores"]["test"] == {"en": {"accuracy": 79}, "de": {"accuracy": 54}}
    assert chosen["oracle"]["steps"]["test"] == {"en": 20, "de": 30}  # each language on its own dev set
    assert chosen["oracle"]["scores"]["test"]["de"] == {"accuracy": 66}
    assert chosen["last"]["steps"]["test"] == {"en": 40, "de": 40}
