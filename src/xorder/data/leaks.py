"""Leak checks: which evaluation pairs of the target some stage of the cell has already seen.

Every stage's training rows (as it trains on them: after its caps) and selection rows (the dev draws that pick its
checkpoint) become a sorted array of 64-bit keys of normalised texts (NFKC, case, whitespace; a pair's texts sorted,
so a pair seen the other way round matches too). The arrays are cached under cache_dir/keys by the identity of the
rows they were taken from: a large training set is read and hashed once, never again by another cell or run.
An evaluation pair whose key is in another stage's array leaves the evaluation, and so does every translation of
it (the rows of its `item` in the other languages of the split): a translated pair is the same item, however its
text differs. Masked-LM text has no pairs: each of a pair's texts is looked up on its own there."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xorder import kinds
from xorder.config import TaskConfig
from xorder.errors import XorderError
from xorder.storage.fileio import write_atomic

KEYS_VERSION = 1  # bump when the normalisation or the hash of a key changes
Sets = dict[tuple[str, str], Any]  # (split, language) -> datasets.Dataset of canonical rows


@dataclass(frozen=True)
class Seen:
    """Rows some stage has seen, as keys: `label` names them in notes ('the english stage's mnli training data')."""

    label: str
    keys: np.ndarray  # sorted unique uint64
    texts: bool = False  # keys of single texts (masked-LM text), not of whole examples
    other_stage: bool = True  # another stage's data (the target's own training and selection data: False)
    of: tuple[str, str] | None = None  # the evaluation set (split, language) these keys are of: not compared with it


def _columns(dataset: Any, task: TaskConfig) -> list[str]:
    return [c for c, kind in kinds.get(task.kind).columns().items() if kind == "string" and c in dataset.column_names]


def _read(dataset: Any, columns: list[str]) -> dict[str, list[Any]]:
    """Columns of the dataset's rows (its selection, if it is one) in one Arrow read: no per-row formatting, and
    no fingerprint hashing of a derived dataset."""
    table = dataset.with_format("arrow")[:]
    return {c: table.column(c).to_pylist() for c in columns}


def _norm(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def pair_keys(dataset: Any, task: TaskConfig) -> np.ndarray:
    """One key per row: its texts, normalised and sorted, so that a pair in another set, in either order, matches."""
    columns = _columns(dataset, task)
    texts = _read(dataset, columns)
    keys = [_hash("\x1f".join(sorted(_norm(v) for v in values))) for values in zip(*(texts[c] for c in columns))]
    return np.array(keys, dtype=np.uint64)


def text_keys(dataset: Any, task: TaskConfig) -> np.ndarray:
    """One key per text column and row (rows x columns): each text on its own, for masked-LM corpora."""
    columns = _columns(dataset, task)
    texts = _read(dataset, columns)
    keys = [[_hash(_norm(v)) for v in texts[c]] for c in columns]
    return np.array(keys, dtype=np.uint64).T.reshape(len(dataset), len(columns))


def seen(label: str, dataset: Any, task: TaskConfig, identity: str, cache_dir: str, texts: bool) -> Seen:
    """The keys of rows a stage saw, from cache_dir/keys when these rows (`identity`: where they were read, how many,
    drawn how) were hashed before."""
    name = hashlib.sha256(f"{KEYS_VERSION}:{texts}:{task.kind}:{identity}".encode()).hexdigest()[:24]
    path = Path(cache_dir).expanduser() / "keys" / f"{name}.npy"
    try:
        keys = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # absent, or a damaged file: hash the rows again
        keys = np.unique((text_keys if texts else pair_keys)(dataset, task).ravel())
        buffer = io.BytesIO()
        np.save(buffer, keys, allow_pickle=False)
        write_atomic(path, buffer.getvalue())
    return Seen(label, keys, texts)


def merged(parts: Iterable[Seen]) -> list[Seen]:
    """One Seen per label (a stage's languages together), in first-seen order."""
    out: dict[tuple[str, bool, bool, tuple[str, str] | None], list[np.ndarray]] = {}
    for part in parts:
        out.setdefault((part.label, part.texts, part.other_stage, part.of), []).append(part.keys)
    return [
        Seen(label, np.unique(np.concatenate(keys)), texts, other, of)
        for (label, texts, other, of), keys in out.items()
    ]


def _items(dataset: Any) -> np.ndarray:
    """The `item` column in one read (a datasets column object iterates row by row)."""
    return np.asarray(_read(dataset, ["item"])["item"], dtype=object)


def _found(key: tuple[str, str], dataset: Any, task: TaskConfig, seen_by: list[Seen]) -> dict[str, np.ndarray]:
    """Per label, which rows of the evaluation set `key` it has seen (never the set's own keys)."""
    pairs = pair_keys(dataset, task)
    single = text_keys(dataset, task) if any(s.texts for s in seen_by) else pairs[:, None]
    found: dict[str, np.ndarray] = {}
    for s in seen_by:
        if s.of == key:
            continue
        mask = np.isin(single, s.keys).any(axis=1) if s.texts else np.isin(pairs, s.keys)
        found[s.label] = found.get(s.label, np.zeros(len(pairs), dtype=bool)) | mask
    return found


def exclude(task: TaskConfig, sets: Sets, seen_by: list[Seen], selection: tuple[str, str]) -> tuple[Sets, list[str]]:
    """The evaluation sets minus every pair that `seen_by` holds and every translation of such a pair (same split,
    same `item`), with one note per reduced set. The selection set (the training language's dev set, which picks
    the zero-shot checkpoint) is never reduced, though its pairs that the target trained on take their translations
    out of the other languages; when another stage trained or selected on its pairs the cell is refused, since no
    exclusion could make its checkpoint choice zero-shot again."""
    found = {key: _found(key, rows, task, seen_by) for key, rows in sets.items()}
    hit = {key: np.logical_or.reduce([np.zeros(len(sets[key]), dtype=bool), *f.values()]) for key, f in found.items()}
    others = [s.label for s in seen_by if s.other_stage]
    clash = {label: int(found[selection][label].sum()) for label in others} if selection in sets else {}
    if any(clash.values()):
        label, n = next((label, n) for label, n in clash.items() if n)
        raise XorderError(
            f"{task.name} {selection[0]}/{selection[1]}, the set that selects the zero-shot checkpoint, holds {n} "
            f"pairs of {label}: another stage has seen the target's own evaluation data; choose intermediate data "
            f"that leaves {task.name}'s evaluation sets out"
        )
    leaked: dict[str, set[str]] = {}  # per split, the items a stage has seen in some language
    for (split, lang), mask in hit.items():
        leaked.setdefault(split, set()).update(_items(sets[(split, lang)])[mask].tolist())
    out: Sets = {}
    notes = []
    for (split, lang), rows in sets.items():
        if (split, lang) == selection and hit[selection].any():
            labels = ", ".join(label for label, f in found[selection].items() if f.any())
            notes.append(
                f"{split}/{lang}: {int(hit[selection].sum())} of {len(rows)} pairs are also in {labels}; kept, since "
                "this set selects the checkpoint, and their translations excluded from the other languages"
            )
        if (split, lang) == selection or not leaked.get(split):
            out[(split, lang)] = rows
            continue
        mask = hit[(split, lang)]
        drop = mask | np.isin(_items(rows), list(leaked[split]))
        if not drop.any():
            out[(split, lang)] = rows
            continue
        if drop.all():
            raise XorderError(
                f"{task.name} {split}/{lang}: every evaluation pair is also in the training or selection data of "
                "a stage of this cell: nothing would be zero-shot"
            )
        why = [f"{int(f.sum())} in {label}" for label, f in found[(split, lang)].items() if f.any()]
        translations = int((drop & ~mask).sum())
        if translations:
            why.append(f"{translations} translations of pairs excluded in another language")
        notes.append(
            f"{split}/{lang}: {int(drop.sum())} of {len(rows)} pairs excluded from evaluation ({'; '.join(why)})"
        )
        out[(split, lang)] = rows.select(np.flatnonzero(~drop).tolist(), keep_in_memory=True)
    return out, notes


def _parts(language: str) -> set[str]:
    return set(language.split("-"))


def shared_between_splits(
    task: TaskConfig, sets: Sets, sources: list[tuple[str, str]], keys_of: Callable[[tuple[str, str]], np.ndarray]
) -> list[str]:
    """Notes for evaluation pairs that are pairs of another split's source in a shared language too (STS 2017's
    en-en track holds STS-B test pairs): two splits that share pairs are not independent evidence. `keys_of`
    gives the keys of a whole source split (`sources`: which there are). Dev splits, which select checkpoints
    and stand in the tables only where there is nothing else, are left out on both sides."""
    notes = []
    for (split, lang), rows in sets.items():
        mine = None
        for other, other_lang in sources:
            if other in (split, "dev") or split == "dev" or not _parts(lang) & _parts(other_lang):
                continue
            mine = pair_keys(rows, task) if mine is None else mine
            n = int(np.isin(mine, keys_of((other, other_lang))).sum())
            if n:
                notes.append(
                    f"{split}/{lang}: {n} of its {len(rows)} evaluation pairs are pairs of {other}/{other_lang} too "
                    "(the same source pairs: not independent evidence)"
                )
    return notes
