"""Paired statistics of two orders scored on the same evaluation items: a two-level interval (source items
resampled as clusters, seed-to-seed spread added) and a permutation test that swaps whole items.

Why clusters: the evaluation sets of PAWS-X, stsb_multi_mt and XNLI are translations of one set of source items, and
every seed is scored on the same items. A row of (seed, language, example) is not an independent observation: an
item that one order gets right and the other wrong tends to be so in every language and every seed. So an item
goes in or out of a resample with all its rows (every language, every seed), and the permutation test swaps the two
orders' predictions of an item in all its rows at once. Treating rows as independent made a 60-item effect look
like p = 0.005 (DESIGN.md, "Known traps").

Why two levels, and why not a bootstrap over seeds: a study has 3 seeds or so. Resampling 3 seeds gives 10 distinct
seed sets and shrinks their variance by a third; the item bootstrap alone holds the trained models fixed and says
nothing about another seed. So the interval is the item-cluster bootstrap distribution of the estimate (all seeds
kept, items shared across seeds) plus a seed term: the between-seed variance of the per-seed effect that item
sampling does not explain, estimated by moments (the spread of the seeds' effects minus the part the per-seed item
bootstraps attribute to item-level noise), divided by the number of seeds. The half-width is the square root of
the two variances' sum times a Student t quantile with Satterthwaite's degrees of freedom, never fewer than seeds - 1
(the bare t interval over seeds): the small-sample answer for a variance estimated from a few seeds. With one seed
the seed term is not measurable and the interval is the items' percentile interval alone (the tables say so).
Crossed seeds x items: Owen (2007), "The pigeonhole bootstrap", Annals of Applied Statistics 1(2).

The permutation p tests the null that the order makes no difference to any item's predictions, for these trained
models: it swaps items, not seeds (with 3 seeds no seed-level test can go below p = 0.25); the interval is where
seed variation enters.

Metrics are recomputed on every resample from weighted sums, per (seed, language), then averaged as the tables
average them: a mean of per-example shares (accuracy's right answers; the target kind's `example_scores`) from
per-item sums, Pearson from nine per-item sums (one matrix product per chunk of resamples), Spearman from weighted
mid-ranks; so a correlation is a correlation of the resampled items, never a
mean of per-example values."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata
from scipy.stats import t as student_t

from xorder.kinds.base import Shares

BASE_SEED = 6  # issue 6; with the compared cell's name it seeds every draw
CHUNK = 4_000_000  # resamples x items (or rows) held in memory at once


@dataclass
class Stratum:
    """One (seed, language) of a paired comparison: per-example gold and the two orders' predictions, matched by
    example id, and the source item of each example (shared by its translations and by every seed)."""

    seed: int
    language: str
    gold: np.ndarray
    a: np.ndarray  # the first order of the compared pair (english_first by default)
    b: np.ndarray  # the second (multilingual_first)
    items: np.ndarray


@dataclass
class Draws:
    """Per stratum the observed metric of each order, and per resample and stratum the a - b difference of the
    bootstrap (item clusters drawn with replacement) and of the permutation (items swapped between the orders)."""

    a: np.ndarray  # strata
    b: np.ndarray
    boot: np.ndarray  # resamples x strata
    perm: np.ndarray


def _rng(*names: Any) -> np.random.Generator:
    """A generator seeded by what it tests, so a cell's numbers do not depend on which other cells exist."""
    return np.random.default_rng([BASE_SEED, *(zlib.crc32(str(n).encode()) for n in names)])


