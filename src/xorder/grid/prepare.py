"""`xorder prepare OVERRIDES` (and `xorder prepare -m GRID`): fetch and cache everything a run or a grid
reads, check that it loads with the network switched off, and say what compute nodes need set.

Takes the very overrides of `xorder run`. For every cell it plans the stages, then for each stage the splits
and languages that stage reads (the same walk as `data/stage.py`), and the base model:
  - hub datasets are loaded once with `datasets.load_dataset` (into the datasets cache, HF_HOME); capped
    corpora (MLM text) stream their first rows into cache_dir/corpora;
  - local files are read and validated (a malformed file fails here, with its file, row and column);
  - hub models are downloaded with `huggingface_hub.snapshot_download` (config, tokenizer and one copy of the
    weights); builtin models are built into cache_dir;
  - metrics users bring (`evaluate:<hub id>`) are loaded once with `evaluate.load`, which caches their modules.
Child processes with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 load all of it again: one for the models, right
after they are fetched (before this process imports the data's libraries), one for the data and the metrics after
it. Neither holds the other's libraries (torch and the weights; datasets and the rows), and this process never reads
rows while the models are loaded: the command's peak memory is about its largest part, not their sum. A cell run
offline later finds everything in place; one that misses something exits 2 with one line saying to run this command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from xorder.config_tree import expand
from xorder.data.fetch import DataNeed, fetch_data, stage_needs
from xorder.data.hub import offline
from xorder.errors import XorderError
from xorder.kinds.metrics import check_external

USAGE = (
    "usage: xorder prepare [-m] [--config-dir DIR] [OVERRIDE ...]   (the overrides of `xorder run`; -m expands sweeps)"
)
_CHECK = "--check-offline"  # internal: the child process that loads everything with the network off
SMALL_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.py", "*.md"]


@dataclass(frozen=True)
class ModelNeed:
    path: str  # as configured: hub id, directory, builtin:...
    revision: str | None
    cache_dir: str

    @property
    def key(self) -> str:
        return json.dumps([self.path, self.revision, self.cache_dir])


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__.split("\n\n", 1)[1].rstrip())
        return 0
    if args and args[0] == _CHECK:
        return _check_offline(json.loads(args[2]), args[1])
    cells = expand(args, "prepare")
    models, data, metrics = _collect(cells)
    started = time.time()
    mode = "checking the caches (offline)" if offline() else "fetching"
    print(
        f"xorder prepare: {len(cells)} cell{'s' * (len(cells) != 1)}, {len(models)} model{'s' * (len(models) != 1)}, "
        f"{len(data)} data split{'s' * (len(data) != 1)}; {mode}"
    )
    for model in models:
        print(f"  model  {fetch_model(model)}", flush=True)
    failures = verify_offline(cells, "models")  # while this process holds no rows and no data libraries
    for line in fetch_all(data):
        print(f"  data   {line}", flush=True)
    for metric in metrics:
        check_external([metric])
        print(f"  metric {metric}", flush=True)
    failures += verify_offline(cells, "data")
    if failures:
        raise XorderError(f"{failures[0]} ({len(failures)} item{'s' * (len(failures) != 1)} failed to load offline)")
    print(
        f"checked offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1): {len(models)} model(s) and {len(data)} data "
        f"split(s) load without the network [{time.time() - started:.0f}s]"
    )
    print(compute_node_settings(cells, data))
    return 0


def _typed(overrides: list[str]) -> Any:
    from xorder.config_tree import compose
    from xorder.plan import to_typed

    return to_typed(compose(overrides))


def collect(cells: list[list[str]]) -> tuple[list[ModelNeed], list[DataNeed]]:
    """Every model and every (task, source, split, language) that the cells read, each once."""
    models, data, _ = _collect(cells)
    return models, data


def _collect(cells: list[list[str]]) -> tuple[list[ModelNeed], list[DataNeed], list[str]]:
    """`collect`, and the `evaluate:` metrics that the cells' tasks and targets name."""
    from xorder.kinds.metrics import is_external
    from xorder.plan import plan

    models: dict[str, ModelNeed] = {}
    data: dict[str, DataNeed] = {}
    metrics: dict[str, None] = {}
    for overrides in cells:
        cfg = _typed(overrides)
        cache_dir = str(Path(cfg.cache_dir).expanduser())
        model = ModelNeed(cfg.model.path, cfg.model.revision, cache_dir)
        models.setdefault(model.key, model)
        for stage in plan(cfg):
            for need in stage_needs(stage, cache_dir, cfg.data.synthetic_examples):
                data.setdefault(need.key, need)
            metrics.update((m, None) for task in stage.heads.values() for m in task.metrics if is_external(m))
    return list(models.values()), list(data.values()), list(metrics)


def fetch_all(data: list[DataNeed]) -> Iterator[str]:
    """Fetch every split; one line per task, split and source, with the rows found in each language."""
    group: tuple[str, str, str] | None = None
    counts: list[str] = []
    origins: list[str] = []

    def line() -> str:
        assert group is not None
        task, role, source = group
        where = origins[0] if len(origins) == 1 else f"{origins[0]} ... ({len(origins)} sources)"
        return f"{task} {role} ({source}): {' '.join(counts)} rows; {where}"

    for need in data:
        key = (need.task.name, need.role, need.source_name)
        if key != group and group is not None:
            yield line()
            counts, origins = [], []
        group = key
        loaded = fetch_data(need)
        counts.append(f"{need.lang}={len(loaded.dataset) if loaded is not None else 0}")
        origins.append(loaded.where if loaded is not None else "no such split")
    if group is not None:
        yield line()


