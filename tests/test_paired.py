"""Paired comparisons on common noise: coverage on oracles with known truth, the gain over independent runs."""

import numpy as np
import pytest
import torch

from uqdiff import estimate
from uqdiff.designs import IID, SobolRQMC
from uqdiff.estimators.engine import GeneratorError
from uqdiff.estimators.paired import CommonNoise, ContrastStatistic, paired_estimate
from uqdiff.samplers import LinearGenerator, NumpyGenerator

J = np.array([[0.6, 0.8, 0.0, 0.0]])  # |J| = 1


def square(x):
    return x[:, 0] ** 2


def cosine(x):
    return torch.cos(x[:, 0])


@pytest.mark.parametrize("design,budget", [("mc", 64), ("antithetic", 64), (SobolRQMC(8), 64)])
def test_difference_interval_covers_the_truth(design, budget):
    # A = 1 + J z, B = 0.5 + 1.3 J z; E[cos(a + s Z)] = cos(a) exp(-s^2 / 2). (cos, not a square: the
    # chi-square skew of a square's even part makes any t interval undercover at 32 groups)
    gens = {"A": LinearGenerator([1.0], J), "B": LinearGenerator([0.5], 1.3 * J)}
    truth = np.cos(1.0) * np.exp(-0.5) - np.cos(0.5) * np.exp(-1.69 / 2)
    reps = 300
    hits = sum(
        r.low <= truth <= r.high
        for r in (
            paired_estimate(gens, cosine, budget=budget, design=design, seed=[3, i]).contrast("A - B").result
            for i in range(reps)
        )
    )
    assert 0.91 <= hits / reps <= 0.985


def test_common_noise_beats_independent_runs_and_reports_the_right_gain():
    # S = x: A = J z, B = 0.8 J z. Var(A - B) = 0.04 under common noise, 1.64 from independent runs: gain 41
    gens = {"A": LinearGenerator([0.0], J), "B": LinearGenerator([0.0], 0.8 * J)}
    first = lambda x: x[:, 0]
    crn, independent, gains, indep_var = [], [], [], []
    for i in range(40):
        c = paired_estimate(gens, first, budget=64, seed=[5, i]).contrast("A - B")
        crn.append(c.result.estimate)
        gains.append(c.implied_efficiency)
        indep_var.append(c.independent_mc_variance)
        a = estimate(gens["A"], first, budget=64, seed=[6, i])["statistic"].estimate
        b = estimate(gens["B"], first, budget=64, seed=[7, i])["statistic"].estimate
        independent.append(a - b)
    assert np.var(crn) < np.var(independent) / 10
    assert 41 / 1.25 < np.mean(gains) < 41 * 1.25
    # the independent-run variance predicted from one paired run matches independent runs' real spread
    assert np.mean(indep_var) == pytest.approx(1.64 / 64, rel=0.1)
    assert np.var(independent, ddof=1) == pytest.approx(1.64 / 64, rel=0.5)


def test_efficiency_factors_into_common_noise_and_design_gains():
    gens = {"A": LinearGenerator([1.0], J), "B": LinearGenerator([0.5], 1.3 * J)}
    r = paired_estimate(gens, square, budget=256, design="antithetic", seed=1)
    c, a, b = r.contrast("A - B"), r.arms["square"]["A"], r.arms["square"]["B"]
    crn_under_mc = (a.marginal_variance + b.marginal_variance) / c.result.marginal_variance
    assert c.implied_efficiency == pytest.approx(crn_under_mc * c.result.implied_efficiency)
    assert c.implied_crn_efficiency == pytest.approx(
        (a.standard_error**2 + b.standard_error**2) / c.result.standard_error**2
    )
    # s = Jz ~ N(0, 1): A^2 - B^2 = 0.75 + 0.7 s - 0.69 s^2 (variance 1.442, even part 0.952);
    # Var A^2 = 6, Var B^2 = 1.69 + 2 * 1.69^2 = 7.40: common-noise gain 13.40 / 1.442 = 9.3, and
    # antithetic pairs keep only the even part: 1.442 / (2 * 0.952) = 0.757 (they hurt here)
    assert crn_under_mc == pytest.approx(9.29, rel=0.15)
    assert c.result.implied_efficiency == pytest.approx(0.757, rel=0.2)
    assert 0.85 < c.arm_correlation <= 1.0  # x^2 of 1 + Jz and 0.5 + 1.3 Jz: strongly positively correlated


def test_contrasts_reference_and_trend():
    gens = {f"g{k}": LinearGenerator([0.5 * k], J) for k in range(3)}
    r = paired_estimate(gens, lambda x: x[:, 0], budget=32, reference="g0", contrasts={"trend": [-1, 0, 1]}, seed=0)
    assert sorted(r.contrasts["statistic"]) == ["g1 - g0", "g2 - g0", "trend"]
    # a linear statistic with equal Jacobians: common noise cancels exactly
    assert r.contrast("g2 - g0").result.estimate == pytest.approx(1.0)
    assert r.contrast("trend").result.estimate == pytest.approx(1.0)
    assert r.contrast("trend").result.width == pytest.approx(0.0, abs=1e-12)
    frame = r.to_frame()
    assert set(frame.kind) == {"arm", "contrast"} and len(frame) == 6


def test_common_noise_gives_each_generator_the_leading_coordinates_it_needs():
    small = NumpyGenerator(lambda z: z[:, :1] * 10, noise_shape=(2,))
    big = NumpyGenerator(lambda z: z[:, 2:3], noise_shape=(3,))
    joint = CommonNoise({"small": small, "big": big})
    assert joint.noise_shape == (3,)
    assert joint.shared == "the common leading coordinates of each slot (x_T shapes differ)"
    stream = IID().stream([0, 1], seed=4)
    z = stream.slot(0, (3,), offset=0)
    out = joint(stream)
    assert torch.equal(out[:, 0, 0], 10 * z[:, 0]) and torch.equal(out[:, 1, 0], z[:, 2])


def test_contrast_statistic_keeps_map_shapes():
    s = ContrastStatistic(lambda x: x[:, 0], np.array([[1.0, -1.0]]))
    v = s(torch.arange(12.0).reshape(2, 2, 1, 3))
    assert v.shape == (2, 3, 3)
    np.testing.assert_allclose(v[:, 2], v[:, 0] - v[:, 1])


def test_bad_input_errors():
    g = LinearGenerator([0.0], J)
    with pytest.raises(ValueError, match="at least 2"):
        paired_estimate({"A": g}, square, budget=8)
    with pytest.raises(ValueError, match="reference must be one of"):
        paired_estimate({"A": g, "B": g}, square, budget=8, reference="C")
    with pytest.raises(ValueError, match="contrast 'c' must be 2 finite weights"):
        paired_estimate({"A": g, "B": g}, square, budget=8, contrasts={"c": [1.0]})
    with pytest.raises(GeneratorError, match="different output shapes"):  # raised inside the run, so wrapped
        paired_estimate({"A": g, "B": LinearGenerator([0.0, 1.0], np.vstack([J, J]))}, square, budget=8)
