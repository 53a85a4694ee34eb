"""The scores a ranking gives each candidate, from sentence embeddings of the frozen encoder.

- semb (Poth et al. 2021): cosine similarity of a task's mean embedding with the target's, both over samples of
  their training data.
- logme: LogME (You et al. 2021) of the target's training labels on what a linear head for the candidate task sees
  in the target's inputs. The head is the candidate's LogME posterior mean on the frozen encoder; its outputs on the
  target's sequences are the features. A stand-in for Poth et al.'s LogME, which reads the encoder after training on
  the candidate, i.e. the training a ranking exists to avoid (see the README).
- semb_multilingual: per language, the cosine of the multilingual stage's data with the target's evaluation inputs
  in that language, averaged over the languages both have."""

from __future__ import annotations

import numpy as np

from xorder.rank.logme import logme


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def semb(candidate: np.ndarray, target: np.ndarray) -> float:
    """Cosine of the mean sentence embeddings ([sequences, hidden] each)."""
    return cosine(candidate.mean(0), target.mean(0))


def head_logme(
    candidate: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_regression: bool,
    target: np.ndarray,
    target_labels: np.ndarray,
    target_regression: bool,
) -> float:
    """LogME of the target's labels on the target sequences' outputs of the candidate's linear head."""
    head = logme(candidate, candidate_labels, candidate_regression).weights  # [head outputs, hidden]
    return logme(target @ head.T, target_labels, target_regression).evidence


def semb_multilingual(candidate: dict[str, np.ndarray], target: dict[str, np.ndarray]) -> float:
    """Mean over the languages both have of the per-language SEmb."""
    shared = sorted(set(candidate) & set(target))
    return float(np.mean([semb(candidate[lang], target[lang]) for lang in shared]))
