"""Coverage of the interval methods on known truths, skewed and symmetric, with few and many groups.

Vectorized: ``mean_interval`` is the function ``estimate`` uses, applied here to many simulated
runs of group means at once; the end-to-end test runs real ``group_means`` of a uqdiff design.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqdiff.estimators import group_means
from uqdiff.estimators.intervals import mean_interval
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import LinearGenerator

RNG = np.random.default_rng(11)


def _coverage(means: np.ndarray, truth: float, method: str) -> tuple[float, float]:
    n = means.shape[1]
    mean = means.mean(axis=1)
    dev = means - mean[:, None]
    low, high, _ = mean_interval(n, mean, (dev**2).sum(axis=1), (dev**3).sum(axis=1), interval_method=method)
    return float(np.mean((low <= truth) & (truth <= high))), float(np.mean(high - low))


@pytest.mark.parametrize("groups", [8, 16, 64])
def test_skew_t_is_the_t_interval_for_symmetric_group_means(groups):
    means = RNG.standard_normal((20_000, groups))
    cov_skew, width_skew = _coverage(means, 0.0, "skew-t")
    cov_t, width_t = _coverage(means, 0.0, "t")
    assert abs(cov_skew - 0.95) < 0.01 and abs(cov_t - 0.95) < 0.01
    assert width_skew / width_t < 1.05


@pytest.mark.parametrize("groups, least", [(64, 0.925), (256, 0.935)])
def test_skew_t_repairs_the_t_interval_under_strong_skew(groups, least):
    # exp(Z): skewness 6.2. The t interval undercovers (about 0.91 at 64 groups, 0.93 at 256).
    means = np.exp(RNG.standard_normal((20_000, groups)))
    cov_skew, _ = _coverage(means, float(np.exp(0.5)), "skew-t")
    cov_t, _ = _coverage(means, float(np.exp(0.5)), "t")
    assert cov_skew >= least and cov_skew > cov_t + 0.005, (cov_skew, cov_t)


def test_skew_t_does_not_overcorrect_a_rare_event():
    # a 2.3 % indicator with 512 groups: lattice data, where a full correction would over-cover
    means = (RNG.standard_normal((20_000, 512)) > 2.0).astype(np.float64)
    cov, _ = _coverage(means, 0.02275, "skew-t")
    assert 0.93 <= cov <= 0.975, cov


def test_end_to_end_coverage_of_a_skewed_statistic_under_antithetic_pairs():
    """exp(x) under antithetic pairs: the pair means cosh(x) are skewed. 400 runs of 128 pairs each."""
    w = np.cos(np.arange(8.0))[None, :]
    gen = LinearGenerator(np.zeros(1), w / np.linalg.norm(w))  # x = w . z ~ N(0, 1)
    reps, pairs = 400, 128
    _, means = group_means(
        gen,
        lambda x: torch.exp(x[:, 0].double()),
        budget=2 * reps * pairs,
        design="antithetic",
        seed=3,
        run=RunSettings(batch_size=8192, dtype=torch.float64),
    )
    cov, _ = _coverage(means.reshape(reps, pairs), float(np.exp(0.5)), "skew-t")
    assert cov >= 0.92, cov


def test_fourth_moment_merges_exactly_however_the_groups_are_split():
    from uqdiff.estimators.accumulator import GroupAccumulator

    rng = np.random.default_rng(11)
    x = rng.lognormal(size=(1000, 2))
    acc = GroupAccumulator()
    for start, stop in [(0, 70), (70, 333), (333, 334), (334, 1000)]:
        acc.add(start, x[start:stop], np.zeros_like(x[start:stop]))
    m = acc.moments()
    dev = x - x.mean(axis=0)
    np.testing.assert_allclose(m.m4, (dev**4).sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(m.m3, (dev**3).sum(axis=0), rtol=1e-10)


def test_holm_matches_statsmodels_with_ties_and_maps():
    from statsmodels.stats.multitest import multipletests

    from uqdiff.estimators.intervals import holm

    rng = np.random.default_rng(4)
    for p in (rng.random(6) ** 3, np.array([0.01, 0.01, 0.04, 0.5, 0.04]), rng.random((3, 4)) ** 4):
        np.testing.assert_allclose(holm(p), multipletests(p.ravel(), method="holm")[1].reshape(p.shape), rtol=1e-12)


@pytest.mark.parametrize("method", ["skew-t", "t", "normal"])
def test_a_results_p_value_inverts_its_own_interval(method):
    """p < 1 - level exactly where the null lies outside the interval, skew correction included."""
    from uqdiff import estimate
    from uqdiff.estimators.results import p_value
    from uqdiff.samplers import LinearGenerator

    g = LinearGenerator(np.zeros(1))  # x = z: exp(x) is skewed, so the skew-t interval is not symmetric
    r = estimate(g, {"e": lambda x: torch.exp(2 * x[:, 0])}, budget=200, seed=3, interval_method=method)["e"]
    if method == "skew-t":
        assert r.high - r.estimate > 1.05 * (r.estimate - r.low)  # the correction is at work
    for null in np.linspace(r.low - 0.3, r.high + 0.3, 61):
        outside = null < r.low or null > r.high
        assert (p_value(r, null) < 1 - r.confidence_level) == outside, null
    assert p_value(r, r.low) == pytest.approx(0.05, rel=1e-6) and p_value(r, r.high) == pytest.approx(0.05, rel=1e-6)


def test_the_measured_efficiency_interval_covers_the_true_ratio():
    """compare's side-by-side efficiency gets an F interval; with normal group means it covers at its level."""
    from scipy import stats as sps

    from uqdiff import Equicorrelated, compare
    from uqdiff.samplers import LinearGenerator

    g = LinearGenerator(np.zeros(1), np.array([[1.0, 0.0]]))  # S = z0: normal, so both runs' group means are
    pairs = Equicorrelated(2, 0.5)  # pair means of correlation 0.5: variance 0.75 per pair, MC 1 per noise
    truth = (1 / 128) / (0.75 / 64) * (sps.t.ppf(0.975, 127) / sps.t.ppf(0.975, 63)) ** 2  # widths carry t quantiles
    covered, runs = 0, 300
    for seed in range(runs):
        c = compare(g, {"s": lambda x: x[:, 0]}, budget=128, designs=["mc", pairs], seed=seed, interval_method="t")
        low, high = c.efficiency_interval("s", pairs.name)
        covered += low <= truth <= high
    assert c.efficiency_interval("s", "mc") == (1.0, 1.0)
    assert 0.92 <= covered / runs <= 0.98, covered / runs


def test_ratio_of_means_interval_covers_a_known_efficiency():
    """Units with chi-square variance estimates around a known ratio: the delta-method interval covers it."""
    from uqdiff.estimators.intervals import ratio_of_means_interval

    rng = np.random.default_rng(11)
    truth, hits, reps = 3.0, 0, 2000
    for _ in range(reps):
        scale = rng.lognormal(0.0, 0.5, size=20)  # images differ in how noisy they are
        den = scale * rng.chisquare(8, size=20) / 8
        num = truth * scale * rng.chisquare(8, size=20) / 8
        _, low, high = ratio_of_means_interval(num, den, 0.95)
        hits += low <= truth <= high
    assert 0.93 <= hits / reps <= 0.97
