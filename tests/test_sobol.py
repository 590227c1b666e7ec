"""Tests for uqdiff.designs.sobol_points and the SobolRQMC design.

Checks, each of which can fail: bit-for-bit agreement of the unscrambled
points with scipy and qmcpy, the (t, m, 2)-net property of scrambled 2-D
projections (t read off the unscrambled projection by counting points in
elementary boxes), exact 1-D stratification, strictly interior uniforms and
finite Gaussians, replicate-wise marginal laws (KS tests, digit balance),
reproducibility/purity in (seed, group index), and the error messages.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc

from uqdiff.designs import SobolRQMC, SubspaceCoupling
from uqdiff.designs.sobol_points import (
    MAX_DIM,
    scrambled_sobol,
    scrambled_sobol_normal,
    sobol_integers,
    to_gaussian,
    to_uniform,
)

BITS = 52
SCRAMBLES = ["lms+shift", "owen"]


def _rngs(seed: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, r]) for r in range(count)]


# ---------------------------------------------------------------------------
# unscrambled points: scipy and qmcpy, bit for bit
# ---------------------------------------------------------------------------

EXACT_CASES = [(0, 1), (1, 1), (5, 1), (10, 1), (1, 3), (4, 7), (8, 40), (10, 300), (2, MAX_DIM), (4, MAX_DIM)]


@pytest.mark.parametrize("m,d", EXACT_CASES)
def test_unscrambled_equals_scipy_bit_for_bit(m, d):
    expected = qmc.Sobol(d, scramble=False, bits=BITS).random_base2(m)
    got = sobol_integers(m, d, bits=BITS, order="gray")
    assert got.dtype == torch.int64
    assert tuple(got.shape) == (2**m, d)
    assert np.array_equal(got.numpy() / 2.0**BITS, expected)


@pytest.mark.parametrize("m,d", EXACT_CASES)
def test_unscrambled_equals_qmcpy_bit_for_bit(m, d):
    qmcpy = pytest.importorskip("qmcpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "first point is the origin", t truncation notices
        net = qmcpy.DigitalNetB2(d, randomize=False, order="RADICAL INVERSE", t=BITS)
        expected = net.gen_samples(2**m, warn=False)
    got = sobol_integers(m, d, bits=BITS, order="natural")
    assert expected.shape == (2**m, d)
    assert np.array_equal(got.numpy() / 2.0**BITS, expected)


def test_natural_is_default_and_gray_is_a_permutation_of_it():
    nat = sobol_integers(6, 5)
    assert torch.equal(nat, sobol_integers(6, 5, bits=BITS, order="natural"))
    gray = sobol_integers(6, 5, order="gray")
    i = np.arange(64)
    assert torch.equal(gray, nat[torch.from_numpy(i ^ (i >> 1))])
    with pytest.raises(ValueError):
        sobol_integers(3, 2, order="bogus")


def test_fewer_bits_is_a_truncation():
    # the first m digits do not depend on how many are kept
    for bits in (10, 30):
        assert torch.equal(sobol_integers(8, 50, bits=bits), sobol_integers(8, 50, bits=BITS) >> (BITS - bits))


# ---------------------------------------------------------------------------
# net properties
# ---------------------------------------------------------------------------


def _equal_counts(x: np.ndarray, y: np.ndarray, m: int, t: int, bits: int = BITS) -> bool:
    """Every elementary box of volume 2**(t-m) holds exactly 2**t of the 2**m points."""
    k = m - t
    for a in range(k + 1):
        b = k - a
        hx = x >> (bits - a) if a else np.zeros_like(x)
        hy = y >> (bits - b) if b else np.zeros_like(y)
        counts = np.bincount(hx * 2**b + hy, minlength=2**k)
        if counts.size != 2**k or not np.all(counts == 2**t):
            return False
    return True


def _t_value(x: np.ndarray, y: np.ndarray, m: int) -> int:
    return next(t for t in range(m + 1) if _equal_counts(x, y, m, t))


_PAIR_RNG = np.random.default_rng(20240611)
PAIRS = [(0, 1), (1, 2), (5, 17), (100, 20000), (21199, 21200), (0, 21200)] + [
    tuple(int(v) for v in _PAIR_RNG.choice(MAX_DIM, size=2, replace=False)) for _ in range(4)
]


def test_t_value_helper_detects_a_bad_set():
    # the 2-D Sobol' prefix of 2**m points is a (0, m, 2)-net; a shuffled coordinate is not
    x = sobol_integers(6, 2).numpy()
    assert _t_value(x[:, 0], x[:, 1], 6) == 0
    y = x[np.random.default_rng(0).permutation(64), 1]
    assert _t_value(x[:, 0], y, 6) > 0
    assert not _equal_counts(x[:, 0], y, 6, 0)


@pytest.mark.parametrize("scramble", SCRAMBLES)
@pytest.mark.parametrize("m", [4, 6, 8])
def test_scrambling_keeps_net_property(m, scramble):
    base = sobol_integers(m, MAX_DIM).numpy()
    t_values = {p: _t_value(base[:, p[0]], base[:, p[1]], m) for p in PAIRS}
    assert t_values[(0, 1)] == 0  # the first two Sobol' coordinates form a (0, m, 2)-net
    reps = 3 if scramble == "lms+shift" else 2  # Owen at 21201 dims is the slow part
    points = scrambled_sobol(m, MAX_DIM, _rngs(11 * m, reps), scramble=scramble).numpy()
    assert points.shape == (reps, 2**m, MAX_DIM)
    assert points.min() >= 0 and points.max() < 2**BITS
    for r in range(reps):
        for (i, j), t in t_values.items():
            assert _equal_counts(points[r, :, i], points[r, :, j], m, t), (r, i, j, t)
        # every 1-D projection is a (0, m, 1)-net: one point per interval [k/n, (k+1)/n)
        cells = np.sort(points[r] >> (BITS - m), axis=0)
        assert np.array_equal(cells, np.broadcast_to(np.arange(2**m)[:, None], cells.shape))
    # the scramble really changed the points
    assert not np.array_equal(points[0], base)
    assert not np.array_equal(points[0], points[1])


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_gaussian_points_stratify_each_coordinate(scramble):
    m, d = 5, 64
    z = scrambled_sobol_normal(m, d, _rngs(3, 4), scramble=scramble, dtype=torch.float64).numpy()
    u = stats.norm.cdf(z)
    cells = np.sort(np.floor(u * 2**m).astype(np.int64), axis=1)
    assert np.array_equal(cells, np.broadcast_to(np.arange(2**m)[None, :, None], cells.shape))


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_normal_is_ndtri_of_the_uniforms(scramble):
    x = scrambled_sobol(4, 9, _rngs(5, 3), scramble=scramble)
    z64 = scrambled_sobol_normal(4, 9, _rngs(5, 3), scramble=scramble, dtype=torch.float64)
    z32 = scrambled_sobol_normal(4, 9, _rngs(5, 3), scramble=scramble)
    assert z32.dtype == torch.float32
    assert torch.equal(z64, to_gaussian(x))
    ref = stats.norm.ppf(to_uniform(x).numpy())  # scipy's ndtri, to rounding
    assert np.allclose(z64.numpy(), ref, rtol=1e-13, atol=1e-14)
    assert torch.equal(z32, z64.to(torch.float32))


# ---------------------------------------------------------------------------
# uniforms strictly inside (0, 1), Gaussians finite
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 8, 30, 52, 53, 62])
def test_extreme_grid_cells_stay_inside(bits):
    """Cells 0 and 2**bits - 1 map strictly inside (0, 1), or the precision is refused with ValueError.

    float64 holds x + 1/2 exactly only for x < 2**52, so bits > 52 must either be
    handled specially or rejected; silently returning 1.0 (ndtri = inf) is a bug.
    """
    x = torch.tensor([0, 1, 2**bits - 2, 2**bits - 1], dtype=torch.int64)[-min(4, 2**bits) :]
    calls = {
        "to_uniform": lambda: to_uniform(x, bits=bits),
        "to_gaussian": lambda: to_gaussian(x, bits=bits),
        "scrambled_sobol_normal": lambda: scrambled_sobol_normal(1, 2, _rngs(0, 2), bits=bits, dtype=torch.float64),
    }
    for name, call in calls.items():
        try:
            out = call()
        except ValueError:
            continue  # refusing a precision that float64 cannot hold is acceptable
        if name == "to_uniform":
            assert torch.all(out > 0) and torch.all(out < 1), (name, out)
        assert torch.all(torch.isfinite(out)), (name, out)
        if bits == BITS and name == "to_gaussian":
            assert out.abs().max() < 8.6


@pytest.mark.parametrize("scramble", SCRAMBLES)
@pytest.mark.parametrize("m,bits", [(0, 52), (0, 1), (1, 1), (3, 3), (2, 52)])
def test_adversarial_small_sets_are_finite(m, bits, scramble):
    reps = 1000
    x = scrambled_sobol(m, 1, _rngs(17, reps), scramble=scramble, bits=bits)
    assert tuple(x.shape) == (reps, 2**m, 1)
    assert x.min() >= 0 and x.max() <= 2**bits - 1
    u = to_uniform(x, bits=bits)
    assert torch.all(u > 0) and torch.all(u < 1)
    for dtype in (torch.float32, torch.float64):
        z = scrambled_sobol_normal(m, 1, _rngs(17, reps), scramble=scramble, bits=bits, dtype=dtype)
        assert tuple(z.shape) == (reps, 2**m, 1)
        assert torch.all(torch.isfinite(z))
        assert z.abs().max() < 8.6
    if m == bits:  # every cell has exactly one point: the midpoints themselves
        cells = torch.sort(x[..., 0], dim=1).values
        assert torch.equal(cells, torch.arange(2**m).expand_as(cells))


def test_sobol_rqmc_single_point_groups():
    z = SobolRQMC(1).groups(range(500), 3, seed=2)
    assert tuple(z.shape) == (500, 1, 3)
    assert torch.all(torch.isfinite(z))
    assert abs(float(z.mean())) < 0.15 and abs(float(z.var()) - 1) < 0.15


# ---------------------------------------------------------------------------
# marginal law across replicates
# ---------------------------------------------------------------------------

MARGINAL_REPS = 2000


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_marginals_across_replicates(scramble):
    m, d = 4, 6
    x = scrambled_sobol(m, d, _rngs(2024, MARGINAL_REPS), scramble=scramble)
    z = scrambled_sobol_normal(m, d, _rngs(2024, MARGINAL_REPS), scramble=scramble).to(torch.float64)
    u = to_uniform(x)
    for point, coord in [(0, 0), (5, 3), (15, 5), (9, 1)]:
        uu = u[:, point, coord].numpy()
        zz = z[:, point, coord].numpy()
        assert stats.kstest(uu, "uniform").pvalue > 1e-3, (point, coord)
        assert stats.kstest(zz, "norm").pvalue > 1e-3, (point, coord)
        se = 1 / np.sqrt(MARGINAL_REPS)
        assert abs(zz.mean()) < 5 * se
        assert abs(zz.var() - 1) < 5 * np.sqrt(2) * se
        # every binary digit, not only the leading ones, is a fair coin across replicates
        xs = x[:, point, coord].numpy()
        ones = np.array([((xs >> k) & 1).mean() for k in range(BITS)])
        assert np.all(np.abs(ones - 0.5) < 5 * 0.5 * se), ones
    # different points of one replicate are distinct, different replicates are independent-looking
    assert np.corrcoef(z[:, 0, 0].numpy(), z[:, 0, 1].numpy())[0, 1] ** 2 < 25 / MARGINAL_REPS
    assert np.corrcoef(z[:-1, 3, 2].numpy(), z[1:, 3, 2].numpy())[0, 1] ** 2 < 25 / MARGINAL_REPS


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_replicate_means_are_centered(scramble):
    # the point-set mean of each replicate is unbiased for E z = 0 and far less variable than iid
    m, d = 6, 4
    z = scrambled_sobol_normal(m, d, _rngs(77, 400), scramble=scramble, dtype=torch.float64)
    means = z.mean(dim=1).numpy()  # (R, d)
    se = means.std(axis=0, ddof=1) / np.sqrt(means.shape[0])
    assert np.all(np.abs(means.mean(axis=0)) < 5 * se + 1e-12)
    assert np.all(means.std(axis=0) < 0.5 / np.sqrt(2**m))  # iid would give 1/sqrt(n)


# ---------------------------------------------------------------------------
# reproducibility and purity
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_seeds_reproduce_and_differ(scramble):
    a = scrambled_sobol(5, 20, _rngs(1, 3), scramble=scramble)
    b = scrambled_sobol(5, 20, _rngs(1, 3), scramble=scramble)
    c = scrambled_sobol(5, 20, _rngs(2, 3), scramble=scramble)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])
    # no two replicates share any coordinate's scrambled point set (52-bit values)
    assert not np.any(np.all(a[0].numpy() == c[0].numpy(), axis=0))
    za = scrambled_sobol_normal(5, 20, _rngs(1, 3), scramble=scramble)
    assert torch.equal(za, scrambled_sobol_normal(5, 20, _rngs(1, 3), scramble=scramble))


@pytest.mark.parametrize("scramble", SCRAMBLES)
def test_design_groups_are_pure_in_seed_and_index(scramble):
    design = SobolRQMC(16, scramble=scramble)
    d = 33
    full = design.groups(range(6), d, seed=7)
    assert tuple(full.shape) == (6, 16, d)
    assert full.dtype == torch.float32
    assert torch.all(torch.isfinite(full))
    part = design.groups([3, 4], d, seed=7)
    assert torch.equal(part, full[3:5])
    assert torch.equal(design.groups([4, 3], d, seed=7), full[[4, 3]])
    assert torch.equal(design.groups([5], d, seed=7)[0], full[5])
    assert not torch.equal(design.groups(range(6), d, seed=8), full)
    assert not torch.equal(full[0], full[1])
    f64 = design.groups([3, 4], d, seed=7, dtype=torch.float64)
    assert torch.equal(f64.to(torch.float32), part)


def test_design_group_is_one_scrambled_net():
    design = SobolRQMC(32)
    z = design.groups([0, 9], 40, seed=3, dtype=torch.float64).numpy()
    cells = np.sort(np.floor(stats.norm.cdf(z) * 32).astype(np.int64), axis=1)
    assert np.array_equal(cells, np.broadcast_to(np.arange(32)[None, :, None], cells.shape))


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 48, 3, 100, -4])
def test_n_must_be_power_of_two(n):
    with pytest.raises(ValueError, match="power of two"):
        SobolRQMC(n)


def test_too_many_dims_points_to_subspace_coupling():
    with pytest.raises(ValueError, match="subspace_rqmc"):
        SobolRQMC(64).groups([0], MAX_DIM + 1, seed=0)
    with pytest.raises(ValueError):
        sobol_integers(3, MAX_DIM + 1)
    with pytest.raises(ValueError):
        scrambled_sobol(3, MAX_DIM + 1, _rngs(0, 1))
    with pytest.raises(ValueError):
        sobol_integers(3, 0)


def test_bad_scramble_name():
    with pytest.raises(ValueError, match="scramble"):
        SobolRQMC(16, scramble="digital-shift")
    with pytest.raises(ValueError, match="scramble"):
        scrambled_sobol(3, 2, _rngs(0, 1), scramble="nus")
    with pytest.raises(ValueError, match="scramble"):
        scrambled_sobol_normal(3, 2, _rngs(0, 1), scramble="")


def test_too_many_points_for_the_bits():
    with pytest.raises(ValueError):
        sobol_integers(9, 2, bits=8)
    with pytest.raises(ValueError):
        scrambled_sobol(5, 2, _rngs(0, 1), bits=4)


# ---------------------------------------------------------------------------
# beyond the dimension limit: RQMC on a subspace
# ---------------------------------------------------------------------------


def test_subspace_coupling_reaches_beyond_max_dim():
    full = 30000
    rng = np.random.default_rng(5)
    mask = np.zeros(full, dtype=bool)
    mask[rng.choice(full, size=MAX_DIM, replace=False)] = True
    design = SubspaceCoupling(SobolRQMC(16), mask=mask)
    z = design.groups([0, 1], full, seed=4, dtype=torch.float64)
    assert tuple(z.shape) == (2, 16, full)
    assert torch.all(torch.isfinite(z))
    zn = z.numpy()
    # RQMC coordinates: one point per stratum of N(0, 1)
    cells = np.sort(np.floor(stats.norm.cdf(zn[:, :, mask]) * 16).astype(np.int64), axis=1)
    assert np.array_equal(cells, np.broadcast_to(np.arange(16)[None, :, None], cells.shape))
    # the complement is plain iid noise: not stratified
    rest = np.sort(np.floor(stats.norm.cdf(zn[:, :, ~mask]) * 16).astype(np.int64), axis=1)
    assert not np.array_equal(rest, np.broadcast_to(np.arange(16)[None, :, None], rest.shape))
    assert torch.equal(design.groups([1], full, seed=4, dtype=torch.float64)[0], z[1])