def fetch_model(model: ModelNeed) -> str:
    from xorder.config import ModelConfig
    from xorder.encoders.base_model import resolve_path

    path = resolve_path(ModelConfig(name="model", path=model.path, revision=model.revision), model.cache_dir)
    if model.path.startswith("builtin:"):
        return f"{model.path}: {path}"
    if Path(path).expanduser().is_dir():
        return f"{path}: local directory"
    if offline():
        return f"{path}{' @ ' + model.revision if model.revision else ''}: offline, checked below"
    folder = download_model(path, model.revision)
    return f"{path}{' @ ' + model.revision if model.revision else ''}: {folder}"


def download_model(repo: str, revision: str | None) -> str:
    """Config, tokenizer files and one copy of the weights (safetensors if the repository has them)."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo, revision=revision)
        weights = "*.safetensors" if any(f.endswith(".safetensors") for f in files) else "*.bin"
        return snapshot_download(repo, revision=revision, allow_patterns=[*SMALL_FILES, weights])
    except Exception as err:  # huggingface_hub raises its own HTTP and repository errors
        first = " ".join(str(err).split())[:200]
        raise XorderError(f"cannot download model {repo!r}{' @ ' + revision if revision else ''}: {first}") from err


def verify_offline(cells: list[list[str]], part: str) -> list[str]:
    """Load every model, or every split (`part`), again in a child process with the network switched off; the
    failures."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "xorder.grid.prepare", _CHECK, part, json.dumps(cells)],
        capture_output=True,
        text=True,
        env=env,
    )
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 and not results:
        tail = " ".join(out.stderr.split())[-300:]
        return [f"the offline check could not run: {tail}"]
    return [r["error"] for r in results if not r["ok"]]


def _check_offline(cells: list[list[str]], part: str) -> int:
    """The child of `verify_offline` for the models, or the data and the metrics: one JSON line per item."""
    models, data, metrics = _collect(cells)
    checks: dict[str, list[tuple[str, Callable[[], object]]]] = {
        "models": [(m.path, partial(_load_model, m)) for m in models],
        "data": [(need.label(), partial(fetch_data, need)) for need in data]
        + [(metric, partial(check_external, [metric])) for metric in metrics],
    }
    failed = 0
    for item, load in checks[part]:
        try:
            load()
            result: dict[str, Any] = {"ok": True}
        except XorderError as err:
            result = {"ok": False, "error": str(err)}
        failed += not result["ok"]
        print(json.dumps({"item": item, **result}), flush=True)
    return 1 if failed else 0


def _load_model(model: ModelNeed) -> None:
    from xorder.config import ModelConfig
    from xorder.encoders.base_model import resolve_path
    from xorder.pipeline.model import load_backbone, load_tokenizer

    path = resolve_path(ModelConfig(name="model", path=model.path, revision=model.revision), model.cache_dir)
    load_tokenizer(path, model.revision)
    load_backbone(path, model.revision)


def local_folders(data: list[DataNeed]) -> list[str]:
    """The folders of the local files that the cells read (the fixed part of each path template)."""
    from xorder.data.readers import LOCAL_FORMATS
    from xorder.splits import split_config

    folders = set()
    for need in data:
        view = split_config(need.source, need.role)
        if view is not None and view.format in LOCAL_FORMATS and view.path:
            fixed = str(view.path).split("{", 1)[0]
            folder = fixed if fixed.endswith("/") else os.path.dirname(fixed) or "."
            folders.add(os.path.normpath(Path(folder).expanduser().absolute()))
    return sorted(f for f in folders if not any(f.startswith(other + os.sep) for other in folders))


def compute_node_settings(cells: list[list[str]], data: list[DataNeed] | None = None) -> str:
    import datasets
    from huggingface_hub import constants

    caches = sorted({str(Path(_typed(c).cache_dir).expanduser()) for c in cells})
    lines = [
        "on compute nodes without internet, with these folders on a filesystem they share:",
        "  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1",
        f"  export HF_HOME={constants.HF_HOME}",
    ]
    if os.environ.get("HF_DATASETS_CACHE"):
        lines.append(f"  export HF_DATASETS_CACHE={datasets.config.HF_DATASETS_CACHE}")
    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        lines.append(f"  export HF_HUB_CACHE={constants.HF_HUB_CACHE}")
    lines.append(
        f"  and run with cache_dir={caches[0]}"
        if len(caches) == 1
        else "  and run each cell with its cache_dir: " + ", ".join(caches)
    )
    folders = local_folders(data or [])
    if folders:
        lines.append(
            "  local files are read in place: keep these folders at the same paths (or set data_root): "
            + ", ".join(folders)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except XorderError as err:
        print(f"xorder: error: {err}", file=sys.stderr)
        sys.exit(2)
