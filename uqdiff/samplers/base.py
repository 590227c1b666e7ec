"""The sampler interface: one noise stream in, one output per noise out.

What the estimators run is a :class:`Sampler`: it takes a
:class:`~uqdiff.designs.streams.NoiseStream` and reads one slot per Gaussian draw it makes. There
are two ways in, and both end here:

* a sampler that draws inside its own loop, run under :class:`~uqdiff.samplers.Captured`;
* a *generator*, any callable from a noise tensor (B, *noise_shape) to outputs with B rows (a
  torch tensor or numpy array), adapted by :func:`as_sampler`: a sampler with one draw, slot 0,
  or, when it declares ``noise_layout`` (the per-sample shapes of the draws its tensor packs,
  x_T first), one slot per draw, so it gets the same values as a loop drawing those shapes.

A generator may declare ``noise_shape``, ``noise_layout``, ``device`` and ``calls_per_noise``
attributes; ``torch.nn.Module`` generators are placed by their parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from uqdiff.designs.streams import NoiseStream


@runtime_checkable
class SamplerLike(Protocol):
    """What every uqdiff runner accepts as its ``sampler``: noise in, one output per noise out.

    The call takes a noise tensor of shape (B, *noise_shape) (or, for a :class:`Sampler`, a
    :class:`~uqdiff.designs.streams.NoiseStream`) and returns a torch tensor or numpy array with
    B rows. Optional attributes, read when present:

    ``noise_shape`` : tuple of int
        Shape of one noise (x_T); otherwise the runner's ``noise_shape=`` must say it.
    ``noise_layout`` : tuple of shapes
        The per-sample shapes of the draws a packed tensor holds, x_T first (one stream slot each).
    ``device`` : torch.device
        Where to make the noise (``torch.nn.Module`` samplers are placed by their parameters).
    ``calls_per_noise`` : int
        Model evaluations per noise (e.g. 2 for two samplers on common noise), for costs and progress.
    ``repeat_tolerance`` : float
        How far two calls on the same noise may differ before the repeat check refuses the sampler
        (``None``: exempt, for samplers whose own randomness is deliberate).
    ``max_batch`` : int
        The largest batch the sampler takes in one call.
    ``particles`` : int
        K for a sampler whose outputs interact in sets of K consecutive noises (a particle solver
        such as :class:`~uqdiff.samplers.repulsive.RSD`): such a set must be one group, so the
        estimators refuse a design whose group size is not a multiple of K.

    The word is ``sampler``, not ``generator``: to a torch or diffusers user a generator is a
    ``torch.Generator`` (a random state), which uqdiff replaces rather than accepts.

    >>> from uqdiff.samplers import LinearGenerator
    >>> isinstance(LinearGenerator([0.0]), SamplerLike), isinstance("not a sampler", SamplerLike)
    (True, False)
    """

    def __call__(self, noise: Any) -> Any: ...


def noise_shape_of(generator: Any, noise_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The noise shape given, else the generator's ``noise_shape`` attribute; the two must agree."""
    declared = getattr(generator, "noise_shape", None)
    if noise_shape is not None and declared is not None:
        given, own = noise_shape_of(None, noise_shape), noise_shape_of(None, declared)
        if given != own:  # a generator that accepts any shape would otherwise run on the wrong one
            raise ValueError(
                f"noise_shape={given} was given, but the generator declares noise_shape {own}; leave noise_shape "
                f"out, or change the generator's"
            )
    shape = noise_shape if noise_shape is not None else declared
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


class Sampler(ABC):
    """A noise stream in, outputs (one row per noise) out: what every estimator runs.

    ``noise_shape`` is the per-sample shape of the first draw (x_T): the part Sobol' points and
    noise features cover by default. ``calls_per_noise`` counts the model runs one noise costs
    (several arms under common noise); ``device`` is where noise is made for features.
    """

    noise_shape: tuple[int, ...]
    device: torch.device = torch.device("cpu")
    calls_per_noise: int = 1

    @abstractmethod
    def __call__(self, noise: NoiseStream) -> Any:
        """The outputs of ``len(noise)`` samples, every Gaussian draw read from ``noise``."""

    @property
    def draws(self) -> tuple[tuple[int, ...], ...]:
        """The per-sample shapes of the draws, slot by slot (x_T first): what common noise compares."""
        return (tuple(self.noise_shape),)


