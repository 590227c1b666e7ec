"""examples/diffpir.py: a research-style solver (its own torch.randn calls) under Captured and evaluate_solvers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.diffpir import diffpir, factory  # noqa: E402
from uqdiff import evaluate_solvers  # noqa: E402
from uqdiff.inverse import measure  # noqa: E402
from uqdiff.statistics import L1, PSNR  # noqa: E402


def test_loop_draws_its_own_noise_and_restores_a_linear_toy():
    """Without uqdiff the loop is plain torch: seeded by torch's generator, it fits the observed pixels."""
    truth = torch.linspace(-0.8, 0.8, 16).reshape(1, 1, 4, 4)
    mask = (torch.arange(16) % 2 == 0).float().reshape(1, 1, 4, 4)
    ab = [0.05, 0.3, 0.7, 0.95]

    def run(seed):
        torch.manual_seed(seed)
        return diffpir(
            3,
            denoise=lambda x, i: 0.5 * x,
            alphas_cumprod=ab,
            shape=(1, 4, 4),
            y=mask * truth,
            forward=lambda z: mask * z,
            sigma_y=0.01,
        )

    a, b = run(0), run(1)
    assert a.shape == (3, 1, 4, 4)
    assert not torch.allclose(a, b)  # its noise is its own draw
    observed = mask.bool().expand_as(a)
    assert torch.allclose(a[observed], truth.expand_as(a)[observed], atol=0.05)


@pytest.fixture(scope="module")
def fashion_case():
    from uqdiff.models.problems import ground_truths

    try:
        truths, _ = ground_truths("fashion", 2)
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")
    return truths


def test_captured_diffpir_takes_every_draw_from_the_design(fashion_case, one_thread):
    g = factory("fashion", steps=3)(measure(fashion_case[0], "inpainting", seed=0))
    assert g.noise_shape == (1, 32, 32) and len(g.layout) == 3  # x_T and the noise of the 2 re-noising steps
    z = torch.randn(2, g.noise_size, generator=torch.Generator().manual_seed(0))
    first, again, other = g(z), g(z), g(-z)
    assert first.shape == (2, 1, 28, 28)
    assert torch.equal(first, again)  # the design's noise, not torch's generator, decides the output
    assert not torch.allclose(first, other)


def test_a_measurement_of_the_wrong_size_is_refused_before_any_model_call(fashion_case):
    m = measure(torch.zeros(1, 32, 32), "inpainting", seed=0)
    with pytest.raises(
        ValueError, match=r"restores images \(1, 28, 28\), but the measurement is of images \(1, 32, 32\)"
    ):
        factory("fashion", steps=3)(m)


@pytest.mark.filterwarnings("ignore:.*images:UserWarning")
def test_diffpir_beside_dds_in_evaluate_solvers(fashion_case, one_thread):
    from uqdiff.models.problems import solver_factory

    c = evaluate_solvers(
        {"DDS": solver_factory("fashion", "dds", steps=3), "DiffPIR": factory("fashion", steps=3)},
        fashion_case,
        "super_resolution",
        budget=4,
        design="antithetic",
        statistics=[L1, PSNR],
        operator_params={"factor": 2},
        seed=0,
    )
    assert set(c.means["psnr"]) == {"DDS", "DiffPIR"}
    d = c.differences["psnr"]["DDS - DiffPIR"]
    assert d.confidence_interval.low < d.estimate < d.confidence_interval.high
    # DDS draws x_T and 3 step noises, DiffPIR x_T and 2: the common prefix is said in the result
    assert c.common_noise.startswith("slots 0..2 (x_T first) in full")
