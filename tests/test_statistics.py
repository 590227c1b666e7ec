"""Tests for uqdiff.statistics (pixel, reconstruction statistics and diagnostics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from uqdiff.statistics import (
    L1,
    PSNR,
    SSIM,
    STATISTICS,
    Brightness,
    Contrast,
    MeanSD,
    PairCorrelations,
    PixelMap,
    PixelMean,
    Statistic,
    VerticalCentroid,
    affine_antisymmetry_score,
    get_statistic,
    pair_correlation,
    pn_rr_correlations,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------- base
class TestBase:
    def test_value_range_validation(self) -> None:
        with pytest.raises(ValueError, match="lo < hi"):
            PixelMean(value_range=(1.0, 1.0))
        with pytest.raises(ValueError, match="lo < hi"):
            PixelMean(value_range=(1.0, 0.0))
        with pytest.raises(ValueError, match="lo < hi"):
            PixelMean(value_range=(0.0, float("inf")))
        with pytest.raises(ValueError, match="pair of numbers"):
            PixelMean(value_range=(0.0,))  # type: ignore[arg-type]

    def test_value_range_is_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            PixelMean((0.0, 1.0))  # type: ignore[misc]

    def test_abstract(self) -> None:
        with pytest.raises(TypeError):
            Statistic()  # type: ignore[abstract]

    @pytest.mark.parametrize("shape", [(4,), (2, 4), (1, 1, 1, 4, 4), ()])
    def test_bad_shape(self, shape: tuple[int, ...]) -> None:
        with pytest.raises(ValueError, match=r"got shape \(" + ", ".join(map(str, shape))):
            PixelMean()(np.zeros(shape))

    def test_bad_type(self) -> None:
        with pytest.raises(TypeError, match="list"):
            PixelMean()([[[0.0]]])  # type: ignore[arg-type]

    def test_complex_rejected(self) -> None:
        with pytest.raises(ValueError, match="complex"):
            PixelMean()(np.zeros((1, 2, 2), dtype=complex))

    def test_to_unit(self) -> None:
        s = PixelMean(value_range=(-1.0, 1.0))
        np.testing.assert_allclose(s.to_unit(np.array([-1.0, 0.0, 1.0])), [0.0, 0.5, 1.0])
        s = PixelMean(value_range=(0.0, 255.0))
        assert torch.allclose(s.to_unit(torch.tensor([0.0, 255.0])), torch.tensor([0.0, 1.0]))

    def test_repr(self) -> None:
        r = repr(Contrast(value_range=(0, 255)))
        assert r == "Contrast(name='contrast', value_range=(0.0, 255.0))"
        assert "scale=255.0" in repr(PixelMean(scale=255))
        assert "'ssim'" in repr(SSIM(np.zeros((11, 11))))

    def test_output_types_and_dtypes(self) -> None:
        x = np.zeros((3, 2, 4, 4))
        out = PixelMean()(x)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3,)
        t32 = torch.zeros(3, 2, 4, 4, dtype=torch.float32)
        out_t = PixelMean()(t32)
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
        assert out_t.device == t32.device
        out_64 = PixelMean()(t32.double())
        assert out_64.dtype == torch.float64
        out_int = PixelMean(value_range=(0, 255))(torch.full((2, 1, 3, 3), 51, dtype=torch.uint8))
        assert out_int.dtype == torch.float32
        assert torch.allclose(out_int, torch.tensor([0.2, 0.2]))

    def test_bhw_equals_b1hw(self, rng: np.random.Generator) -> None:
        x = rng.uniform(-1, 1, size=(3, 8, 8))
        for stat in (PixelMean(), Brightness(), Contrast(), VerticalCentroid()):
            np.testing.assert_array_equal(stat(x), stat(x[:, None]))
        assert PixelMap()(x).shape == (3, 1, 8, 8)


# ---------------------------------------------------------------------- pixel
class TestPixel:
    def test_mean_constant(self) -> None:
        x = np.full((2, 3, 5, 5), 0.0)  # mid-grey in [-1, 1]
        np.testing.assert_allclose(PixelMean()(x), [0.5, 0.5])
        np.testing.assert_allclose(PixelMean(scale=255)(x), [127.5, 127.5])
        np.testing.assert_allclose(PixelMean(value_range=(0, 255))(np.full((1, 3, 2, 2), 51.0)), [0.2])

    def test_mean_matches_numpy(self, rng: np.random.Generator) -> None:
        x = rng.uniform(0, 255, size=(4, 3, 6, 7))
        np.testing.assert_allclose(PixelMean(value_range=(0, 255), scale=255)(x), x.mean(axis=(1, 2, 3)))

    def test_scale_validation(self) -> None:
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="scale"):
                PixelMean(scale=bad)
            with pytest.raises(ValueError, match="scale"):
                Brightness(scale=bad)
            with pytest.raises(ValueError, match="scale"):
                PixelMap(scale=bad)

    @pytest.mark.parametrize("channel, weight", [(0, 0.299), (1, 0.587), (2, 0.114)])
    def test_brightness_weights(self, channel: int, weight: float) -> None:
        x = np.zeros((1, 3, 4, 4))
        x[:, channel] = 1.0
        np.testing.assert_allclose(Brightness(value_range=(0, 1))(x), [weight])
        np.testing.assert_allclose(Brightness(value_range=(0, 1), scale=255)(x), [255 * weight])

    def test_brightness_white_and_mixed(self, rng: np.random.Generator) -> None:
        np.testing.assert_allclose(Brightness()(np.ones((2, 3, 3, 3))), [1.0, 1.0])
        x = rng.uniform(0, 1, size=(3, 3, 5, 5))
        expected = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(axis=(1, 2))
        np.testing.assert_allclose(Brightness(value_range=(0, 1))(x), expected)

    def test_brightness_single_channel(self, rng: np.random.Generator) -> None:
        x = rng.uniform(0, 1, size=(2, 1, 4, 4))
        np.testing.assert_allclose(Brightness(value_range=(0, 1))(x), x.mean(axis=(1, 2, 3)))

    @pytest.mark.parametrize("c", [2, 4])
    def test_brightness_bad_channels(self, c: int) -> None:
        with pytest.raises(ValueError, match=f"got {c} channels"):
            Brightness()(np.zeros((1, c, 4, 4)))

    def test_contrast_ramp_even(self) -> None:
        # rows 0..5 with values 1, 0.8, ..., 0 on [0, 1]: top mean 0.8, bottom 0.2
        col = np.linspace(1, 0, 6)
        x = np.broadcast_to(col[None, None, :, None], (2, 3, 6, 4)).copy()
        np.testing.assert_allclose(Contrast(value_range=(0, 1))(x), [60.0, 60.0])
        # the same image on [-1, 1] and flipped
        np.testing.assert_allclose(Contrast()(2 * x - 1), [60.0, 60.0])
        np.testing.assert_allclose(Contrast(value_range=(0, 1))(x[:, :, ::-1].copy()), [-60.0, -60.0])

    def test_contrast_odd_excludes_middle(self) -> None:
        x = np.zeros((1, 1, 5, 2))
        x[0, 0, :2] = 1.0  # top two rows white
        x[0, 0, 2] = 123.0  # the middle row is ignored whatever its value
        np.testing.assert_allclose(Contrast(value_range=(0, 1))(x), [100.0])

    def test_contrast_constant_and_channels(self) -> None:
        np.testing.assert_allclose(Contrast()(np.full((2, 3, 4, 4), 0.3)), [0.0, 0.0])
        x = np.zeros((1, 2, 4, 4))
        x[0, 0, :2] = 1.0  # channel 0 has contrast 100, channel 1 has 0
        np.testing.assert_allclose(Contrast(value_range=(0, 1))(x), [50.0])

    def test_contrast_too_small(self) -> None:
        with pytest.raises(ValueError, match="at least 2 rows"):
            Contrast()(np.zeros((1, 1, 1, 5)))

    def test_centroid_ramp(self) -> None:
        h = 7
        i = np.arange(1, h + 1, dtype=float)
        m = i / h  # linear ramp increasing downwards, on [0, 1]
        x = np.broadcast_to(m[None, None, :, None], (1, 3, h, 4)).copy()
        expected = (i * m).sum() / m.sum()  # = (2H + 1) / 3
        assert expected == pytest.approx((2 * h + 1) / 3)
        np.testing.assert_allclose(VerticalCentroid(value_range=(0, 1))(x), [expected])

    def test_centroid_constant_and_value_range(self) -> None:
        h = 6
        x = np.full((2, 3, h, 5), 200.0)
        np.testing.assert_allclose(VerticalCentroid(value_range=(0, 255))(x), [(h + 1) / 2] * 2)
        x = np.full((1, 1, 4, 4), -1.0)
        x[0, 0, 0] = 1.0  # only the top row (i = 1) is bright in [-1, 1]
        np.testing.assert_allclose(VerticalCentroid()(x), [1.0])

    def test_centroid_channel_mean(self) -> None:
        x = np.zeros((1, 2, 4, 3))
        x[0, 0, 0] = 1.0  # channel 0 lit at row 1
        x[0, 1, 3] = 1.0  # channel 1 lit at row 4
        np.testing.assert_allclose(VerticalCentroid(value_range=(0, 1))(x), [2.5])

    def test_centroid_all_zero_is_nan(self) -> None:
        x = np.zeros((2, 1, 4, 4))
        x[1] = 1.0
        out = VerticalCentroid(value_range=(0, 1))(x)
        assert math.isnan(out[0]) and out[1] == pytest.approx(2.5)
        out_t = VerticalCentroid(value_range=(0, 1))(torch.from_numpy(x))
        assert torch.isnan(out_t[0])

    def test_pixel_map(self, rng: np.random.Generator) -> None:
        x = rng.uniform(-1, 1, size=(2, 3, 4, 5))
        np.testing.assert_allclose(PixelMap()(x), (x + 1) / 2)
        np.testing.assert_allclose(PixelMap(scale=255)(x), 255 * (x + 1) / 2)
        assert PixelMap()(x).shape == (2, 3, 4, 5)

    def test_numpy_torch_agree(self, rng: np.random.Generator) -> None:
        x = rng.uniform(-1, 1, size=(3, 3, 12, 13))
        ref = rng.uniform(-1, 1, size=(3, 12, 13))
        stats: list[Statistic] = [
            PixelMean(scale=255),
            Brightness(),
            Contrast(),
            VerticalCentroid(),
            PixelMap(),
            L1(ref),
            PSNR(torch.from_numpy(ref)),
            SSIM(ref),
        ]
        for stat in stats:
            out_np = stat(x)
            out_t = stat(torch.from_numpy(x))
            assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
            np.testing.assert_allclose(out_np, out_t.numpy(), rtol=0, atol=0, err_msg=stat.name)
            out_32 = stat(torch.from_numpy(x).float())
            assert out_32.dtype == torch.float32
            np.testing.assert_allclose(out_np, out_32.double().numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------- reconstruction
class TestReconstruction:
    def test_l1(self, rng: np.random.Generator) -> None:
        ref = rng.uniform(0, 255, size=(3, 6, 6))
        x = rng.uniform(0, 255, size=(4, 3, 6, 6))
        expected = np.abs(x - ref).mean(axis=(1, 2, 3)) / 255
        np.testing.assert_allclose(L1(ref, value_range=(0, 255))(x), expected)
        np.testing.assert_allclose(L1(np.zeros((2, 2)))(np.ones((1, 2, 2))), [0.5])
        np.testing.assert_allclose(L1(ref, value_range=(0, 255))(ref[None]), [0.0])

    def test_psnr_vs_skimage(self, rng: np.random.Generator) -> None:
        lo, hi = -1.0, 1.0
        ref = rng.uniform(lo, hi, size=(3, 8, 8))
        x = np.clip(ref + rng.normal(0, 0.1, size=(5, 3, 8, 8)), lo, hi)
        out = PSNR(ref, value_range=(lo, hi))(x)
        expected = [peak_signal_noise_ratio(ref, xi, data_range=hi - lo) for xi in x]
        np.testing.assert_allclose(out, expected, rtol=1e-12)
        ref255 = rng.uniform(0, 255, size=(8, 8))
        x255 = rng.uniform(0, 255, size=(2, 8, 8))
        out = PSNR(ref255, value_range=(0, 255))(x255)
        expected = [peak_signal_noise_ratio(ref255, xi, data_range=255) for xi in x255]
        np.testing.assert_allclose(out, expected, rtol=1e-12)

    def test_psnr_closed_form_and_inf(self) -> None:
        np.testing.assert_allclose(PSNR(np.zeros((4, 4)), value_range=(0, 1))(np.full((1, 4, 4), 0.1)), [20.0])
        ref = np.linspace(-1, 1, 16).reshape(1, 4, 4)
        out = PSNR(ref)(ref[None])
        assert np.isposinf(out[0])

    @staticmethod
    def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
        return float(
            structural_similarity(
                a,
                b,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=0,
            )
        )

    def test_ssim_vs_skimage_random(self, rng: np.random.Generator) -> None:
        ref = rng.uniform(0, 1, size=(3, 20, 23))
        x = np.clip(ref + rng.normal(0, 0.2, size=(3, 3, 20, 23)), 0, 1)
        x[2] = rng.uniform(0, 1, size=(3, 20, 23))  # an unrelated image
        out = SSIM(ref, value_range=(0, 1))(x)
        expected = [self._skimage_ssim(ref, xi) for xi in x]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
        # exact 11x11 (a single valid window position)
        out = SSIM(ref[:, :11, :11], value_range=(0, 1))(x[:, :, :11, :11])
        expected = [self._skimage_ssim(ref[:, :11, :11], xi[:, :11, :11]) for xi in x]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)

    def test_ssim_vs_skimage_structured(self, rng: np.random.Generator) -> None:
        cam = resize(skdata.camera().astype(np.float64) / 255.0, (64, 64), anti_aliasing=True)
        cam = cam[None]  # (1, H, W)
        noisy = np.clip(cam + rng.normal(0, 0.05, size=cam.shape), 0, 1)
        blurred = 0.5 * (cam + np.roll(cam, 2, axis=2))
        batch = np.stack([noisy, blurred, 1 - cam])
        # declared range (-1, 1): same images, mapped back to [0, 1] inside
        out = SSIM(2 * cam - 1)(2 * batch - 1)
        expected = [self._skimage_ssim(cam, b) for b in batch]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
        # (H, W) reference with (B, H, W) images
        out2 = SSIM(cam[0], value_range=(0, 1))(batch[:, 0])
        np.testing.assert_allclose(out2, expected, rtol=0, atol=1e-6)

    def test_ssim_identity(self, rng: np.random.Generator) -> None:
        ref = rng.uniform(-1, 1, size=(3, 16, 16))
        np.testing.assert_allclose(SSIM(ref)(ref[None]), [1.0], atol=1e-12)

    def test_ssim_valid_equals_skimage_crop(self, rng: np.random.Generator) -> None:
        """The 'valid' map equals skimage's full map cropped by (11 - 1) // 2 = 5."""
        a = rng.uniform(0, 1, size=(17, 19))
        b = rng.uniform(0, 1, size=(17, 19))
        _, full = structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            full=True,
        )
        cropped = full[5:-5, 5:-5]
        assert cropped.shape == (17 - 10, 19 - 10)
        out = SSIM(a, value_range=(0, 1))(b[None])
        np.testing.assert_allclose(out, [cropped.mean()], atol=1e-12)

    def test_ssim_too_small(self) -> None:
        with pytest.raises(ValueError, match="at least 11x11.*got 10x12"):
            SSIM(np.zeros((10, 12)))(np.zeros((1, 10, 12)))

    @pytest.mark.parametrize("cls", [L1, PSNR, SSIM])
    def test_reference_shape_mismatch(self, cls: type) -> None:
        stat = cls(np.zeros((3, 12, 12)))
        with pytest.raises(ValueError, match=r"\(3, 12, 12\).*\(1, 12, 12\)"):
            stat(np.zeros((2, 12, 12)))
        with pytest.raises(ValueError, match=r"\(3, 12, 12\).*\(3, 12, 13\)"):
            stat(np.zeros((2, 3, 12, 13)))

    @pytest.mark.parametrize("cls", [L1, PSNR, SSIM])
    def test_reference_bad_ndim(self, cls: type) -> None:
        with pytest.raises(ValueError, match=r"reference must have shape.*got shape \(1, 3, 4, 4\)"):
            cls(np.zeros((1, 3, 4, 4)))

    def test_reference_torch_and_value_range(self) -> None:
        ref = torch.zeros(1, 4, 4)
        stat = L1(ref, value_range=(0.0, 2.0))
        assert torch.allclose(stat(torch.ones(2, 1, 4, 4)), torch.tensor([0.5, 0.5]))


