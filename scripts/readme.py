#!/usr/bin/env python
"""The README's generated blocks, rewritten from what the code produces, so that they cannot drift:

  quickstart     the quickstart's commands, with the number of cells of the demo grid
  config-groups  the config-groups table: every option of every group in conf/, the defaults marked
  grid-counts    the demo grid's jobs, distinct cells and shared stages (from the plans: nothing is trained)
  demo-cell      the table `make demo` prints (the demo cell is a cell of the demo grid)
  demo-grid      the PAWS-X tables of `make grid` + `make tables`, as `--raw-names --plain` writes them
  real-study     the STS test tables of the committed real study (results/real_study/tables.md): main, order effect

A block sits between `<!-- BEGIN generated: NAME ... -->` and `<!-- END generated: NAME -->`; the text around it
is the README's own. The last two blocks run the demo grid's PAWS-X cells (its STS cells add nothing to them):
about 4 minutes on a 2-core CPU with an empty stage cache.

  python scripts/readme.py                         rewrite every block (runs the grid)
  python scripts/readme.py --blocks quickstart,config-groups,grid-counts     only these (no training)
  python scripts/readme.py --check                 exit 1, printing a diff, when a block differs from the code's
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN = "<!-- BEGIN generated: {name} (python scripts/readme.py; do not edit by hand) -->"
END = "<!-- END generated: {name} -->"
GRID = ["-m", "experiment=demo_grid"]
SHOWN_TARGET = "pawsx"  # the demo grid's tables the README shows
PLACEHOLDER = "/path/to/xorder"  # the demo cell's record path, wherever the README was generated
GROUPS = {  # group -> what it chooses (the options themselves come from conf/)
    "model": "the pretrained encoder (`me5_small`, `minilm`: real small encoders that work offline; `tiny`: built "
    "locally, below)",
    "task": "intermediate task(s); several as `task=[a,b]` train one multi-task stage",
    "order": "the stages before the target",
    "multilingual": "the multilingual stage",
    "target": "the target task and its evaluation languages",
    "trainer": "optimisation, evaluation, checkpoints (`default`: the reference study's hyperparameters)",
    "experiment": "presets (`# @package _global_`) that set many keys and grids at once",
    "hydra/launcher": "how the cells of a grid are run",
}


def shipped(group: str) -> list[str]:
    """The options of a group as xorder ships them in conf/ (not Hydra's own launchers)."""
    folder = resources.files("xorder.conf").joinpath(*group.split("/"))
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def defaults() -> dict[str, list[str]]:
    from xorder.config_tree import compose_hydra

    cfg = compose_hydra([])
    chosen = {group: [str(choice)] for group, choice in cfg.hydra.runtime.choices.items() if choice is not None}
    chosen["task"] = [str(name) for name in cfg.task]
    return chosen


def config_groups() -> str:
    chosen = defaults()
    rows = ["| group | options | what it chooses |", "|---|---|---|"]
    for group, what in GROUPS.items():
        options = ", ".join(
            f"`{option}`" + (" (default)" if option in chosen.get(group, []) else "") for option in shipped(group)
        )
        rows.append(f"| `{group}` | {options} | {what} |")
    return "\n".join(rows)


@functools.cache
def grid_cells() -> tuple[int, dict[str, Any]]:
    """(jobs, the composed config of each distinct cell by its record path) of the demo grid, as `xorder run -m`
    expands it."""
    from xorder.cell import identify
    from xorder.config_tree import compose, expand

    jobs = expand(GRID)
    distinct: dict[str, Any] = {}
    for overrides in jobs:
        cfg = compose(overrides)
        distinct.setdefault(identify(cfg).path, cfg)
    return len(jobs), distinct


def quickstart() -> str:
    _, cells = grid_cells()
    return "\n".join(
        [
            "```bash",
            "make demo     # one full study cell on a tiny model and bundled synthetic data (a minute on a 2-core CPU)",
            'make test     # the whole test suite, one worker per core (`pytest -m "not slow"`: the unit tests)',
            f"make grid     # the demo grid: {len(cells)} cells of the demo study (a few minutes); then `make tables`",
            "```",
        ]
    )


def grid_counts() -> str:
    from xorder.plan import plan, to_typed

    jobs, cells = grid_cells()
    pairs = [cfg for cfg in cells.values() if cfg.order.name in ("english_first", "multilingual_first")]
    stages = [stage.hash for cfg in pairs for stage in plan(to_typed(cfg))]
    return (
        f"The grid is {jobs} jobs and {len(cells)} distinct cells (the baseline does not depend on the task). Its "
        f"{len(pairs)} `english_first` / `multilingual_first` cells trained {len(set(stages))} stages where training "
        f"every cell from scratch would train {len(stages)}: the intermediate stages are shared by both targets."
    )


def run_grid(work: Path, cache_dir: Path) -> Path:
    """The demo grid's cells of the shown target, trained (or skipped: complete records stay) into work/."""
    results = work / "results"
    command = [sys.executable, "-m", "xorder", "run", *GRID, f"target={SHOWN_TARGET}"]
    command += [f"results_dir={results}", f"cache_dir={cache_dir}"]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the demo grid failed ({done.returncode}):\n{done.stderr[-3000:]}")
    tables = work / "tables"
    report = [sys.executable, "-m", "xorder", "report", "--results", str(results), "--out", str(tables)]
    done = subprocess.run([*report, "--raw-names", "--plain"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"xorder report failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return results


def demo_cell(results: Path) -> str:
    from xorder import records
    from xorder.cell import identify
    from xorder.config_tree import compose
    from xorder.pipeline.record_writer import summary_table

    cell = identify(compose(["experiment=demo"])).path
    metrics = json.loads((results / cell / records.METRICS).read_text())
    path = f"{PLACEHOLDER}/results/{cell}/{records.METRICS}"
    return "\n".join(["```", summary_table(metrics), f"record: {path}", "```"])


def shown_tables(tables: Path, target: str, wanted: tuple[str, ...]) -> str:
    """The sections of a tables.md on a target's test split whose titles end as wanted, headings one level down."""
    sections = re.split(r"(?m)^(?=### )", tables.read_text())
    shown = [s.rstrip() for s in sections if s.startswith(f"### {target} (") and " · test · " in s.split("\n", 1)[0]]
    return "\n\n".join("#" + s for s in shown if s.split("\n", 1)[0].endswith(wanted))


def demo_grid(results: Path) -> str:
    """The main, Δ and order-effect tables of the shown target's test split."""
    wanted = (" mean ± std over seeds", " Δ against the `none` baseline", " order effect")
    return shown_tables(results.parent / "tables" / "tables.md", SHOWN_TARGET, wanted)


def real_study() -> str:
    """The committed real study's STS test tables: main and order effect (the rest: results/real_study/)."""
    wanted = (" mean ± std over seeds", " order effect")
    return shown_tables(ROOT / "results" / "real_study" / "tables.md", "STS", wanted)


def blocks(names: list[str], work: Path, cache_dir: Path) -> dict[str, str]:
    pure: dict[str, Callable[[], str]] = {
        "quickstart": quickstart,
        "config-groups": config_groups,
        "grid-counts": grid_counts,
        "real-study": real_study,
    }
    out = {name: pure[name]() for name in names if name in pure}
    trained = [name for name in names if name not in pure]
    if trained:
        results = run_grid(work, cache_dir)
        made = {"demo-cell": demo_cell, "demo-grid": demo_grid}
        out.update({name: made[name](results) for name in trained})
    return out


def replace(readme: str, name: str, body: str) -> str:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(readme)) != 1:
        sys.exit(f"README.md needs exactly one block {begin} ... {end}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", readme)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/readme.py", description=__doc__.split("\n\n", 1)[0])
    everything = ["quickstart", "config-groups", "grid-counts", "real-study", "demo-cell", "demo-grid"]
    parser.add_argument("--blocks", default=",".join(everything), help="comma-separated (default: all)")
    parser.add_argument("--check", action="store_true", help="compare, print a diff, exit 1 on a difference")
    parser.add_argument("--cache-dir", default=str(Path("~/.cache/xorder").expanduser()), help="stage cache")
    parser.add_argument("--work", default=None, help="where the grid's records go (default: a temporary folder)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.blocks.split(",") if n.strip()]
    unknown = sorted(set(names) - set(everything))
    if unknown:
        parser.error(f"unknown block {unknown[0]!r} (choose from {', '.join(everything)})")
    with tempfile.TemporaryDirectory(prefix="xorder-readme-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        made = blocks(names, work, Path(args.cache_dir))
    before = README.read_text()
    after = before
    for name in names:
        after = replace(after, name, made[name])
    if args.check:
        if after == before:
            return 0
        diff = difflib.unified_diff(before.splitlines(True), after.splitlines(True), "README.md", "from the code")
        sys.stdout.writelines(diff)
        return 1
    if after != before:
        README.write_text(after)
    print(f"README.md: {', '.join(names)} {'rewritten' if after != before else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
