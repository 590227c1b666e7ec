"""Reconstruction statistics: compare every image of a batch with one reference.

The reference (shape (C, H, W), or (H, W) meaning one channel; torch or numpy)
is given at construction and must have the same declared ``value_range`` as the
images.  Both are mapped to [0, 1] before comparison.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import ArrayLike, Statistic, as_tensor

__all__ = ["ReconstructionStatistic", "L1", "PSNR", "SSIM", "gaussian_window", "structural_similarity"]


class ReconstructionStatistic(Statistic):
    """Base for statistics comparing each image with a fixed ``reference`` image.

    ``higher_is_better`` says which way a solver ranks better (PSNR, SSIM: up; L1: down).
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(self, reference: ArrayLike, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__(value_range=value_range)
        ref = as_tensor(reference)
        if ref.ndim == 2:
            ref = ref.unsqueeze(0)
        elif ref.ndim != 3:
            raise ValueError(f"reference must have shape (C, H, W) or (H, W), got shape {tuple(ref.shape)}")
        self.reference: torch.Tensor = ref.detach().clone()

    def _unit_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ([0,1]-scaled images, [0,1]-scaled reference broadcastable to them)."""
        if tuple(x.shape[1:]) != tuple(self.reference.shape):
            raise ValueError(
                f"reference shape {tuple(self.reference.shape)} does not match "
                f"image shape {tuple(x.shape[1:])} (C, H, W)"
            )
        ref = self.reference.to(device=x.device, dtype=x.dtype)
        return self.to_unit(x), self.to_unit(ref).unsqueeze(0)

    def _extra_repr(self) -> str:
        return f"reference_shape={tuple(self.reference.shape)}"


class L1(ReconstructionStatistic):
    """Mean absolute error to the reference on [0, 1]-scaled images: shape (B,).

    >>> import torch
    >>> L1(torch.zeros(1, 2, 2), value_range=(0, 1))(torch.full((2, 1, 2, 2), 0.25))
    tensor([0.2500, 0.2500])
    """

    name = "l1"
    higher_is_better = False  # an error: lower is better

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        u, r = self._unit_pair(x)
        return (u - r).abs().mean(dim=(1, 2, 3))


class PSNR(ReconstructionStatistic):
    """Peak signal-to-noise ratio 10 log10(1 / MSE) in dB: shape (B,).

    PSNR with data range 1 on the [0,1]-scaled image, i.e. identical to PSNR
    with data_range = hi - lo on the declared range.  MSE is over C, H, W.
    An image identical to the reference (MSE == 0) gives +inf.

    >>> import torch
    >>> PSNR(torch.zeros(4, 4), value_range=(0, 1))(torch.full((1, 4, 4), 0.1))
    tensor([20.])
    """

    name = "psnr"
    higher_is_better = True

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        u, r = self._unit_pair(x)
        mse = (u - r).square().mean(dim=(1, 2, 3))
        return 10.0 * torch.log10(1.0 / mse)


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalized 2-D Gaussian window (size x size), as scipy.ndimage.gaussian_filter uses."""
    r = (size - 1) / 2
    t = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-0.5 * t.square() / sigma**2)
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


class SSIM(ReconstructionStatistic):
    """Structural similarity (Wang et al. 2004) with the reference: shape (B,).

    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1
    on [0, 1]-scaled images, population (co)variances.  Computed per channel
    with 'valid' convolution (no padding), averaged over positions and
    channels.  Matches ``skimage.metrics.structural_similarity(a, b,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1.0, channel_axis=0)`` (skimage filters with reflect padding
    and then crops a 5-pixel border, which equals the 'valid' result).
    Images must be at least 11x11.

    >>> import torch
    >>> ref = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> SSIM(ref, value_range=(0, 1))(ref.unsqueeze(0))
    tensor([1.])
    """

    name = "ssim"
    higher_is_better = True
    win_size: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        u, r = self._unit_pair(x)
        return structural_similarity(
            u, r.expand_as(u), win_size=self.win_size, sigma=self.sigma, k1=self.k1, k2=self.k2
        )


def structural_similarity(
    u: torch.Tensor,
    r: torch.Tensor,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of ``u[b]`` with ``r[b]`` for two (B, C, H, W) batches already on [0, 1]: shape (B,).

    The computation behind :class:`SSIM`, shared with the pairwise gallery
    SSIM of :mod:`uqdiff.estimators.gallery` so both mean the same number.
    """
    b, c, h, w = u.shape
    if h < win_size or w < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels, got {h}x{w}")
    win = gaussian_window(win_size, sigma, dtype=u.dtype, device=u.device)
    # Filter x, y, x*x, y*y, x*y in one batched 'valid' convolution.
    stack = torch.stack([u, r, u * u, r * r, u * r], dim=2)  # (B, C, 5, H, W)
    filt = F.conv2d(stack.reshape(-1, 1, h, w), win[None, None])
    filt = filt.reshape(b, c, 5, *filt.shape[-2:])
    ux, uy, uxx, uyy, uxy = filt.unbind(dim=2)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = k1**2
    c2 = k2**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)
