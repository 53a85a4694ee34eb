"""Every value of a config is checked before any work (xorder.checks): one line naming the key, the value and
what is valid, exit status 2, nothing written. Most cases call the checks directly on a composed config; the
CLI cases show the same through `xorder run` (Hydra callback before any output directory, and per cell)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose, xorder_cli
from xorder import checks, config_tree, kinds
from xorder.errors import XorderError
from xorder.runtime import directories

FAST = ("order=none", "trainer.target.max_steps=2", "trainer.eval_every=2")  # quick if a check ever lets it run


@pytest.fixture(scope="module")
def demo():
    return compose("experiment=demo")


def _error(cfg, check=checks.config) -> str:
    with pytest.raises(XorderError) as err:
        check(cfg)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def _with(base, **values):
    cfg = copy.deepcopy(base)
    for key, value in values.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


# (key, value, the value as the message shows it, what the message must say is valid)
BAD = [
    ("trainer.lr", -1.0, "-1.0", "must be > 0"),
    ("trainer.lr", 0.0, "0.0", "must be > 0"),
    ("trainer.intermediate.lr", -1e-3, "-0.001", "must be > 0"),
    ("trainer.target.lr", 0.0, "0.0", "must be > 0"),
    *[(f"trainer.{key}", 0, "0", "must be >= 1") for key in checks.COUNTS],
    ("trainer.log_every", -5, "-5", "must be >= 1"),
    ("trainer.multilingual.batch_size", 0, "0", "must be >= 1"),
    ("trainer.target.grad_accum", -1, "-1", "must be >= 1"),
    ("trainer.intermediate.epochs", -1.0, "-1.0", "must be > 0"),
    ("trainer.target.epochs", 0.0, "0.0", "must be > 0"),
    ("trainer.target.max_steps", 0, "0", "must be >= 1"),
    ("trainer.multilingual.max_steps", -3, "-3", "must be >= 1"),
    ("trainer.intermediate.eval_examples", 0, "0", "must be >= 1"),
    ("trainer.intermediate.max_examples_per_task", 0, "0", "must be >= 1"),
    ("seed", -1, "-1", "must be >= 0"),
    ("cells_per_gpu", 0, "0", "must be >= 1 (1: a GPU per cell)"),
    ("trainer.warmup_ratio", 1.0, "1.0", "must be in [0, 1)"),
    ("trainer.warmup_ratio", -0.1, "-0.1", "must be in [0, 1)"),
    ("trainer.weight_decay", -0.01, "-0.01", "must be >= 0"),
    ("trainer.max_grad_norm", -1.0, "-1.0", "must be >= 0"),
    ("trainer.adam_epsilon", 0.0, "0.0", "must be > 0"),
    ("trainer.patience", 0, "0", "must be >= 1"),
    ("trainer.precision", "fp8", "fp8", "must be one of auto, bf16, fp16, no"),
    ("trainer.sampling", "random", "random", "must be one of proportional, temperature, uniform"),
    ("trainer.compile", "fast", "fast", "must be one of default, reduce-overhead, max-autotune"),
    ("trainer.sampling_temperature", 0.0, "0.0", "must be > 0"),
    ("trainer.sampling_temperature", float("nan"), "nan", "must be a finite number"),
    ("multilingual.mlm_probability", 0.0, "0.0", "must be in (0, 1)"),
    ("multilingual.mlm_probability", 1.0, "1.0", "must be in (0, 1)"),
    ("trainer.max_examples_per_task", 0, "0", "must be >= 1"),
    ("multilingual.max_examples_per_language", 0, "0", "must be >= 1"),
    ("data.synthetic_examples", 15, "15", "must be >= 16"),
    ("trainer.trackers", ["tensorboard", "neptune"], "[tensorboard,neptune]", "not one of tensorboard, mlflow, wandb"),
    ("task.mnli.kind", "regresion", "regresion", "must be one of " + ", ".join(kinds.names())),
    ("target.kind", "pairs", "pairs", "must be one of " + ", ".join(kinds.names())),
    ("task.mnli.metrics", ["pearson"], "[pearson]", "not a classification metric (accuracy, f1 or evaluate:"),
    ("target.metrics", ["exact_match"], "[exact_match]", "not a classification metric (accuracy, f1 or evaluate:"),
    (
        "task.mnli.source",
        "nosuch",
        "nosuch",
        "task mnli has no data source named 'nosuch' (available: hub, local, synthetic)",
    ),
    (
        "task.mnli.translation_source",
        "nosuch",
        "nosuch",
        "task mnli has no machine-translated training data named 'nosuch' (available: hub, local",
    ),
    (
        "target.source",
        "nosuch",
        "nosuch",
        "target pawsx has no data source named 'nosuch' (available: hub, xtreme, xfinal, synthetic)",
    ),
    ("data.source", "nosuch", "nosuch", "valid: hub, local, synthetic, xfinal, xtreme"),
    ("target.languages", ["de", "xx"], "[de,xx]", "'xx' is not a language of target's synthetic source (valid: de, en"),
    ("target.train_language", "xx", "xx", "target's synthetic source has no such language (valid: de, en"),
    ("multilingual.languages", ["de", "xx"], "[de,xx]", "'xx' is not a language of task mnli's synthetic translations"),
]


@pytest.mark.parametrize("key,value,shown,valid", BAD, ids=[f"{k}={s}" for k, _, s, _ in BAD])
def test_nonsense_value_is_one_line_naming_key_value_and_valid_range(demo, key, value, shown, valid):
    cfg = _with(demo, **{key: value})
    if key.endswith("epochs"):
        OmegaConf.update(cfg, key.rsplit(".", 1)[0] + ".max_steps", None, merge=False)  # epochs alone decide
    message = _error(cfg)
    assert f"{key}={shown} is invalid" in message, message
    assert valid in message, message


def test_configs_compose_checks_too():
    """status, prepare and tests compose through config_tree.compose: the same checks."""
    with pytest.raises(XorderError, match=r"trainer\.lr=-1\.0 is invalid: must be > 0"):
        config_tree.compose(["experiment=demo", "trainer.lr=-1"])
    with pytest.raises(XorderError, match="data.source=nosuch is invalid"):
        config_tree.compose(["data.source=nosuch"])


@pytest.mark.parametrize(
    "override,unknown,hint",
    [
        ("+trainer.lrr=1", "trainer.lrr", "did you mean trainer.lr?"),
        ("+foo=1", "foo", "valid keys of the top level: model, task"),
        (
            "+task.mnli.sources.hub.langs=[en]",
            "task.mnli.sources.hub.langs",
            "did you mean task.mnli.sources.hub.languages?",
        ),
        ("+trainer.target.max_step=3", "trainer.target.max_step", "did you mean trainer.target.max_steps?"),
        (
            "+multilingual.text.sources.hub.splits.train.lang=[de]",
            "multilingual.text.sources.hub.splits.train.lang",
            "did you mean multilingual.text.sources.hub.splits.train.languages?",
        ),
    ],
)
def test_plus_override_of_an_unknown_key_is_refused(override, unknown, hint):
    # Hydra opens the node for a `+key` (struct mode only refuses plain `key=`), so the schema decides
    with pytest.raises(XorderError) as err:
        config_tree.compose(["experiment=demo", "multilingual=mlm", override])
    message = str(err.value)
    assert f"unknown key {unknown} " in message and hint in message and "\n" not in message, message


def test_plus_overrides_the_schema_allows_and_hydra_overrides_still_work(tmp_path: Path):
    cfg = config_tree.compose_hydra(
        [
            "experiment=demo",
            "+task.mnli.sources.hub.columns.id=idx",  # columns: a free-form table
            "hydra/launcher=local",
            "hydra.launcher.timeout_min=5",
            "+hydra.job.env_set.FOO=1",
            f"results_dir={tmp_path}",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    assert cfg.task.mnli.sources.hub.columns.id == "idx" and cfg.hydra.launcher.timeout_min == 5
    checks.config(cfg)
    directories.writable(cfg)
    assert list(tmp_path.iterdir()) == []  # the checks create nothing


@pytest.mark.slow
@pytest.mark.parametrize("group", ["experiment", "model", "target", "order", "multilingual", "trainer"])
def test_every_shipped_option_passes(group: str, tmp_path: Path):
    for option in config_tree.options(group):
        cfg = compose(f"{group}={option}", f"results_dir={tmp_path / 'r'}", f"cache_dir={tmp_path / 'c'}")
        checks.config(cfg)
        directories.writable(cfg)


def test_languages_of_the_study_pass_and_any_language_source_accepts_any(demo):
    real = compose("multilingual=translate_train", "order=english_first")  # mnli's hub translations lack it, ja, ...
    assert "it" in real.multilingual.languages and "it" not in real.task.mnli.translations.hub.languages
    checks.config(real)  # the list is study-wide: each source uses those it has
    assert "'dk' is a language no source has" in _error(_with(real, **{"multilingual.languages": ["de", "dk"]}))
    wiki = compose("multilingual=mlm", "multilingual.languages=[de,sco]")  # wikipedia: languages null, any code
    checks.config(wiki)
    with pytest.raises(XorderError, match="'sco' is not a language of the synthetic text of multilingual=mlm"):
        compose("multilingual=mlm", "multilingual.languages=[de,sco]", "data.source=synthetic")
    checks.config(_with(demo, **{"order.stages": []}, **{"multilingual.languages": ["xx"]}))  # no multilingual stage


def test_every_kind_names_the_metrics_it_can_score():
    from xorder.kinds import metrics

    for name in kinds.names():
        assert kinds.get(name).metrics, name
    assert set(kinds.get("regression").metrics) == set(metrics.SCORES)
    assert set(kinds.get("extractive_qa").metrics) == set(metrics.SPAN)
    assert "accuracy" not in kinds.get("regression").metrics  # accuracy of a score would fail after training


# ----------------------------------------------------------------------------------------------- directories


def test_results_and_cache_dir_that_cannot_be_created(demo, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for key in ("results_dir", "cache_dir"):
        message = _error(_with(demo, **{key: str(blocker / "sub")}), directories.writable)
        assert f"{key}={blocker / 'sub'} cannot be created: {blocker} is not a directory" in message
        message = _error(_with(demo, **{key: str(blocker)}), directories.writable)
        assert f"{key}={blocker} is not a directory" in message
    directories.writable(_with(demo, results_dir=str(tmp_path / "new" / "deep"), cache_dir=str(tmp_path / "c")))
    assert not (tmp_path / "new").exists()


def test_read_only_results_dir(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: give it the answer the OS gives every other user
        real = os.access
        monkeypatch.setattr(directories.os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    try:
        message = _error(_with(demo, results_dir=str(locked / "r")), directories.writable)
        assert f"results_dir={locked / 'r'} cannot be created: {locked} is not writable" in message
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_submitit_refuses_a_results_dir_other_users_can_write(tmp_path: Path, launcher: str):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    shared = tmp_path / "shared"
    shared.mkdir()

    composed = config_tree.compose_hydra([f"hydra/launcher={launcher}", f"cache_dir={tmp_path / 'cache'}"])
    assert "submitit" in composed.hydra.launcher._target_

    def check(results: Path) -> None:
        directories.writable(_with(composed, results_dir=str(results)))  # the submitit folder follows results_dir

    for mode, who in ((0o777, "its group and all users"), (0o770, "its group"), (0o1757, "all users")):
        shared.chmod(mode)
        with pytest.raises(XorderError) as err:
            check(shared)
        message = str(err.value)
        assert (
            f"results_dir={shared} is unsafe for the submitit (Slurm) launcher: {shared} is writable by {who}"
            in message
        ), message
        assert "runs their code as you" in message and f"chmod go-w {shared}" in message and "\n" not in message
    with pytest.raises(XorderError, match=f"fix: mkdir -p -m 700 {shared / 'r'}"):
        check(shared / "r")  # created later inside a directory others can write: they could create it first
    shared.chmod(0o755)
    check(shared)  # private: fine
    (shared / ".submitit").mkdir(mode=0o777)
    (shared / ".submitit").chmod(0o777)
    with pytest.raises(XorderError, match=r"\.submitit is writable by its group and all users"):
        check(shared)  # submitit's own folder inside it


def test_other_launchers_do_not_mind_shared_results_dirs(tmp_path: Path):
    tmp_path.chmod(0o777)
    try:
        directories.writable(config_tree.compose_hydra([f"results_dir={tmp_path}", f"cache_dir={tmp_path}"]))
        directories.writable(compose(f"results_dir={tmp_path}", f"cache_dir={tmp_path}"))  # no Hydra config at all
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.slow
def test_checks_import_nothing_heavy():
    code = (
        "import sys, xorder.checks; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'numpy', 'hydra', 'datasets'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------------ CLI


def _refused(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xorder: error: "), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "override,needles",
    [
        ("+trainer.lrr=1", ("unknown key trainer.lrr", "did you mean trainer.lr?")),
        ("trainer.target.epochs=-1", ("trainer.target.epochs=-1.0 is invalid: must be > 0",)),
        ("data.source=nosuch", ("data.source=nosuch is invalid", "valid: hub, local, synthetic")),
        ("target.languages=[xx]", ("target.languages=[xx] is invalid", "valid: de, en, es, fr, ja, ko, zh")),
    ],
)
@pytest.mark.slow
def test_cli_refuses_before_writing_anything(tmp_path: Path, override: str, needles: tuple[str, ...]):
    results = tmp_path / "results"
    epochs = ("trainer.target.max_steps=null",) if "epochs" in override else ()
    out = xorder_cli(
        "run",
        "experiment=demo",
        *FAST,
        *epochs,
        f"results_dir={results}",
        f"cache_dir={tmp_path / 'cache'}",
        override,
        timeout=300,
    )
    _refused(out, *needles)
    assert not results.exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_cli_results_dir_under_a_file(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = xorder_cli(
        "run", "experiment=demo", *FAST, f"results_dir={blocker / 'r'}", f"cache_dir={tmp_path / 'c'}", timeout=300
    )
    _refused(out, f"results_dir={blocker / 'r'} cannot be created: {blocker} is not a directory")


@pytest.mark.slow
def test_cli_slurm_launcher_refuses_a_shared_results_dir_before_submitting(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    out = xorder_cli(
        "run",
        "-m",
        "hydra/launcher=local",
        "experiment=demo",
        *FAST,
        f"results_dir={shared}",
        f"cache_dir={tmp_path / 'c'}",
        timeout=300,
    )
    _refused(out, "is writable by its group and all users (mode 0777)", f"chmod go-w {shared}")
    assert list(shared.iterdir()) == []  # no job was pickled


@pytest.mark.slow
def test_cli_sweep_checks_every_cell(tmp_path: Path):
    """Sweep values reach the cells only: each cell checks its own and is recorded failed, none trains."""
    out = xorder_cli(
        "run",
        "-m",
        "experiment=demo",
        *FAST,
        "seed=-1,-2",
        f"results_dir={tmp_path / 'r'}",
        f"cache_dir={tmp_path / 'c'}",
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "seed=-1 is invalid: must be >= 0" in out.stderr and "seed=-2 is invalid: must be >= 0" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "r").rglob("metrics.json")) and not (tmp_path / "c").exists()
