"""Captured samplers on code uqdiff did not write: toy loops, a research-style DPS loop, real diffusers
pipelines (random weights, built from configs, offline) with every scheduler the issue lists.

"No Gaussian draw outside the design" is counted two ways: an outer torch function mode that sees every
Gaussian draw that reaches torch (it must see none), and torch's default generator state (unchanged).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import functools
import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from uqdiff import Antithetic, Checkpoint, KAntithetic, SobolRQMC, compare, estimate, evaluate_solver
from uqdiff.designs import IID
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import (
    Captured,
    CaptureError,
    PipelineGenerator,
    RepeatCheckError,
    check_repeatable,
)
from uqdiff.samplers.base import Sampler
from uqdiff.samplers.capture import flat_noise

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # numpy 2 on torch tensors inside diffusers
    pytest.mark.filterwarnings("ignore:Should have t:UserWarning"),  # torchsde's float32 interval ends
    pytest.mark.filterwarnings("ignore:the group means of:UserWarning"),  # small budgets, on purpose
]


class CountGaussianDraws(TorchFunctionMode):
    """Counts Gaussian draws that reach torch itself (a captured call answers them before they do)."""

    OPS = {torch.randn, torch.randn_like, torch.normal, torch.Tensor.normal_}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.OPS
        return func(*args, **(kwargs or {}))


def undesigned(run):
    """(result of run(), Gaussian draws that reached torch, whether torch's default generator moved)."""
    state = torch.random.get_rng_state()
    with CountGaussianDraws() as counter:
        out = run()
    return out, counter.count, not torch.equal(state, torch.random.get_rng_state())


# -- toy loops --------------------------------------------------------------------------------------


def ancestral(n, steps=4):
    """A stochastic sampler the usual way: x_T, then fresh noise at every step."""
    x = torch.randn(n, 3)
    for _ in range(steps):
        x = 0.8 * x + 0.3 * torch.randn_like(x)
    return x


def test_every_draw_is_the_design_stream():
    g = Captured(ancestral)
    assert (
        g.noise_shape == (3,)
        and g.noise_size == 15
        and [d.op for d in g.layout] == ["torch.randn"] + ["torch.randn_like"] * 4
    )
    assert g.layout[1].site.startswith("tests/test_capture.py:") and "in ancestral" in g.layout[1].site
    stream = KAntithetic(4).stream([2, 3], seed=5)
    z = torch.from_numpy(flat_noise(stream, g)).float().reshape(8, 5, 3)
    x = z[:, 0]
    for i in range(1, 5):
        x = 0.8 * x + 0.3 * z[:, i]
    out, reached, moved = undesigned(lambda: g(stream))
    assert torch.equal(out, x) and reached == 0 and not moved
    assert g.last_draws == {"sample": 5, "shared": 0, "repeat": 0}
    assert torch.equal(g(z.reshape(8, 15)), x)  # a flat tensor holding each sample's whole stream works too
    with pytest.raises(ValueError, match="holds 3 values per sample but draw 1 of ancestral needs values 3..5"):
        g(torch.zeros(2, 3))


def every_gaussian_api(n):
    g = torch.Generator().manual_seed(123)
    parts = [
        torch.randn(n, 2),
        torch.randn((n, 2), generator=g, dtype=torch.float64).float(),
        torch.randn_like(torch.empty(n, 2)),
        torch.normal(torch.zeros(n, 2), 2.0),
        torch.normal(1.0, 1.0, size=(n, 2)),
        torch.empty(n, 2).normal_(),
        torch.nn.init.normal_(torch.empty(n, 2)),
        torch.distributions.Normal(torch.zeros(2), torch.ones(2)).sample((n,)),
    ]
    out = torch.empty(n, 2)
    torch.randn(n, 2, out=out)
    return torch.cat([*parts, out], dim=1)


def test_every_gaussian_api_is_served_from_the_design():
    g = Captured(every_gaussian_api)
    assert len(g.layout) == 9 and all(d.kind == "sample" for d in g.layout)
    stream = Antithetic().stream(np.arange(3), seed=1)
    out, reached, moved = undesigned(lambda: g(stream))
    assert reached == 0 and not moved
    # antithetic: every draw negated; torch.normal(1, 1) is 1 + z, so its pair sums to 2
    centred = out.clone()
    centred[:, 8:10] -= 1.0
    assert torch.allclose(centred[0::2], -centred[1::2], atol=1e-6)


def test_batch_size_sharding_and_resume_give_identical_results(tmp_path):
    g = Captured(ancestral)
    stats = {"m": lambda x: x[:, 0], "sq": lambda x: torch.tanh(x).sum(dim=1)}
    kw = dict(budget=96, design=KAntithetic(4), seed=[3, 1])
    ref = estimate(g, stats, **kw, run=RunSettings(batch_size=96))
    for batch in (1, 7, 40):
        assert (
            estimate(g, stats, **kw, run=RunSettings(batch_size=batch)).to_dict()["results"] == ref.to_dict()["results"]
        )

    class Failing(Sampler):  # dies mid-run; the checkpoint then resumes to the same bits
        noise_shape, calls = g.noise_shape, 0

        def __call__(self, noise):
            self.calls += 1
            if self.calls > 4:
                raise OSError("device lost")
            return g(noise)

    path = tmp_path / "run.ckpt"
    with pytest.raises(Exception, match="device lost"):
        estimate(Failing(), stats, **kw, run=RunSettings(batch_size=8, checkpoint=Checkpoint(path, every=1)))
    resumed = estimate(g, stats, **kw, run=RunSettings(batch_size=12, checkpoint=Checkpoint(path, resume=True)))
    assert resumed.to_dict()["results"] == ref.to_dict()["results"]


def test_linear_sampler_antithetic_interval_has_width_zero_and_compare_works():
    g = Captured(ancestral)
    r = estimate(g, lambda x: x.sum(dim=1), budget=64, design="antithetic", seed=0)
    assert r["statistic"].estimate == 0.0 and r["statistic"].width == 0.0
    c = compare(g, lambda x: x[:, 0] + x[:, 1] ** 2, budget=64, designs=["mc", "antithetic", SobolRQMC(16)])
    assert list(c.estimates) == ["mc", "antithetic", "rqmc(n=16, lms+shift)"]


def test_layout_change_is_refused_naming_the_draw():
    def uneven(n):
        x = torch.randn(n, 2)
        if n == 3:
            x = x + torch.randn(n, 4)[:, :2]
        return x + torch.randn_like(x)

    g = Captured(uneven)
    g.trace()
    with pytest.raises(
        CaptureError,
        match=r"draw 1 differs from the traced layout: this call drew a per-sample "
        r"torch\.randn of shape \(4,\) at tests/test_capture\.py:\d+ in uneven; the first call drew "
        r"per-sample torch\.randn_like of shape \(2,\) at tests/test_capture\.py:\d+ in uneven",
    ):
        g(IID().stream([0, 1, 2], seed=0))
    short = Captured(lambda n: torch.randn(n, 2) + (torch.randn(n, 2) if n == 1 else 0))
    short.trace()
    with pytest.raises(CaptureError, match=r"this call made 1 draws, the traced layout has 2; the first missing one"):
        short(IID().stream([0, 1, 2], seed=0))


def test_draw_that_is_not_per_sample_is_refused_unless_shared():
    def with_fixed_projection(n):
        w = torch.randn(4, 2)  # a random projection, not one draw per sample
        return torch.randn(n, 4) @ w

    with pytest.raises(
        CaptureError,
        match=r"torch\.randn drew shape \(4, 2\) at tests/test_capture\.py:\d+ in "
        r"with_fixed_projection: its leading dimension is not the batch size 1.*shared=\[\(4, 2\)\]",
    ):
        Captured(with_fixed_projection).trace()
    g = Captured(with_fixed_projection, shared=[(4, 2)])
    assert [d.kind for d in g.layout] == ["shared", "sample"] and g.noise_shape == (4,)
    s = IID().stream(np.arange(5), seed=0)
    a, b = g(s), g(s[2:])
    assert torch.equal(a[2:], b)  # the shared draw is the same in every batch: samples keep their values
    also = Captured(with_fixed_projection, shared=True)
    assert torch.equal(also(s), a)


@pytest.mark.parametrize(
    "body, op",
    [
        (lambda x: x + torch.rand_like(x), "torch.rand_like"),
        (lambda x: x * torch.randint(0, 2, x.shape), "torch.randint"),
        (lambda x: x[torch.randperm(len(x))], "torch.randperm"),
        (lambda x: x * torch.bernoulli(torch.full_like(x, 0.5)), "torch.bernoulli"),
        (lambda x: x + torch.empty_like(x).uniform_(), "Tensor.uniform_"),
        (lambda x: x + torch.empty_like(x).exponential_(), "Tensor.exponential_"),
        (lambda x: torch.nn.Dropout(0.1).train()(x), "torch.nn.functional.dropout"),
    ],
    ids=["rand_like", "randint", "randperm", "bernoulli", "uniform_", "exponential_", "dropout"],
)
def test_other_randomness_is_refused_naming_the_operation(body, op):
    g = Captured(lambda n: body(torch.randn(n, 3)))
    with pytest.raises(
        CaptureError,
        match=rf"{op} at tests/test_capture\.py:\d+ .* is randomness the design does not "
        r"control.*allow_other_randomness=True",
    ):
        g.trace()
    allowed = Captured(lambda n: body(torch.randn(n, 3)), allow_other_randomness=True)
    with pytest.warns(UserWarning, match=rf"{op} at .* the result is no longer a function of the design's noise"):
        allowed.trace()
    assert allowed.last_undesigned == [op]


def test_dropout_in_eval_mode_is_fine():
    layer = torch.nn.Dropout(0.5).eval()
    g = Captured(lambda n: layer(torch.randn(n, 3)))
    assert g.noise_shape == (3,)


def test_draws_capture_cannot_see_are_caught_by_the_generator_state():
    def pool(n):  # fractional max pooling draws its pooling regions inside, with torch.rand
        return torch.nn.functional.fractional_max_pool2d(torch.randn(n, 1, 8, 8), 2, output_size=(4, 4))

    with pytest.raises(
        CaptureError, match="drew from torch's default cpu generator through an operation capture does not see"
    ):
        Captured(pool).trace()


def test_numpy_randomness_is_caught_by_the_repeat_check():
    rng = np.random.default_rng(0)
    g = Captured(lambda n: torch.randn(n, 3) + torch.from_numpy(rng.standard_normal((n, 3))).float())
    with pytest.raises(
        RepeatCheckError,
        match=r"not a function of its noise: the same noise \(group 0 \(noise 0 of "
        r"the group\), seed 0\) run twice gave outputs that differ.*the stray randomness is outside torch: seed any "
        r"numpy or Python random source",
    ):
        estimate(g, lambda x: x[:, 0], budget=16, seed=0)
    report = check_repeatable(g, budget=64)
    assert not report.repeatable and 0.3 < report.explained_variance < 0.7
    assert check_repeatable(Captured(ancestral), budget=8).explained_variance == 1.0


def test_batch_dependence_is_caught_by_the_repeat_check():
    g = Captured(lambda n: (x := torch.randn(n, 3)) - x.mean(dim=0))  # batch statistics: samples interact
    with pytest.raises(
        RepeatCheckError, match=r"depends on the rest of its batch \(batch dependence\): group 0 .* alone gave the same"
    ) as err:
        estimate(g, lambda x: x[:, 0], budget=16, seed=0, run=RunSettings(batch_size=8))
    assert "Captured(fn, max_batch=1)" in str(err.value) and "wrap the sampler" not in str(err.value)


def test_an_opted_out_generator_is_not_checked():
    leaky = lambda z: z + 0.1 * torch.randn_like(z)
    leaky.repeat_check = False
    estimate(leaky, lambda x: x[:, 0], budget=16, noise_shape=(3,), seed=0)


def test_seeded_redraw_by_a_fresh_generator_gets_the_same_noise():
    def redraw(n):
        a = torch.randn(n, 2, generator=torch.Generator().manual_seed(7))
        b = torch.randn(n, 2, generator=torch.Generator().manual_seed(7))  # same seed again: same numbers
        c = torch.randn(n, 2, generator=torch.Generator().manual_seed(8))
        return torch.cat([a, b, c], dim=1)

    g = Captured(redraw)
    assert [d.kind for d in g.layout] == ["sample", "repeat", "sample"] and g.noise_size == 4
    out = g(IID().stream([0, 1], seed=0))
    assert torch.equal(out[:, :2], out[:, 2:4]) and not torch.equal(out[:, :2], out[:, 4:])


# -- a research-style DPS loop, evaluated without editing it ------------------------------------------


def dps_the_usual_way(prior, measurement, batch_size, zeta=0.5):
    """DPS as papers write it: x_T and every step's noise drawn inside with torch, the measurement fixed outside."""
    return dps_from(prior, measurement, torch.randn(batch_size, *prior.sample_shape), zeta)


def dps_from(prior, measurement, x, zeta=0.5):
    ab = prior.alphas_cumprod.tolist() + [1.0]
    for i in range(prior.num_steps):
        x = x.detach().requires_grad_(True)
        x0 = prior.x0(x, i)
        loss = measurement.residual_norm(prior.image(x0)).sum()
        (grad,) = torch.autograd.grad(loss, x)
        eps = (x - math.sqrt(ab[i]) * x0) / math.sqrt(1 - ab[i])
        sigma = math.sqrt((1 - ab[i + 1]) / (1 - ab[i]) * (1 - ab[i] / ab[i + 1]))
        x = math.sqrt(ab[i + 1]) * x0 + math.sqrt(max(1 - ab[i + 1] - sigma**2, 0)) * eps + sigma * torch.randn_like(x)
        x = (x - zeta * grad).detach()
    return prior.image(x)


@pytest.fixture(scope="module")
def tiny_prior():
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler, UNet2DModel

    from uqdiff.inverse.priors import UNetPrior

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )
    return UNetPrior(unet, DDPMScheduler(num_train_timesteps=100), num_inference_steps=6, device="cpu")


