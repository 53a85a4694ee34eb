"""Configurations that are valid but suspicious: they run, and their numbers would mislead. Each piece of advice
is logged as a warning when the cell starts and kept in the record's notes."""

from __future__ import annotations

from xorder.config import XorderConfig

FAR = 3.0  # a learning rate this many times outside the model's recommended range is far outside it


def learning_rates(cfg: XorderConfig) -> list[str]:
    """A pretrained encoder at a learning rate far from its range learns nothing (or diverges): the tiny demo
    model's 1e-3 leaves all-MiniLM-L6-v2 at chance on PAWS-X, where 5e-5 trains it."""
    if not cfg.model.lr_range:
        return []
    low, high = cfg.model.lr_range
    phases = {
        "intermediate": cfg.trainer.intermediate,
        "multilingual": cfg.trainer.multilingual,
        "target": cfg.trainer.target,
    }
    out = []
    for name, phase in phases.items():
        lr = phase.lr if phase.lr is not None else cfg.trainer.lr
        if not low / FAR <= lr <= high * FAR:
            key = f"trainer.{name}.lr" if phase.lr is not None else "trainer.lr"
            out.append(
                f"{key}={lr:g} is far outside model {cfg.model.name}'s recommended range {low:g}..{high:g} "
                f"(conf/model/{cfg.model.name}.yaml): the {name} stage may learn nothing or diverge"
            )
    return out
