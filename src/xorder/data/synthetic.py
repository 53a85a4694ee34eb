"""Bundled synthetic stand-ins for every task, generated deterministically (no downloaded data).

Each head kind has a default stand-in (`Kind.synthetic`); a few tasks have their own below (NLI, duplicate
questions, sentiment, two multiple-choice shapes). They are written in the synthetic languages of
`xorder.kinds.lexicon`, whose labels are functions of meaning, so a tiny model learns each task in seconds in
English, and the same examples rendered in other languages (translate-train data, MLM text) give a
multilingual stage something to align. Example i of a split is the same meaning in every language:
translations are parallel.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from xorder import kinds
from xorder.kinds import lexicon
from xorder.kinds.base import Example
from xorder.kinds.lexicon import VERSION, Renderer
from xorder.kinds.multiple_choice import ending_choice
from xorder.storage.fileio import write_atomic
from xorder.storage.integrity import Digests, of_bytes

Generator = Callable[[random.Random, Renderer, Renderer], Example]


def _nli(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """A positive premise; the hypothesis agrees (entailment), says something unrelated (neutral) or
    contradicts it."""
    adj, label = rng.choice(lexicon.ADJ_POSITIVE), rng.randint(0, 2)  # entailment, neutral, contradiction
    clause = lexicon.random_clause(rng, adj)
    hyp_adj = {0: lexicon.same(rng, adj), 1: rng.choice(lexicon.ADJ_NEUTRAL), 2: lexicon.opposite(rng, adj)}[label]
    return {"text_a": r.text(r.clause(*clause)), "text_b": r2.text(r2.predicate(clause[1], hyp_adj)), "label": label}


def _duplicate(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """The first question asks about a living being; the second is a duplicate if it does too."""
    noun, label = rng.choice(lexicon.NOUNS_LIVING), rng.randint(0, 1)
    other = rng.choice(lexicon.NOUNS_LIVING if label else lexicon.NOUNS_OBJECT)
    q1 = r.question("which", *r.phrase(rng.choice(lexicon.ADJ_NEUTRAL), noun), rng.choice(lexicon.VERBS))
    q2 = r2.question("which", *r2.phrase(rng.choice(lexicon.ADJ_NEUTRAL), other), rng.choice(lexicon.VERBS))
    return {"text_a": r.text(q1), "text_b": r2.text(q2), "label": label}


def _sentiment(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    adj = rng.choice(lexicon.ADJ_POSITIVE + lexicon.ADJ_NEGATIVE)
    return {"text_a": r.text(r.clause(*lexicon.random_clause(rng, adj))), "label": lexicon.polarity(adj)}


def _category_choice(rng: random.Random, r: Renderer, r2: Renderer, n_choices: int = 5) -> Example:
    """'Who ...?': exactly one choice is a living being."""
    label = rng.randrange(n_choices)
    nouns = [rng.choice(lexicon.NOUNS_LIVING if i == label else lexicon.NOUNS_OBJECT) for i in range(n_choices)]
    question = r.question("who", rng.choice(lexicon.VERBS), *r.phrase(None, rng.choice(lexicon.NOUNS_OBJECT)))
    return {"context": r.text(question), "choices": [r.text([n]) for n in nouns], "label": label}


def _reading_choice(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    example = ending_choice(rng, r)
    example["question"] = r.text(r.question("what", "is", "there"))
    return example


TASKS: dict[str, Generator] = {
    "qqp": _duplicate,
    "mnli": _nli,
    "anli": _nli,
    "xnli": _nli,
    "sst2": _sentiment,
    "commonsenseqa": _category_choice,
    "cosmosqa": _reading_choice,
}
SPLIT_SIZES = {"train": 1.0, "dev": 0.25, "test": 0.25, "sts17": 0.125}


def generator_for(task: str, kind: str) -> Generator:
    """The task's own stand-in, else its kind's."""
    return TASKS.get(task) or kinds.get(kind).synthetic


def examples(task: str, kind: str, split: str, lang: str, n: int) -> Iterator[Example]:
    """Example i of (task, split) in `lang`; a pair language 'xx-yy' renders text_a in xx and text_b in yy."""
    first, _, second = lang.partition("-")
    r, r2 = Renderer(first), Renderer(second or first)
    generate = generator_for(task, kind)
    for i in range(n):
        example = generate(lexicon.seeded(VERSION, task, split, i), r, r2)
        yield {"id": f"{task}-{split}-{i}", **example}


def split_size(split: str, train_examples: int) -> int:
    return max(16, int(train_examples * SPLIT_SIZES.get(split, 0.25)))


def materialize(cache_dir: str | Path, task: str, kind: str, split: str, lang: str, train_examples: int) -> Path:
    """The split as jsonl under cache_dir/synthetic (the name carries everything that determines it), written once
    with its sha256 beside it, written last and checked on every use: a file that changed since is generated again,
    logged (the generator is deterministic, so the new file is the one the stage hashes assume)."""
    n = split_size(split, train_examples)
    path = Path(cache_dir) / "synthetic" / f"v{VERSION}" / task / f"{split}-{lang}-{n}.jsonl"
    marker = path.with_name(path.name + ".sha256")
    if marker.is_file():
        recorded = marker.read_text().strip()
        if path.is_file() and Digests(cache_dir).file(path) == recorded:
            return path
        logging.getLogger("xorder").warning(
            "the synthetic data %s is missing or changed since it was generated: generating it again", path
        )
    lines = (json.dumps(e, ensure_ascii=False) for e in examples(task, kind, split, lang, n))
    data = ("\n".join(lines) + "\n").encode()
    write_atomic(path, data)
    write_atomic(marker, of_bytes(data) + "\n")
    return path
