"""Heightmap statistics: how steep a terrain is."""

from __future__ import annotations

import torch

from .base import Statistic


class MeanSlope(Statistic):
    """Mean absolute finite-difference gradient of the [0, 1]-scaled map, in units per pixel.

    Averages |x[i+1, j] - x[i, j]| and |x[i, j+1] - x[i, j]| over the grid and
    channels: a roughness measure that is zero for a flat map.

    >>> import torch
    >>> ramp = torch.linspace(-1, 1, 5).repeat(5, 1)[None, None]   # rises 0.25 per column on [0, 1]
    >>> round(float(MeanSlope()(ramp)[0]), 4)
    0.125
    """

    name = "slope"

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        u = self.to_unit(x)
        dy = (u[..., 1:, :] - u[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        dx = (u[..., :, 1:] - u[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        return 0.5 * (dx + dy)


class MaxSlope(Statistic):
    """Largest finite-difference gradient norm of the [0, 1]-scaled map, in units per pixel.

    sqrt(dx^2 + dy^2) from forward differences on the (H-1, W-1) grid, maximised
    over the grid and channels: the steepest spot of a terrain (how hard its
    hardest climb is), where :class:`MeanSlope` measures overall roughness.

    >>> import torch
    >>> ramp = torch.linspace(-1, 1, 5).repeat(5, 1)[None, None]   # rises 0.25 per column on [0, 1]
    >>> round(float(MaxSlope()(ramp)[0]), 4)
    0.25
    """

    name = "max_slope"

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        u = self.to_unit(x)
        dy = u[..., 1:, :-1] - u[..., :-1, :-1]
        dx = u[..., :-1, 1:] - u[..., :-1, :-1]
        return torch.sqrt(dx**2 + dy**2).flatten(1).amax(dim=1)
