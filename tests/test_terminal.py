"""At the terminal: results on stdout and everything else on stderr, a closed pipe that ends a run quietly with its
record written, log lines above progress bars, the record's notes said at the end of a run, and mistakes that say
what to type (a misspelt key on the command line or in one's own yaml, the default model without a hub)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose, demo_overrides, xorder_cli
from xorder.errors import XorderError

FAST = ("order=none", "trainer.target.max_steps=6", "trainer.eval_every=6", "data.synthetic_examples=200")
REVIEWS = """reviews:
  name: reviews
  kindd: classification
  metrics: [accuracy]
  label_names: [negative, positive]
  default_source: local
  sources:
    local:
      format: jsonl
      path: /nowhere/reviews.jsonl
"""


@pytest.mark.slow
def test_overrides_then_cfg_job_print_the_config():
    """xorder's own callbacks come from its config, not from arguments appended after the user's."""
    out = xorder_cli("run", "experiment=demo", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "  name: tiny\n" in out.stdout and "unrecognized arguments" not in out.stderr


@pytest.mark.slow
def test_a_misspelt_key_names_the_key_the_closest_ones_and_every_valid_one(tmp_path: Path):
    out = xorder_cli("run", "trainer.lrr=1", f"results_dir={tmp_path / 'results'}")
    assert out.returncode == 2
    assert out.stderr.startswith("xorder: error: unknown key trainer.lrr: did you mean trainer.lr? valid keys of ")
    assert "trainer: name, precision, lr, " in out.stderr and "To append" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "myconf" / "task").mkdir(parents=True)
    (tmp_path / "myconf" / "task" / "reviews.yaml").write_text(REVIEWS)
    mine = xorder_cli("run", "--config-dir", str(tmp_path / "myconf"), "task=reviews")
    assert mine.returncode == 2
    assert mine.stderr.startswith(
        "xorder: error: unknown key task.reviews.kindd (in task/reviews.yaml): did you mean task.reviews.kind? "
        "valid keys of task.reviews: name, kind, "
    )
    assert not (tmp_path / "results").exists()
    (tmp_path / "myconf" / "task" / "reviews.yaml").write_text("reviews: {name: reviews, path: /x/{split}.jsonl}\n")
    broken = xorder_cli("run", "--config-dir", str(tmp_path / "myconf"), "task=reviews")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert broken.stderr.startswith("xorder: error: a config file does not parse: while parsing a flow mapping")
    assert "reviews.yaml" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1


def test_status_and_prepare_say_a_misspelt_key_the_same_way(tmp_path: Path):
    with pytest.raises(
        XorderError, match=r"^unknown key trainer.intermediate.epoch: did you mean trainer.intermediate"
    ):
        compose("trainer.intermediate.epoch=3")
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "reviews.yaml").write_text(REVIEWS)
    with pytest.raises(XorderError, match=r"^unknown key task.reviews.kindd \(in task/reviews.yaml\): did you mean"):
        compose(f"hydra.searchpath=[file://{tmp_path}]", "task=reviews")


@pytest.mark.slow
def test_results_on_stdout_logs_on_stderr_and_the_notes_said_last(cache_dir: Path, tmp_path: Path):
    out = xorder_cli("run", *demo_overrides(cache_dir, tmp_path, *FAST), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("pawsx / none / none / - / tiny / seed 1: accuracy, en_dev selection")
    assert lines[-1].startswith("record: ") and len(lines) == 2 + 7 + 1  # title, header, 7 languages, record
    assert "[xorder][INFO]" in out.stderr and "[xorder][INFO]" not in out.stdout
    metrics = json.loads(Path(lines[-1].removeprefix("record: ")).read_text())
    assert metrics["notes"]  # six target steps, one evaluation: at least that note
    said = [line.split(" - note: ", 1)[1] for line in out.stderr.splitlines() if " - note: " in line]
    assert said == metrics["notes"]
    assert out.stderr.rstrip().endswith(metrics["notes"][-1])  # the last word of the run


@pytest.mark.slow
def test_a_closed_pipe_ends_a_run_quietly_with_its_record_written(cache_dir: Path, tmp_path: Path):
    """`xorder run ... | head -2` whose reader is gone before the table: no BrokenPipe or logging errors, the exit
    status of a process that SIGPIPE ended, and the record and the run's last words all the same."""
    command = [sys.executable, "-m", "xorder", "run", *demo_overrides(cache_dir, tmp_path, *FAST, "seed=12")]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=600) == 141, err[-2000:]
    assert "BrokenPipe" not in err and "Logging error" not in err and "Traceback" not in err
    records = list(tmp_path.glob("**/seed12/metrics.json"))
    assert len(records) == 1
    notes = json.loads(records[0].read_text())["notes"]
    assert notes and err.rstrip().endswith(notes[-1])  # the run went on to its end after the reader left


def test_a_cells_log_lines_go_through_tqdm_while_it_can_show_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The app trains a cell with its console log handler (Hydra's, on stderr) swapped for tqdm's, and puts the
    handler back afterwards."""
    from xorder import app
    from xorder.pipeline import run

    seen: list[list[logging.Handler]] = []
    monkeypatch.setattr(run, "run_cell", lambda cfg, record_dir: seen.append(list(logging.getLogger().handlers)))
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    try:
        app._run(compose("experiment=demo", f"results_dir={tmp_path}"), str(tmp_path / "cell"), True, None)
        assert len(seen) == 1 and handler not in seen[0]
        assert any(type(h).__name__ == "_TqdmLoggingHandler" for h in seen[0])
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)


def test_the_default_model_offline_says_what_is_missing_and_what_provides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from xorder.pipeline.model import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(XorderError) as caught:
        load_tokenizer("FacebookAI/xlm-roberta-large")
    message = str(caught.value)
    assert message.startswith("model 'FacebookAI/xlm-roberta-large' is not in the Hugging Face cache (HF_HOME=")
    assert "this machine is offline (HF_HUB_OFFLINE=1): run `xorder prepare` with the same overrides on a " in message
    assert "or set model.path to a local model directory" in message
    assert "set HF_HUB_OFFLINE" not in message and "see how to run" not in message and "\n" not in message
