"""Canonical rows -> model features, through `datasets.map` with a cache file per (data, tokenizer,
max length, task, split) fingerprint, so a second run or a second cell skips tokenization."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from xorder.config import TaskConfig

ENCODE_VERSION = 2
IGNORE = -100  # label of positions that carry no loss
_IDENTITIES: dict[int, tuple[Any, str]] = {}


def tokenizer_identity(tokenizer: Any) -> str:
    """Class, path, size, sides, and a hash of the whole tokenizer definition where the tokenizer has one
    (fast tokenizers): two tokenizers that split text differently never share tokenized data."""
    known = _IDENTITIES.get(id(tokenizer))
    if known is not None and known[0] is tokenizer:
        return known[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    try:
        definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    except Exception:  # a tokenizer without a serializable definition: fall back on its vocabulary size
        definition = str(len(tokenizer))
    content = hashlib.sha256(definition.encode()).hexdigest()[:16]
    identity = (f"{type(tokenizer).__name__}:{tokenizer.name_or_path}:{len(tokenizer)}:"
                f"{getattr(tokenizer, 'truncation_side', '')}:{getattr(tokenizer, 'padding_side', '')}:{content}")
    _IDENTITIES[id(tokenizer)] = (tokenizer, identity)
    return identity


def fingerprint(data_fingerprint: str, task: TaskConfig, tokenizer: Any, max_length: int, train: bool,
                label_names: list[str]) -> str:
    """The cache key of tokenized data: the rows read (their source, split and slice are in the data
    fingerprint), the task and its head kind, the tokenizer, the max length and train/eval processing."""
    payload = [ENCODE_VERSION, data_fingerprint, task.name, task.kind, task.doc_stride, tokenizer_identity(tokenizer),
               max_length, train, list(label_names)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def encode(rows: list[dict[str, Any]], task: TaskConfig, tokenizer: Any, max_length: int, *, train: bool,
           label_names: list[str], fingerprint: str, cache_dir: str | Path):
    """Tokenized features with a `row` column pointing back at the example and a `length` column. A second call
    with the same fingerprint reads the cached arrow file and tokenizes nothing."""
    import datasets

    cache = Path(cache_dir).expanduser() / "tokenized"
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{fingerprint}.arrow"
    if cached.is_file():  # written under a temporary name and renamed by `datasets`: present means complete
        try:
            return datasets.Dataset.from_file(str(cached))
        except Exception:  # unreadable (e.g. written by another datasets version): tokenize again
            pass
    raw = datasets.Dataset.from_list([{**r, "row": i} for i, r in enumerate(rows)])
    fn = _ENCODERS[task.kind]
    return raw.map(
        fn, batched=True, remove_columns=raw.column_names, cache_file_name=str(cache / f"{fingerprint}.arrow"),
        new_fingerprint=fingerprint, load_from_cache_file=True, desc=f"tokenize {task.name}",
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "task": task, "train": train,
                   "label_names": label_names},
    )


def _finish(enc: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    enc["row"] = rows
    enc["length"] = [len(ids) for ids in enc["input_ids"]]
    return enc


def _sequence(batch: dict[str, list], tokenizer: Any, max_length: int, **_: Any) -> dict[str, Any]:
    pairs = batch.get("text_b")
    if pairs is not None and all(p is None for p in pairs):
        pairs = None
    elif pairs is not None:
        pairs = [p or "" for p in pairs]
    enc = tokenizer(batch["text_a"], pairs, truncation=True, max_length=max_length)
    enc = dict(enc)
    enc["labels"] = batch["label"]
    return _finish(enc, batch["row"])


def _multiple_choice(batch: dict[str, list], tokenizer: Any, max_length: int, **_: Any) -> dict[str, Any]:
    questions = batch.get("question") or [None] * len(batch["context"])
    firsts, seconds, counts = [], [], []
    for context, question, choices in zip(batch["context"], questions, batch["choices"]):
        counts.append(len(choices))
        for choice in choices:
            firsts.append(context)
            seconds.append(f"{question} {choice}" if question else choice)
    flat = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    out: dict[str, Any] = {key: [] for key in flat}
    at = 0
    for n in counts:
        for key in flat:
            out[key].append(flat[key][at : at + n])
        at += n
    out["labels"] = batch["label"]
    out["row"] = batch["row"]
    out["length"] = [sum(len(ids) for ids in choice_ids) for choice_ids in out["input_ids"]]
    return out


def _extractive_qa(batch: dict[str, list], tokenizer: Any, max_length: int, task: TaskConfig, train: bool,
                   **_: Any) -> dict[str, Any]:
    """Question first, context second, long contexts cut into overlapping windows. Training features point
    at the answer's first and last token (the first token when the answer is outside the window); evaluation
    features keep the offsets of context tokens to map predicted spans back to text."""
    enc = tokenizer(
        [q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
        max_length=max_length, stride=task.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    out = dict(enc)
    out["row"] = [batch["row"][i] for i in sample_map]
    out["length"] = [len(ids) for ids in out["input_ids"]]
    starts, ends, kept_offsets = [], [], []
    for feature, sample in enumerate(sample_map):
        sequence_ids = enc.sequence_ids(feature)
        context_offsets = [tuple(o) if sid == 1 else (-1, -1) for o, sid in zip(offsets[feature], sequence_ids)]
        kept_offsets.append(context_offsets)
        answers = batch["answers"][sample]
        start_char = answers["answer_start"][0] if answers["answer_start"] else -1
        end_char = start_char + len(answers["text"][0]) if answers["text"] else -1
        first = next(i for i, sid in enumerate(sequence_ids) if sid == 1)
        last = max(i for i, sid in enumerate(sequence_ids) if sid == 1)
        if start_char < 0 or offsets[feature][first][0] > start_char or offsets[feature][last][1] < end_char:
            starts.append(0)
            ends.append(0)
            continue
        s = first
        while s <= last and offsets[feature][s][1] <= start_char:
            s += 1
        e = last
        while e >= first and offsets[feature][e][0] >= end_char:
            e -= 1
        starts.append(s)
        ends.append(e)
    out["start_positions"], out["end_positions"] = starts, ends
    if not train:
        out["offset_mapping"] = kept_offsets
    return out


def _tagging(batch: dict[str, list], tokenizer: Any, max_length: int, label_names: list[str], **_: Any) -> dict[str, Any]:
    """Each word's tag sits on its first sub-token; the other sub-tokens and special tokens are ignored."""
    index = {name: i for i, name in enumerate(label_names)}
    enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for i, tags in enumerate(batch["tags"]):
        previous, row = None, []
        for word in enc.word_ids(i):
            # a tag the training data never showed (possible in dev sets) cannot be predicted: it is not scored
            row.append(IGNORE if word is None or word == previous else index.get(tags[word], IGNORE))
            previous = word
        labels.append(row)
    out = dict(enc)
    out["labels"] = labels
    return _finish(out, batch["row"])


def _mlm(batch: dict[str, list], tokenizer: Any, max_length: int, **_: Any) -> dict[str, Any]:
    """Long documents (Wikipedia articles) become consecutive windows of max_length tokens, not one truncated
    window: every token of the capped corpus is trained on."""
    enc = tokenizer(batch["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True,
                    return_overflowing_tokens=True)
    rows = [batch["row"][i] for i in enc.pop("overflow_to_sample_mapping")]
    return _finish(dict(enc), rows)


_ENCODERS = {
    "classification": _sequence,
    "regression": _sequence,
    "multiple_choice": _multiple_choice,
    "extractive_qa": _extractive_qa,
    "tagging": _tagging,
    "mlm": _mlm,
}
