"""Gallery statistics, their estimation with intervals, and the variance-preserving blend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from uqdiff import estimate
from uqdiff.designs import IID, Equicorrelated, KAntithetic
from uqdiff.estimators.estimate import design_seed
from uqdiff.estimators.gallery import PerImage, compare_galleries, estimate_gallery
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.variations import Variations, estimate_variations
from uqdiff.samplers import LinearGenerator, blend
from uqdiff.statistics import SSIM, GalleryMean, MeanPairwiseCosine, MeanPairwiseL2, MeanPairwiseSSIM, Vendi

SCALE = 0.5  # pixel standard deviation of the linear oracle below


def oracle(dim: int = 6) -> LinearGenerator:
    """x = 0.3 + SCALE z: every pixel has variance SCALE^2, pixels of one image independent."""
    return LinearGenerator(np.full(dim, 0.3), SCALE * np.eye(dim))


def l2_truth(c: float) -> float:
    """E per-pixel squared distance of two images whose noises have correlation c: 2 (1 - c) sigma^2."""
    return 2 * (1 - c) * SCALE**2


def test_pairwise_l2_by_hand_on_two_galleries():
    galleries = np.array(
        [
            [0.0, 0.0],
            [2.0, 0.0],  # gallery 1: one pair, mean sq distance (4 + 0)/2 = 2
            [1.0, 1.0],
            [1.0, 1.0],
        ]
    )  # gallery 2: identical images
    assert MeanPairwiseL2(value_range=(0, 1))(galleries, gallery_size=2).tolist() == [2.0, 0.0]
    # value_range (-1, 1) halves distances before squaring: a quarter of the value
    assert MeanPairwiseL2()(galleries, gallery_size=2).tolist() == [0.5, 0.0]


def test_pairwise_cosine_and_vendi_by_hand():
    theta = 0.7
    two = np.array([[1.0, 0.0], [math.cos(theta), math.sin(theta)]])
    assert MeanPairwiseCosine()(two, gallery_size=2)[0] == pytest.approx(math.cos(theta))
    # S = [[1, cos], [cos, 1]] / 2 has eigenvalues (1 +- cos) / 2
    lam = np.array([(1 + math.cos(theta)) / 2, (1 - math.cos(theta)) / 2])
    assert Vendi()(two, gallery_size=2)[0] == pytest.approx(math.exp(-(lam * np.log(lam)).sum()))
    # scale does not matter for cosine similarity; K identical -> 1, K orthogonal -> K
    k = 4
    same = np.tile(np.array([[3.0, -1.0, 2.0]]), (k, 1))
    assert Vendi()(same, gallery_size=k)[0] == pytest.approx(1.0)
    assert MeanPairwiseCosine()(same, gallery_size=k)[0] == pytest.approx(1.0)
    orth = 5.0 * np.eye(k)
    assert Vendi()(orth, gallery_size=k)[0] == pytest.approx(float(k))
    assert MeanPairwiseCosine()(orth, gallery_size=k)[0] == pytest.approx(0.0)


def test_vendi_of_k_antithetic_pixels_is_at_most_k_minus_1():
    z = KAntithetic(3).groups(range(20), 5, seed=0).reshape(60, 5)  # each group sums to zero: rank 2
    assert Vendi()(z, gallery_size=3).max() <= 2 + 1e-9
    assert Vendi()(Equicorrelated(3, 0.0).groups(range(20), 5, seed=0).reshape(60, 5), gallery_size=3).max() > 2


def test_feature_map_is_pluggable_and_checked():
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # orthogonal pixels, identical first pixel
    first_pixel = lambda images: images[:, :1]
    assert Vendi(features=first_pixel)(x, gallery_size=2).item() == pytest.approx(1.0)
    assert Vendi()(x, gallery_size=2).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="all-zero feature"):
        Vendi()(torch.zeros(2, 3), gallery_size=2)
    with pytest.raises(ValueError, match="features must return shape"):
        Vendi(features=lambda images: images.sum())(x, gallery_size=2)


def test_pairwise_ssim_is_the_ssim_of_each_pair():
    gen = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 1, 12, 12, generator=gen, dtype=torch.float64)
    by_pair = [SSIM(imgs[j], value_range=(0, 1))(imgs[i : i + 1]).item() for i, j in ((0, 1), (0, 2), (1, 2))]
    got = MeanPairwiseSSIM(value_range=(0, 1))(imgs, gallery_size=3)
    assert got.shape == (1,) and got.item() == pytest.approx(np.mean(by_pair), rel=1e-12)
    same = imgs[:1].expand(3, -1, -1, -1)
    assert MeanPairwiseSSIM(value_range=(0, 1))(same, gallery_size=3).item() == pytest.approx(1.0)


def test_gallery_statistics_reject_partial_galleries():
    with pytest.raises(ValueError, match="whole galleries"):
        MeanPairwiseL2()(torch.zeros(5, 2), gallery_size=2)
    with pytest.raises(ValueError, match="gallery_size must be an integer >= 2"):
        MeanPairwiseL2()(torch.zeros(4, 2), gallery_size=1)
    with pytest.raises(ValueError, match="whole number of galleries of 3"):
        PerImage(MeanPairwiseL2(), gallery_size=3)(torch.zeros(4, 2))


def test_equicorrelated_zero_is_the_iid_gallery():
    d = Equicorrelated(4, 0.0)
    assert np.array_equal(d.matrix, np.eye(4))
    z = d.groups(range(3), 5, seed=1)
    assert z.shape == (3, 4, 5)


@pytest.mark.parametrize("design", [Equicorrelated(3, 0.0), KAntithetic(3), Equicorrelated(4, 0.5)])
def test_estimate_gallery_is_the_mean_of_the_gallery_values(design):
    g, k, n = oracle(), design.group_size, 50
    stat = MeanPairwiseL2(value_range=(0, 1))
    noise = design.groups(np.arange(n), 6, seed=7)  # the design's own noise
    values = stat(g(noise.reshape(n * k, 6)), gallery_size=k).numpy()
    for batch_size in (k, 7, 64):  # batches never split a gallery
        r = estimate_gallery(g, stat, design=design, budget=n * k, seed=7, run=RunSettings(batch_size=batch_size))[
            "pairwise_l2"
        ]
        assert r.estimate == pytest.approx(values.mean(), rel=1e-12)
        assert r.standard_error == pytest.approx(values.std(ddof=1) / math.sqrt(n), rel=1e-9)
        assert r.n_groups == n and r.group_size == k and r.n_noises == n * k
        assert r.marginal_variance == pytest.approx(values.var(ddof=1), rel=1e-9)
        assert r.implied_efficiency is None and r.rho is None


@pytest.mark.parametrize("c", [0.0, -0.5])
def test_gallery_interval_covers_the_closed_form_truth(c):
    g, k, reps = oracle(), 3, 200
    design = Equicorrelated(k, c)
    stat = MeanPairwiseL2(value_range=(0, 1))
    covered = []
    for rep in range(reps):
        r = estimate_gallery(g, stat, design=design, budget=12 * k, seed=[11, rep])["pairwise_l2"]
        covered.append(r.low <= l2_truth(c) <= r.high)
    rate = np.mean(covered)
    assert 0.91 <= rate <= 0.985, rate  # 95% nominal; sd of the rate at 200 reps is 0.015


def test_repulsive_coupling_increases_pairwise_l2_and_welch_matches_scipy():
    g, k, n = oracle(), 3, 200
    designs = [Equicorrelated(k, 0.0), KAntithetic(k)]
    stat = MeanPairwiseL2(value_range=(0, 1))
    cmp = compare_galleries(g, stat, designs=designs, budget=n * k, seed=3)
    d = cmp.difference("pairwise_l2", KAntithetic(k).name)
    truth = l2_truth(-0.5) - l2_truth(0.0)
    assert d.difference > 0 and d.p_value < 1e-6
    assert d.confidence_interval.low <= truth <= d.confidence_interval.high
    # the runs are independent streams, so the difference is Welch's two-sample t
    values = {}
    for design in designs:
        noise = design.groups(np.arange(n), 6, seed=design_seed(3, design))
        values[design.name] = stat(g(noise.reshape(n * k, 6)), gallery_size=k).numpy()
    t = sps.ttest_ind(values[designs[1].name], values[designs[0].name], equal_var=False)
    assert d.p_value == pytest.approx(t.pvalue, rel=1e-6)
    assert d.df == pytest.approx(t.df, rel=1e-9)
    assert tuple(d.confidence_interval) == pytest.approx(tuple(t.confidence_interval(0.95)), rel=1e-9)
    assert json.loads(json.dumps(cmp.to_dict()))["baseline"] == designs[0].name
    frame = cmp.to_frame()
    assert set(frame["design"]) == {x.name for x in designs} and "p_value" in frame


@pytest.mark.parametrize("design", [KAntithetic(3), KAntithetic(5)])
def test_gallery_mean_of_a_single_image_statistic_does_not_see_the_coupling(design):
    """Prop. 3.2: each noise is N(0, I), so E[mean over the gallery of S] = E[S] = 1 for S = ((x - 0.3) / SCALE)^2.

    S is chi-square(1), skewed: 64 galleries keep the t interval near nominal (at 16 it covers ~0.90).
    """
    g, reps = oracle(), 200
    stat = GalleryMean(lambda x: ((x[:, 0] - 0.3) / SCALE) ** 2, name="chi2")
    covered = []
    for rep in range(reps):
        r = estimate_gallery(g, stat, design=design, budget=64 * design.group_size, seed=[5, rep])["chi2"]
        covered.append(r.low <= 1.0 <= r.high)
    assert 0.91 <= np.mean(covered) <= 0.985, np.mean(covered)


def test_gallery_mean_by_hand_and_errors():
    x = torch.arange(6, dtype=torch.float64).reshape(6, 1)  # galleries [0, 1, 2], [3, 4, 5]
    assert GalleryMean(lambda v: v[:, 0] ** 2, name="sq")(x, gallery_size=3).tolist() == [5 / 3, 50 / 3]
    assert GalleryMean(lambda v: v[:, 0]).name == "statistic"
    with pytest.raises(TypeError, match="per-image callable"):
        GalleryMean("brightness")
    with pytest.raises(ValueError, match=r"returned shape \(6, 1\); expected \(6,\)"):
        GalleryMean(lambda v: v, name="bad")(x, gallery_size=3)


def test_gallery_input_errors():
    g = oracle()
    with pytest.raises(ValueError, match="group size 1"):
        estimate_gallery(g, MeanPairwiseL2(), design=IID(), budget=10)
    with pytest.raises(ValueError, match="batch_size must be an int >= the gallery size 4"):
        estimate_gallery(g, MeanPairwiseL2(), design=KAntithetic(4), budget=16, run=RunSettings(batch_size=3))
    with pytest.raises(ValueError, match="designs must differ"):
        compare_galleries(g, MeanPairwiseL2(), designs=[KAntithetic(3), KAntithetic(3)], budget=12)


def test_blend_is_standard_normal_for_random_z0_and_conditional_for_fixed_z0():
    rng = np.random.default_rng(5)
    n, dim, c = 40_000, 3, 0.7
    z0 = torch.from_numpy(rng.standard_normal((n, dim)))
    w = torch.from_numpy(rng.standard_normal((n, dim)))
    z = blend(z0, w, c).numpy()
    # mean 0 (se 1/sqrt(n)), covariance I (se of an entry about sqrt(2/n) on the diagonal, 1/sqrt(n) off it)
    assert np.abs(z.mean(axis=0)).max() < 5 / math.sqrt(n)
    assert np.abs(np.cov(z.T) - np.eye(dim)).max() < 5 * math.sqrt(2 / n)
    # the plain blend c z0 + (1 - c) w fails the same test: variance c^2 + (1 - c)^2 = 0.58
    plain = (c * z0 + (1 - c) * w).numpy()
    assert np.abs(np.cov(plain.T) - np.eye(dim)).max() > 0.3
    # fixed z0: N(c z0, (1 - c^2) I)
    fixed = torch.tensor([1.5, -2.0, 0.0])
    zf = blend(fixed, w, c).numpy()
    assert np.abs(zf.mean(axis=0) - c * fixed.numpy()).max() < 5 * math.sqrt((1 - c**2) / n)
    assert np.abs(zf.var(axis=0) / (1 - c**2) - 1).max() < 5 * math.sqrt(2 / n)
    with pytest.raises(ValueError, match=r"c must be in \[-1, 1\]"):
        blend(fixed, w, 1.5)


def test_variations_estimate_covers_the_conditional_truth():
    z0 = torch.tensor([1.0, -0.5, 2.0])
    c = 0.6
    g = Variations(LinearGenerator(np.zeros(3)), z0, c)  # x = blend(z0, w, c)
    truth = float((c * z0) ** 2 @ torch.ones(3) / 3 + (1 - c**2))  # E mean_i x_i^2
    hits = [
        estimate(g, lambda x: (x**2).mean(dim=1), budget=40, design=d, seed=[2, rep])["statistic"]
        for rep in range(100)
        for d in ("mc", "antithetic")
    ]
    rate = np.mean([r.low <= truth <= r.high for r in hits])
    assert 0.91 <= rate <= 0.985, rate  # 200 intervals at 95%: sd of the rate 0.015
    with pytest.raises(ValueError, match="z0 has shape"):
        Variations(LinearGenerator(np.zeros(3)), torch.zeros(4), c)


@pytest.mark.parametrize("design", ["mc", "antithetic"])
def test_variation_spread_intervals_cover_the_closed_form(design):
    """x = z, S = x: S | z0 ~ N(c z0, 1 - c^2), so E[(S - z0)^2] = (1 - c)^2 z0^2 + 1 - c^2."""
    z0, c = 1.5, 0.7
    rms = math.sqrt((1 - c) ** 2 * z0**2 + 1 - c**2)
    hits_rms, hits_mean = [], []
    for rep in range(200):
        v = estimate_variations(
            LinearGenerator([0.0]),
            torch.tensor([z0]),
            {"x": lambda x: x[:, 0]},
            c=c,
            budget=48,
            design=design,
            seed=[9, rep],
        )["x"]
        assert v.anchor == pytest.approx(z0, rel=1e-6) and v.c == c
        hits_rms.append(v.rms_interval.low <= rms <= v.rms_interval.high)
        hits_mean.append(v.mean.low - 1e-6 <= c * z0 <= v.mean.high + 1e-6)  # float32 images
    assert 0.91 <= np.mean(hits_rms) <= 0.985, np.mean(hits_rms)
    assert 0.91 <= np.mean(hits_mean) <= 0.985 if design == "mc" else np.mean(hits_mean) == 1.0  # pairs cancel


def test_variation_errors_and_table():
    g = LinearGenerator([0.0, 0.0])
    with pytest.raises(ValueError, match="scalar per image"):
        estimate_variations(g, torch.zeros(2), {"both": lambda x: x}, c=0.5, budget=8)
    with pytest.raises(ValueError, match=r"c must be in \[-1, 1\]"):
        estimate_variations(g, torch.zeros(2), {"x": lambda x: x[:, 0]}, c=2.0, budget=8)
    r = estimate_variations(g, torch.zeros(2), {"x": lambda x: x[:, 0]}, c=1.0, budget=8)
    assert r["x"].rms_deviation == 0.0 and r["x"].shift == 0.0  # c = 1 reproduces G(z0)
    assert "rms deviation" in r.to_markdown()
