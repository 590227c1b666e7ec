"""RSD, the repulsive score-distillation particle solver: update rule, kernel, groups and intervals.

Most tests run on an exact Gaussian prior (data N(0, s^2 I), whose Tweedie denoiser is linear),
where every pixel evolves on its own unless the repulsion couples them: that makes the
non-repulsive baseline and the feature map checkable exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import uqdiff
from uqdiff import Equicorrelated, KAntithetic, RunSettings
from uqdiff.inverse import DiffusionPrior, measure
from uqdiff.samplers import RSD, rbf_bandwidth, repulsion_gradient

SHAPE = (1, 4, 4)
K = 4
pytestmark = pytest.mark.usefixtures("one_thread")


class GaussianPrior(DiffusionPrior):
    """Data ~ N(0, s^2 I): E[x0 | x_t] = sqrt(ab) s^2 x_t / (ab s^2 + 1 - ab), on a float64 schedule."""

    def __init__(self, steps: int = 40, s: float = 0.5, shape=SHAPE) -> None:
        self.sample_shape = shape
        self.alphas_cumprod = torch.linspace(0.02, 0.98, steps, dtype=torch.float64)
        self.s2 = s * s

    def x0(self, x: torch.Tensor, step: int) -> torch.Tensor:
        ab = float(self.alphas_cumprod[step])
        return math.sqrt(ab) * self.s2 * x / (ab * self.s2 + 1 - ab)


def problem(seed: int = 0, steps: int = 40, **options):
    options.setdefault("gamma", 0.0)
    prior = GaussianPrior(steps)
    truth = torch.randn(SHAPE, generator=torch.Generator().manual_seed(100 + seed)) * 0.5
    m = measure(truth, "box_inpainting", seed=seed, sigma_y=0.05)
    return RSD(prior, m, **options)


def noise(sampler, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *sampler.noise_shape, generator=gen, dtype=torch.float64)


def pairwise(out: torch.Tensor, k: int = K) -> torch.Tensor:
    """Mean pairwise Euclidean distance within each particle set, (G,)."""
    sets = out.reshape(len(out) // k, k, -1)
    i, j = torch.triu_indices(k, k, offset=1)
    return (sets[:, i] - sets[:, j]).norm(dim=-1).mean(dim=1)


def red_diff_reference(sampler: RSD, z: torch.Tensor) -> torch.Tensor:
    """RED-diff as written from its loss (Mardani et al. 2023), with torch.optim.Adam and autograd.

    loss = obs_weight ||y - A(x)||^2 / (2 m) + lambda_t / n sg[eps_theta(x_t) - eps] . x, summed over
    particles (which then do not interact), one Adam step per schedule step, noisiest first.
    """
    prior, y = sampler.prior, sampler.y.to(z)
    x = z[:, 0].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=sampler.lr, betas=sampler.betas, eps=1e-8)
    n = math.prod(x.shape[1:])
    for i in range(prior.num_steps):
        ab = float(prior.alphas_cumprod[i])
        eps = z[:, 1 + i]
        with torch.no_grad():
            xt = math.sqrt(ab) * x + math.sqrt(1 - ab) * eps
            reg = (xt - math.sqrt(ab) * prior.x0(xt, i)) / math.sqrt(1 - ab) - eps
        r = sampler.operator(x) - y
        m = math.prod(r.shape[1:])
        lam_t = sampler.lam * math.sqrt(1 - ab) / math.sqrt(ab)
        loss = sampler.obs_weight * (r**2).sum() / (2 * m) + lam_t / n * (reg * x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return x.detach()


def test_gamma_zero_is_red_diff_on_every_particle_alone():
    g = problem(particles=K, gamma=0.0)
    z = noise(g, 2 * K)
    out = g(z)
    torch.testing.assert_close(out, red_diff_reference(g, z), rtol=1e-9, atol=1e-10)
    one = problem(particles=1, gamma=0.0)  # plain RED-diff, one noise at a time
    torch.testing.assert_close(out, torch.cat([one(z[i : i + 1]) for i in range(len(z))]), rtol=1e-12, atol=1e-12)
    # the baseline is fitted: the observed pixels end near y (from a start about 0.9 away on average)
    seen = g.operator.mask.bool().expand_as(out)
    assert float((out - g.y)[seen].abs().mean()) < 0.1


def test_repulsion_spreads_the_particles():
    """Same noises, larger gamma: the particles spread, every set of the 16 once gamma is 10 or more."""
    spreads = {}
    for gamma in (0.0, 3.0, 10.0, 30.0):
        g = problem(particles=K, gamma=gamma)
        spreads[gamma] = pairwise(g(noise(g, 16 * K, seed=7)))
    means = [float(spreads[gamma].mean()) for gamma in (0.0, 3.0, 10.0, 30.0)]
    assert means == sorted(means) and means[2] > 1.5 * means[0]  # measured: 0.72, 0.78, 1.17, 3.85
    assert bool((spreads[10.0] > spreads[0.0]).all()) and bool((spreads[30.0] > spreads[10.0]).all())


def test_a_particle_set_depends_on_its_own_noises_only():
    """Outputs are a function of the group's noise: other sets in the batch change nothing, no torch draw."""
    g = problem(particles=K, gamma=5.0)
    z = noise(g, 3 * K, seed=1)
    state = torch.get_rng_state()
    full = g(z)
    assert torch.equal(state, torch.get_rng_state())
    torch.testing.assert_close(g(z[K : 2 * K]), full[K : 2 * K], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g(torch.cat([z[2 * K :], z[:K]])), torch.cat([full[2 * K :], full[:K]]))


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_bandwidth_is_the_squared_median_distance_over_log_k(k):
    f = torch.randn(6, k, 7, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    expected = []
    for s in f.numpy():
        d = [np.linalg.norm(s[i] - s[j]) for i in range(k) for j in range(i + 1, k)]
        expected.append(np.median(d) ** 2 / np.log(k))
    np.testing.assert_allclose(rbf_bandwidth(f).numpy(), expected, rtol=1e-12)
    # distances 3, 4, 5: median 4
    torch.testing.assert_close(
        rbf_bandwidth(torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]])), torch.tensor([16 / math.log(3)])
    )
    with pytest.raises(ValueError, match="K >= 2"):
        rbf_bandwidth(torch.zeros(2, 1, 3))


