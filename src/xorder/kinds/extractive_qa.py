"""Extractive question answering (SQuAD): question first, context second, long contexts cut into overlapping
windows; start and end logits per token, the best span of at most MAX_ANSWER_TOKENS inside the context, scored
per question (its best window) with SQuAD v1.1's exact match and F1. Synthetic stand-in: who-is-there questions."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xorder.config import SourceConfig, TaskConfig
from xorder.kinds import lexicon, metrics
from xorder.kinds.base import Batch, Encoding, Example, Fail, Kind, Padded, Scored, text
from xorder.kinds.lexicon import Renderer

if TYPE_CHECKING:
    import datasets
    import torch
    from torch import nn

MAX_ANSWER_TOKENS = 30


class ExtractiveQA(Kind):
    name = "extractive_qa"
    schema = {"context": "string", "question": "string", "answers": {"text": ["string"], "answer_start": ["int64"]}}
    metrics = metrics.SPAN

    def check(
        self, task: TaskConfig, view: SourceConfig, item: dict[str, Any], column: dict[str, str], fail: Fail
    ) -> None:
        context = item["context"] = text(item["context"], column["context"], fail)
        item["question"] = text(item["question"], column["question"], fail)
        answers, where = item["answers"], column["answers"]
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise fail(where, "expected {text: [...], answer_start: [...]}")
        texts, starts = list(answers["text"] or []), list(answers["answer_start"] or [])
        if len(texts) != len(starts):
            raise fail(where, f"{len(texts)} answer texts but {len(starts)} answer_start values")
        try:
            starts = [int(s) for s in starts]
        except (TypeError, ValueError):
            raise fail(where, f"answer_start {starts!r} holds something other than character offsets") from None
        for answer, start in zip(texts, starts):
            if not isinstance(answer, str) or not answer:
                raise fail(where, f"answer {answer!r} is not a non-empty text")
            if start < 0 or context[start : start + len(answer)] != answer:
                raise fail(where, f"answer {answer!r} is not at character {start} of the context")
        item["answers"] = {"text": texts, "answer_start": starts}

    def encode(self, batch: Batch, rows: list[int], how: Encoding) -> dict[str, list[Any]]:
        """Training features point at the answer's first and last token (the first token when the answer is
        outside the window); evaluation features keep the offsets of context tokens to map spans back to text."""
        enc = how.tokenizer(
            [q.lstrip() for q in batch["question"]],
            batch["context"],
            truncation="only_second",
            max_length=how.max_length,
            stride=how.task.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        sample_map = enc.pop("overflow_to_sample_mapping")
        offsets = enc.pop("offset_mapping")
        out = dict(enc)
        out["row"] = [rows[i] for i in sample_map]
        out["length"] = [len(ids) for ids in out["input_ids"]]
        starts, ends, kept_offsets = [], [], []
        for feature, sample in enumerate(sample_map):
            sequence_ids = enc.sequence_ids(feature)
            kept_offsets.append([tuple(o) if sid == 1 else (-1, -1) for o, sid in zip(offsets[feature], sequence_ids)])
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
        if not how.train:
            out["offset_mapping"] = kept_offsets
        return out

    def collator(
        self, tokenizer: Any, mlm_probability: float | None, multiple: int | None = None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return SpanCollator(tokenizer, multiple)

    def head(self, hidden: int, n_labels: int, dropout: float, lm_head: nn.Module | None) -> nn.Module:
        from torch import nn

        return nn.Linear(hidden, 2)

    def forward(
        self, head: nn.Module, states: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        import torch
        from torch.nn import functional as F

        start, end = (x.squeeze(-1) for x in head(states).split(1, dim=-1))
        padding = batch["attention_mask"] == 0
        start, end = start.masked_fill(padding, -1e4), end.masked_fill(padding, -1e4)
        loss = None
        if "start_positions" in batch:
            loss = (
                F.cross_entropy(start.float(), batch["start_positions"])
                + F.cross_entropy(end.float(), batch["end_positions"])
            ) / 2
        return loss, torch.stack([start, end], dim=-1)

    def predictions(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per feature: the best (start, end, score) span with start <= end < start + MAX_ANSWER_TOKENS, inside
        the context (question and padding tokens are outside the collator's context mask)."""
        import torch

        logits = outputs.float()
        scores = logits[..., 0].unsqueeze(2) + logits[..., 1].unsqueeze(1)  # [features, start, end]
        length = scores.shape[1]
        band = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu().tril(MAX_ANSWER_TOKENS - 1)
        context = batch["context_mask"].bool()
        allowed = band.unsqueeze(0) & context.unsqueeze(2) & context.unsqueeze(1)
        scores = scores.masked_fill(~allowed, -1e9)
        flat = scores.flatten(1).argmax(-1)
        best = scores.flatten(1).gather(1, flat.unsqueeze(1)).squeeze(1)
        return torch.stack([(flat // length).float(), (flat % length).float(), best], dim=-1)

    def score(
        self,
        task: TaskConfig,
        examples: datasets.Dataset,
        features: datasets.Dataset,
        rows: list[int],
        predictions: torch.Tensor,
    ) -> Scored:
        """Each question's answer is the best-scoring span over its windows, decoded with its own window's offsets."""
        contexts = examples["context"]
        best: dict[int, tuple[float, str]] = {}
        for example, offsets, (start, end, score) in zip(rows, features["offset_mapping"], predictions.tolist()):
            context = contexts[example]
            answer = context[offsets[int(start)][0] : offsets[int(end)][1]] if offsets[int(start)][0] >= 0 else ""
            if example not in best or score > best[example][0]:
                best[example] = (score, answer)
        order = sorted(best)
        answers, ids = examples["answers"], examples["id"]
        gold = [answers[i]["text"] for i in order]
        pred = [best[i][1] for i in order]
        return Scored(
            self.compute(task.metrics, gold, pred), [ids[i] for i in order], ["|".join(g) for g in gold], pred
        )

    def synthetic(self, rng: random.Random, first: Renderer, second: Renderer) -> Example:
        """Several sentences about objects and exactly one living being; the question asks who is there."""
        r = first
        n_sentences = rng.randint(2, 4)
        answer_at = rng.randrange(n_sentences)
        living = rng.choice(lexicon.NOUNS_LIVING)
        concepts: list[str] = []
        answer_index = 0
        for i in range(n_sentences):
            noun = living if i == answer_at else rng.choice(lexicon.NOUNS_OBJECT)
            adj = rng.choice(lexicon.ADJ_NEUTRAL + lexicon.ADJ_POSITIVE)
            if i == answer_at:
                answer_index = len(concepts) + r.clause(adj, noun, "sees", None, "cup").index(noun)
            concepts += r.clause(adj, noun, rng.choice(lexicon.VERBS), None, rng.choice(lexicon.NOUNS_OBJECT))
        joiner = "" if r.lang in ("ja", "zh") else " "
        start = len(r.text(concepts[:answer_index])) + (len(joiner) if answer_index else 0)
        return {
            "context": r.text(concepts),
            "question": r.text(r.question("who", "is", "there")),
            "answers": {"text": [r.words[living]], "answer_start": [start]},
        }


class SpanCollator(Padded):
    """Padding, plus at evaluation a mask of the tokens that may start or end an answer (context tokens)."""

    def __init__(self, tokenizer: Any, multiple: int | None = None) -> None:
        super().__init__(tokenizer, ("start_positions", "end_positions"), multiple=multiple)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = super().__call__(features)
        if "offset_mapping" in features[0]:
            width = batch["input_ids"].shape[1]
            batch["context_mask"] = torch.tensor(
                [
                    [int(o[0] >= 0) for o in f["offset_mapping"]] + [0] * (width - len(f["offset_mapping"]))
                    for f in features
                ]
            )
        return batch


KIND = ExtractiveQA()
