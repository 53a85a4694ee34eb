"""The order effect's interval and p-value on simulated records with a known answer: translations and seeds of one
source item share that item's effect, and the two orders are equally good on average (no true order effect)."""

from __future__ import annotations

import numpy as np
import pytest

from xorder import kinds
from xorder.report import paired

ACCURACY = kinds.get("classification").example_scores("accuracy")
# every (kind, metric) with a paired test: per-example shares, or a correlation
PAIRED = [
    (name, metric)
    for name in kinds.names()
    for metric in kinds.get(name).metrics
    if kinds.get(name).example_scores(metric) is not None or metric in kinds.get(name).correlations
]

ITEMS, LANGUAGES, SEEDS = 60, 4, 3
TABLES, RESAMPLES = 400, 499


def simulated_table(rng: np.random.Generator, item_sd: float, seed_sd: float) -> list[paired.Stratum]:
    """One study's predictions: item i has a difficulty and an order effect u_i (mean 0: no true effect) that every
    language and seed sees; each seed shifts each order by its own amount (training noise); each (seed, language,
    item) is then right or wrong at random. Accuracy on binary labels."""
    difficulty, effect = rng.normal(0, 1.5, ITEMS), rng.normal(0, item_sd, ITEMS)
    gold = rng.integers(0, 2, ITEMS)
    strata = []
    for seed in range(SEEDS):
        shift_a, shift_b = rng.normal(0, seed_sd, 2)
        for language in range(LANGUAGES):
            right_a = rng.random(ITEMS) < 1 / (1 + np.exp(-(difficulty + effect / 2 + shift_a)))
            right_b = rng.random(ITEMS) < 1 / (1 + np.exp(-(difficulty - effect / 2 + shift_b)))
            a, b = np.where(right_a, gold, 1 - gold), np.where(right_b, gold, 1 - gold)
            strata.append(paired.Stratum(seed, f"l{language}", gold, a, b, np.arange(ITEMS)))
    return strata


def per_example_interval(strata: list[paired.Stratum], rng: np.random.Generator) -> tuple[float, float]:
    """The interval xorder gave before items: every (seed, language) resampled on its own, its examples as if
    independent (multinomial counts of a-only and b-only right answers), averaged as the tables average."""
    diffs = []
    for s in strata:
        d = (s.a == s.gold).astype(int) - (s.b == s.gold).astype(int)
        counts = np.array([(d == -1).sum(), (d == 0).sum(), (d == 1).sum()])
        boot = rng.multinomial(len(d), counts / len(d), size=RESAMPLES)
        diffs.append(100.0 * (boot[:, 2] - boot[:, 0]) / len(d))
    low, high = np.percentile(np.mean(diffs, axis=0), [2.5, 97.5])
    return float(low), float(high)


def coverage(item_sd: float, seed_sd: float) -> tuple[float, float, float]:
    """Over TABLES simulated studies: how often the new and the old 95% interval of `avg` cover the true effect 0,
    and how often the item permutation test rejects at 5%."""
    new = old = rejected = 0
    for k in range(TABLES):
        strata = simulated_table(np.random.default_rng(k), item_sd, seed_sd)
        got = paired.paired_effect(
            strata, "accuracy", {"avg": [f"l{i}" for i in range(LANGUAGES)]}, RESAMPLES, k, ACCURACY
        )
        new += got["avg"]["ci_low"] <= 0 <= got["avg"]["ci_high"]
        rejected += got["avg"]["p_value"] < 0.05
        low, high = per_example_interval(strata, np.random.default_rng(k))
        old += low <= 0 <= high
    return new / TABLES, old / TABLES, rejected / TABLES


def test_item_clusters_cover_a_null_effect_at_95_percent_where_examples_did_not():
    """Correlated items, no seed effect: the new interval covers 0 in 93-97% of the tables; the per-example one
    (rows as independent) far less often."""
    new, old, rejected = coverage(item_sd=2.0, seed_sd=0.0)
    print(f"coverage: items {new:.3f}, per-example {old:.3f}; item permutation rejects {rejected:.3f}")
    assert 0.93 <= new <= 0.97
    assert old <= 0.85
    assert 0.02 <= rejected <= 0.08


