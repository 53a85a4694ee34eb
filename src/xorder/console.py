"""The terminal: stdout carries only what a script would parse (a cell's scores table, a grid's summary line,
`status`, `tasks`), logs and progress bars go to stderr, and log lines print above a progress bar instead of
through it. A reader that goes away (`xorder run ... | head -2`) ends the output quietly: the run itself goes on
to write its record, and the command exits with the status of a closed pipe, as other command-line tools do.
Only the standard library is imported at module level (`cli` imports this module)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

CLOSED_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a process that SIGPIPE ended


class _Stdout:
    closed = False  # set once a write found the reader gone


def say(text: str) -> None:
    """One block of results on stdout, written at once."""
    if _Stdout.closed:
        return
    try:
        print(text, flush=True)
    except BrokenPipeError:
        closed_pipe()


def closed_pipe() -> int:
    """Stop writing to a stdout whose reader went away (later writes, the interpreter's last flush included, go
    to /dev/null) and return the exit status to end with."""
    _Stdout.closed = True
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return CLOSED_PIPE


def pipe_closed() -> bool:
    return _Stdout.closed


@contextlib.contextmanager
def progress_logging() -> Iterator[None]:
    """Console log lines written through tqdm, so that they print above a running progress bar (the log file
    is left alone)."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(tqdm_class=tqdm):
        yield
