"""LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML; the
fixed-point solver of You et al. 2022, "Ranking and Tuning Pre-trained Models", JMLR, arXiv 2110.10545).

The evidence p(y | F) of a Bayesian linear model y = F w + e, w ~ N(0, 1/alpha), e ~ N(0, 1/beta), maximised over
alpha and beta, per example: how well a linear head on the features F explains the labels y without being able to
overfit them. Classification labels count as one 0/1 column per class, regression labels as their own columns;
LogME is the mean over columns. `tests/test_rank.py` checks it against the reference implementation (thuml/LogME)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITERATIONS = 11  # the fixed point converges in a few steps; the reference stops after 11 at the latest
TOLERANCE = 1e-3  # relative change of alpha / beta that ends the iteration
EPSILON = 1e-5  # keeps the updates finite when the fit is perfect or empty


@dataclass(frozen=True)
class Fit:
    evidence: float  # LogME: the mean over label columns of the maximum log evidence per example
    weights: np.ndarray  # [columns, features]: the posterior mean of the linear head, one row per label column


def label_columns(labels: np.ndarray, regression: bool) -> np.ndarray:
    """[N, C]: regression labels as they are, class ids 0..C-1 as one-hot columns (C = the largest id + 1)."""
    y = np.asarray(labels)
    if regression:
        return (y.reshape(-1, 1) if y.ndim == 1 else y).astype(np.float64)
    ids = y.astype(np.int64)
    return (ids[:, None] == np.arange(int(ids.max()) + 1)[None, :]).astype(np.float64)


def logme(features: np.ndarray, labels: np.ndarray, regression: bool) -> Fit:
    """LogME of `labels` ([N] class ids, or [N] / [N, C] regression targets) on `features` ([N, D])."""
    f = np.asarray(features, dtype=np.float64)
    y = label_columns(labels, regression)
    n, d = f.shape
    u, s, vt = np.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10  # the rank of F: directions without data carry no evidence
    u, s, vt = u[:, keep], s[keep], vt[keep]
    sigma = s**2
    evidences, weights = [], []
    for column in y.T:
        proj = u.T @ column  # the labels in the basis of F's left singular vectors
        proj2 = proj**2
        outside = float(column @ column - proj2.sum())  # the part of y that no linear head on F can reach
        alpha, beta = 1.0, 1.0
        for _ in range(ITERATIONS):
            ratio = alpha / beta
            gamma = float((sigma / (sigma + ratio)).sum())  # effective number of well-determined weights
            m2 = float((sigma * proj2 / (ratio + sigma) ** 2).sum())  # |m|^2
            res2 = float((proj2 * (ratio / (ratio + sigma)) ** 2).sum()) + outside  # |y - F m|^2
            alpha = gamma / (m2 + EPSILON)
            beta = (n - gamma) / (res2 + EPSILON)
            if abs(alpha / beta - ratio) / ratio <= TOLERANCE:
                break
        log_det = np.log(alpha + beta * sigma).sum() + (d - len(sigma)) * np.log(alpha)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - log_det / 2
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
        weights.append(vt.T @ (s * proj / (ratio + sigma)))
    return Fit(float(np.mean(evidences)), np.stack(weights))
