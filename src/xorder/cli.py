"""`xorder` command line. Only the standard library is imported here so that `--help` answers at once;
each subcommand imports what it needs when it runs."""

from __future__ import annotations

import sys
from collections.abc import Callable

from xorder import console
from xorder.errors import EXIT_USER_ERROR, XorderError


def _run(args: list[str]) -> int:
    from xorder import app

    return app.launch(args)


TASKS_HELP = """usage: xorder tasks [--config-dir DIR] [OVERRIDE ...]

Lists every option of the config tree: intermediate tasks and targets (head kind, sources, languages), orders,
multilingual variants, models and experiment presets, those of your own folders included (--config-dir DIR or
hydra.searchpath=[file:///DIR], as for `xorder run`). Overrides change what is listed (e.g. data.source=...)."""


def _tasks(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(TASKS_HELP)
        return 0
    from xorder import config_tree

    print(config_tree.describe(args))
    return 0


def _report(args: list[str]) -> int:
    from xorder import report

    return report.main(args)


def _rank(args: list[str]) -> int:
    from xorder import rank

    return rank.main(args)


def _status(args: list[str]) -> int:
    from xorder.grid import status

    return status.main(args)


def _prepare(args: list[str]) -> int:
    from xorder.grid import prepare

    return prepare.main(args)


def _cache(args: list[str]) -> int:
    from xorder.grid import cache_command

    return cache_command.main(args)


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "run": ("run one study cell, or a grid with -m; arguments are Hydra overrides", _run),
    "status": ("done / running / failed / missing cells and cached stages of a run or grid (-m)", _status),
    "prepare": ("download and cache the data and models a run (or a grid with -m) needs; check them offline", _prepare),
    "rank": ("score candidate intermediate tasks for a target without training (semb, logme; --help)", _rank),
    "tasks": ("list tasks, targets, orders and multilingual variants with their languages", _tasks),
    "report": ("result tables, statistics and plots from the run records in results/ (--help)", _report),
    "cache": ("the stage cache: list stages with size, age and the records using them; clean it (--help)", _cache),
}

USAGE = "usage: xorder {" + ",".join(COMMANDS) + "} [ARGS...]"


def _help() -> str:
    lines = [USAGE, "", "Intermediate-task training order studies for zero-shot cross-lingual transfer.", ""]
    lines += [f"  {name:<8} {text}" for name, (text, _) in COMMANDS.items()]
    lines += [
        "",
        "examples:",
        "  xorder run experiment=demo",
        "  xorder run order=english_first task=mnli target=pawsx seed=1",
        "  xorder run -m order=english_first,multilingual_first task=mnli,qqp seed=1,2,3",
        "  xorder run --help            (config groups and every option)",
        "  xorder COMMAND --help        (what each command takes)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught, not at interpreter exit
        return console.CLOSED_PIPE if console.pipe_closed() else code
    except BrokenPipeError:
        # the reader went away (`xorder tasks | head -1`): stop quietly, as other command-line tools do
        return console.closed_pipe()


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from xorder import __version__

        print(f"xorder {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(USAGE, file=sys.stderr)
        print(f"xorder: error: unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return command[1](argv[1:])
    except XorderError as err:
        print(f"xorder: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