def test_research_dps_loop_is_evaluated_unmodified(tiny_prior):
    truths = torch.linspace(-0.5, 0.5, 64).reshape(1, 1, 8, 8)
    solver = lambda m: Captured(functools.partial(dps_the_usual_way, tiny_prior, m))
    from uqdiff.statistics import L1, PSNR

    kw = dict(budget=8, seed=0, correlation_pairs=4, statistics=(L1, PSNR), run=RunSettings(batch_size=4))
    first, reached, moved = undesigned(lambda: evaluate_solver(solver, truths, "box_inpainting", **kw))
    again = evaluate_solver(solver, truths, "box_inpainting", **kw)
    assert reached == 0 and not moved
    assert first.per_image.to_json() == again.per_image.to_json()  # same seed: identical, every step designed
    assert len(first.correlations) == 1  # antithetic (PN) and MC (RR) pairs were recorded

    class OnlyXT:  # the same loop fed x_T only: its step noise comes from torch's global generator
        noise_shape = tiny_prior.sample_shape

        def __call__(self, z):
            return dps_from(tiny_prior, self.m, z)

    def plain(m):
        g = OnlyXT()
        g.m = m
        return g

    with pytest.raises(RepeatCheckError, match="not a function of its noise"):
        evaluate_solver(plain, truths, "box_inpainting", **kw)


