"""The plan: stages of each order with content hashes that say exactly which trained stages cells share."""

from __future__ import annotations

import pytest

from conftest import compose
from xorder.errors import XorderError
from xorder.plan import plan


def stages(*overrides: str):
    return plan(compose("data.source=synthetic", *overrides))


def hashes(*overrides: str) -> list[str]:
    return [s.hash for s in stages(*overrides)]


@pytest.mark.parametrize(
    "order,names",
    [
        ("none", ["target"]),
        ("english_only", ["english", "target"]),
        ("multilingual_only", ["multilingual", "target"]),
        ("english_first", ["english", "multilingual", "target"]),
        ("multilingual_first", ["multilingual", "english", "target"]),
        ("joint", ["joint", "target"]),
    ],
)
def test_each_order_has_the_stages_of_the_design_table(order: str, names: list[str]):
    assert [s.name for s in stages(f"order={order}")] == names


def test_english_first_and_multilingual_first_share_no_stage():
    first = hashes("order=english_first", "task=mnli")
    second = hashes("order=multilingual_first", "task=mnli")
    assert not set(first) & set(second)


def test_two_targets_share_every_stage_before_the_target():
    pawsx = hashes("order=english_first", "task=mnli", "target=pawsx")
    sts = hashes("order=english_first", "task=mnli", "target=sts")
    assert pawsx[:-1] == sts[:-1] and pawsx[-1] != sts[-1]


def test_english_only_and_english_first_share_their_english_stage():
    assert hashes("order=english_only")[0] == hashes("order=english_first")[0]


def test_a_stage_one_hyperparameter_changes_every_later_hash():
    base = hashes("order=english_first")
    changed = hashes("order=english_first", "trainer.intermediate.lr=2e-5")
    assert all(a != b for a, b in zip(base, changed))
    later_only = hashes("order=english_first", "trainer.target.epochs=4")
    assert later_only[:2] == base[:2] and later_only[2] != base[2]


@pytest.mark.slow
def test_seed_data_and_model_enter_every_hash():
    base = hashes("order=english_first")
    for override in (
        "seed=2",
        "model=tiny",
        "data.synthetic_examples=100",
        "multilingual.max_examples_per_language=10",
    ):
        changed = hashes("order=english_first", override)
        assert changed[-1] != base[-1], override
    assert hashes("order=english_first", "seed=2")[0] != base[0]


def test_logging_and_checkpoint_cadence_do_not_change_hashes():
    assert hashes("trainer.log_every=7", "trainer.save_every=9", "trainer.eval_batch_size=3") == hashes()


def test_multi_task_stage_is_independent_of_task_order():
    assert hashes("task=[mnli,qqp]", "order=joint") == hashes("task=[qqp,mnli]", "order=joint")


def test_translate_train_uses_only_languages_the_translations_have():
    (_, multilingual, _) = plan(compose("order=english_first", "task=mnli", "target=pawsx"))
    # XNLI's translations cover de, es, fr, ru and zh of the default languages, not it, ja, ko, nl, pl or pt
    assert multilingual.languages == ["de", "es", "fr", "ru", "zh"]
    (_, every, _) = plan(compose("order=english_first", "task=mnli", "multilingual.languages=null"))
    assert len(every.languages) == 14  # all of XNLI's translations


def test_translate_train_without_translations_is_a_user_error():
    with pytest.raises(XorderError, match="has no default machine-translated training data .* multilingual=mlm"):
        plan(compose("order=english_first", "task=qqp"))  # QQP has no translations on the hub
    with pytest.raises(XorderError, match="named 'nosuch' .available: local, synthetic"):
        plan(compose("order=english_first", "task=qqp", "task.qqp.translation_source=nosuch"))


def test_mlm_stage_reads_text_in_the_targets_languages():
    (_, multilingual, _) = stages("order=english_first", "multilingual=mlm")
    assert [c.variant for c in multilingual.components] == ["mlm"]
    assert multilingual.languages == ["de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "zh"]
    with pytest.raises(XorderError, match="multilingual.languages"):
        stages("order=english_first", "multilingual=mlm", "multilingual.languages=null")


@pytest.mark.slow
def test_record_axes_drop_what_the_order_does_not_use():
    from xorder.cell import identify
    from xorder.data.identity import config_hash

    assert identify(compose("order=none", "task=squad")).path == "pawsx/none/none/-/xlmr_large/hub/seed1"
    assert (
        identify(compose("order=english_only", "multilingual=mlm")).path
        == "pawsx/english_only/mnli/-/xlmr_large/hub/seed1"
    )
    mlm_only = identify(compose("order=multilingual_only", "multilingual=mlm", "task=qqp")).path
    assert mlm_only == "pawsx/multilingual_only/none/mlm/xlmr_large/hub/seed1"  # MLM text does not depend on the task
    assert config_hash(compose("order=none", "task=squad")) == config_hash(compose("order=none", "task=mnli"))
    assert config_hash(compose("order=none", "seed=2")) != config_hash(compose("order=none"))


def test_processes_enter_every_stage_hash():
    one = [s.hash for s in plan(compose("data.source=synthetic"), processes=1)]
    four = [s.hash for s in plan(compose("data.source=synthetic"), processes=4)]
    assert all(a != b for a, b in zip(one, four))  # batch_size is per process: 4 processes, 4x the batch


def test_translate_train_early_stopping_pairs_are_held_out_of_the_english_stage():
    """MNLI's translate-train stage early-stops on translations of MNLI's last 2000 training pairs: no stage of any
    order may train on their originals, or english_first and multilingual_first would be stopped differently."""
    from xorder.splits import overlapping, parse_split

    for order in ("english_first", "multilingual_first", "joint", "english_only"):
        cfg = compose(f"order={order}", "task=mnli")
        english = cfg.task.mnli.sources.hub.splits.train.split
        dev = cfg.task.mnli.translations.hub.splits.dev.split
        assert overlapping(parse_split(english), parse_split(dev)) is None
        plan(cfg)
    with pytest.raises(
        XorderError,
        match=r"task mnli: its translations early-stop on 'train\[-2000:\]', rows the "
        r"English source trains on \('train'\)",
    ):
        plan(compose("order=english_first", "task=mnli", "task.mnli.sources.hub.splits.train.split=train"))


def test_joint_stages_get_the_budget_of_the_sequential_orders():
    joint = stages("order=joint", "task=mnli", "trainer.intermediate.max_steps=30", "trainer.multilingual.max_steps=20")
    budget = {b.group: (b.epochs, b.max_steps) for b in joint[0].hparams.budget}
    assert budget == {"english": (3.0, 30), "multilingual": (1.0, 20)}
    summed = stages("order=joint", "task=mnli", "trainer.joint_budget=sum")
    assert summed[0].hparams.budget is None and summed[0].hash != stages("order=joint", "task=mnli")[0].hash


def test_targets_bring_their_own_epochs_length_and_evaluation_cadence():
    expected = {"pawsx": (5.0, 128, 10), "xnli": (2.0, 256, 10), "sts": (10.0, 128, 10)}
    for target, (epochs, max_length, evaluations) in expected.items():
        stage = stages("order=none", f"target={target}")[-1]
        assert (stage.hparams.epochs, stage.components[0].task.max_length, stage.hparams.evaluations) == (
            epochs,
            max_length,
            evaluations,
        )
    assert stages("order=none", "target=sts", "trainer.target.epochs=4")[-1].hparams.epochs == 4.0
