"""Files that are whole or absent: every file and folder xorder leaves behind is written under a temporary
name and renamed into place, so a process killed at any moment never leaves half of one for a later run
to trust."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
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


def fresh_dir(path: Path) -> Path:
    """An empty folder `path` (a leftover of a killed process is removed first)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """A folder built on first use: a lock keeps two processes from building it twice, and the build goes to a
    temporary folder renamed into place, so a half-built folder is never visible (`config.json` marks it done)."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
            try:
                build(tmp)
                _share(tmp)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _share(root: Path) -> None:
    """Give a built folder the permissions of anything else written here: mkdtemp makes 0700 and some writers
    (mkstemp-based savers) 0600, but a shared cache must be readable by everyone the umask allows."""
    mask = _umask()
    for item in [root, *root.rglob("*")]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def digests(root: Path, relative: list[str] | None = None) -> dict[str, str]:
    """sha256 of every file under `root` (or of the listed ones), by path relative to `root`: what a completion
    marker records so that a later reader can tell intact files from damaged ones."""
    import hashlib

    names = (
        relative if relative is not None else sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    )
    out = {}
    for name in names:
        with open(root / name, "rb") as handle:
            out[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return out


def damaged(root: Path, recorded: dict[str, str]) -> list[str]:
    """The recorded files under `root` that are missing or no longer match their sha256."""
    bad = [name for name in recorded if not (root / name).is_file()]
    present = [name for name in recorded if name not in bad]
    now = digests(root, present)
    return bad + [name for name in present if now[name] != recorded[name]]
