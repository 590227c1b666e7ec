"""Fixed-object background generation: DDIM inversion, the coupled start, foreground-only Adam, the metrics."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from uqdiff.designs import KAntithetic
from uqdiff.estimators.fixed_object import (
    boundary_band,
    boundary_tv,
    coupled_noise,
    ddim_invert,
    ddim_sample,
    fixed_object_gallery,
    fixed_object_metrics,
    noise_mask,
)
from uqdiff.inverse import UNetPrior
from uqdiff.samplers import DiffusersSampler
from uqdiff.statistics import MeanPairwiseL2

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def tiny_unet(seed: int = 0, *, zero_output: bool = False) -> UNet2DModel:
    torch.manual_seed(seed)
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
    if zero_output:  # eps = 0: DDIM is x -> x * sqrt(ab_prev / ab), exactly invertible
        torch.nn.init.zeros_(unet.conv_out.weight)
        torch.nn.init.zeros_(unet.conv_out.bias)
    return unet


def tiny_prior(steps: int = 4, *, clip: bool = True, zero_output: bool = False) -> UNetPrior:
    """8x8 samples cropped to 6x6 images, like the Fashion model's 32 -> 28."""
    return UNetPrior(
        tiny_unet(zero_output=zero_output),
        DDPMScheduler(clip_sample=clip),
        num_inference_steps=steps,
        crop=(1, 1, 1, 1),
        device="cpu",
    )


def object_and_mask(seed: int = 0):
    image = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[2:4, 1:5] = True
    return image, mask


def test_ddim_sample_is_diffusers_ddim():
    prior = UNetPrior(tiny_unet(), DDPMScheduler(clip_sample=False), num_inference_steps=5, device="cpu")
    ref = DiffusersSampler(tiny_unet(), DDIMScheduler(clip_sample=False), num_inference_steps=5, eta=0.0, device="cpu")
    z = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddim_sample(prior, z), ref(z), rtol=1e-4, atol=1e-5)


def test_inversion_inverts_sampling_when_the_noise_estimate_is_zero():
    prior = tiny_prior(steps=6, clip=False, zero_output=True)
    image, _ = object_and_mask()
    z = ddim_invert(prior, image[None])
    ab0 = float(prior.alphas_cumprod[0])
    torch.testing.assert_close(z, torch.nn.functional.pad(image[None], (1, 1, 1, 1), value=-1.0) * math.sqrt(ab0))
    torch.testing.assert_close(ddim_sample(prior, z), image[None], rtol=1e-5, atol=1e-5)


def test_inversion_reconstructs_a_fashion_image_with_the_real_model():
    from uqdiff.models.fashion import fashion_prior
    from uqdiff.models.fashion_mnist import load_fashion_mnist

    torch.manual_seed(0)
    prior = fashion_prior(20, device="cpu")
    x = torch.tensor(load_fashion_mnist("test")[0][:1], dtype=torch.float32)[:, None] / 127.5 - 1
    with torch.no_grad():
        z = ddim_invert(prior, x)
        rmse = float(((ddim_sample(prior, z) - x) / 2).square().mean().sqrt())
        other = float(((ddim_sample(prior, torch.randn_like(z)) - x) / 2).square().mean().sqrt())
    assert rmse < 0.08 and rmse < other / 4, (rmse, other)


def test_coupled_noise_keeps_the_object_and_couples_the_background():
    prior = tiny_prior()
    image, mask = object_and_mask()
    big = noise_mask(prior, mask)
    assert big.shape == (1, 8, 8) and int(big.sum()) == int(mask.sum()) and not big[0, 0].any()  # margins: background
    inv = ddim_invert(prior, image[None])[0]
    z = coupled_noise(inv, big, background=KAntithetic(4), seed=3, index=2)
    assert z.shape == (4, 1, 8, 8)
    assert all(torch.equal(zi[big], inv[big]) for zi in z)
    torch.testing.assert_close(z[:, ~big].sum(dim=0), torch.zeros(int((~big).sum())), atol=1e-5, rtol=0)  # K-antithetic
    assert torch.equal(coupled_noise(inv, big, background=KAntithetic(4), seed=3, index=2), z)
    assert not torch.equal(coupled_noise(inv, big, background=KAntithetic(4), seed=3, index=1), z)


