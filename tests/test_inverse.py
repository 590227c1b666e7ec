"""Measurement operators, DPS/DDS posterior samplers and the solver evaluation workflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from uqdiff import KAntithetic, estimate
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.solvers import evaluate_solver
from uqdiff.inverse import OPERATORS, Inpainting, UNetPrior, VEDenoiserPrior, get_operator, measure
from uqdiff.samplers import DiffusersSampler
from uqdiff.samplers.posterior import DDS, DPS, ddim_step, implied_eps
from uqdiff.statistics import L1, PSNR

SHAPE = (1, 8, 8)


def tiny_unet(seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )


def tiny_prior(steps: int = 4, crop=(0, 0, 0, 0), clip: bool = True) -> UNetPrior:
    return UNetPrior(tiny_unet(), DDPMScheduler(clip_sample=clip), num_inference_steps=steps, crop=crop, device="cpu")


def all_operators(shape=SHAPE, seed=3):
    ops = [get_operator(name, shape, seed=seed) for name in OPERATORS]
    ops.append(get_operator("super_resolution", shape, mode="avgpool"))
    ops.append(get_operator("motion_blur", shape, length=5, angle=30.0))
    return ops


@pytest.mark.parametrize("op", all_operators(), ids=repr)
def test_transpose_is_the_adjoint(op):
    op = op.double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, *SHAPE, dtype=torch.float64, generator=gen)
    y = torch.randn(op(x).shape, dtype=torch.float64, generator=gen)
    lhs, rhs = (op(x) * y).sum(dim=(1, 2, 3)), (x * op.transpose(y)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)
    # linear and batched: each image's measurement depends on that image only
    torch.testing.assert_close(op(2 * x[:1] - x[1:2]), 2 * op(x[:1]) - op(x[1:2]))


def test_closed_form_adjoints_match_autograd():
    for op in (get_operator("inpainting", SHAPE, seed=1), get_operator("super_resolution", SHAPE, mode="avgpool")):
        y = torch.randn(op(torch.zeros(2, *SHAPE)).shape)
        from uqdiff.inverse.operators import MeasurementOperator

        torch.testing.assert_close(op.transpose(y), MeasurementOperator.transpose(op, y))


def test_operator_definitions():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    torch.testing.assert_close(
        get_operator("super_resolution", SHAPE, mode="avgpool")(x)[0, 0, 0, 0], torch.tensor(4.5)
    )
    blur = get_operator("gaussian_blur", (1, 16, 16), std=1.0)
    assert blur.kernel.shape == (7, 7) and torch.isclose(blur.kernel.sum(), torch.tensor(1.0))
    assert torch.allclose(blur(torch.ones(1, 1, 16, 16)), torch.ones(1, 1, 16, 16))  # preserves constants
    box = get_operator("box_inpainting", (1, 8, 8))
    assert box.mask[0, 2:6, 2:6].sum() == 0 and box.mask.sum() == 48
    motion = get_operator("motion_blur", (1, 16, 16), length=7, angle=0.0)
    assert torch.allclose(motion.kernel[3], motion.kernel.sum(dim=0), atol=1e-6)  # horizontal line


def test_random_mask_ratio_in_range_and_fixed_by_seed():
    ratios = [get_operator("inpainting", (1, 64, 64), seed=s).missing_ratio for s in range(200)]
    assert min(ratios) >= 0.28 and max(ratios) <= 0.72  # uniform ratio in [0.3, 0.7], binomial jitter
    assert min(ratios) < 0.35 and max(ratios) > 0.65  # and it does spread over the range
    a, b = get_operator("inpainting", SHAPE, seed=5), get_operator("inpainting", SHAPE, seed=5)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, get_operator("inpainting", SHAPE, seed=6).mask)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: get_operator("deblur", SHAPE), ValueError, "allowed names: box_inpainting"),
        (lambda: get_operator("super_resolution", SHAPE, factor=3), ValueError, "factor must be"),
        (lambda: get_operator("super_resolution", SHAPE, mode="nearest"), ValueError, "mode must be one of"),
        (lambda: get_operator("gaussian_blur", SHAPE, std=-1.0), ValueError, "std must be"),
        (lambda: get_operator("gaussian_blur", SHAPE, kernel_size=4), ValueError, "odd"),
        (lambda: get_operator("gaussian_blur", SHAPE, kernel_size=17), ValueError, "too large"),
        (lambda: get_operator("inpainting", SHAPE, missing=(0.5, 1.2)), ValueError, "missing must be"),
        (lambda: get_operator("inpainting", SHAPE, ratio=0.5), TypeError, "operator 'inpainting'"),
        (lambda: Inpainting(SHAPE, np.full((8, 8), 0.5)), ValueError, "only 0 and 1"),
        (lambda: measure(torch.zeros(8, 8), "inpainting"), ValueError, "one image"),
        (lambda: measure(torch.zeros(SHAPE), "inpainting", sigma_y=-0.1), ValueError, "sigma_y"),
    ],
)
def test_bad_operator_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_measurement_is_fixed_by_its_seed_and_has_the_stated_noise():
    truth = torch.rand(1, 64, 64) * 2 - 1
    a, b = measure(truth, "inpainting", seed=7), measure(truth, "inpainting", seed=7)
    assert torch.equal(a.y, b.y) and torch.equal(a.operator.mask, b.operator.mask)
    assert not torch.equal(a.y, measure(truth, "inpainting", seed=8).y)
    sr = measure(truth, "super_resolution", sigma_y=0.1, seed=1, mode="avgpool")
    resid = sr.y - sr.operator(truth[None])
    assert abs(float(resid.std()) - 0.1) < 0.01 and sr.y.shape == (1, 1, 32, 32)


def test_ddim_step_at_eta_one_is_the_ddpm_posterior():
    sched = DDPMScheduler(clip_sample=False)
    sched.set_timesteps(10)
    t, prev = sched.timesteps[3], sched.timesteps[4]
    ab, ab_prev = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[prev])
    gen = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
    alpha = ab / ab_prev
    mean = ab_prev**0.5 * (1 - alpha) / (1 - ab) * x0 + alpha**0.5 * (1 - ab_prev) / (1 - ab) * x
    var = (1 - ab_prev) / (1 - ab) * (1 - alpha)
    torch.testing.assert_close(ddim_step(x0, implied_eps(x, x0, ab), ab, ab_prev, 1.0, z), mean + var**0.5 * z)


def test_dps_with_zero_step_size_is_the_ddpm_sampler():
    """DPS = DDPM ancestral sampling + guidance; with zeta = 0 it must be the (tested) DDPM sampler."""
    m = measure(torch.zeros(SHAPE), "inpainting", seed=0)
    dps = DPS(tiny_prior(steps=5), m, zeta=0.0)
    ref = DiffusersSampler(tiny_unet(), DDPMScheduler(), num_inference_steps=5, device="cpu")
    assert dps.noise_shape == ref.noise_shape == (6, *SHAPE)
    z = torch.randn(3, *dps.noise_shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(dps(z), ref(z), rtol=1e-4, atol=1e-5)


def test_dds_without_cg_is_the_ddim_sampler():
    m = measure(torch.zeros(SHAPE), "gaussian_blur", seed=0, std=0.8)
    prior = UNetPrior(tiny_unet(), DDPMScheduler(clip_sample=False), num_inference_steps=5, device="cpu")
    for eta in (0.0, 0.85):
        dds = DDS(prior, m, eta=eta, cg_steps=0)
        ref = DiffusersSampler(
            tiny_unet(), DDIMScheduler(clip_sample=False), num_inference_steps=5, eta=eta, device="cpu"
        )
        assert dds.noise_shape == ref.noise_shape
        z = torch.randn(3, *dds.noise_shape, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(dds(z), ref(z), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["dps", "dds"])
def test_solver_is_finite_deterministic_and_batch_independent(solver):
    truth = torch.rand(SHAPE) * 2 - 1
    m = measure(truth, "super_resolution", seed=2)
    prior = tiny_prior(steps=4)
    g = DPS(prior, m) if solver == "dps" else DDS(prior, m)
    z = torch.randn(4, *g.noise_shape, generator=torch.Generator().manual_seed(3))
    a, b = g(z), g(z)
    assert a.shape == (4, *SHAPE) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(g(z[2:3]), a[2:3], rtol=1e-5, atol=1e-6)  # a sample ignores its batch mates
    assert not torch.allclose(g(-z[:1]), a[:1])  # the whole stream matters


def test_dps_guidance_pulls_towards_the_measurement():
    truth = torch.rand(SHAPE) * 2 - 1
    m = measure(truth, "inpainting", seed=4, sigma_y=0.0)
    prior = tiny_prior(steps=8)
    z = torch.randn(16, 9, *SHAPE, generator=torch.Generator().manual_seed(5))
    free = m.residual_norm(DPS(prior, m, zeta=0.0)(z))
    weak, strong = (m.residual_norm(DPS(prior, m, zeta=zeta)(z)) for zeta in (0.5, 1.5))
    assert (weak < free).all() and (strong < weak).all() and strong.mean() < 0.6 * free.mean()


def test_dds_data_consistency_solves_the_measurement():
    truth = torch.rand(SHAPE) * 2 - 1
    prior = tiny_prior(steps=2, crop=(1, 1, 1, 1))
    m = measure(truth[:, 1:7, 1:7], "inpainting", seed=1, sigma_y=0.0)
    x0 = torch.randn(3, *SHAPE)
    refined = DDS(prior, m, cg_steps=1).data_consistency(x0)
    seen = m.operator.mask.bool().expand(3, 1, 6, 6)
    torch.testing.assert_close(prior.image(refined)[seen], m.y.expand(3, 1, 6, 6)[seen])  # one CG step is exact
    torch.testing.assert_close(prior.image(refined)[~seen], prior.image(x0)[~seen])  # the rest is the prior's
    torch.testing.assert_close(refined[..., 0, :], x0[..., 0, :])  # cropped margins untouched
    sr = measure(truth[:, 1:7, 1:7], "super_resolution", seed=1, sigma_y=0.0, mode="avgpool", factor=2)
    fitted = prior.image(DDS(prior, sr, cg_steps=1).data_consistency(x0))
    torch.testing.assert_close(sr.operator(fitted), sr.y.expand(3, 1, 3, 3))  # A A^T = I/4: one step is exact
    # CG on the normal equations minimizes ||y - A x|| over growing Krylov spaces: never worse with more steps
    blur = measure(truth[:, 1:7, 1:7], "gaussian_blur", seed=1, sigma_y=0.0, std=0.7)
    residual = [
        blur.residual_norm(prior.image(DDS(prior, blur, cg_steps=n).data_consistency(x0))) for n in (0, 1, 3, 10)
    ]
    assert all((b <= a * (1 + 1e-5)).all() for a, b in zip(residual, residual[1:]))
    assert (residual[-1] < 0.05 * residual[0]).all()


def test_dds_auto_weight_follows_the_noise_levels():
    truth = torch.rand(SHAPE) * 2 - 1
    prior = tiny_prior(steps=3)
    z = torch.randn(2, 4, *SHAPE, generator=torch.Generator().manual_seed(0))
    clean = measure(truth, "inpainting", seed=1, sigma_y=0.0)
    torch.testing.assert_close(
        DDS(prior, clean, lam="auto")(z), DDS(prior, clean, lam=0.0)(z)
    )  # sigma_y = 0: exact fit
    noisy = measure(truth, "inpainting", seed=1, sigma_y=0.2)
    x0 = torch.randn(2, *SHAPE)
    dds = DDS(prior, noisy)
    moved = [float((dds.data_consistency(x0, lam) - x0).norm()) for lam in (0.0, 0.04, 25.0)]
    assert moved[0] > moved[1] > moved[2] and moved[2] < 0.05 * moved[0]  # heavier weight on x0_hat, smaller move
    with pytest.raises(ValueError, match="lam must be 'auto'"):
        DDS(prior, noisy, lam="big")


def test_solver_input_errors():
    m = measure(torch.zeros(1, 6, 6), "inpainting")
    with pytest.raises(ValueError, match="measurement is of images"):
        DPS(tiny_prior(), m)
    ve = VEDenoiserPrior(lambda x, s: x / (1 + s**2), SHAPE, num_steps=3)
    with pytest.raises(ValueError, match="not differentiable"):
        DPS(ve, measure(torch.zeros(SHAPE), "inpainting"))
    with pytest.raises(ValueError, match="eta must be"):
        DDS(ve, measure(torch.zeros(SHAPE), "inpainting"), eta=1.5)
    g = DDS(ve, measure(torch.zeros(SHAPE), "inpainting"))
    with pytest.raises(ValueError, match="noise must have shape"):
        g(torch.zeros(2, *SHAPE))


def test_ve_prior_runs_dds_on_an_exact_gaussian_denoiser():
    """Data ~ N(0, I): the exact VE denoiser is x / (1 + sigma^2); DDS must fit the observed pixels."""
    truth = torch.randn(SHAPE) * 0.5
    m = measure(truth, "inpainting", seed=0, sigma_y=0.0)
    g = DDS(VEDenoiserPrior(lambda x, s: x / (1 + s**2), SHAPE, num_steps=6), m)
    out = g(torch.randn(4, *g.noise_shape, generator=torch.Generator().manual_seed(0)))
    seen = m.operator.mask.bool().expand(4, 1, 8, 8)
    torch.testing.assert_close(out[seen], m.y.expand(4, 1, 8, 8)[seen], atol=1e-5, rtol=0)


def test_evaluation_returns_intervals_for_every_image_design_and_statistic():
    prior = tiny_prior(steps=3)
    truths = torch.rand(2, *SHAPE) * 2 - 1
    seen = []

    def solver(m):
        seen.append(m)
        return DDS(prior, m, cg_steps=2)

    ev = evaluate_solver(
        solver,
        truths,
        "inpainting",
        budget=8,
        designs=["antithetic", KAntithetic(4)],
        statistics=(L1, PSNR),
        seed=3,
        correlation_pairs=4,
        name="DDS-tiny",
        run=RunSettings(batch_size=4),
    )
    assert len(seen) == 2 and not torch.equal(seen[0].y, seen[1].y)  # one measurement per image
    assert set(ev.per_image.design) == {"mc", "antithetic", "k-antithetic(k=4)"}
    assert len(ev.per_image) == 2 * 3 * 2 and (ev.per_image.low <= ev.per_image.high).all()
    assert (ev.per_image.budget == 8).all()
    mc = ev.per_image[(ev.per_image.design == "mc") & (ev.per_image.statistic == "l1")]
    assert np.allclose(mc.efficiency, 1.0)
    # the per-image L1 estimate is an ordinary estimate with the image's measurement and design seed
    m0 = measure(truths[0], "inpainting", seed=[3, 0])
    import zlib

    direct = estimate(
        DDS(prior, m0, cg_steps=2),
        L1(m0.truth),
        budget=8,
        design="antithetic",
        seed=[3, 0, zlib.crc32(b"antithetic")],
        run=RunSettings(batch_size=4),
    )["l1"]
    row = ev.per_image[
        (ev.per_image.image == 0) & (ev.per_image.design == "antithetic") & (ev.per_image.statistic == "l1")
    ]
    assert row.estimate.iloc[0] == pytest.approx(direct.estimate, rel=1e-12)
    assert set(ev.summary.columns) >= {"statistic", "design", "estimate", "width", "efficiency"}
    assert ev.efficiency("l1", "mc") == pytest.approx(1.0)
    mc_summary = ev.summary[ev.summary.design == "mc"]
    assert np.allclose(mc_summary.implied_efficiency, 1.0)  # for MC the marginal variance is n se^2 exactly
    anti = ev.per_image[(ev.per_image.design == "antithetic") & (ev.per_image.statistic == "l1")]
    pooled = anti.marginal_variance.sum() / (anti.budget * anti.standard_error**2).sum()
    assert ev.summary.set_index(["statistic", "design"]).implied_efficiency["l1", "antithetic"] == pytest.approx(pooled)
    assert list(ev.correlations.columns[:1]) == ["image"] and (ev.correlations.pairs == 4).all()
    assert (ev.sanity.posterior_mean_psnr > 0).all()
    assert json.loads(ev.to_json())["solver"] == "DDS-tiny"
    assert "| statistic |" in ev.to_markdown()


def test_evaluation_input_errors():
    with pytest.raises(TypeError, match="statistics must be callables .* names are for the command line"):
        evaluate_solver(lambda m: None, torch.zeros(1, *SHAPE), "inpainting", statistics=["lpips"])
    with pytest.raises(TypeError, match="every statistic must be callable"):
        evaluate_solver(lambda m: None, torch.zeros(1, *SHAPE), "inpainting", statistics=[L1, 3])
    with pytest.raises(ValueError, match="at least one"):
        evaluate_solver(lambda m: None, [], "inpainting")
    with pytest.raises(ValueError, match="unknown operator"):
        evaluate_solver(lambda m: None, torch.zeros(1, *SHAPE), "denoise")


def test_cli_evaluate_writes_the_report_and_matches_the_library(tmp_path):
    from uqdiff.cli.main import main
    from uqdiff.models.problems import TASKS, ground_truths, solver_factory

    out = tmp_path / "ev"
    argv = [
        "evaluate",
        "--model",
        "fashion",
        "--solver",
        "dds",
        "--task",
        "super_resolution",
        "--images",
        "1",
        "--budget",
        "4",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "5",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {
        "report.md",
        "results.json",
        "results.csv",
        "per_image.csv",
        "config.yaml",
    }
    saved = json.loads((out / "results.json").read_text())
    truths, _ = ground_truths("fashion", 1)
    direct = evaluate_solver(
        solver_factory("fashion", "dds", steps=3),
        truths,
        "super_resolution",
        budget=4,
        operator_params=TASKS["fashion"]["super_resolution"],
        seed=5,
        run=RunSettings(batch_size=8),
    )
    got = {(r["design"], r["statistic"]): r["estimate"] for r in saved["per_image"]}
    for r in direct.per_image.itertuples():
        assert got[r.design, r.statistic] == pytest.approx(r.estimate, rel=1e-9)
    assert "DDS on super_resolution" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--model", "oracle"], "model"),
        (["--model", "terrain", "--solver", "dps"], "solver"),
        (["--model", "fashion", "--task", "deblur"], "task"),
        (["--model", "fashion", "--statistics", "mean"], "statistics"),
        (["--model", "fashion", "--images", "0"], "images"),
        (["--model", "fashion", "--sigma-y", "-1"], "sigma_y"),
    ],
)
def test_cli_evaluate_rejects_bad_problems(flags, field, capsys):
    from uqdiff.cli.main import main

    assert main(["evaluate", *flags, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"uqdiff: error: {field}:")