class TensorSampler(Sampler):
    """A generator that takes one noise tensor, fed from the stream draw by draw.

    The tensor (B, *tensor_shape) is the concatenation of the generator's draws, slot 0 first
    (``layout``, from its ``noise_layout`` attribute, or the whole tensor as one draw).

    >>> from uqdiff.designs import Antithetic
    >>> g = TensorSampler(lambda z: z * 2, noise_shape=(3,))
    >>> s = Antithetic().stream([0], seed=1)
    >>> bool(torch.equal(g(s), 2 * s.slot(0, (3,), offset=0)))
    True
    """

    def __init__(self, generator: Callable, *, noise_shape: tuple[int, ...] | None = None, device: Any = None) -> None:
        if not callable(generator):
            raise TypeError(
                f"a generator must be a callable from a noise batch to outputs, got {type(generator).__name__}"
            )
        self.generator = generator
        self.tensor_shape = noise_shape_of(generator, noise_shape)
        self.layout = draw_layout(generator, self.tensor_shape)
        self.noise_shape = self.layout[0]
        self.device = device_of(generator, device)
        self.calls_per_noise = int(getattr(generator, "calls_per_noise", 1))
        for name in ("repeat_check", "repeat_tolerance", "max_batch", "particles"):
            if hasattr(generator, name):
                setattr(self, name, getattr(generator, name))

    @property
    def draws(self) -> tuple[tuple[int, ...], ...]:
        return self.layout

    def noise(self, stream: NoiseStream) -> torch.Tensor:
        """The tensor the generator gets: its draws from ``stream``, concatenated, on its device."""
        parts, offset = [], 0
        for slot, shape in enumerate(self.layout):
            parts.append(stream.slot(slot, shape, offset=offset, device=self.device).reshape(len(stream), -1))
            offset += math.prod(shape)
        flat = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return flat.reshape(len(stream), *self.tensor_shape)

    def __call__(self, noise: NoiseStream) -> Any:
        return self.generator(self.noise(noise))

    def __repr__(self) -> str:
        return f"TensorSampler({self.generator!r}, draws={len(self.layout)})"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception means the batch did not fit in (GPU or host) memory."""
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def draw_layout(generator: Any, tensor_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The per-sample shapes of the draws a generator's noise tensor packs (its ``noise_layout``), x_T first."""
    declared = getattr(generator, "noise_layout", None)
    if declared is None:
        return (tuple(tensor_shape),)
    layout = tuple(tuple(int(s) for s in shape) for shape in declared)
    if not layout or sum(math.prod(s) for s in layout) != math.prod(tensor_shape):
        raise ValueError(
            f"the generator's noise_layout {layout} does not fill its noise_shape {tuple(tensor_shape)}: the draws' "
            "sizes must add up to the noise size"
        )
    return layout


def as_sampler(generator: Any, *, noise_shape: tuple[int, ...] | None = None, device: Any = None) -> Sampler:
    """The sampler the estimators run: a :class:`Sampler` as it is, a tensor generator adapted.

    ``noise_shape`` and ``device`` (given to an estimator) override the generator's own.
    """
    if isinstance(generator, Sampler):
        if noise_shape is not None and noise_shape_of(None, noise_shape) != tuple(generator.noise_shape):
            raise ValueError(
                f"noise_shape={tuple(noise_shape)} was given, but {generator!r} draws x_T of shape "
                f"{tuple(generator.noise_shape)} itself; leave noise_shape out"
            )
        return generator
    return TensorSampler(generator, noise_shape=noise_shape, device=device)


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


class Recording(Sampler):
    """A pass-through sampler that keeps its first ``keep`` outputs, in evaluation order.

    For pair diagnostics: ``estimate`` feeds a group's noises consecutively, so
    the kept outputs of an antithetic run are its (G(z), G(-z)) pairs and those
    of an MC run are independent pairs, at no extra model call. The repeat check
    runs on the wrapped sampler (``generator``), so its extra calls are not kept.
    """

    def __init__(self, generator: Callable, keep: int) -> None:
        self.generator = as_sampler(generator)
        self.keep, self._kept = keep, []
        self.noise_shape, self.device = self.generator.noise_shape, self.generator.device
        self.calls_per_noise = self.generator.calls_per_noise
        for name in ("repeat_check", "repeat_tolerance", "max_batch", "particles"):
            if hasattr(self.generator, name):
                setattr(self, name, getattr(self.generator, name))

    def __call__(self, noise: NoiseStream):
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