# -------------------------------------------------------------------- registry
class TestRegistry:
    def test_names(self) -> None:
        assert set(STATISTICS) == {
            "mean",
            "std",
            "brightness",
            "contrast",
            "centroid",
            "pixel_map",
            "slope",
            "max_slope",
            "l1",
            "psnr",
            "ssim",
        }
        for name, cls in STATISTICS.items():
            assert cls.name == name

    def test_get_statistic(self) -> None:
        s = get_statistic("mean", value_range=(0, 255), scale=2.0)
        assert isinstance(s, PixelMean) and s.value_range == (0.0, 255.0) and s.scale == 2.0
        r = get_statistic("ssim", reference=np.zeros((11, 11)))
        assert isinstance(r, SSIM)

    def test_unknown_name(self) -> None:
        with pytest.raises(ValueError, match="unknown statistic 'foo'.*allowed names: brightness, centroid"):
            get_statistic("foo")


# ----------------------------------------------------------------- diagnostics
class TestDiagnostics:
    def test_pair_correlation_vs_corrcoef(self, rng: np.random.Generator) -> None:
        a = rng.normal(size=(5, 3, 4, 4))
        b = 0.5 * a + rng.normal(size=(5, 3, 4, 4))
        out = pair_correlation(a, b)
        assert out.dtype == np.float64 and out.shape == (5,)
        expected = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(5)]
        np.testing.assert_allclose(out, expected, rtol=1e-12)
        np.testing.assert_allclose(pair_correlation(torch.from_numpy(a), torch.from_numpy(b)), expected, rtol=1e-12)

    def test_pair_correlation_centralized(self, rng: np.random.Generator) -> None:
        a = rng.normal(size=(4, 2, 5))
        b = rng.normal(size=(4, 2, 5))
        mu = rng.normal(size=(2, 5))
        out = pair_correlation(a, b, centralize=mu)
        expected = [np.corrcoef((a[i] - mu).ravel(), (b[i] - mu).ravel())[0, 1] for i in range(4)]
        np.testing.assert_allclose(out, expected, rtol=1e-12)
        np.testing.assert_allclose(pair_correlation(a, b, centralize=torch.from_numpy(mu)), expected, rtol=1e-12)

    def test_pair_correlation_exact_and_nan(self) -> None:
        a = np.arange(12.0).reshape(2, 6)
        np.testing.assert_allclose(pair_correlation(a, 3 * a + 1), [1.0, 1.0])
        np.testing.assert_allclose(pair_correlation(a, -a), [-1.0, -1.0])
        out = pair_correlation(np.ones((1, 4)), np.arange(4.0)[None])
        assert np.isnan(out[0])

    def test_pair_correlation_errors(self) -> None:
        with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(2, 4\)"):
            pair_correlation(np.zeros((2, 3)), np.zeros((2, 4)))
        with pytest.raises(ValueError, match="batches of shape"):
            pair_correlation(np.zeros(3), np.zeros(3))
        with pytest.raises(ValueError, match=r"centralize must have the image shape \(3,\)"):
            pair_correlation(np.zeros((2, 3)), np.zeros((2, 3)), centralize=np.zeros(4))
        with pytest.raises(TypeError, match="list"):
            pair_correlation([[1.0, 2.0]], np.zeros((1, 2)))  # type: ignore[arg-type]

    def test_pn_rr_correlations(self, rng: np.random.Generator) -> None:
        k = 6
        pos = rng.normal(size=(k, 3, 4, 4))
        neg = rng.normal(size=(k, 3, 4, 4))
        r1 = rng.normal(size=(k, 3, 4, 4))
        r2 = rng.normal(size=(k, 3, 4, 4))
        res = pn_rr_correlations(pos, neg, torch.from_numpy(r1), r2)
        assert isinstance(res, PairCorrelations)
        mu_pn = np.concatenate([pos, neg]).mean(axis=0)
        mu_rr = np.concatenate([r1, r2]).mean(axis=0)
        corr = lambda u, v: np.array(  # noqa: E731
            [np.corrcoef(u[i].ravel(), v[i].ravel())[0, 1] for i in range(len(u))]
        )
        np.testing.assert_allclose(res.pn_standard, corr(pos, neg), rtol=1e-12)
        np.testing.assert_allclose(res.rr_standard, corr(r1, r2), rtol=1e-12)
        np.testing.assert_allclose(res.pn_centralized, corr(pos - mu_pn, neg - mu_pn), rtol=1e-10)
        np.testing.assert_allclose(res.rr_centralized, corr(r1 - mu_rr, r2 - mu_rr), rtol=1e-10)
        with pytest.raises(AttributeError):
            res.pn_standard = np.zeros(k)  # type: ignore[misc]

    def test_pn_centralized_antithetic(self, rng: np.random.Generator) -> None:
        # G(z) = base + z: PN pairs are perfectly negatively correlated once centralized
        base = rng.normal(size=(1, 8, 8))
        z = rng.normal(size=(40, 8, 8))
        res = pn_rr_correlations(base + z, base - z, base + z, base + rng.normal(size=(40, 8, 8)))
        np.testing.assert_allclose(res.pn_centralized, -1.0, atol=1e-12)
        assert res.rr_standard.mean() > 0.2

    def test_summary(self) -> None:
        v = np.array([-0.9, -0.7, -0.8])
        res = PairCorrelations(v, -v, v, -v)
        s = res.summary()
        assert set(s) == {"pn_standard", "rr_standard", "pn_centralized", "rr_centralized"}
        assert isinstance(s["pn_standard"], MeanSD)
        assert s["pn_standard"].mean == pytest.approx(-0.8)
        assert s["pn_standard"].sd == pytest.approx(np.std(v, ddof=1))
        assert str(s["pn_standard"]) == "-0.80 (0.10)"
        assert str(s["rr_standard"]) == "0.80 (0.10)"
        assert "pn_centralized: -0.80 (0.10)" in str(res)
        one = PairCorrelations(v[:1], v[:1], v[:1], v[:1]).summary()
        assert math.isnan(one["pn_standard"].sd)

    def test_pn_rr_errors(self) -> None:
        z = np.zeros((2, 3, 3))
        with pytest.raises(ValueError, match="pos and neg must have the same shape"):
            pn_rr_correlations(z, np.zeros((3, 3, 3)), z, z)
        with pytest.raises(ValueError, match="rand1 and rand2 must have the same shape"):
            pn_rr_correlations(z, z, z, np.zeros((2, 3, 4)))
        with pytest.raises(ValueError, match="non-empty"):
            pn_rr_correlations(np.zeros((0, 3)), np.zeros((0, 3)), z, z)

    @pytest.mark.parametrize("f", [lambda x: 3 * x + 2, lambda x: np.sin(x) + 1, lambda x: -x, lambda x: x**3 - 5])
    def test_antisymmetry_one(self, f) -> None:  # type: ignore[no-untyped-def]
        assert affine_antisymmetry_score(f) == pytest.approx(1.0, abs=1e-12)

    @pytest.mark.parametrize("f", [np.square, np.cos, lambda x: np.abs(x) + 7])
    def test_antisymmetry_zero(self, f) -> None:  # type: ignore[no-untyped-def]
        assert affine_antisymmetry_score(f) == pytest.approx(0.0, abs=1e-12)

    def test_antisymmetry_exp_closed_form(self) -> None:
        s = math.sinh(1.0)
        sym = math.sinh(2.0) / 2 + 1 - 2 * s**2  # int (cosh x - sinh 1)^2
        anti = math.sinh(2.0) / 2 - 1  # int sinh(x)^2
        assert affine_antisymmetry_score(np.exp) == pytest.approx(1 - sym / (sym + anti), abs=1e-9)
        # x + x^2: antisymmetric part x (int 2/3), symmetric part x^2 - 1/3 (int 8/45)
        expected = 1 - (8 / 45) / (8 / 45 + 2 / 3)
        assert affine_antisymmetry_score(lambda x: x + x**2) == pytest.approx(expected, abs=1e-9)

    def test_antisymmetry_errors(self) -> None:
        with pytest.raises(ValueError, match="score undefined for a constant function"):
            affine_antisymmetry_score(lambda x: np.full_like(x, 2.0))
        with pytest.raises(ValueError, match="score undefined for a constant function"):
            affine_antisymmetry_score(lambda x: 5.0)  # type: ignore[arg-type, return-value]
        with pytest.raises(ValueError, match="vectorized"):
            affine_antisymmetry_score(lambda x: x[:-1])
        with pytest.raises(ValueError, match="non-finite"):
            affine_antisymmetry_score(lambda x: np.where(x > 0, np.inf, x))
        for bad_n in (2, 4, 1, 2.5, True):
            with pytest.raises(ValueError, match="odd integer"):
                affine_antisymmetry_score(np.exp, n=bad_n)  # type: ignore[arg-type]


def test_pixel_std_is_the_population_standard_deviation_on_the_unit_scale():
    from uqdiff.statistics import PixelStd

    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = ((x + 1) / 2).flatten(1).std(dim=1, correction=0) * 255
    assert torch.allclose(PixelStd(scale=255)(x), expected)
    assert np.allclose(PixelStd()(np.full((2, 1, 4, 4), 0.3)), 0.0)
