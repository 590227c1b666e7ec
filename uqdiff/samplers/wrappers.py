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

from uqdiff.designs.anchored import Anchored
from uqdiff.designs.streams import NoiseStream
from uqdiff.samplers.base import Sampler, TensorSampler, as_sampler


class CommonNoise(Sampler):
    """Noise -> outputs (B, arms, ...) of several samplers fed the same noise stream (common random numbers).

    Every arm reads the same stream: samplers whose draws match get the same noise slot by slot;
    otherwise each slot's common leading coordinates are shared (slot 0, x_T, in full when the
    arms' first draws have one shape). Any part of an N(0, I) stream is N(0, I), so every arm still
    sees exactly its own noise law under every design. :attr:`shared` says what is common.
    Outputs must have one shape; they are stacked on axis 1.

    >>> from uqdiff.designs import IID
    >>> from uqdiff.samplers import LinearGenerator
    >>> joint = CommonNoise({"A": LinearGenerator([0.0]), "B": LinearGenerator([1.0])})
    >>> out = joint(IID().stream([0, 1], seed=0))
    >>> bool(torch.equal(out[:, 1] - out[:, 0], torch.ones(2, 1))), joint.shared
    (True, 'the whole noise stream, slot by slot')
    """

    def __init__(self, generators: Mapping[str, Callable], *, noise_shape: tuple[int, ...] | None = None) -> None:
        if not isinstance(generators, Mapping) or len(generators) < 2:
            raise ValueError(f"generators must be a mapping of at least 2 names to generators, got {generators!r}")
        self.generators = {str(name): as_sampler(g, noise_shape=noise_shape) for name, g in generators.items()}
        if len(self.generators) != len(generators):
            raise ValueError(f"generator names must differ as strings, got {list(generators)}")
        draws = [s.draws for s in self.generators.values()]
        self.noise_shape = max((d[0] for d in draws), key=math.prod)
        self.device = next(iter(self.generators.values())).device
        #: Images made per noise (one per arm): results count generator calls with it.
        self.calls_per_noise = sum(s.calls_per_noise for s in self.generators.values())
        self.shared = shared_noise(draws)
        arms = list(self.generators.values())
        # an arm's interacting particle sets (``particles``) are sets of the joint sampler too, so the
        # engine keeps them inside groups; an arm exempt from the repeat check exempts the joint
        # sampler, whose check would run that arm on one noise
        particles = math.lcm(*(int(getattr(s, "particles", None) or 1) for s in arms))
        if particles > 1:
            self.particles = particles
        if any(getattr(s, "repeat_check", True) is False for s in arms):
            self.repeat_check = False

    @property
    def names(self) -> list[str]:
        return list(self.generators)

    def __call__(self, noise: NoiseStream) -> torch.Tensor:
        outputs = []
        for sampler in self.generators.values():
            out = sampler(noise)
            out = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
            outputs.append(out.to(self.device))
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) > 1:
            raise ValueError(
                f"generators return different output shapes {sorted(shapes)}; common noise needs one shape"
            )
        dtype = outputs[0].dtype if len({o.dtype for o in outputs}) == 1 else torch.float64
        return torch.stack([o.to(dtype) for o in outputs], dim=1)


def shared_noise(draws: list[tuple[tuple[int, ...], ...]]) -> str:
    """What samplers with these per-sample draw shapes have in common when they read one stream."""
    if all(d == draws[0] for d in draws):
        return "the whole noise stream, slot by slot"
    same = 0
    while all(len(d) > same for d in draws) and all(d[same] == draws[0][same] for d in draws):
        same += 1
    if same == 0:
        return "the common leading coordinates of each slot (x_T shapes differ)"
    return f"slots 0..{same - 1} (x_T first) in full, then the common leading coordinates of each slot"


def blend(z0: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """The variance-preserving blend c z0 + sqrt(1 - c^2) w, for c in [-1, 1] (broadcasts z0 over w's batch).

    >>> blend(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.6)
    tensor([0.6000, 0.8000])
    """
    c = _check_c(c)
    return c * z0.to(device=w.device, dtype=w.dtype) + math.sqrt(1.0 - c * c) * w


class Variations(Sampler):
    """Sampler of variations of ``generator(z0)``: noise w -> generator(blend(z0, w, c)).

    ``z0`` is one noise of the sampler: its noise tensor for a tensor generator, or a captured
    sampler's whole stream flattened (:func:`~uqdiff.samplers.capture.flat_noise`); the blend is
    made draw by draw. c = 1 reproduces G(z0), c = 0 is ordinary sampling. Every design applies
    to w, so :func:`uqdiff.estimators.estimate` runs it as any sampler.

    >>> from uqdiff import estimate
    >>> from uqdiff.samplers import LinearGenerator
    >>> g = Variations(LinearGenerator([0.0]), torch.tensor([2.0]), c=0.8)   # x = 1.6 + 0.6 w
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=0)
    >>> round(r["statistic"].estimate, 6), round(r["statistic"].width, 6)   # antithetic w cancels exactly
    (1.6, 0.0)
    """

    def __init__(self, generator: Callable, z0: Any, c: float) -> None:
        self.sampler = as_sampler(generator)
        self.z0 = torch.as_tensor(z0).detach().clone()
        self.c = _check_c(c)
        if isinstance(self.sampler, TensorSampler) and tuple(self.z0.shape) != self.sampler.tensor_shape:
            raise ValueError(
                f"z0 has shape {tuple(self.z0.shape)}; the generator's noise has shape {self.sampler.tensor_shape}"
            )
        self.noise_shape, self.device = self.sampler.noise_shape, self.sampler.device
        self.calls_per_noise = self.sampler.calls_per_noise

    def __call__(self, noise: NoiseStream) -> Any:
        blended = NoiseStream(
            Anchored(noise.design, self.z0, self.c), noise.groups, noise.members, seed=noise.seed, dtype=noise.dtype
        )
        return self.sampler(blended)

    def __repr__(self) -> str:
        return f"Variations(c={self.c}, z0 of {self.z0.numel()} values)"


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