# -- real diffusers pipelines ---------------------------------------------------------------------------

diffusers = pytest.importorskip("diffusers")
import tiny_diffusers  # noqa: E402  (after diffusers is known to be installed)


def tiny_unet(channels=1, num_class_embeds=None):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


PIXEL_PIPELINES = {
    "ddpm": lambda: (
        quiet(diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler(num_train_timesteps=100))),
        dict(num_inference_steps=5),
    ),
    "ddim-eta1": lambda: (
        quiet(diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler(num_train_timesteps=100))),
        dict(num_inference_steps=5, eta=1.0),
    ),
    "consistency-multistep": lambda: (
        quiet(
            diffusers.ConsistencyModelPipeline(
                unet=tiny_unet(3, num_class_embeds=3),
                scheduler=diffusers.CMStochasticIterativeScheduler(num_train_timesteps=40),
            )
        ),
        dict(num_inference_steps=3, class_labels=[1]),  # one label, broadcast over the batch by the UNet
    ),
}


@pytest.mark.parametrize("name", list(PIXEL_PIPELINES))
def test_pixel_pipelines_repeat_bit_for_bit_with_every_draw_designed(name):
    pipe, kw = PIXEL_PIPELINES[name]()
    g = PipelineGenerator(pipe, **kw)
    g.trace()
    steps = kw["num_inference_steps"]
    assert g.last_draws["sample"] in (steps, steps + 1) and g.last_draws["shared"] == 0  # x_T + step noises
    stat = {"mean": lambda x: x.mean(dim=(1, 2, 3))}
    run = lambda batch: estimate(g, stat, budget=8, design="antithetic", seed=1, run=RunSettings(batch_size=batch))
    first, reached, moved = undesigned(lambda: run(4))
    assert reached == 0 and not moved
    assert run(4).to_json() == first.to_json()
    other = run(2)["mean"]  # another batch size: the same noise; the UNet's arithmetic may move the last bits
    assert other.estimate == pytest.approx(first["mean"].estimate, rel=1e-6, abs=1e-7)


