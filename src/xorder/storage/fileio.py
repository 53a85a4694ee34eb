"""Files that are whole or absent: every file and folder xorder leaves behind is written under a temporary
name and renamed into place, so a process killed at any moment never leaves half of one for a later run
to trust."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files are shared like any other written here
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Strict JSON (NaN and Infinity refused: they are not JSON, and never a result)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The document at `path`, or None when it is absent or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def swap_dir(tmp: Path, path: Path) -> None:
    """Replace the folder `path` by the folder `tmp` so that a crash leaves either the old or the new one:
    the old one is moved aside first, and put back by `recover_dir` if the process dies in between."""
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Undo a swap that a killed process left half done: the old folder comes back if the new one never landed."""
    old = path.with_name(path.name + ".old")
    if old.exists() and not path.exists():
        old.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def share(root: Path) -> None:
    """Give a built folder the permissions of anything else written here: mkdtemp makes 0700 and some writers
    (mkstemp-based savers) 0600, but a shared cache must be readable by everyone the umask allows."""
    mask = _umask()
    for item in [root, *root.rglob("*")]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)
