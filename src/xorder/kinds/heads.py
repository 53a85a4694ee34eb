"""Head building blocks that several kinds share; each kind (`xorder.kinds`) chooses one and owns its loss."""

from __future__ import annotations

import torch
from torch import nn


class PooledHead(nn.Module):
    """The first token's state -> dense + tanh -> outputs (RoBERTa's classification head)."""

    def __init__(self, hidden: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(states[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))