def test_seed_to_seed_variation_widens_the_interval():
    """Each seed moves each order by its own amount, and items carry no order effect beyond their shared
    difficulty: most of the variance is between seeds. The two-level interval still covers 0 in 93-97% of the
    tables; the items' percentile interval alone covered 59% of them, and the items' variance under the same t
    quantile (no seed variance added) 90%."""
    new, old, _ = coverage(item_sd=0.0, seed_sd=0.3)
    print(f"coverage with seed noise: items and seeds {new:.3f}, per-example {old:.3f}")
    assert 0.93 <= new <= 0.97
    assert old <= 0.85


@pytest.mark.parametrize("kind,metric", PAIRED)
def test_identical_translations_carry_the_information_of_one_language(kind: str, metric: str):
    """Three languages that are copies of one (the same items, the same predictions): resampling items, the average
    over them has exactly the one language's interval; rows taken as independent would shrink it."""
    rng = np.random.default_rng(3)
    shares = kinds.get(kind).example_scores(metric)
    gold = rng.integers(0, 3, 80) if shares is not None else rng.uniform(0, 5, 80)
    if shares is not None:
        a, b = np.where(rng.random(80) < 0.7, gold, 0), np.where(rng.random(80) < 0.6, gold, 0)
    else:
        a, b = gold + rng.normal(0, 1.5, 80), gold + rng.normal(0, 2.5, 80)
    languages = ["de", "fr", "ja"]
    columns = {"de": ["de"], "avg": languages}

    def effect(items: list[np.ndarray]) -> dict:
        strata = [paired.Stratum(1, lang, gold, a, b, its) for lang, its in zip(languages, items)]
        return paired.paired_effect(strata, metric, columns, 999, "copies", shares)

    clustered = effect([np.arange(80)] * 3)
    assert clustered["avg"]["n_items"] == 80 and clustered["avg"]["n_examples"] == 240
    assert clustered["avg"]["diff"] == pytest.approx(clustered["de"]["diff"])
    for bound in ("ci_low", "ci_high", "p_value"):
        assert clustered["avg"][bound] == pytest.approx(clustered["de"][bound])
    rows = effect([np.array([f"{lang}:{i}" for i in range(80)]) for lang in languages])
    width = {name: r["avg"]["ci_high"] - r["avg"]["ci_low"] for name, r in (("items", clustered), ("rows", rows))}
    assert width["rows"] < 0.75 * width["items"]  # about 1/sqrt(3) as wide


def test_two_seeds_give_the_t_interval_of_one_degree_of_freedom_at_most():
    """Two seeds whose rows are independent draws: subtracting item noise from the seeds' spread left Satterthwaite's
    degrees of freedom below 1 (+-300,000 points on accuracy in the demo grid); never fewer than the seeds' own 1,
    so a half-width is at most t(0.975, 1) x sqrt(item variance + seed spread / seeds), the item variance of a
    difference of two accuracies over n rows being at most 100^2 / n."""
    for k in range(100):
        rng = np.random.default_rng(k)
        gold = rng.integers(0, 2, 100)
        strata = [
            paired.Stratum(seed, "de", gold, rng.integers(0, 2, 100), rng.integers(0, 2, 100), np.arange(100))
            for seed in (1, 2)
        ]
        effects = [100 * ((s.a == s.gold).mean() - (s.b == s.gold).mean()) for s in strata]
        got = paired.paired_effect(strata, "accuracy", {"de": ["de"]}, 199, k, ACCURACY)["de"]
        half = (got["ci_high"] - got["ci_low"]) / 2
        assert half <= 12.71 * np.sqrt(100**2 / 100 + np.var(effects, ddof=1) / 2), k