def test_per_sample_list_of_generators_is_one_draw_per_sample():
    pipe, kw = PIXEL_PIPELINES["ddim-eta1"]()
    g = Captured(
        lambda n: (
            pipe(
                batch_size=n, generator=[torch.Generator().manual_seed(i) for i in range(n)], output_type="np", **kw
            ).images
        )
    )
    plain = PipelineGenerator(pipe, **kw)
    assert [d.shape for d in g.layout] == [d.shape for d in plain.layout] == [(1, 8, 8)] * 6
    s = Antithetic().stream([0, 1, 2], seed=2)
    np.testing.assert_array_equal(g(s), plain(s).permute(0, 2, 3, 1).numpy())


def test_pipeline_generator_refuses_what_it_sets_itself():
    pipe, _ = PIXEL_PIPELINES["ddpm"]()
    with pytest.raises(TypeError, match="sets batch_size itself"):
        PipelineGenerator(pipe, batch_size=2)
    with pytest.raises(TypeError, match="latents"):
        PipelineGenerator(
            quiet(diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler())), latents=1
        )
    with pytest.raises(
        ValueError,
        match=r"first noise \(the initial latent\) with per-sample shape \(1, 8, 8\), "
        r"not the noise_shape \(3, 8, 8\)",
    ):
        PipelineGenerator(pipe, noise_shape=(3, 8, 8), num_inference_steps=2).noise_shape


