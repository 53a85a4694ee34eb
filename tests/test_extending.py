"""The README's "Extending xorder" files, copied into a folder outside the package: listed, prepared, run,
reported on by status, tabulated by `xorder report` — with --config-dir and with hydra.searchpath alike."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, xorder_cli
from xorder.data import synthetic

SECTION = "### Extending xorder"


def readme_files() -> dict[str, str]:
    """The yaml blocks of the README's section that start with a `# myconf/<group>/<name>.yaml` line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n### ", 1)]
    blocks = re.findall(r"```yaml\n# (myconf/\S+\.yaml)\n(.*?)```", section, re.DOTALL)
    return {path: body for path, body in blocks}


def write_reviews(path: Path, split: str, lang: str, rows: int) -> None:
    """Files in the README's column names, with the synthetic sentiment data the tiny model can learn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"review": e["text_a"], "polarity": "pos" if e["label"] else "neg"}, ensure_ascii=False)
        for e in synthetic.examples("sst2", "classification", split, lang, rows)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_the_readme_shows_a_task_a_target_and_an_order():
    assert set(readme_files()) == {
        "myconf/task/reviews.yaml",
        "myconf/target/reviews_x.yaml",
        "myconf/order/joint_then_english.yaml",
    }


@pytest.mark.slow
def test_own_task_target_and_order_run_prepare_status_and_report(cache_dir: Path, tmp_path: Path):
    for name, body in readme_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    data = tmp_path / "data"
    write_reviews(data / "reviews" / "train.jsonl", "train", "en", 300)
    write_reviews(data / "reviews" / "dev.jsonl", "dev", "en", 60)
    for lang in ("de", "fr"):
        write_reviews(data / "reviews" / lang / "train.jsonl", "train", lang, 300)
        write_reviews(data / "reviews" / lang / "dev.jsonl", "dev", lang, 60)
    # the target trains on the task's reviews and is judged on its own draws (the task's dev set would be a leak
    # xorder refuses)
    write_reviews(data / "reviews_x" / "train-en.jsonl", "train", "en", 300)
    for lang in ("de", "en", "fr"):
        for split in ("dev", "test"):
            write_reviews(data / "reviews_x" / f"{split}-{lang}.jsonl", f"x-{split}", lang, 60)
    results = tmp_path / "results"
    cell = [
        "task=reviews",
        "target=reviews_x",
        "order=joint_then_english",
        "model=tiny",
        "trainer=smoke",
        f"data_root={data}",
        f"cache_dir={cache_dir}",
        f"results_dir={results}",
        "trainer.lr=1e-3",
        "trainer.batch_size=32",
        "trainer.max_length=64",
        "trainer.intermediate.max_steps=6",
        "trainer.target.epochs=6",  # 60 steps: the sentiment is learned (a target that did not is degenerate, not done)
        "trainer.target.max_steps=60",
        "trainer.eval_every=6",
    ]
    folder = ["--config-dir", str(tmp_path / "myconf")]
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"

    listing = xorder_cli("tasks", *folder)
    assert listing.returncode == 0, listing.stderr
    assert "\n  reviews " in listing.stdout and "\n  reviews_x " in listing.stdout
    assert "\n  joint_then_english  joint -> english -> target " in listing.stdout
    assert "languages: de en fr" in listing.stdout

    prepared = xorder_cli("prepare", *folder, *cell, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert "  data   reviews_x test (local): de=60 en=60 fr=60 rows" in prepared.stdout

    missing = xorder_cli("status", searchpath, *cell, cwd=tmp_path)
    assert missing.returncode == 1 and " missing " in missing.stdout, missing.stdout + missing.stderr

    run = xorder_cli("run", *folder, *cell, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    [record] = list(results.glob("**/metrics.json"))
    assert re.fullmatch(
        r"reviews_x/joint_then_english/reviews/translate_train/tiny/local-[0-9a-f]{8}/seed1",
        record.parent.relative_to(results).as_posix(),
    )
    metrics = json.loads(record.read_text())
    assert [s["name"] for s in metrics["stages"]] == ["joint", "english", "target"]
    assert set(metrics["scores"]["en_dev"]["test"]) == {"de", "en", "fr"}

    for form in (folder, [searchpath]):
        done = xorder_cli("status", *form, *cell, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[1].startswith(record.parent.relative_to(results).as_posix() + "  done ")

    tables = xorder_cli("report", "--results", str(results), "--out", str(tmp_path / "tables"), "--resamples", "9")
    assert tables.returncode == 0, tables.stderr
    md = (tmp_path / "tables" / "tables.md").read_text()
    assert (
        "### reviews_x (data: local) · tiny · test · accuracy" in md
        and "| reviews | " in md
        and "joint_then_english" in md
    )
