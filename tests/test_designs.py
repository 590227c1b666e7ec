"""Every design keeps each noise exactly N(0, I) and has the within-group dependence it claims."""

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff.designs import (
    IID,
    Antithetic,
    Equicorrelated,
    GaussianCoupling,
    KAntithetic,
    SobolRQMC,
    SubspaceCoupling,
    as_design,
    get_design,
)

N_GROUPS = 4000
DIM = 3


def _orthonormal(dim, p, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, p)))
    return q


DESIGNS = {
    "mc": IID(),
    "antithetic": Antithetic(),
    "k4": KAntithetic(4),
    "equi(3, 0.4)": Equicorrelated(3, 0.4),
    "equi(5, -0.25)": Equicorrelated(5, -0.25),
    "coupling": GaussianCoupling([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, -0.8, 0.6]]),
    "subspace-mask": SubspaceCoupling(KAntithetic(3), mask=np.array([True, False, True])),
    "subspace-basis": SubspaceCoupling(Antithetic(), basis=_orthonormal(DIM, 1)),
    "rqmc": SobolRQMC(8),
    "rqmc-owen": SobolRQMC(4, scramble="owen"),
}


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def drawn(request):
    design = DESIGNS[request.param]
    z = design.groups(np.arange(N_GROUPS), DIM, seed=11, dtype=torch.float64).numpy()
    return design, z


def test_shape_and_finite(drawn):
    design, z = drawn
    assert z.shape == (N_GROUPS, design.group_size, DIM)
    assert np.isfinite(z).all()


def test_every_noise_is_standard_normal(drawn):
    design, z = drawn
    tol = 5 / np.sqrt(N_GROUPS)
    for j in range(design.group_size):
        for c in range(DIM):
            x = z[:, j, c]
            assert stats.kstest(x, "norm").pvalue > 1e-4, (j, c)
            assert abs(x.mean()) < tol
            assert abs(x.var() - 1) < 2.5 * tol
    # coordinates of one noise are uncorrelated (identity covariance)
    for j in range(design.group_size):
        cov = np.cov(z[:, j, :].T)
        np.testing.assert_allclose(cov, np.eye(DIM), atol=2.5 * tol)


def test_within_group_correlation_is_as_claimed(drawn):
    design, z = drawn
    claimed = design.correlation()
    if claimed is None:
        pytest.skip("design has no coordinate-uniform correlation")
    k = design.group_size
    pooled = z.transpose(2, 0, 1).reshape(-1, k)  # (coords * groups, k)
    np.testing.assert_allclose(np.corrcoef(pooled.T), claimed, atol=5 / np.sqrt(len(pooled)))


def test_antithetic_pairs_are_exact_negatives():
    z = Antithetic().groups(np.arange(10), 7, seed=3, dtype=torch.float64)
    assert torch.equal(z[:, 1], -z[:, 0])


def test_k_antithetic_matches_paper_construction_and_sums_to_zero():
    k = 5
    z = KAntithetic(k).groups(np.arange(50), 4, seed=0, dtype=torch.float64).numpy()
    np.testing.assert_allclose(z.sum(axis=1), 0.0, atol=1e-12)
    a = KAntithetic(k).matrix
    np.testing.assert_allclose(a, np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k), atol=1e-14)
    np.testing.assert_allclose(KAntithetic(k).correlation()[0, 1], -1 / (k - 1), atol=1e-14)


def test_equicorrelated_endpoints():
    ident = Equicorrelated(3, 1.0).groups([0, 1], 5, seed=0, dtype=torch.float64)
    torch.testing.assert_close(ident[:, 0], ident[:, 2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Equicorrelated(4, -1 / 3).correlation(), KAntithetic(4).correlation(), atol=1e-12)
    np.testing.assert_allclose(Equicorrelated(3, 0.0).correlation(), np.eye(3), atol=1e-12)


def test_subspace_basis_couples_only_the_subspace():
    v = _orthonormal(6, 2, seed=4)
    design = SubspaceCoupling(Antithetic(), basis=v)
    z = design.groups(np.arange(3000), 6, seed=5, dtype=torch.float64).numpy()
    on = z @ v  # coordinates in the subspace: antithetic
    np.testing.assert_allclose(on[:, 0], -on[:, 1], atol=1e-12)
    off = z - on @ v.T  # complement: independent draws for the two members
    r = np.corrcoef(off[:, 0].ravel(), off[:, 1].ravel())[0, 1]
    assert abs(r) < 0.05


def test_subspace_mask_with_rqmc_beyond_sobol_limit():
    mask = np.zeros(30000, dtype=bool)
    mask[:100] = True
    z = SubspaceCoupling(SobolRQMC(4), mask=mask).groups([0, 1], 30000, seed=2)
    assert z.shape == (2, 4, 30000) and torch.isfinite(z).all()


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_groups_are_pure_functions_of_seed_and_index(name):
    design = DESIGNS[name]
    full = design.groups(np.arange(8), DIM, seed=21)
    part = design.groups([5, 6], DIM, seed=21)
    assert torch.equal(full[5:7], part)
    assert not torch.equal(design.groups([5], DIM, seed=22)[0], full[5])


def test_registry():
    assert isinstance(get_design("amc"), Antithetic)
    assert get_design("k-antithetic", k=8).group_size == 8
    assert as_design("rqmc").group_size == 64
    with pytest.raises(ValueError, match="unknown design 'nope'; allowed names"):
        get_design("nope")
    with pytest.raises(TypeError, match="NoiseDesign or a name"):
        as_design(3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Equicorrelated(4, -0.5), r"c in \[-0.333333, 1\]"),
        (lambda: Equicorrelated(3, 1.5), r"c in \[-0.5, 1\]"),
        (lambda: KAntithetic(1), "integer >= 2"),
        (lambda: GaussianCoupling([[1.0, 0.0], [0.5, 0.5]]), "row 1 of the coupling matrix has norm 0.707107"),
        (lambda: GaussianCoupling([[np.nan]]), "NaN"),
        (lambda: SubspaceCoupling(Antithetic(), basis=np.ones((3, 2))), "orthonormal"),
        (lambda: SubspaceCoupling(Antithetic()), "exactly one of"),
        (lambda: SubspaceCoupling(Antithetic(), mask=[1, 0]), "boolean"),
        (lambda: SubspaceCoupling(Antithetic(), mask=np.ones(2, bool), outer=KAntithetic(3)), "group size 3"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_subspace_dimension_mismatch():
    d = SubspaceCoupling(Antithetic(), mask=np.array([True, False]))
    with pytest.raises(ValueError, match="noise dimension 2, got 3"):
        d.groups([0], 3, seed=0)
