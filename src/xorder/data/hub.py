"""The hub as a source: `datasets.load_dataset` on a hub id or a local folder in hub layout, streamed and kept
in cache_dir for capped corpora, with the hub's failures turned into messages a user can act on."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from xorder.config import SourceConfig
from xorder.data.readers import BATCH, Raw, RawRow, fill, parquet_rows
from xorder.errors import XorderError
from xorder.storage.integrity import Digests, of_document


def hub_location(view: SourceConfig, split: str, lang: str) -> tuple[str, str | None, str]:
    path = fill(str(view.path or ""), lang, split)
    name = fill(view.name, lang, split) if view.name else None
    where = f"{path}{'/' + name if name else ''} [{split}]" + (f" @ {view.revision}" if view.revision else "")
    return path, name, where


def local_folder(path: str) -> Path | None:
    """The folder a hub source names when its path is a local directory in hub layout, not a hub id."""
    return Path(path).expanduser() if path.startswith(("/", "./", "../", "~")) else None


def read_hub(view: SourceConfig, split: str, lang: str, cache_dir: str, need: int | None) -> Raw:
    """`datasets.load_dataset` on a hub id or a local directory in hub layout. A capped read (large text corpora)
    streams the first rows of the shuffled stream (shards in random order, then a 10k-row shuffle buffer) once and
    keeps them in cache_dir, so compute nodes read them offline; a later read that needs no more rows than are
    kept reuses them."""
    import datasets

    if not view.path:
        raise XorderError("a hub source needs a path (a hub id or a local directory in hub layout)")
    path, name, where = hub_location(view, split, lang)
    if need is not None:
        folder, key = stream_store(cache_dir, path, name, split, view.revision)
        kept = _kept(folder, key, need) or _stream(path, name, split, view.revision, need, where, folder, key)
        return Raw(where, f"{where}:{kept.name}:{kept.stat().st_size}:{need}", lambda: parquet_rows(kept, need))
    local = local_folder(path)
    if local is not None and not local.is_dir():
        raise XorderError(
            f"{where}: no such directory (a local hub-layout source is a folder with the data files "
            "and a README.md whose YAML `configs:` lists them)"
        )
    # `datasets` caches a local folder under its name, whatever its files hold: a folder of the same name with
    # other (or edited) files would be served stale rows. Its own cache, keyed by the files' content, fixes it.
    own_cache = None
    if local is not None:
        files = folder_digests(local, Digests(cache_dir))
        own_cache = str(Path(cache_dir).expanduser() / "hub-local" / of_document(files)[:20])
    try:
        dataset = datasets.load_dataset(path, name, split=split, revision=view.revision, cache_dir=own_cache)
    except Exception as err:  # datasets raises builtins and its own types for unreachable or unknown data
        if _user_fixable(err):
            raise hub_error(where, err) from err
        raise

    def rows() -> Iterator[RawRow]:
        number = 0
        for batch in dataset.iter(batch_size=BATCH):
            keys = list(batch)
            for values in zip(*batch.values()):
                number += 1
                yield number, None, dict(zip(keys, values))

    return Raw(where, f"{where}:{dataset._fingerprint}", rows)


STREAM_SHUFFLE = {"seed": 0, "buffer_size": 10_000}  # a streamed corpus is a random sample, not its first articles


def folder_digests(folder: Path, digests: Digests) -> dict[str, str]:
    """sha256 of every file of a local hub-layout folder, by path relative to it (hidden files left out)."""
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return {f.as_posix(): digests.file(folder / f) for f in files if not any(part.startswith(".") for part in f.parts)}


def stream_store(cache_dir: str, path: str, name: str | None, split: str, revision: str | None) -> tuple[Path, str]:
    key = hashlib.sha256(json.dumps([path, name, split, revision, STREAM_SHUFFLE]).encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / "corpora", key


def _stream(
    path: str, name: str | None, split: str, revision: str | None, need: int, where: str, folder: Path, key: str
) -> Path:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        stream = datasets.load_dataset(path, name, split=split, revision=revision, streaming=True)
        rows = list(stream.shuffle(**STREAM_SHUFFLE).take(need))
    except Exception as err:
        if _user_fixable(err):
            raise hub_error(where, err) from err
        raise
    exhausted = len(rows) < need
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{key}-{len(rows)}{'-all' if exhausted else ''}.parquet"
    tmp = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(kept)
    return kept


def _kept(folder: Path, key: str, need: int) -> Path | None:
    """A stored prefix of the stream with at least `need` rows (or all there is), if one exists."""
    if not folder.is_dir():
        return None
    for candidate in sorted(folder.glob(f"{key}-*.parquet")):
        count, _, rest = candidate.stem[len(key) + 1 :].partition("-")
        if count.isdigit() and (int(count) >= need or rest == "all"):
            return candidate
    return None


def offline() -> bool:
    def on(name: str) -> bool:
        return os.environ.get(name, "0").strip().lower() not in ("0", "", "false", "no", "off")

    return on("HF_HUB_OFFLINE") or on("HF_DATASETS_OFFLINE")


def _user_fixable(err: Exception) -> bool:
    """The hub's failures that a user can fix (unreachable, unknown, offline), as opposed to bugs."""
    return isinstance(
        err, (FileNotFoundError, ConnectionError, OSError, ValueError, RuntimeError, NotImplementedError)
    ) or type(err).__module__.startswith(("datasets", "huggingface_hub", "requests", "httpx", "fsspec"))


def hub_error(where: str, err: Exception) -> XorderError:
    first = " ".join(str(err).split())[:200]
    unreachable = (
        isinstance(err, (ConnectionError, FileNotFoundError))
        or "offline" in first.lower()
        or type(err).__name__ in ("OfflineModeIsEnabled", "LocalEntryNotFoundError")
    )
    if unreachable and offline():
        return XorderError(
            f"{where} is not in the datasets cache and this machine is offline (HF_HUB_OFFLINE=1): run "
            "`xorder prepare` with the same overrides on a machine with internet and the same HF_HOME, "
            "then run here again"
        )
    if unreachable:
        return XorderError(
            f"cannot reach {where} ({first}); check the hub id, or run `xorder prepare` where there is "
            "internet and set HF_HUB_OFFLINE=1 here"
        )
    if "script" in first.lower():
        return XorderError(
            f"cannot load {where} ({first}); the dataset's main branch needs a loading script: pin "
            "its parquet conversion with revision: refs/convert/parquet in the source"
        )
    return XorderError(f"cannot load {where}: {first}")
