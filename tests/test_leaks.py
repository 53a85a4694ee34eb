"""Leak checks: evaluation pairs that any stage of a cell trained or was selected on leave the evaluation, with
their translations (same `item`); a selection set that another stage trained on refuses the cell; key sets are
cached so that big data is hashed once."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from conftest import compose, xorder_cli
from xorder.config import SourceConfig, TaskConfig
from xorder.data import canonical, leaks
from xorder.errors import XorderError
from xorder.plan import plan

TASK = TaskConfig(name="nli", kind="classification", label_names=["a", "b", "c"])


def rows(split: str, lang: str, pairs: list[tuple[str, str]], items: list[str] | None = None) -> datasets.Dataset:
    items = items or [f"{split}-{i}" for i in range(len(pairs))]
    return datasets.Dataset.from_list(
        [
            {"text_a": a, "text_b": b, "label": 0, "id": f"{split}-{lang}-{i}", "item": item, "language": lang}
            for i, ((a, b), item) in enumerate(zip(pairs, items))
        ]
    )


EN = [("A man sleeps.", "Nobody sleeps."), ("Dogs bark.", "Animals make noise."), ("It rains.", "It is wet.")]
DE = [("Ein Mann schläft.", "Niemand schläft."), ("Hunde bellen.", "Tiere lärmen."), ("Es regnet.", "Es ist nass.")]


def seen(label: str, pairs: list[tuple[str, str]], texts: bool = False, other: bool = True) -> leaks.Seen:
    data = rows("train", "en", pairs)
    keys = np.unique((leaks.text_keys if texts else leaks.pair_keys)(data, TASK).ravel())
    return leaks.Seen(label, keys, texts, other)


def test_a_seen_pair_leaves_every_language_with_its_item():
    """The English stage trained on test pair 1 (its texts swapped, spaced and cased differently): it leaves test/en
    and, through its item, test/de, whose German text no key could match."""
    sets = {("test", "en"): rows("test", "en", EN), ("test", "de"): rows("test", "de", DE)}
    stage = seen("the english stage's mnli training data", [("animals  make NOISE.", "Dogs bark.")])
    kept, notes = leaks.exclude(TASK, sets, [stage], ("dev", "en"))
    assert kept[("test", "en")]["item"] == kept[("test", "de")]["item"] == ["test-0", "test-2"]
    assert notes == [
        "test/en: 1 of 3 pairs excluded from evaluation (1 in the english stage's mnli training data)",
        "test/de: 1 of 3 pairs excluded from evaluation (1 translations of pairs excluded in another language)",
    ]


def test_unaligned_items_leave_only_their_own_row():
    sets = {
        ("sts17", "en-en"): rows("sts17", "en-en", EN, ["en-en:0", "en-en:1", "en-en:2"]),
        ("sts17", "es-es"): rows("sts17", "es-es", DE, ["es-es:0", "es-es:1", "es-es:2"]),
    }
    kept, _ = leaks.exclude(TASK, sets, [seen("x", [EN[0]])], ("dev", "en"))
    assert len(kept[("sts17", "en-en")]) == 2 and len(kept[("sts17", "es-es")]) == 3


def test_masked_lm_text_is_looked_up_one_sentence_at_a_time():
    """A multilingual MLM stage read the German premise of pair 2 as plain text: that pair leaves, with its item."""
    sets = {("test", "en"): rows("test", "en", EN), ("test", "de"): rows("test", "de", DE)}
    mlm = seen("the multilingual stage's mlm training data", [("Es regnet.", "unrelated text")], texts=True)
    kept, notes = leaks.exclude(TASK, sets, [mlm], ("dev", "en"))
    assert kept[("test", "en")]["item"] == ["test-0", "test-1"]
    assert "test/de: 1 of 3 pairs excluded from evaluation (1 in the multilingual stage's mlm training data)" in notes


def test_a_selection_set_that_another_stage_trained_on_refuses_the_cell():
    sets = {("dev", "en"): rows("dev", "en", EN), ("test", "en"): rows("test", "en", EN)}
    with pytest.raises(XorderError, match=r"^nli dev/en, the set that selects the zero-shot checkpoint, holds 1 pairs"):
        leaks.exclude(TASK, sets, [seen("the english stage's xnli_dev training data", [EN[2]])], ("dev", "en"))


def test_the_selection_set_is_never_reduced_but_its_translations_of_training_pairs_leave():
    """The target trains on English pair 0, which its English dev set repeats: dev/en keeps it (it selects the
    checkpoint, and is not compared with itself), dev/de loses its translation."""
    sets = {("dev", "en"): rows("dev", "en", EN), ("dev", "de"): rows("dev", "de", DE)}
    own = seen("the target's training data", [EN[0]], other=False)
    selection = leaks.Seen("the target's selection data", leaks.pair_keys(sets[("dev", "en")], TASK), False, False)
    selection = leaks.Seen(selection.label, selection.keys, False, False, ("dev", "en"))
    kept, notes = leaks.exclude(TASK, sets, [own, selection], ("dev", "en"))
    assert len(kept[("dev", "en")]) == 3 and kept[("dev", "de")]["item"] == ["dev-1", "dev-2"]
    assert notes == [
        "dev/en: 1 of 3 pairs are also in the target's training data; kept, since this set selects the checkpoint, "
        "and their translations excluded from the other languages",
        "dev/de: 1 of 3 pairs excluded from evaluation (1 translations of pairs excluded in another language)",
    ]


def test_nothing_left_is_an_error():
    sets = {("test", "en"): rows("test", "en", EN[:1])}
    with pytest.raises(XorderError, match="nothing would be zero-shot"):
        leaks.exclude(TASK, sets, [seen("x", EN[:1])], ("dev", "en"))


def test_key_sets_are_cached_so_big_data_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = rows("train", "en", EN)
    first = leaks.seen("x", data, TASK, "identity-1", str(tmp_path), False)
    monkeypatch.setattr(leaks, "pair_keys", lambda *a: pytest.fail("hashed again"))
    again = leaks.seen("y", data, TASK, "identity-1", str(tmp_path), False)
    assert np.array_equal(first.keys, again.keys) and len(list((tmp_path / "keys").glob("*.npy"))) == 1


def test_shared_source_pairs_between_splits_are_noted():
    sets = {("sts17", "en-en"): rows("sts17", "en-en", EN[:2])}
    whole = {("test", "en"): leaks.pair_keys(rows("test", "en", EN), TASK), ("test", "de"): np.array([], np.uint64)}
    notes = leaks.shared_between_splits(TASK, sets, list(whole), whole.__getitem__)
    assert notes == [
        "sts17/en-en: 2 of its 2 evaluation pairs are pairs of test/en too (the same source pairs: not independent "
        "evidence)"
    ]


@pytest.mark.parametrize("aligned,item", [("id", "p-7"), ("row", "test-12"), ("none", "de:p-7"), (None, "de:p-7")])
def test_item_of_a_row_follows_the_source_alignment(aligned: str | None, item: str):
    view = SourceConfig(format="tsv", aligned=aligned)
    assert canonical.item_of(canonical.alignment(view), "p-7", "test", "de", 12) == item
    assert canonical.alignment(SourceConfig(format="synthetic")) == "id"


def test_an_unknown_alignment_is_a_config_error():
    with pytest.raises(XorderError, match=r"target\.sources\.synthetic\.aligned=rows is invalid: must be one of id"):
        compose("experiment=demo", "target.sources.synthetic.aligned=rows")  # composing checks every value


@pytest.mark.slow
def test_intermediate_training_on_the_targets_evaluation_pairs_is_refused(
    shared_data: Path, cache_dir: Path, tmp_path: Path
):
    """task=[xnli_dev] target=xnli: the English stage would train on XNLI dev pairs that select (and score) the
    target. The run exits 2 with one line before any stage trains."""
    cell = [
        "experiment=real_study_pawsx",
        "model=tiny",
        "target=xnli",
        f"data_root={shared_data}",
        f"cache_dir={cache_dir}",
        f"results_dir={tmp_path / 'results'}",
        "order=english_only",
        "target.source=xtreme",
        "target.sources.xtreme.path='${data_root}/xnli/xtreme_format/{split}-{lang}.tsv'",
        "target.sources.xtreme.splits.train.split='dev[2300:]'",
        "target.sources.xtreme.splits.dev.split='dev[:2300]'",
        "~target.sources.xtreme.splits.test",
        "target.languages=[de,en]",
        "seed=4242",  # stages no other test trains: the check below looks for this one's folder
    ]
    out = xorder_cli("run", *cell, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert "xnli dev/en, the set that selects the zero-shot checkpoint, holds" in errors[0]
    assert "the english stage's xnli_dev training data" in errors[0]
    english = plan(compose(*cell))[0]
    assert not (cache_dir / "stages" / english.hash).exists()  # refused before the English stage trained
