"""Sentence embeddings of the frozen encoder: the mean of its last hidden states over each sequence's tokens
(Poth et al. 2021's SEmb pooling), batched by length, with a progress bar on stderr."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch


class Encoder:
    """The study's base model as `xorder run` loads it, without any head, in evaluation mode, on the GPU when there
    is one."""

    def __init__(self, path: str, revision: str | None, batch_size: int) -> None:
        from transformers import DataCollatorWithPadding

        from xorder.pipeline.model import encoder_of, load_backbone, load_tokenizer

        self.tokenizer = load_tokenizer(path, revision)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # fp32 on either
        self.model: Any = encoder_of(load_backbone(path, revision)).eval().to(self.device)
        self.pad = DataCollatorWithPadding(self.tokenizer)
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed(self, sequences: list[dict[str, list[int]]], what: str) -> np.ndarray:
        """[sequences, hidden] mean-pooled embeddings, in the order given (batches run longest first)."""
        from tqdm import tqdm

        order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]["input_ids"]), i))
        out = np.zeros((len(sequences), self.model.config.hidden_size), dtype=np.float64)
        with tqdm(total=len(sequences), desc=f"embed {what}", unit="seq", file=sys.stderr, leave=False) as bar:
            for start in range(0, len(order), self.batch_size):
                chosen = order[start : start + self.batch_size]
                padded = self.pad([sequences[i] for i in chosen])
                batch = {key: value.to(self.device) for key, value in padded.items()}
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[chosen] = pooled.double().cpu().numpy()
                bar.update(len(chosen))
        return out
