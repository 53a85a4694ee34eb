"""trainer.save_target_model: the target of the chosen selection as a Hugging Face folder in the record, loadable
with its head's Auto class without xorder, predicting exactly what the record says it predicted; the record's
numbers are those of a run that saves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import compose, demo_overrides, run_demo_cell
from xorder import records
from xorder.cell import identify
from xorder.errors import XorderError

# enough steps for the tiny model to learn English (a model predicting one class everywhere would prove little)
FAST = ("order=none", "trainer.target.max_steps=60", "trainer.eval_every=20", "data.synthetic_examples=600")


def predict_with_the_saved_model(folder: Path, cache_dir: Path, results: Path, *extra: str) -> dict[str, list]:
    """en test predictions of the saved folder, by example id, from AutoModelForSequenceClassification alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xorder.data.stage import DataSettings, prepare
    from xorder.plan import plan, to_typed

    cfg = to_typed(compose(*demo_overrides(cache_dir, results, *FAST, *extra)))
    target = plan(cfg)[-1]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    data = prepare(target, tokenizer, DataSettings(str(cache_dir), cfg.data.synthetic_examples))
    test = next(ev for ev in data.evals if ev.split == "test" and ev.language == "en")
    rows = test.examples
    texts = [list(rows["text_a"]), list(rows["text_b"])]
    with torch.inference_mode():
        inputs = tokenizer(*texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        logits = model(**inputs).logits
    return dict(zip(rows["id"], logits.argmax(-1).tolist()))


def recorded(record: Path, selection: str) -> dict[str, int]:
    frame = pd.read_parquet(record / records.PREDICTIONS)
    part = frame[(frame["selection"] == selection) & (frame["split"] == "test") & (frame["language"] == "en")]
    return dict(zip(part["id"], part["prediction"]))


@pytest.mark.slow
def test_the_selected_target_model_is_saved_and_predicts_what_the_record_says(cache_dir: Path, tmp_path: Path):
    saved, record = run_demo_cell(cache_dir, tmp_path / "saved", *FAST, "trainer.save_target_model=true")
    folder = record / records.TARGET_MODEL
    assert saved[records.TARGET_MODEL] == {
        "path": records.TARGET_MODEL,
        "auto_class": "AutoModelForSequenceClassification",
        "selection": "en_dev",
        "step": saved["selected_steps"]["en_dev"]["test"]["en"],
    }
    assert not (record / ".target").exists()  # the target's scratch folder is gone once the record is written
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "different", "1": "paraphrase"}
    predicted = predict_with_the_saved_model(folder, cache_dir, tmp_path / "saved")
    assert predicted == recorded(record, "en_dev") and len(set(predicted.values())) == 2  # it learned something
    # off by default; and saving changes no number of the record
    plain, plain_record = run_demo_cell(cache_dir, tmp_path / "plain", *FAST)
    assert not (plain_record / records.TARGET_MODEL).exists() and records.TARGET_MODEL not in plain
    assert plain["scores"] == saved["scores"] and plain["selected_steps"] == saved["selected_steps"]
    assert identify(compose(*demo_overrides(cache_dir, tmp_path, *FAST, "trainer.save_target_model=true"))).path == (
        identify(compose(*demo_overrides(cache_dir, tmp_path, *FAST))).path
    )  # the same cell: not a variant


@pytest.mark.slow
def test_the_averaged_target_can_be_saved_instead(cache_dir: Path, tmp_path: Path):
    extra = ("trainer.save_target_model=true", "trainer.target_model_selection=average")
    saved, record = run_demo_cell(cache_dir, tmp_path / "results", *FAST, *extra)
    assert saved[records.TARGET_MODEL]["selection"] == "average"
    folder = record / records.TARGET_MODEL
    assert predict_with_the_saved_model(folder, cache_dir, tmp_path / "results", *extra) == recorded(record, "average")


def test_a_target_without_an_auto_class_is_refused_before_any_work():
    with pytest.raises(XorderError, match=r"trainer.target_model_selection=oracle is invalid: must be one of en_dev"):
        compose("experiment=demo", "trainer.save_target_model=true", "trainer.target_model_selection=oracle")


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:minilm"])  # RoBERTa's head layout; BERT's pooler
def test_a_saved_target_computes_what_the_multi_task_model_computes(cache_dir: Path, tmp_path: Path, model: str):
    from transformers import AutoModelForSequenceClassification

    from xorder.config import ModelConfig, TaskConfig
    from xorder.encoders.base_model import resolve_path
    from xorder.pipeline.model import MultiTaskModel, load_backbone, load_tokenizer, save_target

    base = resolve_path(ModelConfig(name="m", path=model), str(cache_dir))
    tokenizer = load_tokenizer(base)
    labels = ["different", "paraphrase", "unrelated"]
    task = TaskConfig(name="t", kind="classification", label_names=labels)
    mine = MultiTaskModel(load_backbone(base), {"t": task}, {"t": labels}).eval()
    assert save_target(mine, "t", labels, tokenizer, mine.state_dict(), tmp_path / "out") == (
        "AutoModelForSequenceClassification"
    )
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    batch = tokenizer(
        ["a cat sat on the mat", "ein Hund"], ["the cat is on the mat", "a dog"], return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        assert torch.allclose(mine("t", dict(batch))[1], theirs(**batch).logits, atol=1e-6)
    assert theirs.config.id2label == dict(enumerate(labels))