def test_random_class_labels_of_the_consistency_pipeline_are_refused():
    pipe, kw = PIXEL_PIPELINES["consistency-multistep"]()
    with pytest.raises(CaptureError, match=r"torch\.randint at diffusers/pipelines/consistency_models/"):
        PipelineGenerator(pipe, num_inference_steps=2).trace()


# -- a tiny text-conditioned Stable Diffusion pipeline, every scheduler --------------------------------


class LinearUNet(diffusers.UNet2DConditionModel):
    """A UNet2DConditionModel whose prediction is linear in the latent (the text only enters the config)."""

    def forward(self, sample, timestep, encoder_hidden_states=None, *args, return_dict=True, **kwargs):
        out = 0.5 * sample - 0.25 * sample.roll(1, dims=-1)
        return (out,) if not return_dict else diffusers.models.unets.unet_2d_condition.UNet2DConditionOutput(out)


@pytest.fixture(scope="module")
def sd_parts(tmp_path_factory):
    pytest.importorskip("transformers")
    parts = tiny_diffusers.parts(tmp_path_factory.mktemp("tokenizer"))
    return {**parts, "linear_unet": LinearUNet(**tiny_diffusers.UNET).eval()}


SCHEDULERS = {
    "ddpm": lambda: diffusers.DDPMScheduler(num_train_timesteps=100, steps_offset=1, clip_sample=False),
    "ddim-eta1": lambda: diffusers.DDIMScheduler(num_train_timesteps=100, steps_offset=1, clip_sample=False),
    "euler-ancestral": lambda: diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=100, steps_offset=1),
    "kdpm2-ancestral": lambda: diffusers.KDPM2AncestralDiscreteScheduler(num_train_timesteps=100, steps_offset=1),
    "dpm-solver++-sde": lambda: diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=100, steps_offset=1, algorithm_type="sde-dpmsolver++"
    ),
    "dpm-solver-sde": lambda: diffusers.DPMSolverSDEScheduler(
        num_train_timesteps=100, steps_offset=1, noise_sampler_seed=0
    ),
}


def sd_pipeline(parts, scheduler, *, linear=False, **call):
    pipe = diffusers.StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["linear_unet" if linear else "unet"],
        scheduler=SCHEDULERS[scheduler]() if isinstance(scheduler, str) else scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    kw = dict(prompt="a cat", num_inference_steps=4, guidance_scale=3.0, height=8, width=8)
    if scheduler == "ddim-eta1":
        kw["eta"] = 1.0
    return PipelineGenerator(quiet(pipe), **{**kw, **call})


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_text_conditioned_pipeline_every_scheduler(sd_parts, scheduler):
    g = sd_pipeline(sd_parts, scheduler)
    assert g.noise_shape == (4, 8, 8) and g.last_draws["sample"] >= 4
    stat = {"mean": lambda x: x.mean(dim=(1, 2, 3))}
    run = lambda: estimate(g, stat, budget=4, design="antithetic", seed=2, run=RunSettings(batch_size=4))
    first, reached, moved = undesigned(run)
    assert reached == 0 and not moved
    assert run().to_json() == first.to_json()


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_linear_denoiser_makes_exact_mirror_images(sd_parts, scheduler):
    g = sd_pipeline(sd_parts, scheduler, linear=True, output_type="latent")
    pairs = g(Antithetic().stream([0, 1], seed=3))
    assert pairs.abs().max() > 0.1 and torch.equal(pairs[0::2], -pairs[1::2])
    r = estimate(
        g, lambda x: x.mean(dim=(1, 2, 3)), budget=4, design="antithetic", seed=3, run=RunSettings(batch_size=4)
    )
    assert r["statistic"].width == 0.0


