"""`xorder prepare`: expands grids like `run -m`, fetches and validates what every cell reads, checks it offline
and says what compute nodes need; a run that is offline with nothing cached exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compose, demo_overrides, xorder_cli
from test_sources import bad_pawsx_tree, write_hub_dir
from xorder.config_tree import expand
from xorder.data import fetch
from xorder.errors import XorderError
from xorder.grid import prepare
from xorder.plan import plan, to_typed

FAST = (
    "trainer.intermediate.max_steps=6",
    "trainer.multilingual.max_steps=6",
    "trainer.target.max_steps=6",
    "trainer.eval_every=6",
)


def write_corpus(root: Path, languages: list[str], rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    configs = []
    for lang in languages:
        (root / lang).mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table({"text": [f"{lang} paragraph number {i} ." for i in range(rows)]}),
            root / lang / "train-00000-of-00001.parquet",
        )
        configs.append(f"- config_name: {lang}\n  data_files:\n  - split: train\n    path: {lang}/train-*")
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n")
    return root


def test_expand_uses_hydras_sweeper_and_refuses_a_sweep_without_m():
    cells = expand(
        [
            "-m",
            "experiment=demo",
            "target=pawsx,sts",
            "seed=range(1,3)",
            "task=[mnli,qqp]",
            "hydra/launcher=slurm",
            "hydra.sweep.dir=x",
        ]
    )
    assert len(cells) == 4
    assert all("task=[mnli,qqp]" in c and not any(o.startswith("hydra") for o in c) for c in cells)
    assert {(c[1], c[2]) for c in cells} == {
        ("target=pawsx", "seed=1"),
        ("target=pawsx", "seed=2"),
        ("target=sts", "seed=1"),
        ("target=sts", "seed=2"),
    }
    with pytest.raises(XorderError, match=r"'target=pawsx,sts' is a sweep: add -m"):
        expand(["target=pawsx,sts"])


def test_expand_reads_the_sweeps_of_presets_and_lets_the_command_line_win():
    grid = expand(["-m", "experiment=demo_grid"])
    assert len(grid) == 24  # 3 orders x 2 tasks x 2 targets x 2 seeds
    assert len({tuple(sorted(c)) for c in grid}) == 24
    narrowed = expand(["-m", "experiment=demo_grid", "seed=5", "order=english_first,multilingual_first"])
    assert len(narrowed) == 8 and all("seed=5" in c for c in narrowed)


@pytest.mark.slow
def test_prepare_lists_exactly_what_the_stages_read(cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The walk of `prepare` over a cell's stages equals the loads that `data.stage.prepare` makes."""
    from xorder.data import stage as stage_module
    from xorder.encoders import tiny
    from xorder.pipeline.model import load_tokenizer

    overrides = [
        "experiment=demo",
        f"cache_dir={cache_dir}",
        "order=joint",
        "task=[mnli,hellaswag]",
        "target=sts",
        "data.synthetic_examples=40",
        "multilingual.languages=[de,fr]",
    ]
    _, wanted = prepare.collect([overrides])
    seen = []
    real = stage_module.load_split
    monkeypatch.setattr(
        stage_module,
        "load_split",
        lambda task, source, role, lang, **kw: (
            seen.append((task.name, role, lang, kw.get("max_examples"))),
            real(task, source, role, lang, **kw),
        )[1],
    )
    cfg = to_typed(compose(*overrides))
    tokenizer = load_tokenizer(str(tiny.ensure(cache_dir)))
    for stage in plan(cfg):
        stage_module.prepare(stage, tokenizer, stage_module.DataSettings(str(cache_dir), 40))
    assert sorted(set(seen)) == sorted({(n.task.name, n.role, n.lang, n.cap) for n in wanted})
    # translate-train data is read whole and subsampled per language; only streamed text stops at the cap
    assert ("sts", "sts17", "tr-en", None) in seen and ("hellaswag", "train", "fr", None) in seen


