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
    given = shape
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    ints = isinstance(shape, (tuple, list)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape
    )
    if not ints or not shape or min(shape) < 1:
        raise ValueError(
            f"noise_shape must be a positive int or a non-empty tuple of positive ints such as (1, 4, 4), got {given!r}"
        )
    return tuple(int(s) for s in shape)


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


class Recording:
    """A pass-through generator that keeps its first ``keep`` outputs, in evaluation order.

    For pair diagnostics: ``estimate`` feeds a group's noises consecutively, so
    the kept outputs of an antithetic run are its (G(z), G(-z)) pairs and those
    of an MC run are independent pairs, at no extra model call. The repeat check
    runs on the wrapped generator, so its extra calls are not kept.
    """

    def __init__(self, generator: Callable, keep: int) -> None:
        self.generator, self.keep, self._kept = generator, keep, []
        for name in (
            "noise_shape",
            "device",
            "initial_noise_size",
            "calls_per_noise",
            "streamed",
            "repeat_check",
            "repeat_tolerance",
        ):
            if hasattr(generator, name):
                setattr(self, name, getattr(generator, name))

    def __call__(self, noise: torch.Tensor):
        images = self.generator(noise)
        room = self.keep - sum(len(x) for x in self._kept)
        if room > 0:
            part = images[:room]
            self._kept.append(
                part.detach().to("cpu", torch.float64).numpy()
                if isinstance(part, torch.Tensor)
                else np.asarray(part, dtype=np.float64)
            )
        return images

    def images(self) -> np.ndarray:
        """The kept outputs stacked on axis 0 (empty when none were kept)."""
        return np.concatenate(self._kept) if self._kept else np.empty((0,))
