"""Noise features, noise control variates, subspace RQMC and gradient directions, on oracles with known truths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff import ControlVariates, DCTFeatures, estimate, gradient_directions, subspace_rqmc
from uqdiff.designs import Antithetic, KAntithetic, dct_basis
from uqdiff.designs.features import low_frequencies
from uqdiff.estimators.control_variates import fit_control, pilot_groups
from uqdiff.estimators.stopping import TargetPrecision
from uqdiff.samplers import LinearGenerator


def identity(dim: int = 64) -> LinearGenerator:
    """Images are the noise itself: every statistic is a function of z with a mean we can compute."""
    return LinearGenerator(np.zeros(dim))


def mixed(x):
    """64 mean(z)^2 + sin(z_0) + z_1^2 / 2 + z_2: mean 1 + 0 + 1/2 + 0 = 1.5; odd and even parts."""
    return 64 * x.mean(dim=1) ** 2 + torch.sin(x[:, 0]) + x[:, 1] ** 2 / 2 + x[:, 2]


MIXED_MEAN = 1.5


# ---------------------------------------------------------------------------------------------- features
def test_features_have_mean_zero_unit_variance_and_the_stated_parity():
    f = DCTFeatures(6, bands=None)
    z = torch.randn(40000, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    x = f(z)
    assert x.shape == (40000, len(f.names((1, 16, 16))))
    se = x.std(0) / 200
    assert bool((x.mean(0).abs() < 4.5 * se).all())  # mean zero within 4.5 standard errors
    assert bool(((x.var(0) - 1).abs() < 0.1).all())
    odd = torch.from_numpy(f.odd((1, 16, 16)))
    flipped = f(-z[:100])
    assert torch.allclose(flipped[:, odd], -x[:100, odd]) and torch.allclose(flipped[:, ~odd], x[:100, ~odd])


def test_dct_basis_is_orthonormal_and_starts_at_the_constant():
    v = dct_basis((2, 8, 8), 5)
    assert v.shape == (128, 10)
    assert np.allclose(v.T @ v, np.eye(10))
    assert np.allclose(v[:64, 0], 1 / 8) and np.allclose(v[64:, 0], 0)
    assert low_frequencies(4, 4, 3) == [(0, 0), (0, 1), (1, 0)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_coefficients": -1}, "non-negative"),
        ({"n_coefficients": 0, "bands": 0}, "empty"),
        ({"bands": 1.5}, "bands"),
        ({"channels": 0}, "channels"),
    ],
)
def test_bad_feature_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCTFeatures(**kwargs)


def test_more_octaves_than_the_image_has_are_refused():
    with pytest.raises(ValueError, match="octave"):
        DCTFeatures(bands=6).names((1, 8, 8))


# ---------------------------------------------------------------------------------------------- fitting
def test_fit_recovers_coefficients_and_drops_features_without_spread():
    rng = np.random.default_rng(1)
    f = np.column_stack([rng.standard_normal(300), np.zeros(300), rng.standard_normal(300)])
    y = 3 + 2 * f[:, 0] - f[:, 2] + 0.05 * rng.standard_normal(300)
    fit = fit_control(y, f)
    assert np.allclose(fit.coefficients, [2, 0, -1], atol=0.02)
    assert fit.variance_ratio < 0.01


def test_fit_refuses_to_fit_more_features_than_half_the_groups():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((10, 8))
    fit = fit_control(f[:, 0] + 0.1 * rng.standard_normal(10), f)
    assert fit.variance_ratio == 1.0 and not fit.coefficients.any()
    with pytest.raises(ValueError, match="at least 8 pilot groups"):
        fit_control(np.zeros(5), np.zeros((5, 1)))


# ------------------------------------------------------------------------------------- control variates
def test_estimate_with_control_variates_is_the_pilot_fit_applied_to_the_remaining_groups():
    """What estimate(control_variates=...) computes, step by step (the benchmark relies on this)."""
    g = identity()
    features = DCTFeatures(4, bands=3)
    budget, share = 400, 0.25
    r = estimate(g, mixed, budget=budget, control_variates=ControlVariates(features, pilot_share=share), seed=5)
    z = _noise(budget, 5)
    y = mixed(z).numpy()
    f = features(z).numpy()
    p = pilot_groups(budget, share)
    beta = fit_control(y[:p], f[:p]).coefficients
    adjusted = y[p:] - f[p:] @ beta
    assert r.budget == budget and r.generator_calls == budget
    assert r["mixed"].n_groups == budget - p
    assert r["mixed"].estimate == pytest.approx(adjusted.mean(), rel=1e-9)
    assert r["mixed"].standard_error == pytest.approx(adjusted.std(ddof=1) / np.sqrt(len(adjusted)), rel=1e-9)
    assert r.config["control_variates"]["pilot_budget"] == p
    assert np.allclose(r.config["control_variates"]["coefficients"]["mixed"], beta)


def _noise(budget: int, seed: int) -> torch.Tensor:
    from uqdiff.designs import IID

    return IID().groups(np.arange(budget), 64, seed=seed).reshape(budget, 64).to(torch.float64)


@pytest.mark.parametrize("design", ["mc", "antithetic"])
def test_control_variate_intervals_cover_a_known_mean(design):
    """400 runs at budget 240: coverage within 0.92..0.98 (binomial sd 1.1 %), and tighter than plain MC.

    Theory: the square of the constant coefficient explains 64 mean(z)^2 (variance 2 of 3.93), so the
    main stage's 192 noises give a width sqrt(1.93 / 3.93 x 240 / 192) = 0.78 of plain MC's at 240.
    """
    g = identity()
    hits, widths = 0, []
    for rep in range(400):
        r = estimate(g, mixed, budget=240, design=design, control_variates=DCTFeatures(4, bands=3), seed=[11, rep])
        s = r["mixed"]
        hits += s.low <= MIXED_MEAN <= s.high
        widths.append(s.width)
    assert 0.92 <= hits / 400 <= 0.98
    variance = 2 + (1 - np.exp(-2)) / 2 + 0.5 + 1  # of the statistic under MC, see below
    plain = 2 * 1.96 * np.sqrt(variance / 240)
    assert np.median(widths) < 0.85 * plain


def test_control_variates_report_efficiency_against_mc_on_the_raw_statistic():
    r = estimate(identity(), mixed, budget=2000, control_variates=DCTFeatures(4, bands=3), seed=2)["mixed"]
    # Var of the raw statistic: 64 mean^2 is chi2_1 (var 2), sin(z0) (var (1 - e^-2)/2), z1^2/2 (var 1/2), z2 (1)
    truth = 2 + (1 - np.exp(-2)) / 2 + 0.5 + 1
    assert r.marginal_variance == pytest.approx(truth, rel=0.3)  # from the 400-noise pilot; chi2_1 is heavy-tailed
    assert r.implied_efficiency_low < r.implied_efficiency < r.implied_efficiency_high
    assert 1.4 < r.implied_efficiency < 3  # theory 3.93 / 1.93 = 2.0 (the square of c_00 explains 64 mean^2)


def test_fixed_coefficients_skip_the_pilot():
    features = DCTFeatures(1, squares=False, bands=0)  # the constant coefficient sum(z) / 8
    beta = np.array([8.0 / 64])  # mean(z) = c / 8: z.mean() - beta c = 0 exactly
    r = estimate(
        identity(),
        lambda x: x.mean(dim=1) + 1.0,
        budget=100,
        control_variates=ControlVariates(features, coefficients={"statistic": beta}),
        seed=0,
    )
    assert r["statistic"].n_noises == 100 and r["statistic"].estimate == pytest.approx(1.0)
    assert r["statistic"].width == pytest.approx(0.0, abs=1e-12)


def test_control_variates_refuse_what_they_do_not_support():
    g = identity()
    with pytest.raises(TypeError, match="stopping"):
        estimate(g, mixed, stopping=TargetPrecision(halfwidth=0.1, max_budget=1000), control_variates=DCTFeatures())
    with pytest.raises(TypeError, match="NoiseFeatures"):
        estimate(g, mixed, budget=100, control_variates="dct")
    with pytest.raises(ValueError, match="pilot_share"):
        ControlVariates(pilot_share=1.0)
    with pytest.raises(ValueError, match="raise the budget"):
        estimate(g, mixed, budget=8, control_variates=DCTFeatures())
    with pytest.raises(ValueError, match="rows"):
        estimate(g, mixed, budget=20, control_variates=ControlVariates(DCTFeatures(2), coefficients={"mixed": [1.0]}))
    with pytest.raises(ValueError, match="no entry"):
        estimate(g, mixed, budget=20, control_variates=ControlVariates(DCTFeatures(2), coefficients={"other": [1.0]}))


# ------------------------------------------------------------------------------------------ subspace RQMC
def test_subspace_rqmc_keeps_every_noise_standard_normal():
    d = subspace_rqmc((1, 8, 8), 16, dims=4)
    z = d.groups(np.arange(300), 64, seed=4, dtype=torch.float64).reshape(-1, 64).numpy()
    for j in (0, 1, 9, 63):
        assert stats.kstest(z[:, j], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.05
    # the complement is K-antithetic: the group sum lies in the subspace
    v = dct_basis((1, 8, 8), 4)
    groups = z.reshape(300, 16, 64).sum(axis=1)
    assert np.allclose(groups - groups @ v @ v.T, 0, atol=1e-9)


def test_subspace_rqmc_interval_covers_and_beats_pairs_on_a_smooth_statistic():
    g = identity()
    d = subspace_rqmc((64,), 16, dims=4)
    hits = 0
    for rep in range(200):
        s = estimate(g, mixed, budget=256, design=d, seed=[3, rep], interval_method="t")["mixed"]
        hits += s.low <= MIXED_MEAN <= s.high
    assert 0.91 <= hits / 200 <= 0.99
    rq = estimate(g, mixed, budget=4096, design=d, seed=1)["mixed"].implied_efficiency
    pairs = estimate(g, mixed, budget=4096, design=Antithetic(), seed=1)["mixed"].implied_efficiency
    assert rq > pairs


def test_subspace_rqmc_refuses_bad_options():
    with pytest.raises(ValueError, match="outer"):
        subspace_rqmc((64,), 16, outer="antithetic")
    with pytest.raises(ValueError, match="power of two"):
        subspace_rqmc((64,), 12)
    assert subspace_rqmc((64,), 8, outer="iid").outer.group_size == 1
    assert isinstance(subspace_rqmc((64,), 8).outer, KAntithetic)


# ------------------------------------------------------------------------------------- gradient directions
def test_gradient_directions_find_the_directions_a_statistic_depends_on():
    rng = np.random.default_rng(0)
    w = np.linalg.qr(rng.standard_normal((32, 2)))[0]
    g = LinearGenerator(np.zeros(2), w.T)  # the image is the projection of z on two directions
    v = gradient_directions(g, lambda x: torch.sin(x[:, 0]) + x[:, 1] ** 2, dims=2, budget=32, seed=1)
    assert v.shape == (32, 2) and np.allclose(v.T @ v, np.eye(2))
    assert np.allclose(np.abs(np.linalg.svd(w.T @ v)[1]), 1, atol=1e-6)  # same span
    d = subspace_rqmc((32,), 8, basis=v)
    assert d.sub_dim == 2


def test_gradient_directions_refuse_a_generator_torch_cannot_differentiate():
    class Frozen:
        noise_shape = (4,)

        def __call__(self, z):
            return torch.from_numpy(z.detach().numpy() * 2)

    with pytest.raises(TypeError, match="differentiate"):
        gradient_directions(Frozen(), lambda x: x.sum(dim=1), dims=1, budget=4)
    with pytest.raises(ValueError, match="dims"):
        gradient_directions(identity(8), lambda x: x.sum(dim=1), dims=20, budget=4)


def test_a_diffusers_sampler_is_differentiable_through_run():
    from uqdiff.models.fashion import FashionMNISTGenerator

    g = FashionMNISTGenerator(None, num_inference_steps=2)
    z = torch.randn(2, *g.noise_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    (grad,) = torch.autograd.grad(g.readout(g.sampler.run(z)).mean(), z)
    assert grad.shape == z.shape and float(grad.abs().sum()) > 0
    assert not g(z).requires_grad  # the plain call stays gradient-free


def test_control_variate_intervals_cover_with_few_groups():
    """RQMC replicates of 16 points, 32 groups: a pilot of 8 and a main stage of 24 (the skewed chi-square part
    included). 300 runs: coverage within 0.91..0.985."""
    from uqdiff.designs import SobolRQMC

    g = identity()
    hits = 0
    for rep in range(300):
        s = estimate(
            g, mixed, budget=512, design=SobolRQMC(16), control_variates=DCTFeatures(2, bands=2), seed=[12, rep]
        )["mixed"]
        assert s.n_groups == 24
        hits += s.low <= MIXED_MEAN <= s.high
    assert 0.91 <= hits / 300 <= 0.985