def _codes(strata: list[Stratum]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Each stratum's items as numbers 0..K-1, and the groups that are resampled each with its own size: the items
    seen in the same languages (one group for an aligned split; one per language for a split without alignment)."""
    names, inverse = np.unique(np.concatenate([s.items.astype(str) for s in strata]), return_inverse=True)
    codes = np.split(inverse, np.cumsum([len(s.items) for s in strata])[:-1])
    languages = sorted({s.language for s in strata})
    member = np.zeros((len(names), len(languages)), dtype=bool)
    for s, c in zip(strata, codes):
        member[c, languages.index(s.language)] = True
    _, group = np.unique(member, axis=0, return_inverse=True)
    return codes, [np.flatnonzero(group.ravel() == g) for g in range(int(group.max()) + 1)], len(names)


def _weights(rng: np.random.Generator, groups: list[np.ndarray], k: int, size: int) -> np.ndarray:
    """How often each item is drawn in each of `size` bootstrap resamples (resamples x items): every group of
    items drawn with replacement to its own size."""
    w = np.zeros((size, k))
    for g in groups:
        draw = rng.integers(0, len(g), size=(size, len(g))) + (np.arange(size) * len(g))[:, None]
        w[:, g] = np.bincount(draw.ravel(), minlength=size * len(g)).reshape(size, len(g))
    return w


def _per_item(codes: np.ndarray, k: int, columns: np.ndarray) -> np.ndarray:
    """Sums of each column over an item's rows (items x columns)."""
    return np.stack([np.bincount(codes, weights=c, minlength=k) for c in columns.T], axis=1)


def _corr(n: Any, sx: Any, sy: Any, sxx: Any, syy: Any, sxy: Any) -> Any:
    """Pearson x100 from sums (weighted counts)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))


def _z(x: np.ndarray) -> np.ndarray:
    """Standardized: a correlation ignores a system's offset and scale, and swapping raw outputs of two differently
    calibrated regressors would test their calibration instead of their correlations; centered sums also keep the
    weighted sums from cancelling."""
    x = x.astype(np.float64) - x.mean()
    std = x.std()
    return x / std if std > 0 else x


def _midranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Ranks of x in each resample that the rows of `w` describe (each value counted w times; ties share their
    mean rank), as scipy's rankdata gives them on the resampled values."""
    values, group = np.unique(x, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    counts = np.add.reduceat(w[:, order], starts, axis=1)
    below = np.cumsum(counts, axis=1) - counts
    return (below + (counts + 1) / 2)[:, group.ravel()]


def _wcorr(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _corr(w.sum(1), (w * x).sum(1), (w * y).sum(1), (w * x * x).sum(1), (w * y * y).sum(1), (w * x * y).sum(1))


Resample = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _mean(
    strata: list[Stratum], codes: list[np.ndarray], k: int, shares: Shares
) -> tuple[np.ndarray, np.ndarray, Resample]:
    """A metric that is the mean of per-example shares (the target kind's `example_scores`; accuracy: right
    answers): per-item counts of rows and sums of shares make a resample's metric a ratio of weighted sums, and a
    swap moves an item's shares from one order to the other."""
    counts = np.stack(
        [
            _per_item(c, k, np.stack([np.ones(len(s.gold)), shares(s.gold, s.a), shares(s.gold, s.b)], axis=1))
            for s, c in zip(strata, codes)
        ],
        axis=1,
    )  # items x strata x (rows, a's shares, b's shares)
    total, diff, n = counts.sum(0), counts[:, :, 1] - counts[:, :, 2], len(strata)

    def resample(w: np.ndarray, swap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = (w @ counts.reshape(k, -1)).reshape(len(w), n, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = 100 * (m[:, :, 1] - m[:, :, 2]) / m[:, :, 0]
        return boot, 100 * (diff.sum(0) - 2 * (swap @ diff)) / total[:, 0]

    return 100 * total[:, 1] / total[:, 0], 100 * total[:, 2] / total[:, 0], resample


def _pearson(strata: list[Stratum], codes: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray, Resample]:
    """Nine per-item sums (count, gold, each order, their squares and products with gold) give every resample's
    correlations in one matrix product; a swap moves three of them from one order to the other."""
    sums, swaps = [], []
    for s, c in zip(strata, codes):
        g, za, zb = s.gold.astype(np.float64) - s.gold.mean(), _z(s.a), _z(s.b)
        sums.append(_per_item(c, k, np.stack([np.ones(len(g)), g, za, zb, g * g, za * za, zb * zb, g * za, g * zb], 1)))
        swaps.append(_per_item(c, k, np.stack([zb - za, zb * zb - za * za, g * (zb - za)], axis=1)))
    per_item, moved, n = np.stack(sums, axis=1), np.stack(swaps, axis=1), len(strata)  # items x strata x 9 (x 3)
    t = per_item.sum(0)

    def resample(w: np.ndarray, swap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = (w @ per_item.reshape(k, -1)).reshape(len(w), n, 9)
        boot = _corr(m[..., 0], m[..., 1], m[..., 2], m[..., 4], m[..., 5], m[..., 7]) - _corr(
            m[..., 0], m[..., 1], m[..., 3], m[..., 4], m[..., 6], m[..., 8]
        )
        d = (swap @ moved.reshape(k, -1)).reshape(len(w), n, 3)
        perm = _corr(t[:, 0], t[:, 1], t[:, 2] + d[..., 0], t[:, 4], t[:, 5] + d[..., 1], t[:, 7] + d[..., 2]) - _corr(
            t[:, 0], t[:, 1], t[:, 3] - d[..., 0], t[:, 4], t[:, 6] - d[..., 1], t[:, 8] - d[..., 2]
        )
        return boot, perm

    obs_a = _corr(t[:, 0], t[:, 1], t[:, 2], t[:, 4], t[:, 5], t[:, 7])
    return obs_a, _corr(t[:, 0], t[:, 1], t[:, 3], t[:, 4], t[:, 6], t[:, 8]), resample


def _spearman(strata: list[Stratum], codes: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray, Resample]:
    """Ranks change with every resample: weighted mid-ranks per stratum, and swapped ranks ranked again."""

    def rho(gold: np.ndarray, pred: np.ndarray) -> float:
        return float(_wcorr(rankdata(gold)[None], rankdata(pred)[None], np.ones((1, len(gold))))[0])

    def resample(w: np.ndarray, swap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boot, perm = np.empty((len(w), len(strata))), np.empty((len(w), len(strata)))
        for j, (s, c) in enumerate(zip(strata, codes)):
            rw, on = w[:, c], swap[:, c] > 0
            rg = _midranks(s.gold, rw)
            boot[:, j] = _wcorr(rg, _midranks(s.a, rw), rw) - _wcorr(rg, _midranks(s.b, rw), rw)
            za, zb = _z(rankdata(s.a)), _z(rankdata(s.b))
            g, ones = np.broadcast_to(rankdata(s.gold), on.shape), np.ones(on.shape)
            perm[:, j] = _wcorr(g, rankdata(np.where(on, zb, za), axis=1), ones) - _wcorr(
                g, rankdata(np.where(on, za, zb), axis=1), ones
            )
        return boot, perm

    return np.array([rho(s.gold, s.a) for s in strata]), np.array([rho(s.gold, s.b) for s in strata]), resample


CORRELATIONS = {"pearson": _pearson, "spearman": _spearman}  # what a kind may name in its `correlations`


def draws(strata: list[Stratum], metric: str, resamples: int, name: str, shares: Shares | None = None) -> Draws:
    """Every stratum's observed metrics and its bootstrap and permutation differences, with the same item draws
    and swaps in every stratum (an item is one cluster across languages and seeds). `metric`: a correlation of
    CORRELATIONS, else the mean of the `shares` of each example."""
    codes, groups, k = _codes(strata)
    if metric in CORRELATIONS:
        obs_a, obs_b, resample = CORRELATIONS[metric](strata, codes, k)
    elif shares is not None:
        obs_a, obs_b, resample = _mean(strata, codes, k, shares)
    else:
        raise ValueError(f"{metric} is no correlation and has no per-example shares: no paired test")
    rng = _rng(name)
    boots, perms = [], []
    chunk = max(1, CHUNK // max(k, *(len(s.gold) for s in strata)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        w = _weights(rng, groups, k, size)
        swap = (rng.random((size, k)) < 0.5).astype(np.float64)  # 1: the item's predictions change orders
        boot, perm = resample(w, swap)
        boots.append(boot)
        perms.append(perm)
    return Draws(obs_a, obs_b, np.concatenate(boots), np.concatenate(perms))


def combine(d: Draws, by_seed: list[list[int]]) -> dict[str, float]:
    """One column's effect from the strata `by_seed` (per seed, the strata of the column's languages): the mean
    over seeds of the mean over languages, its two-level 95% interval (module docstring) and its permutation p."""
    per_seed = [(d.a[idx].mean(), d.b[idx].mean(), d.boot[:, idx].mean(1), d.perm[:, idx].mean(1)) for idx in by_seed]
    a = float(np.mean([p[0] for p in per_seed]))
    b = float(np.mean([p[1] for p in per_seed]))
    boot = np.mean([p[2] for p in per_seed], axis=0)
    perm = np.mean([p[3] for p in per_seed], axis=0)
    diff, seeds = a - b, len(per_seed)
    out = {"a": a, "b": b, "diff": diff, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    out["seed_sd"] = math.nan
    if not (math.isfinite(diff) and np.isfinite(boot).all()):
        return out
    if seeds > 1:
        effects = np.array([p[0] - p[1] for p in per_seed])
        pooled = np.var(boot, ddof=1)  # item sampling of the mean over seeds
        within = np.mean([np.var(p[2], ddof=1) for p in per_seed])  # item sampling of one seed's effect
        noise = (within - pooled) / (seeds - 1)  # the part of `pooled` that differs between seeds
        spread = np.var(effects, ddof=1) / seeds  # seeds' spread: that noise plus real seed-to-seed variation
        variance = pooled + max(0.0, spread - noise)
        # Satterthwaite's degrees of freedom, never fewer than the seeds give (the bare t interval over seeds)
        df = max(seeds - 1, variance**2 / (spread**2 / (seeds - 1))) if spread > 0 else math.inf
        half = float(student_t.ppf(0.975, df) * math.sqrt(variance))
        low, high = diff - half, diff + half
        out["seed_sd"] = float(np.std(effects, ddof=1))
    else:
        low, high = np.percentile(boot, [2.5, 97.5])
    tol = 1e-9 * max(1.0, abs(diff))
    p = (1 + int((np.abs(perm) >= abs(diff) - tol).sum())) / (len(perm) + 1)
    return {**out, "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


def paired_effect(
    strata: list[Stratum],
    metric: str,
    columns: dict[str, list[str]],
    resamples: int,
    name: str,
    shares: Shares | None = None,
) -> dict[str, dict[str, float]]:
    """english_first - multilingual_first for each column (a language, or an average over languages), pooled
    over seeds: the column's value per seed is the mean over its languages, then the mean over seeds, so the
    point estimate equals the difference of the tables' seed means. Returns per column a, b, diff, ci_low,
    ci_high (two-level 95% interval), p_value (item permutation, two-sided, (1 + #|T*| >= |T|) / (R + 1)),
    seed_sd (standard deviation of the per-seed effects; NaN for one seed), n_seeds, n_examples, n_items.
    `metric` and `shares`: as `draws` takes them (the target kind's `correlations` and `example_scores`)."""
    if not strata:
        return {}
    d = draws(strata, metric, resamples, name, shares)
    index = {(s.seed, s.language): i for i, s in enumerate(strata)}
    out: dict[str, dict[str, float]] = {}
    seeds = sorted({s.seed for s in strata})
    for column, languages in columns.items():
        usable = [seed for seed in seeds if all((seed, lang) in index for lang in languages)]
        if not usable or not languages:
            continue
        by_seed = [[index[(seed, lang)] for lang in languages] for seed in usable]
        mine = [strata[i] for idx in by_seed for i in idx]
        out[column] = {
            **combine(d, by_seed),
            "n_seeds": len(usable),
            "n_examples": sum(len(s.gold) for s in mine),
            "n_items": len(np.unique(np.concatenate([s.items.astype(str) for s in mine]))),
        }
    return out
