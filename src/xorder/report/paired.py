"""Paired statistics of two systems on the same examples: stratified bootstrap CI and permutation p."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

TESTABLE = ("accuracy", "pearson", "spearman")  # metrics the paired tests know how to recompute per example
BASE_SEED = 6  # issue 6; with the compared cell's name it seeds every draw


@dataclass
class Stratum:
    """One (seed, language) of a paired comparison: per-example gold and the two systems' predictions,
    matched by example id."""

    seed: int
    language: str
    gold: np.ndarray
    a: np.ndarray  # the first order of the compared pair (english_first by default)
    b: np.ndarray  # the second (multilingual_first)


def _rows_metric(metric: str, gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The metric (x100) along the last axis: accuracy, or a Pearson/Spearman correlation per row."""
    if metric == "accuracy":
        return 100.0 * (pred == gold).mean(axis=-1)
    if metric == "spearman":
        from scipy.stats import rankdata

        gold, pred = rankdata(gold, axis=-1), rankdata(pred, axis=-1)
    gc = gold - gold.mean(axis=-1, keepdims=True)
    pc = pred - pred.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (gc * pc).sum(axis=-1) / np.sqrt((gc * gc).sum(axis=-1) * (pc * pc).sum(axis=-1))


def _standardize(pred: np.ndarray, metric: str) -> np.ndarray:
    """Predictions on a common scale, leaving the metric unchanged (z-scores; ranks for Spearman)."""
    if metric == "spearman":
        from scipy.stats import rankdata

        pred = rankdata(pred)
    pred = pred.astype(np.float64)
    std = pred.std()
    return (pred - pred.mean()) / std if std > 0 else pred - pred.mean()