@pytest.mark.slow
def test_prepare_grid_caches_a_streamed_corpus_that_an_offline_run_then_reads(cache_dir: Path, tmp_path: Path):
    hub = write_hub_dir(tmp_path / "paws-hub", languages=("de", "en", "es", "fr", "ja", "ko", "zh"), rows=12)
    corpus = write_corpus(tmp_path / "wiki", ["de", "fr"], rows=540)
    cell = [
        *demo_overrides(cache_dir, tmp_path / "results"),
        "multilingual=mlm",
        "multilingual.languages=[de,fr]",
        "target.source=hub",
        f"target.sources.hub.path={hub}",
        "target.sources.hub.splits.dev.split='validation[:6]'",
        "target.sources.hub.splits.test.split='validation[6:]'",
        "multilingual.text.source=hub",
        f"multilingual.text.sources.hub.path={corpus}",
        "multilingual.text.sources.hub.name='{lang}'",
        *FAST,
    ]
    out = xorder_cli("prepare", "-m", *cell, "order=none,multilingual_only", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("xorder prepare: 2 cells, 1 model, ")
    assert f"  data   mlm train (hub): de=40 fr=40 rows; {corpus}/de [train]" in out.stdout  # rows 501-540
    assert "  data   pawsx dev (hub): de=6 en=6 es=6 fr=6 ja=6 ko=6 zh=6 rows" in out.stdout
    assert "checked offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1): 1 model(s) and " in out.stdout
    assert "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" in out.stdout and f"cache_dir={cache_dir}" in out.stdout
    assert "local files are read in place" not in out.stdout  # every source here is a hub one
    assert len(list((cache_dir / "corpora").glob("*-540-all.parquet"))) == 2  # one stream per language, kept
    corpus.rename(tmp_path / "wiki-gone")  # the corpus is gone: the cell reads what prepare kept
    run = xorder_cli("run", *cell, "order=multilingual_only", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert list((tmp_path / "results").glob("pawsx/multilingual_only/**/metrics.json"))


@pytest.mark.slow
def test_offline_with_nothing_cached_exits_2_telling_to_run_prepare(cache_dir: Path, tmp_path: Path):
    env = {"HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    hub_target = demo_overrides(cache_dir, tmp_path / "results", "order=none", "target.source=hub")
    for command in ("run", "prepare"):
        out = xorder_cli(command, *hub_target, env=env, cwd=tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("xorder: error:")]
        assert len(errors) == 1
        assert errors[0].startswith(
            "xorder: error: google-research-datasets/paws-x/en [train] is not in the datasets "
            "cache and this machine is offline (HF_HUB_OFFLINE=1): run `xorder prepare`"
        )
    model = xorder_cli(
        "run", *demo_overrides(cache_dir, tmp_path / "results", "order=none", "model=xlmr_base"), env=env, cwd=tmp_path
    )
    assert model.returncode == 2 and "Traceback" not in model.stderr
    assert "model 'FacebookAI/xlm-roberta-base' is not in the Hugging Face cache" in model.stderr
    assert "xorder prepare" in model.stderr and "model.path" in model.stderr


@pytest.mark.slow
def test_prepare_stops_at_a_malformed_file_with_one_line(cache_dir: Path, tmp_path: Path):
    data = bad_pawsx_tree(tmp_path / "data")
    out = xorder_cli(
        "prepare",
        *demo_overrides(cache_dir, tmp_path / "results", "order=none", "target.source=xtreme", f"data_root={data}"),
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"xorder: error: {data}/pawsx/train-en.tsv: row 7: column 'label': label 'paraphrase' is not a class number "
        "(map names to ids with labels: {name: id})"
    )
    cells = [demo_overrides(cache_dir, tmp_path, "experiment=demo_sts_real", "data_root=/data/shared")]
    assert prepare.local_folders(prepare.collect(cells)[1]) == ["/data/shared"]  # stsb_multi_mt/ and sts17/ inside
    bad = xorder_cli("prepare", "--frobnicate")
    assert bad.returncode == 2 and "prepare does not take '--frobnicate'" in bad.stderr


@pytest.mark.slow
def test_validate_checks_the_target_before_any_intermediate_stage_trains(cache_dir: Path, tmp_path: Path):
    data = bad_pawsx_tree(tmp_path / "data")
    cfg = compose(
        *demo_overrides(
            cache_dir, tmp_path / "results", "order=english_first", "target.source=xtreme", f"data_root={data}"
        )
    )
    with pytest.raises(XorderError, match=r"pawsx/train-en\.tsv: row 7: column 'label'"):
        fetch.validate(cfg)
    stages = plan(to_typed(cfg))
    assert fetch.validate(cfg, stages[:2]) > 0  # the synthetic intermediate stages alone are fine


@pytest.mark.slow
def test_a_bad_target_file_stops_the_cell_before_any_stage_trains(cache_dir: Path, tmp_path: Path):
    from conftest import fresh_cache, run_demo_cell

    data = bad_pawsx_tree(tmp_path / "data")
    cache = fresh_cache(cache_dir, tmp_path / "cache")
    with pytest.raises(XorderError, match=r"pawsx/train-en\.tsv: row 7: column 'label'"):
        run_demo_cell(cache, tmp_path / "results", "order=english_first", "target.source=xtreme", f"data_root={data}")
    assert not list(cache.glob("stages/*/DONE"))  # not even the English stage was trained


_LEAN = """
import json, sys
from xorder.grid import prepare
check = prepare.verify_offline
loaded = {}

def spy(cells, part):  # what this process holds while a check's child process runs
    loaded[part] = sorted({"torch", "transformers", "datasets", "pyarrow"} & set(sys.modules))
    return check(cells, part)

prepare.verify_offline = spy
cells = [json.loads(sys.argv[1])]
code = prepare.main(cells[0])
assert code == 0, code
prepare._check_offline(cells, "data")  # what the data check's child process does
print(json.dumps([loaded, sorted({"torch", "transformers"} & set(sys.modules))]))
"""


@pytest.mark.slow
def test_prepare_reads_and_checks_data_without_importing_torch(cache_dir: Path, tmp_path: Path):
    """`xorder prepare` and its offline check of the data never import torch or transformers (a few hundred MB of
    resident memory that preparing data does not use); only the model check's own process loads them, while the
    command holds no data libraries yet."""
    import json
    import subprocess
    import sys

    overrides = demo_overrides(cache_dir, tmp_path, "order=none", "model=minilm", "data.synthetic_examples=40")
    out = subprocess.run(
        [sys.executable, "-c", _LEAN, json.dumps(overrides)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 model(s) and 15 data split(s) load without the network" in out.stdout
    loaded, held = json.loads(out.stdout.splitlines()[-1])
    assert loaded == {"models": [], "data": ["datasets", "pyarrow"]}  # the model check before the data is read
    assert held == []