def test_optimization_moves_only_the_foreground_noise_and_lowers_the_loss():
    prior = tiny_prior()
    image, mask = object_and_mask()
    r = fixed_object_gallery(prior, image, mask, k=3, optimization_steps=(5, 15), seed=1)
    big = noise_mask(prior, mask)
    assert r.steps == (0, 5, 15) and len(r.loss) == 16
    start = coupled_noise(r.inverted_noise, big, background=KAntithetic(3), seed=1)
    assert torch.equal(r.noises[0], start)
    for step in (5, 15):
        assert torch.equal(r.noises[step][:, ~big], start[:, ~big])  # bit-identical background noise
        assert not torch.equal(r.noises[step][:, big], start[:, big])
        assert r.galleries[step].shape == (3, 1, 6, 6)
    assert r.loss[15] < r.loss[5] < r.loss[0] and r.loss[-1] < 0.9 * r.loss[0]
    fg = mask.expand(3, 1, 6, 6)
    recomputed = float((ddim_sample(prior, r.noises[15]) - image).masked_fill(~fg, 0).square().sum())
    assert recomputed == pytest.approx(r.loss[15], rel=1e-5)
    assert r.metrics(15).rmse_foreground < r.metrics(0).rmse_foreground
    again = fixed_object_gallery(prior, image, mask, k=3, optimization_steps=(5, 15), seed=1)
    assert torch.equal(again.galleries[15], r.galleries[15])


def test_boundary_band_of_a_square():
    m = np.zeros((12, 12), dtype=bool)
    m[4:8, 4:8] = True
    band = boundary_band(m, width=2)
    expected = np.zeros_like(m)
    expected[2:10, 2:10] = True  # dilation: the square grown by 2; erosion by 2 leaves nothing of a 4x4
    assert np.array_equal(band, expected)
    m[3:9, 3:9] = True  # 6x6: erosion by 2 keeps its central 2x2
    expected[1:11, 1:11] = True
    expected[5:7, 5:7] = False
    assert np.array_equal(boundary_band(m, width=2), expected)


def test_metrics_on_hand_computed_galleries():
    image, mask = object_and_mask()
    same = image.expand(4, 1, 6, 6)
    r = fixed_object_metrics(same, image, mask, width=1)
    assert r.l2_background == 0.0 and r.rmse_foreground == 0.0
    assert r.boundary_tv == pytest.approx(float(boundary_tv((image[None] + 1) / 2, mask, width=1)))
    flat = torch.full((2, 1, 6, 6), -1.0)
    assert float(boundary_tv(flat, mask).max()) == 0.0
    shifted = torch.stack([image, (image + 0.2).clamp(max=1.0).masked_fill(mask, 0.0)])
    r = fixed_object_metrics(shifted, image, mask)
    fg, bg = mask.expand(1, 6, 6), ~mask.expand(1, 6, 6)
    assert r.l2_background == pytest.approx(float(((shifted[1] - image)[bg] / 2).square().mean()))
    assert r.rmse_foreground == pytest.approx(float(((0 - image)[fg] / 2).square().mean().sqrt()) / 2)


def test_masked_pairwise_l2_is_the_l2_of_the_selected_pixels():
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(4, 4, dtype=torch.bool)
    m[:, :2] = True
    masked = MeanPairwiseL2(value_range=(0, 1), mask=m)(x, gallery_size=3)
    torch.testing.assert_close(masked, MeanPairwiseL2(value_range=(0, 1))(x[..., :2], gallery_size=3))
    with pytest.raises(ValueError, match="does not fit"):
        MeanPairwiseL2(mask=torch.ones(3, 3, dtype=torch.bool))(x, gallery_size=3)
    with pytest.raises(ValueError, match="boolean"):
        MeanPairwiseL2(mask=np.zeros((4, 4), dtype=bool))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mask": torch.ones(5, 5, dtype=torch.bool)}, "mask must be a boolean"),
        ({"mask": torch.zeros(6, 6, dtype=torch.bool)}, "some pixels"),
        ({"mask": torch.ones(6, 6, dtype=torch.bool)}, "some pixels"),
        ({"mask": torch.ones(6, 6)}, "mask must be a boolean"),
        ({"image": torch.zeros(1, 6, 6) + 1.5}, r"values must lie in \[-1.0, 1.0\]"),
        ({"image": torch.zeros(1, 5, 5)}, "image shape"),
        ({"k": 1}, "k .* >= 2"),
        ({"background": "antithetic"}, "background must be one of"),
        ({"background": KAntithetic(3)}, "group size 3, not k=4"),
        ({"optimization_steps": (-1, 5)}, "non-negative ints"),
        ({"lr": 0.0}, "lr must be"),
    ],
)
def test_bad_input_gives_a_clear_error(change, message):
    image, mask = object_and_mask()
    args = {"image": image, "mask": mask, "k": 4, "optimization_steps": (1,), "lr": 0.01, "background": "repulsive"}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        fixed_object_gallery(tiny_prior(steps=2), args.pop("image"), args.pop("mask"), **args)


def test_benchmark_quick_run_writes_its_table(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("bench_fixed_object", BENCHMARKS / "fixed_object.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.main(["--quick", "--out", str(tmp_path)])
    methods = set(frame["method"])
    assert {"DDIM inv.", "Object-inv. + random BG"} <= methods and any(m.startswith("ours") for m in methods)
    saved = json.loads((tmp_path / "fixed_object_quick.json").read_text())
    assert saved["per_image"] and (tmp_path / "fixed_object_quick.md").is_file()
    assert (tmp_path / "fixed_object_quick_galleries.png").is_file()