def stratum_draws(
    stratum: Stratum, metric: str, resamples: int, rng: np.random.Generator
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(metric a, metric b, bootstrap differences a-b, permutation differences a-b) for one stratum.

    Bootstrap: resample the examples with replacement, score both systems on the same resample.
    Permutation (paired, approximate randomization): swap the two systems' predictions of each example with
    probability 1/2, which is the null hypothesis that the order does not matter for any example.
    Accuracy takes a shortcut that is exact in distribution: the difference of a resample depends only on
    how many examples only a / only b got right (multinomial), and of a swap only on how many of those
    flip (binomial), so it costs O(resamples) however many examples there are. Correlations are not sums
    over examples: they are recomputed on every resample, in chunks. Before swapping, each system's
    predictions are standardized (Pearson) or ranked (Spearman): the metric ignores a system's offset and
    scale, and swapping raw outputs of two differently calibrated regressors would mix scales and make
    every swapped correlation small, testing calibration instead of the difference in correlation."""
    gold, a, b, n = stratum.gold, stratum.a, stratum.b, len(stratum.gold)
    if metric == "accuracy":
        d = (a == gold).astype(np.int64) - (b == gold).astype(np.int64)
        counts = np.array([(d == -1).sum(), (d == 0).sum(), (d == 1).sum()])
        boot = rng.multinomial(n, counts / n, size=resamples)
        plus = rng.binomial(int(counts[0] + counts[2]), 0.5, size=resamples)
        return (
            100.0 * (a == gold).mean(),
            100.0 * (b == gold).mean(),
            100.0 * (boot[:, 2] - boot[:, 0]) / n,
            100.0 * (2 * plus - counts[0] - counts[2]) / n,
        )
    za, zb = _standardize(a, metric), _standardize(b, metric)
    if metric == "pearson":
        boot, perm = _pearson_draws(gold.astype(np.float64), za, zb, resamples, rng)
    else:
        boots, perms = [], []
        chunk = max(1, 2_000_000 // max(n, 1))
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            idx = rng.integers(0, n, size=(size, n))
            g = gold[idx]
            boots.append(_rows_metric(metric, g, a[idx]) - _rows_metric(metric, g, b[idx]))
            swap = rng.random((size, n)) < 0.5
            perms.append(
                _rows_metric(metric, gold, np.where(swap, zb, za)) - _rows_metric(metric, gold, np.where(swap, za, zb))
            )
        boot, perm = np.concatenate(boots), np.concatenate(perms)
    return float(_rows_metric(metric, gold, a)), float(_rows_metric(metric, gold, b)), boot, perm


def _pearson_draws(
    gold: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson differences of bootstrap resamples and of swaps from weighted sums alone: a resample is a
    row of example counts, a swap a row of 0/1, and every correlation needs only five sums, so each chunk
    is one matrix product. Inputs are centered (gold) and standardized (a, b) so the sums do not cancel."""
    n = len(gold)
    g = gold - gold.mean()

    def corr(
        sg: np.ndarray, sx: np.ndarray, sgg: np.ndarray, sxx: np.ndarray, sgx: np.ndarray, count: float
    ) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * (sgx - sg * sx / count) / np.sqrt((sgg - sg * sg / count) * (sxx - sx * sx / count))

    boots, perms = [], []
    chunk = max(1, 4_000_000 // max(n, 1))
    columns = np.stack([g, a, b, g * g, a * a, b * b, g * a, g * b], axis=1)
    swapped = np.stack([b - a, b * b - a * a, g * (b - a)], axis=1)
    base = np.array([a.sum(), (a * a).sum(), (g * a).sum(), b.sum(), (b * b).sum(), (g * b).sum()])
    sg, sgg = g.sum(), (g * g).sum()
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        m = weights @ columns
        boots.append(
            corr(m[:, 0], m[:, 1], m[:, 3], m[:, 4], m[:, 6], n) - corr(m[:, 0], m[:, 2], m[:, 3], m[:, 5], m[:, 7], n)
        )
        d = (rng.random((size, n)) < 0.5).astype(np.float64) @ swapped  # what swapping moves from a to b
        perms.append(
            corr(sg, base[0] + d[:, 0], sgg, base[1] + d[:, 1], base[2] + d[:, 2], n)
            - corr(sg, base[3] - d[:, 0], sgg, base[4] - d[:, 1], base[5] - d[:, 2], n)
        )
    return np.concatenate(boots), np.concatenate(perms)


def _rng(*names: Any) -> np.random.Generator:
    """A generator seeded by what it tests, so a cell's numbers do not depend on which other cells exist."""
    return np.random.default_rng([BASE_SEED, *(zlib.crc32(str(n).encode()) for n in names)])


def _combine(parts: list[list[tuple[Any, ...]]], i: int) -> Any:
    """Item `i` of the draws, averaged over a seed's languages, then over seeds."""
    return sum(sum(p[i] for p in per) / len(per) for per in parts) / len(parts)


def paired_effect(
    strata: list[Stratum], metric: str, columns: dict[str, list[str]], resamples: int, name: str
) -> dict[str, dict[str, float]]:
    """english_first - multilingual_first for each column (a language, or an average over languages), pooled
    over seeds: the column's value per seed is the mean over its languages, then the mean over seeds, so the
    point estimate equals the difference of the tables' seed means. Each (seed, language) is resampled on
    its own (stratified): seeds and languages keep their weight in every resample. Returns per column
    a, b, diff, ci_low, ci_high (percentile 95% bootstrap CI), p_value (two-sided, (1 + #|T*| >= |T|) /
    (R + 1)), n_seeds and n_examples."""
    draws = {}
    for s in strata:
        draws[(s.seed, s.language)] = (
            *stratum_draws(s, metric, resamples, _rng(name, s.seed, s.language)),
            len(s.gold),
        )
    out: dict[str, dict[str, float]] = {}
    seeds = sorted({s.seed for s in strata})
    for column, languages in columns.items():
        usable = [seed for seed in seeds if all((seed, lang) in draws for lang in languages)]
        if not usable or not languages:
            continue
        parts = [[draws[(seed, lang)] for lang in languages] for seed in usable]
        a, b, boot, perm = (_combine(parts, i) for i in range(4))
        diff = a - b
        finite = boot[np.isfinite(boot)]
        if math.isfinite(diff) and len(finite) == len(boot):
            low, high = np.percentile(boot, [2.5, 97.5])
            tol = 1e-9 * max(1.0, abs(diff))
            p = (1 + int((np.abs(perm) >= abs(diff) - tol).sum())) / (len(perm) + 1)
        else:
            low = high = p = float("nan")
        out[column] = {
            "a": float(a),
            "b": float(b),
            "diff": float(diff),
            "ci_low": float(low),
            "ci_high": float(high),
            "p_value": float(p),
            "n_seeds": len(usable),
            "n_examples": sum(p_[4] for per in parts for p_ in per),
        }
    return out
