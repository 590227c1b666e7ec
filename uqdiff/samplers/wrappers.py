"""Wrappers that change a generator: still a noise-to-image callable, so every design and estimator applies.

- :class:`CommonNoise` feeds one noise to several generators (common random numbers);
- :class:`Variations` perturbs one chosen noise with the variance-preserving blend;
- :class:`SkipGradient` gives a sampler that runs without autograd the skip-gradient backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from uqdiff.samplers.base import device_of, noise_shape_of


class CommonNoise:
    """Noise (B, *noise_shape) -> outputs (B, arms, ...) of several generators fed the same noise.

    Generators whose noise is smaller than the joint noise (the largest of
    theirs) get its leading coordinates: samplers here put the initial latent
    first in their noise stream, so e.g. a deterministic DDIM and a stochastic
    DDPM share the initial latent. Any subset of the coordinates of an
    N(0, I) noise is N(0, I), so every arm still sees exactly its own noise law
    under every design. Outputs must have one shape; they are stacked on axis 1.

    >>> from uqdiff.samplers import LinearGenerator
    >>> joint = CommonNoise({"A": LinearGenerator([0.0]), "B": LinearGenerator([1.0])})
    >>> joint(torch.ones(2, 1))[:, :, 0].tolist()
    [[1.0, 2.0], [1.0, 2.0]]
    """

    def __init__(self, generators: Mapping[str, Callable], *, noise_shape: tuple[int, ...] | None = None) -> None:
        if not isinstance(generators, Mapping) or len(generators) < 2:
            raise ValueError(f"generators must be a mapping of at least 2 names to generators, got {generators!r}")
        self.generators = {str(name): g for name, g in generators.items()}
        if len(self.generators) != len(generators):
            raise ValueError(f"generator names must differ as strings, got {list(generators)}")
        self._shapes = {name: noise_shape_of(g, noise_shape) for name, g in self.generators.items()}
        self.noise_shape = max(self._shapes.values(), key=math.prod)
        devices = {str(device_of(g, None)) for g in self.generators.values()}
        if len(devices) > 1:
            raise ValueError(f"all generators must run on one device, got {sorted(devices)}")
        self.device = torch.device(devices.pop())
        #: Images made per noise (one per generator): results count generator calls with it.
        self.calls_per_noise = len(self.generators)

    @property
    def names(self) -> list[str]:
        return list(self.generators)

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        flat = noise.reshape(len(noise), -1)
        outputs = []
        for name, g in self.generators.items():
            shape = self._shapes[name]
            out = g(flat[:, : math.prod(shape)].reshape(len(noise), *shape))
            outputs.append(out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out)))
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) > 1:
            raise ValueError(
                f"generators return different output shapes {sorted(shapes)}; common noise needs one shape"
            )
        dtype = outputs[0].dtype if len({o.dtype for o in outputs}) == 1 else torch.float64
        return torch.stack([o.to(dtype) for o in outputs], dim=1)


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
    the generator, so :func:`uqdiff.estimators.estimate` runs it as any generator.

    >>> from uqdiff import estimate
    >>> from uqdiff.samplers import LinearGenerator
    >>> g = Variations(LinearGenerator([0.0]), torch.tensor([2.0]), c=0.8)   # x = 1.6 + 0.6 w
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=0)
    >>> round(r["statistic"].estimate, 6), round(r["statistic"].width, 6)   # antithetic w cancels exactly
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


class SkipGradient:
    """noise -> readout(stopgrad(G(z)) + z - stopgrad(z)): the model's sample forward, the identity backward.

    The sampler runs without autograd; the gradient reaches the noise as if
    dG/dz were the identity (appendix B.1.5), so learning costs one forward pass
    per image. Its expectation points the right way where the sample moves
    with its noise (e.g. a DDPM's image brightness with the noise mean, which
    is what benchmarks/learned_coupling.py learns from). ``generator``
    maps a noise batch to samples of the *same shape* (e.g. a DiffusersSampler);
    ``readout`` maps samples to images after the skip (e.g. a crop), identity by default.

    >>> g = SkipGradient(lambda z: torch.tanh(3 * z))
    >>> z = torch.tensor([[0.5, -2.0]], requires_grad=True)
    >>> x = g(z); x.sum().backward()
    >>> x.detach().round(decimals=3), z.grad
    (tensor([[ 0.9050, -1.0000]]), tensor([[1., 1.]]))
    """

    def __init__(self, generator: Callable, *, readout: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if not callable(generator) or (readout is not None and not callable(readout)):
            raise TypeError("generator and readout must be callables on torch tensors")
        self.generator, self.readout = generator, readout
        for attr in ("noise_shape", "device"):
            if hasattr(generator, attr):
                setattr(self, attr, getattr(generator, attr))

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            final = torch.as_tensor(self.generator(noise.detach()))
        if final.shape != noise.shape:
            raise ValueError(
                f"the skip-gradient estimator needs samples shaped like the noise {tuple(noise.shape)}, "
                f"got {tuple(final.shape)}; put a crop or decoder in readout"
            )
        x = final.to(device=noise.device, dtype=noise.dtype) + noise - noise.detach()
        return x if self.readout is None else self.readout(x)


def _check_c(c: float) -> float:
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"c must be a number in [-1, 1], got {c!r}") from None
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must be in [-1, 1] so that sqrt(1 - c^2) is real, got {c}")
    return c
