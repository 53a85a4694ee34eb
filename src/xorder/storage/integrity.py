"""Content digests: how xorder tells a file it wrote (or read) from one that changed since. One facility for every
cache and state file it trusts (stages, best and checkpoint state, tokenized and canonical caches, built models,
synthetic data, records) and for the data files a stage's hash covers.

A writer records each file's sha256 beside it (a marker or manifest); a reader compares before use. Hashing a
large file on every run would cost more than the run's warm start, so the digest of a file is remembered under
`cache_dir/digests/`, keyed by its path and stamp (size, modification time, change time, inode): an untouched
file is not read again, and `touch` costs one re-read that finds the same digest. The change time (ctime) is set
by the kernel on every write and on every `os.utime`, so a same-size edit whose modification time was put back
still misses the memo and is hashed again. A digest read within RACY_NS of the file's last change is not trusted
later (file times tick in milliseconds: an edit within the same tick would keep the stamp); that only costs small,
just-written files a second read, as a large file takes longer than that to hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xorder.storage.fileio import read_json, share, swap_dir, write_json

MEMO = "digests"  # the memo's folder under cache_dir
MANIFEST = "manifest.json"  # a folder's own file -> sha256 (built models, best weights, checkpoints)
RACY_NS = 50_000_000  # a digest read this soon after the file's last change is not trusted later
_SEEN: dict[str, dict[str, Any]] = {}  # this process: path -> what the memo holds for it


def of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def of_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content, read now."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def of_document(obj: Any) -> str:
    """sha256 of a JSON document's content, whatever the key order or indentation it is written with."""
    return of_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())


def _stamp(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def changed_phrase(bad: list[str]) -> str:
    """'a is missing or changed', 'a, b are missing or changed' (the first three named)."""
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{', '.join(bad[:3])}{more} {'is' if len(bad) == 1 else 'are'} missing or changed"


class Digests:
    """sha256 of files, remembered per path and stamp in `cache_dir/digests` (None: in this process only)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None) -> None:
        self.memo = Path(cache_dir).expanduser() / MEMO if cache_dir is not None else None

    def _entry(self, path: Path) -> Path | None:
        if self.memo is None:
            return None
        return self.memo / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"

    def file(self, path: str | os.PathLike[str]) -> str:
        """The file's sha256: remembered while its stamp is unchanged, read otherwise."""
        path = Path(path).resolve()
        stamp = _stamp(path)
        entry = self._entry(path)
        known = _SEEN.get(str(path)) or (read_json(entry) if entry is not None else None)
        if (
            isinstance(known, dict)
            and known.get("stamp") == stamp
            and isinstance(known.get("sha256"), str)
            and stamp[2] + RACY_NS < int(known.get("seen_ns", 0))
        ):
            return str(known["sha256"])
        digest = of_file(path)
        if _stamp(path) == stamp:  # unchanged while it was read: the digest is of this very stamp
            known = {"path": str(path), "stamp": stamp, "sha256": digest, "seen_ns": time.time_ns()}
            _SEEN[str(path)] = known
            if entry is not None:
                try:
                    write_json(entry, known)
                except OSError:  # a read-only cache still verifies; it only reads the file again next time
                    pass
        return digest

    def files(self, root: Path, names: list[str] | None = None) -> dict[str, str]:
        """sha256 of every file under `root` (or of the listed ones), by path relative to `root`."""
        if names is None:
            names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return {name: self.file(root / name) for name in names}

    def changed(self, root: Path, recorded: dict[str, str]) -> list[str]:
        """The recorded files under `root` that are missing or no longer have their recorded sha256."""
        return [
            name for name, digest in recorded.items() if not (root / name).is_file() or self.file(root / name) != digest
        ]

    def seal(self, root: Path) -> None:
        """Write root/manifest.json, last: the sha256 of every other file under `root`."""
        write_json(root / MANIFEST, {name: d for name, d in self.files(root).items() if name != MANIFEST})

    def unsealed(self, root: Path) -> list[str] | None:
        """What is wrong with a sealed folder: None when it is intact, else the files that are missing or changed
        (['manifest.json'] when the manifest itself is missing or unreadable)."""
        manifest = read_json(root / MANIFEST)
        if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
            return [MANIFEST]
        return self.changed(root, manifest) or None


def build_once(target: Path, build: Callable[[Path], None], digests: Digests) -> Path:
    """A folder built on first use and checked on every later use against the manifest of its files' digests,
    written last: a lock keeps two processes from building it twice, the build goes to a temporary folder renamed
    into place, and a folder without its manifest (half built, or built before manifests) or whose files changed
    since is built again, logged. The builders are deterministic: the rebuilt folder is the one every stage hash
    assumes."""
    import logging

    from filelock import FileLock

    if target.is_dir() and digests.unsealed(target) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        bad = digests.unsealed(target) if target.is_dir() else None
        if target.is_dir() and bad is None:
            return target
        if bad is not None and (target / MANIFEST).is_file():
            logging.getLogger("xorder").warning(
                "the built model %s is damaged (%s since it was built): building it again", target, changed_phrase(bad)
            )
        elif bad is not None:
            logging.getLogger("xorder").info(
                "the built model %s has no manifest (an older build): building it again", target
            )
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            build(tmp)
            share(tmp)
            swap_dir(tmp, target)
            digests.seal(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
