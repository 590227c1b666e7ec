"""Pixel-level image statistics (mean, brightness, contrast, centroid, pixel map).

All statistics work on the image mapped from its declared ``value_range`` to
[0, 1].  ``PixelMean``, ``Brightness`` and ``PixelMap`` additionally multiply
by ``scale`` (``scale=255`` gives the 0..255 scale used in the paper).
"""

from __future__ import annotations

import math

import torch

from .base import Statistic

__all__ = ["PixelMean", "PixelStd", "Brightness", "Contrast", "VerticalCentroid", "PixelMap"]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


class _ScaledStatistic(Statistic):
    """Statistic with a ``scale`` factor applied to the [0, 1]-scaled image."""

    def __init__(self, *, value_range: tuple[float, float] = (-1.0, 1.0), scale: float = 1.0) -> None:
        super().__init__(value_range=value_range)
        scale = float(scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite positive number, got {scale}")
        self.scale: float = scale

    def _extra_repr(self) -> str:
        return f"scale={self.scale}"


class PixelMean(_ScaledStatistic):
    """Mean pixel value over channels, rows and columns: shape (B,).

    Computed on the [0, 1]-scaled image times ``scale``.

    >>> import torch
    >>> x = torch.tensor([[[[-1.0, 1.0], [1.0, 1.0]]]])  # one 1x2x2 image in [-1, 1]
    >>> PixelMean(scale=255)(x)
    tensor([191.2500])
    """

    name = "mean"

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, self.scale)

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_unit(x).mean(dim=(1, 2, 3)) * self.scale


class PixelStd(_ScaledStatistic):
    """Standard deviation of the pixel values within each image (over channels, rows and columns): shape (B,).

    How much an image varies, not how bright it is: an *even* statistic of the
    noise for many samplers (an image and its antithetic partner often vary as
    much), so pairs do not help it; noise control variates and MC do.
    Computed on the [0, 1]-scaled image times ``scale`` (population standard deviation).

    >>> import torch
    >>> x = torch.tensor([[[[-1.0, 1.0], [-1.0, 1.0]]]])  # half black, half white
    >>> PixelStd(scale=255)(x)
    tensor([127.5000])
    """

    name = "std"

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, self.scale / 2)  # the spread of values in [0, 1] is at most 1/2

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_unit(x).flatten(1).std(dim=1, correction=0) * self.scale


class Brightness(_ScaledStatistic):
    """Mean luma 0.299 R + 0.587 G + 0.114 B over pixels: shape (B,).

    Requires C == 3 (RGB order); single-channel images (C == 1) use their one
    channel.  Computed on the [0, 1]-scaled image times ``scale``.

    >>> import torch
    >>> red = torch.zeros(1, 3, 2, 2); red[:, 0] = 1.0  # pure red in [0, 1]
    >>> Brightness(value_range=(0, 1))(red)
    tensor([0.2990])
    """

    name = "brightness"

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, self.scale)

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        u = self.to_unit(x)
        if c == 3:
            w = torch.tensor(LUMA_WEIGHTS, dtype=u.dtype, device=u.device)
            luma = torch.einsum("bchw,c->bhw", u, w)
        elif c == 1:
            luma = u[:, 0]
        else:
            raise ValueError(f"Brightness needs 3 (RGB) or 1 channel(s), got {c} channels")
        return luma.mean(dim=(1, 2)) * self.scale


class Contrast(Statistic):
    """Vertical contrast: 100 * (mean of top-half rows - mean of bottom-half rows).

    Computed on the [0, 1]-scaled image and averaged over channels, so it lies
    in [-100, 100] for in-range images.  For odd H the middle row is excluded
    (each half has H // 2 rows).  Requires H >= 2.

    >>> import torch
    >>> ramp = torch.linspace(1, 0, 4).reshape(1, 1, 4, 1).expand(1, 1, 4, 3)
    >>> Contrast(value_range=(0, 1))(ramp)  # rows 1, 2/3 vs 1/3, 0
    tensor([66.6667])
    """

    name = "contrast"

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        if h < 2:
            raise ValueError(f"Contrast needs images with at least 2 rows, got H={h}")
        half = h // 2
        u = self.to_unit(x)
        top = u[:, :, :half].mean(dim=(1, 2, 3))
        bottom = u[:, :, h - half :].mean(dim=(1, 2, 3))
        return 100.0 * (top - bottom)


class VerticalCentroid(Statistic):
    """Vertical centroid of intensity: sum_ij i M_ij / sum_ij M_ij, shape (B,).

    M is the channel mean of the [0, 1]-scaled image and i = 1..H is the
    1-based row index (top row is 1), as in the paper's formula.  An all-zero
    image (sum M = 0) gives NaN; it is deliberately not replaced, so that the
    estimator upstream reports it.

    >>> import torch
    >>> x = torch.zeros(1, 1, 5, 2); x[0, 0, 3] = 1.0  # only row i = 4 is lit
    >>> VerticalCentroid(value_range=(0, 1))(x)
    tensor([4.])
    """

    name = "centroid"

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        m = self.to_unit(x).mean(dim=1)  # (B, H, W)
        rows = torch.arange(1, m.shape[1] + 1, dtype=m.dtype, device=m.device)
        row_mass = m.sum(dim=2)  # (B, H)
        return (row_mass * rows).sum(dim=1) / row_mass.sum(dim=1)


class PixelMap(_ScaledStatistic):
    """The [0, 1]-scaled image times ``scale`` itself, shape (B, C, H, W).

    Its expectation is the pixel-wise mean image.  (B, H, W) input gives
    (B, 1, H, W) output.

    >>> import numpy as np
    >>> PixelMap(value_range=(0, 255))(np.array([[[0.0, 255.0]]]))
    array([[[[0., 1.]]]])
    """

    name = "pixel_map"

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, self.scale)

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_unit(x) * self.scale
