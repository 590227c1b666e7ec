"""DiffusersSampler and PipelineGenerator on tiny diffusers models built from configs (no downloads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    CMStochasticIterativeScheduler,
    ConsistencyModelPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    EulerDiscreteScheduler,
    UNet2DModel,
)

import uqdiff  # noqa: E402
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import DiffusersSampler, PipelineGenerator  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

STEPS = 3


def tiny_unet(channels: int = 1, size: int = 8, num_class_embeds: int | None = 3) -> UNet2DModel:
    torch.manual_seed(0)  # random weights, fixed for the test
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()


def sampler(scheduler, *, unet=None, **kw) -> DiffusersSampler:
    kw.setdefault("class_label", 1)
    return DiffusersSampler(unet or tiny_unet(), scheduler, num_inference_steps=STEPS, device="cpu", **kw)


def labels(batch: int, c: int = 1) -> torch.Tensor:
    return torch.full((batch,), c, dtype=torch.long)


def design_noise(design, shape, seed=0) -> torch.Tensor:
    """The noises of group 0 of a design, as a batch (group_size, *shape)."""
    return design.groups([0], math.prod(shape), seed=seed).reshape(design.group_size, *shape)


@torch.no_grad()
def reference_run(unet, scheduler, x_t, *, generator=None, **step_kw) -> torch.Tensor:
    """The textbook diffusers loop, with the scheduler drawing its own step noise from ``generator``."""
    s = scheduler.__class__.from_config(scheduler.config)
    s.set_timesteps(STEPS)
    x = x_t * s.init_noise_sigma
    for t in s.timesteps:
        out = unet(s.scale_model_input(x, t), t, class_labels=labels(len(x))).sample
        if generator is not None:
            step_kw["generator"] = generator
        x = s.step(out, t, x, **step_kw).prev_sample
    return x


def drawn_stream(scheduler, x_t, seed, draws_at) -> torch.Tensor:
    """x_T plus the exact per-step noise a scheduler seeded with ``seed`` draws (zeros where it draws none)."""
    s = scheduler.__class__.from_config(scheduler.config)
    s.set_timesteps(STEPS)
    g = torch.Generator().manual_seed(seed)
    slots = [x_t]
    for t in s.timesteps:
        slots.append(torch.randn(x_t.shape, generator=g) if draws_at(t) else torch.zeros_like(x_t))
    return torch.stack(slots, dim=1)


def record_injected(s: DiffusersSampler, monkeypatch) -> list[torch.Tensor]:
    """Record the noise each step actually hands to the update (DDIM's variance_noise, or the DDPM step's)."""
    seen = []
    if isinstance(s.scheduler, DDPMScheduler):
        step = s._ddpm_step

        def ddpm_step(out, t, x, noise):
            seen.append(noise.clone())
            return step(out, t, x, noise)

        monkeypatch.setattr(s, "_ddpm_step", ddpm_step)
    else:
        step = s.scheduler.step

        def ddim_step(*args, **kwargs):
            seen.append(kwargs["variance_noise"].clone())
            return step(*args, **kwargs)

        monkeypatch.setattr(s.scheduler, "step", ddim_step)
    return seen


DDPM_CONFIGS = [
    {},  # fixed_small, clip_sample, epsilon, leading spacing (last step t = 0 adds no noise)
    {
        "variance_type": "fixed_large",
        "clip_sample": False,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
    },
    {
        "thresholding": True,
        "sample_max_value": 2.0,
        "prediction_type": "sample",
        "beta_schedule": "squaredcos_cap_v2",
        "timestep_spacing": "linspace",
    },
]


def test_deterministic_ddim_matches_scheduler_loop():
    unet = tiny_unet()
    sched = DDIMScheduler()
    s = sampler(sched, unet=unet)
    assert not s.stochastic and s.num_steps == STEPS and s.noise_shape == (1, 8, 8)
    assert sched.num_inference_steps is None  # the caller's scheduler is copied, not mutated
    assert not s.unet.training and s.value_range == (-1.0, 1.0)
    z = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = s(z)
    assert out.shape == (3, 1, 8, 8) and out.dtype == torch.float32
    assert torch.equal(out, s(z.clone()))
    torch.testing.assert_close(out, reference_run(unet, sched, z), rtol=0, atol=1e-5)


@pytest.mark.parametrize("config", DDPM_CONFIGS)
def test_ddpm_matches_scheduler_with_its_own_generator(config):
    unet = tiny_unet()
    sched = DDPMScheduler(**config)
    s = sampler(sched, unet=unet)
    assert s.stochastic and s.noise_shape == (1 + STEPS, 1, 8, 8)
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    expected = reference_run(unet, sched, x_t, generator=torch.Generator().manual_seed(7))
    stream = drawn_stream(sched, x_t, seed=7, draws_at=lambda t: t > 0)
    out = s(stream)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    if s.scheduler.timesteps[-1] == 0:  # the step at t = 0 adds no noise: its slot is unused
        stream[:, -1] = 1.0
        assert torch.equal(s(stream), out)


@pytest.mark.parametrize("eta, alpha_to_one", [(1.0, True), (0.5, False)])
def test_stochastic_ddim_matches_scheduler_with_its_own_generator(eta, alpha_to_one):
    unet = tiny_unet()
    sched = DDIMScheduler(set_alpha_to_one=alpha_to_one)
    s = sampler(sched, unet=unet, eta=eta)
    assert s.stochastic and s.noise_shape == (1 + STEPS, 1, 8, 8)
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    expected = reference_run(unet, sched, x_t, generator=torch.Generator().manual_seed(7), eta=eta)
    stream = drawn_stream(sched, x_t, seed=7, draws_at=lambda t: True)
    torch.testing.assert_close(s(stream), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: DDPMScheduler(), lambda: DDIMScheduler()], ids=["ddpm", "ddim-eta1"])
def test_antithetic_negates_every_injected_noise(make, monkeypatch):
    sched = make()
    s = sampler(sched, eta=1.0 if isinstance(sched, DDIMScheduler) else 0.0)
    pair = design_noise(uqdiff.Antithetic(), s.noise_shape)
    for slot in range(s.noise_shape[0]):
        assert torch.equal(pair[1, slot], -pair[0, slot])
    injected = record_injected(s, monkeypatch)
    out = s(pair)
    assert len(injected) == STEPS
    for i, noise in enumerate(injected):
        assert torch.equal(noise, pair[:, 1 + i])
        assert torch.equal(noise[1], -noise[0])
    assert not torch.allclose(out[0], out[1])


def test_k_antithetic_couples_each_step(monkeypatch):
    s = sampler(DDPMScheduler())
    group = design_noise(uqdiff.KAntithetic(4), s.noise_shape, seed=3)
    injected = record_injected(s, monkeypatch)
    s(group)
    torch.testing.assert_close(group[:, 0].sum(0), torch.zeros(1, 8, 8), rtol=0, atol=1e-5)
    for noise in injected:
        torch.testing.assert_close(noise.sum(0), torch.zeros(1, 8, 8), rtol=0, atol=1e-5)
        assert noise.std() > 0.5  # coupled, not degenerate


@torch.no_grad()
def test_classifier_free_guidance():
    unet = tiny_unet()
    sched = DDIMScheduler()
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    guided = sampler(sched, unet=unet, guidance_scale=3.0, null_class=0)
    plain = sampler(sched, unet=unet)
    assert not torch.allclose(guided(z), plain(z))
    # eps = eps_u + w (eps_c - eps_u), by hand
    s = DDIMScheduler.from_config(sched.config)
    s.set_timesteps(STEPS)
    x = z.clone()
    for t in s.timesteps:
        eps_c, eps_u = unet(x, t, class_labels=labels(2, 1)).sample, unet(x, t, class_labels=labels(2, 0)).sample
        x = s.step(eps_u + 3.0 * (eps_c - eps_u), t, x).prev_sample
    torch.testing.assert_close(guided(z), x, rtol=0, atol=1e-5)
    # w = 0 is the null class alone
    torch.testing.assert_close(
        sampler(sched, unet=unet, guidance_scale=0.0, null_class=0)(z),
        sampler(sched, unet=unet, class_label=0)(z),
        rtol=0,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="null_class"):
        sampler(sched, unet=unet, guidance_scale=3.0)
    with pytest.raises(ValueError, match="class_label"):
        sampler(sched, unet=unet, class_label=None, guidance_scale=3.0, null_class=0)


def test_estimate_end_to_end():
    s = sampler(DDPMScheduler())
    r = uqdiff.estimators.estimate(
        s, lambda x: x.mean(dim=(1, 2, 3)), budget=8, design="antithetic", seed=0, run=RunSettings(batch_size=4)
    )
    res = r["statistic"]
    assert np.isfinite(res.estimate) and np.isfinite(res.width) and res.width > 0


def test_half_precision_unet_returns_float32():
    s = sampler(DDIMScheduler(), dtype=torch.bfloat16)
    assert next(s.unet.parameters()).dtype == torch.bfloat16
    out = s(torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_pipeline_generator_consistency_model():
    unet = tiny_unet(channels=3)  # ConsistencyModelPipeline expects 3-channel images
    pipe = ConsistencyModelPipeline(unet=unet, scheduler=CMStochasticIterativeScheduler(num_train_timesteps=40))
    pipe.set_progress_bar_config(disable=True)
    # a list of one label is broadcast over the batch by the UNet's class embedding
    g = PipelineGenerator(pipe, noise_shape=(3, 8, 8), num_inference_steps=1, class_labels=[1])
    assert g.batch_arg == "batch_size" and g.call_kwargs["output_type"] == "pt"
    assert g.noise_shape == (3, 8, 8) and len(g.layout) == 1  # one step: x_T is its only draw
    x_t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(g(x_t), g(x_t.clone()))  # a single draw: a plain tensor of initial latents works too
    z = uqdiff.Antithetic().stream([0], seed=0)
    images = g(z)
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images, g(z))
    as_numpy = PipelineGenerator(pipe, noise_shape=(3, 8, 8), num_inference_steps=1, class_labels=[1], output_type="np")
    torch.testing.assert_close(as_numpy(z), images)
    with pytest.raises(ValueError, match="the noise tensor holds 48 values per sample"):
        g(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="batch_size"):
        PipelineGenerator(pipe, noise_shape=(3, 8, 8), batch_size=2)


def test_pipeline_without_latents_is_captured_too():
    pipe = DDPMPipeline(unet=tiny_unet(num_class_embeds=None), scheduler=DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    g = PipelineGenerator(pipe, noise_shape=(1, 8, 8), num_inference_steps=2)
    assert [d.shape for d in g.layout] == [(1, 8, 8)] * 2  # x_T and the first step's noise (none at t = 0)


def test_bad_inputs():
    ddim, ddpm = sampler(DDIMScheduler()), sampler(DDPMScheduler())
    with pytest.raises(ValueError, match=r"expected noise of shape \(B, 1, 8, 8\), got \(2, 1, 8, 9\)"):
        ddim(torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, 4, 1, 8, 8\), got \(2, 1, 8, 8\)"):
        ddpm(torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="DDIMScheduler, DDPMScheduler"):
        sampler(EulerDiscreteScheduler())
    with pytest.raises(ValueError, match="variance_type 'learned_range'"):
        sampler(DDPMScheduler(variance_type="learned_range"))
    learned_variance = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=2,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )
    with pytest.raises(ValueError, match="maps 1 channels to 2"):
        sampler(DDIMScheduler(), unet=learned_variance, class_label=None)
    with pytest.raises(ValueError, match="eta"):
        sampler(DDPMScheduler(), eta=0.5)
    with pytest.raises(ValueError, match="out of range"):
        sampler(DDIMScheduler(), class_label=3)
    with pytest.raises(ValueError, match="no class embedding"):
        sampler(DDIMScheduler(), unet=tiny_unet(num_class_embeds=None), class_label=1)
