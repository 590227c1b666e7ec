"""The betting interval: valid at every n for bounded values (known truths, seeded), and usable with every design."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from uqdiff.estimators import group_means
from uqdiff.estimators.betting import betting_interval
from uqdiff.samplers import landscape_oracle
from uqdiff.statistics import PixelMean


def coverage(draw, truth, reps, seed):
    rng = np.random.default_rng(seed)
    hits, t_hits = 0, 0
    for _ in range(reps):
        x = draw(rng)
        low, high = betting_interval(x, (0, 1))
        hits += low <= truth <= high
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        t_hits += abs(x.mean() - truth) <= half
    return hits / reps, t_hits / reps


def test_a_rare_event_with_few_values_is_covered_where_t_is_not():
    cov, t_cov = coverage(lambda rng: (rng.random(40) < 0.05).astype(float), 0.05, 600, 0)
    assert cov >= 0.95 - 2 * 0.009 and t_cov < 0.9  # t collapses when no event is seen


def test_skewed_bounded_values_are_covered_at_16():
    cov, _ = coverage(lambda rng: rng.beta(0.2, 2.0, size=16), 0.2 / 2.2, 600, 1)
    assert cov >= 0.95 - 2 * 0.009


def test_width_shrinks_like_one_over_root_n_and_stays_near_t_on_benign_data():
    rng = np.random.default_rng(2)
    x = rng.random(4000)
    wide = np.subtract(*betting_interval(x[:1000], (0, 1))[::-1])
    narrow = np.subtract(*betting_interval(x, (0, 1))[::-1])
    assert 0.4 < narrow / wide < 0.6
    t_width = 2 * stats.t.ppf(0.975, 3999) * x.std(ddof=1) / np.sqrt(4000)
    assert 1.0 < narrow / t_width < 1.5  # the price of a guarantee at every n, small on benign data


def test_bounds_rescale_and_maps_get_one_interval_per_element():
    rng = np.random.default_rng(3)
    x = rng.random((200, 2, 3))
    unit = betting_interval(x, (0, 1))
    scaled = betting_interval(255 * x, (0, 255))
    assert unit.low.shape == (2, 3)
    np.testing.assert_allclose(scaled.low, 255 * unit.low, rtol=1e-9)
    assert (unit.low < x.mean(axis=0)).all() and (x.mean(axis=0) < unit.high).all()


@pytest.mark.parametrize(
    "values, bounds, match",
    [
        (np.array([0.2, 1.5]), (0, 1), r"1 value\(s\) lie outside the bounds \[0, 1\]"),
        (np.array([0.2, 0.5]), (1, 0), "low < high"),
        (np.array([0.2, np.nan]), (0, 1), "finite"),
        (np.array([]), (0, 1), "at least one value"),
    ],
)
def test_bad_input_is_refused(values, bounds, match):
    with pytest.raises(ValueError, match=match):
        betting_interval(values, bounds)


def test_group_means_of_any_design_with_the_statistics_bounds():
    """Group means are iid and bounded by the statistic's bounds: the recipe of docs/intervals.md."""
    g = landscape_oracle(8)
    stat = PixelMean()
    for design in ("antithetic", "rqmc"):
        _, means = group_means(g, stat, budget=1024, design=design, seed=4)
        low, high = betting_interval(means, stat.bounds)
        assert low <= g.true_pixel_mean() <= high