def test_repulsion_gradient_is_the_kernel_density_gradient():
    """grad_i log sum_j exp(-|phi_i - phi_j|^2 / h) = -2/h sum_j w_ij J_i^T (phi_i - phi_j), w = softmax_j."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2 * K, *SHAPE, generator=gen, dtype=torch.float64)
    w_map = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    for features, jac in ((None, torch.eye(16, dtype=torch.float64)), (lambda v: v.reshape(len(v), -1) @ w_map, w_map)):
        phi = (x.reshape(len(x), -1) @ jac).reshape(2, K, -1)
        h = rbf_bandwidth(phi)
        diff = phi[:, :, None] - phi[:, None, :]  # (G, i, j, D)
        w = torch.softmax(-(diff**2).sum(-1) / h[:, None, None], dim=2)
        expected = (-2 / h[:, None, None] * (w[..., None] * diff).sum(2)) @ jac.T
        got = repulsion_gradient(x, K, features)
        torch.testing.assert_close(got.reshape(2, K, -1), expected, rtol=1e-10, atol=1e-12)
    # coinciding particles: no repulsion, and no NaN
    assert torch.equal(repulsion_gradient(torch.ones(K, 3), K), torch.zeros(K, 3))


def test_the_feature_map_decides_what_repels():
    """Features = one pixel: only that pixel feels the repulsion; every other pixel is the gamma = 0 run."""
    corner = lambda images: images[:, :, 0, 0]  # noqa: E731
    base, focused = problem(gamma=0.0), problem(gamma=10.0, features=corner)
    z = noise(base, 4 * K, seed=3)
    a, b = base(z), focused(z)
    others = torch.ones(SHAPE, dtype=torch.bool)
    others[0, 0, 0] = False
    torch.testing.assert_close(b[:, others], a[:, others], rtol=1e-12, atol=1e-12)
    assert float((b[:, 0, 0, 0] - a[:, 0, 0, 0]).abs().max()) > 1e-3
    assert float(pairwise(b[:, :, :1, :1]).mean()) > float(pairwise(a[:, :, :1, :1]).mean())


def test_a_batch_of_partial_particle_sets_is_refused():
    g = problem(particles=K, gamma=1.0)
    with pytest.raises(ValueError, match=r"whole sets of 4 consecutive noises; got a batch of 6.*Equicorrelated\(4"):
        g(noise(g, 6))
    with pytest.raises(ValueError, match="noise must have shape"):
        g(torch.zeros(K, 3))


@pytest.mark.filterwarnings("ignore:.*group means:UserWarning")
def test_the_engine_keeps_particle_sets_inside_groups(tmp_path):
    g = problem(particles=K, gamma=1.0, steps=10)
    stat = lambda x: x.mean(dim=(1, 2, 3))  # noqa: E731
    with pytest.raises(ValueError, match=r"groups of 2.*AntitheticSets\(4\).*Equicorrelated\(4, 0.0\)"):
        uqdiff.estimate(g, stat, budget=16, design="antithetic", seed=0)
    # a coupling inside a set changes the solver's law (K-antithetic starts are spread out): refused
    for coupled in (KAntithetic(K), Equicorrelated(2 * K, 0.2), uqdiff.SobolRQMC(K)):
        with pytest.raises(ValueError, match=r"couples the noises inside a set of 4.*AntitheticSets\(4\)"):
            uqdiff.estimate(g, stat, budget=64, design=coupled, seed=0)
    # groups of 2K hold two particle sets; a batch_size that is no multiple of K (6, or 3 < K) is
    # rounded down to whole sets (at least one), and results do not depend on it
    for design in (Equicorrelated(2 * K, 0.0), Equicorrelated(K, 0.0), uqdiff.AntitheticSets(K)):
        ref = uqdiff.estimate(g, stat, budget=128, design=design, seed=0, run=RunSettings(batch_size=16))
        for batch_size in (6, 3):
            odd = uqdiff.estimate(g, stat, budget=128, design=design, seed=0, run=RunSettings(batch_size=batch_size))
            assert ref["statistic"].estimate == pytest.approx(odd["statistic"].estimate, rel=1e-9)
    # a checkpointed run fingerprints the sampler on a whole particle set; antithetic sets work too
    path = tmp_path / "rsd.ckpt"
    sets = uqdiff.AntitheticSets(K)
    saved = uqdiff.estimate(g, stat, budget=64, design=sets, seed=0, run=RunSettings(batch_size=8, checkpoint=path))
    plain = uqdiff.estimate(g, stat, budget=64, design=sets, seed=0, run=RunSettings(batch_size=8))
    assert saved.budget == 64 and saved["statistic"].estimate == pytest.approx(plain["statistic"].estimate, rel=1e-9)


def test_repulsive_and_plain_particles_on_common_noise():
    """paired_estimate runs RSD beside its gamma = 0 baseline on the same noise: the diversity gain
    (mean pairwise L2 of a particle set) gets an interval, and the joint sampler keeps the sets."""
    from uqdiff.statistics import MeanPairwiseL2, PerImage

    plain, repulsive = (
        problem(particles=K, gamma=0.0, steps=10, lr=0.3),
        problem(particles=K, gamma=20.0, steps=10, lr=0.3),
    )
    diversity = PerImage(MeanPairwiseL2(), gallery_size=K, name="diversity")
    r = uqdiff.paired_estimate(
        {"RSD": repulsive, "RED": plain}, diversity, budget=64, design=Equicorrelated(K, 0.0), seed=0
    )
    c = r.contrast("RSD - RED", "diversity").result
    assert c.confidence_interval.low > 0
    with pytest.raises(ValueError, match="must lie inside one group"):
        uqdiff.paired_estimate({"RSD": repulsive, "RED": plain}, diversity, budget=64, design="antithetic", seed=0)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(gamma=-1.0), "gamma must be a finite number >= 0"),
        (dict(gamma=float("nan")), "gamma must be"),
        (dict(particles=1, gamma=1.0), "needs particles >= 2"),
        (dict(particles=0), "particles must be an int >= 1"),
        (dict(particles=2.0), "particles must be an int"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(lam=-0.1), "lam must be"),
        (dict(obs_weight=float("inf")), "obs_weight must be"),
        (dict(betas=(0.9, 1.0)), "betas must be"),
        (dict(features="dino"), "features must be a callable"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        problem(**options)


@pytest.mark.filterwarnings("ignore:.*group means:UserWarning")  # 32-group skew/kurtosis flags, by chance
def test_intervals_over_particle_groups_cover_the_mean():
    """Known truth: the mean image brightness under strong repulsion (gamma = 20 doubles the spread),
    from 2^13 particle sets (standard error 0.0005, 1/30 of an interval's half-width); 95% intervals
    from groups of K particles (budget 128: 32 groups) cover it at about their level over 250 seeds.
    (Over 600 seeds: 94.2%.)"""
    g = problem(particles=K, gamma=20.0, steps=10, lr=0.3)
    stat = lambda x: x.mean(dim=(1, 2, 3))  # noqa: E731
    truth = float(stat(g(noise(g, 2**13 * K, seed=12345))).mean())
    hits, reps = 0, 250
    for seed in range(reps):
        r = uqdiff.estimate(
            g, stat, budget=32 * K, design=Equicorrelated(K, 0.0), seed=seed, run=RunSettings(batch_size=64)
        )["statistic"]
        hits += r.confidence_interval.low <= truth <= r.confidence_interval.high
    assert 0.90 <= hits / reps <= 0.99, hits  # measured: 231 of 250 (92.4%)


def test_classifier_features_drive_the_fashion_solver():
    """The models layer builds RSD with the classifier's features; they repel in that space."""
    from uqdiff.models.classifier import classifier_features
    from uqdiff.models.problems import solver_factory

    phi = classifier_features()
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    assert phi(images).shape == (3, 288)
    doubles = images.double().requires_grad_(True)  # a float64 prior's particles
    (grad,) = torch.autograd.grad(phi(doubles).sum(), doubles)
    assert phi(doubles).dtype == torch.float64 and grad.dtype == torch.float64 and bool(grad.abs().sum() > 0)
    truth = torch.zeros(1, 28, 28)
    g = solver_factory("fashion", "rsd", steps=2, gamma=10.0)(measure(truth, "inpainting", seed=0))
    assert isinstance(g, RSD) and g.features is not None and g.particles == 4
    out = g(torch.randn(K, *g.noise_shape, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (K, 1, 28, 28) and bool(torch.isfinite(out).all())