def test_brownian_tree_redraws_reuse_their_slots(sd_parts):
    g = sd_pipeline(sd_parts, "dpm-solver-sde")
    kinds = [d.kind for d in g.layout]
    assert kinds.count("repeat") > 0 and kinds.count("shared") == 0
    unseeded = sd_pipeline(sd_parts, diffusers.DPMSolverSDEScheduler(num_train_timesteps=100, steps_offset=1))
    with pytest.raises(CaptureError, match=r"torch\.randint at diffusers/schedulers/scheduling_dpmsolver_sde\.py"):
        unseeded.trace()


def test_ray_shards_of_a_captured_sampler_match_the_in_process_run():
    ray = pytest.importorskip("ray")
    from uqdiff.estimators.distributed import RayExecutor

    mixing = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))

    def sampler(n):  # defined here, so Ray ships it by value (the test module is not importable on workers)
        x = torch.randn(n, 3)
        for _ in range(4):
            x = 0.8 * x + 0.3 * torch.randn_like(x)
        return x @ mixing  # a matmul: its bits may depend on the batch size; shards are whole batches

    g = Captured(sampler)
    kw = dict(budget=240, design=KAntithetic(4), seed=6, run=RunSettings(batch_size=20))
    stats = {"m": lambda x: x[:, 0], "t": lambda x: torch.tanh(x).sum(dim=1)}
    ref = estimate(g, stats, **kw)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        got = estimate(g, stats, **{**kw, "run": kw["run"].replace(executor=RayExecutor(2, shard_groups=7))})
    finally:
        if started:
            ray.shutdown()
    assert got.to_dict()["results"] == ref.to_dict()["results"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_sampler_on_cuda_matches_the_cpu_and_repeats():
    def on(device):
        def sampler(n):
            x = torch.randn(n, 3, 16, 16, device=device)
            for _ in range(10):
                x = 0.9 * x + 0.2 * torch.randn_like(x)
            return x

        return Captured(sampler)

    s = KAntithetic(4).stream([0, 1], seed=9)
    cpu, gpu = on("cpu")(s), on("cuda")(s)
    assert gpu.device.type == "cuda" and (cpu - gpu.cpu()).abs().max() < 1e-5
    pipe, kw = PIXEL_PIPELINES["ddim-eta1"]()
    g = PipelineGenerator(pipe.to("cuda"), **kw)
    cuda_state = torch.cuda.get_rng_state()
    stat = {"mean": lambda x: x.mean(dim=(1, 2, 3))}
    run = lambda: estimate(g, stat, budget=16, design="antithetic", seed=1, run=RunSettings(batch_size=8))
    first, reached, _ = undesigned(run)
    assert reached == 0 and torch.equal(cuda_state, torch.cuda.get_rng_state())
    assert run().to_json() == first.to_json()
    assert check_repeatable(g, budget=8).ok


@pytest.mark.slow
def test_fashion_dps_pairs_are_antithetic_only_when_captured():
    """On the project's Fashion-MNIST DDPM: a DPS loop with randn_like inside, fed x_T only, pairs only x_T;
    captured, every step's noise is negated too and the pair correlation of the pixel mean is far lower."""
    from uqdiff.inverse.measurement import measure
    from uqdiff.models.fashion import fashion_prior

    prior = fashion_prior(num_inference_steps=20, device="cpu")
    m = measure(torch.zeros(1, 28, 28), "box_inpainting", seed=0)
    pairs = Antithetic().stream(np.arange(16), seed=0)
    captured = Captured(lambda n: dps_the_usual_way(prior, m, n, zeta=2.0))
    x_t = pairs.slot(0, prior.sample_shape, offset=0)
    torch.manual_seed(0)
    only_x_t = dps_from(prior, m, x_t, zeta=2.0)  # step noise from torch's global generator
    corr = lambda out: np.corrcoef(out[0::2].mean(dim=(1, 2, 3)), out[1::2].mean(dim=(1, 2, 3)))[0, 1]
    designed, undesigned_steps = corr(captured(pairs)), corr(only_x_t)
    assert designed < -0.3 and designed < undesigned_steps - 0.2, (designed, undesigned_steps)
