"""The generator interface: any callable from a batch of noise to a batch of images.

uqdiff hands a generator a torch tensor of shape (B, *noise_shape) on the
generator's device and accepts images back as a torch tensor or numpy array
with B rows. A generator may declare ``noise_shape`` and ``device``
attributes; ``torch.nn.Module`` generators are placed by their parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def noise_shape_of(generator: Any, noise_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The noise shape given, else the generator's ``noise_shape`` attribute."""
    shape = noise_shape if noise_shape is not None else getattr(generator, "noise_shape", None)
    if shape is None:
        raise ValueError("pass noise_shape=(...) or give the generator a noise_shape attribute")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"noise_shape must be a non-empty tuple of positive ints, got {shape}")
    return shape


def device_of(generator: Any, device: torch.device | str | None) -> torch.device:
    """Explicit device, else the generator's ``device`` attribute or parameters, else the CPU."""
    if device is not None:
        return torch.device(device)
    declared = getattr(generator, "device", None)
    if declared is not None:
        return torch.device(declared)
    if isinstance(generator, torch.nn.Module):
        for p in generator.parameters():
            return p.device
    return torch.device("cpu")


class NumpyGenerator:
    """Wrap a numpy callable (B, *noise_shape) -> (B, ...) as a uqdiff generator.

    >>> g = NumpyGenerator(lambda z: np.tanh(z), noise_shape=(3,))
    >>> g(torch.zeros(2, 3)).shape
    (2, 3)
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], *, noise_shape: tuple[int, ...]) -> None:
        self.fn = fn
        self.noise_shape = tuple(noise_shape)
        self.device = torch.device("cpu")

    def __call__(self, noise: torch.Tensor) -> np.ndarray:
        return np.asarray(self.fn(noise.detach().cpu().numpy()))
