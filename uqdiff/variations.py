"""Variations around one chosen noise: how much a sample's statistics move when its noise is perturbed.

The plain blend c z0 + (1 - c) w (eq. 1 of the variations paper) is not
N(0, I): its variance is c^2 + (1 - c)^2 < 1 for 0 < c < 1, so the model sees
noise it was not trained on. The variance-preserving blend
``blend(z0, w, c) = c z0 + sqrt(1 - c^2) w`` with w ~ N(0, I) independent of z0
is N(c z0, (1 - c^2) I) for a fixed z0, and N(0, I) when z0 ~ N(0, I) itself:
perturbations of a chosen sample live on the same scale as ordinary noise.

:class:`Variations` is a generator, noise w -> G(blend(z0, w, c)), so the
ordinary :func:`uqdiff.estimate` gives E[S | z0, c] with an interval under any
design of w (antithetic w gives the mirrored pair c z0 +- sqrt(1 - c^2) w).
Every w of a design is exactly N(0, I), so the estimate is exact for the
conditional law; the spread of S around z0 is the ``marginal_variance`` of
the result, or estimate S and S**2 together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from uqdiff.generators.base import device_of


def blend(z0: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """The variance-preserving blend c z0 + sqrt(1 - c^2) w, for c in [-1, 1] (broadcasts z0 over w's batch).

    >>> blend(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.6)
    tensor([0.6000, 0.8000])
    """
    c = _check_c(c)
    return c * z0.to(device=w.device, dtype=w.dtype) + math.sqrt(1.0 - c * c) * w


class Variations:
    """Generator of variations of ``generator(z0)``: noise w -> generator(blend(z0, w, c)).

    ``z0`` has the generator's noise shape; c = 1 reproduces G(z0), c = 0 is
    ordinary sampling. Its ``noise_shape`` and ``device`` are those of z0 and
    the generator, so :func:`uqdiff.estimate` runs it as any generator.

    >>> from uqdiff import estimate
    >>> from uqdiff.generators import LinearGenerator
    >>> g = Variations(LinearGenerator([0.0]), torch.tensor([2.0]), c=0.8)   # x = 1.6 + 0.6 w
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=0)
    >>> round(r["<lambda>"].estimate, 6), round(r["<lambda>"].width, 6)   # antithetic w cancels exactly
    (1.6, 0.0)
    """

    def __init__(self, generator: Callable, z0: Any, c: float) -> None:
        self.generator = generator
        self.z0 = torch.as_tensor(z0).detach().clone()
        self.c = _check_c(c)
        self.noise_shape = tuple(self.z0.shape)
        self.device = device_of(generator, None)

    def __call__(self, noise: torch.Tensor) -> Any:
        if tuple(noise.shape[1:]) != self.noise_shape:
            raise ValueError(f"noise shape {tuple(noise.shape[1:])} per sample does not match z0's {self.noise_shape}")
        return self.generator(blend(self.z0, noise, self.c))

    def __repr__(self) -> str:
        return f"Variations(c={self.c}, noise_shape={self.noise_shape})"


def _check_c(c: float) -> float:
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"c must be a number in [-1, 1], got {c!r}") from None
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must be in [-1, 1] so that sqrt(1 - c^2) is real, got {c}")
    return c


__all__ = ["Variations", "blend"]
