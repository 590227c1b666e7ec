"""Directions in noise space that carry a statistic's variation, estimated from a pilot's gradients.

For a differentiable generator, the averaged outer product of the gradient of
S(G(z)) with respect to z, C = E[grad grad^T], has leading eigenvectors along
which S changes most (the "active subspace"). RQMC on those few directions and
a coupling on the rest (``subspace_rqmc(..., basis=...)``) integrates what
matters with low-discrepancy points in a noise of any dimension. The pilot
noises are iid on their own seed stream; the directions are then fixed, so a
run that uses them stays exactly N(0, I) per noise and its interval valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from uqdiff.designs import IID
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.samplers.base import noise_shape_of

#: Seed tag of the direction pilot.
DIRECTIONS_TAG = 0x64697273


def gradient_directions(
    generator: Callable,
    statistic: Callable,
    *,
    dims: int = 16,
    budget: int = 64,
    noise_shape: tuple[int, ...] | None = None,
    batch_size: int = 8,
    seed: SeedLike = 0,
) -> np.ndarray:
    """Orthonormal columns spanning the leading eigenvectors of E[grad S(G(z)) grad S(G(z))^T].

    Parameters
    ----------
    generator : callable
        A torch-differentiable noise-to-image map (B, *noise_shape) -> (B, ...).
    statistic : callable
        Images -> one value per image (a torch function of the images).
    dims : int
        Number of directions (at most ``budget``: each pilot noise gives one gradient).
    budget : int
        Pilot noises (each costs a forward and a backward pass).
    noise_shape : tuple of int, optional
        Default the generator's ``noise_shape``.
    batch_size : int
        Noises per forward/backward pass.
    seed : int or sequence of int
        The pilot's noise comes from its own stream of this seed.

    Returns
    -------
    numpy.ndarray, shape (dim, dims)
        Orthonormal columns, most important first: ``basis=`` for :func:`uqdiff.designs.subspace_rqmc`.

    Raises
    ------
    ValueError
        For dims or budget out of range.
    TypeError
        When the generator's output does not depend differentiably on the noise.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> g = LinearGenerator(np.zeros(1), np.array([[3.0, 4.0, 0.0, 0.0]]))   # S depends on 3 z0 + 4 z1 only
    >>> v = gradient_directions(g, lambda x: x[:, 0] ** 2, dims=1, budget=16)
    >>> np.round(np.abs(v[:, 0]), 3).tolist()
    [0.6, 0.8, 0.0, 0.0]
    """
    shape = noise_shape_of(generator, noise_shape)
    dim = math.prod(shape)
    for name, value in (("dims", dims), ("budget", budget), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if dims > min(budget, dim):
        raise ValueError(
            f"dims must be at most the pilot budget ({budget}) and the noise dimension ({dim}), got {dims}"
        )
    entropy(seed)
    noise = IID().groups(np.arange(budget), dim, seed=substream(seed, DIRECTIONS_TAG), dtype=torch.float64)
    noise = noise.reshape(budget, *shape)
    grads = []
    for lo in range(0, budget, batch_size):
        z = noise[lo : lo + batch_size].clone().to(_model_dtype(generator)).requires_grad_(True)
        with torch.enable_grad():
            values = statistic(generator(z))
            if not isinstance(values, torch.Tensor) or not values.requires_grad:
                raise TypeError(
                    "gradient_directions needs a generator and statistic that torch can differentiate with respect "
                    "to the noise (the output did not require grad); use dct_basis for other generators"
                )
            (grad,) = torch.autograd.grad(values.sum(), z)
        grads.append(grad.detach().reshape(len(z), -1).to(torch.float64).cpu().numpy())
    g = np.concatenate(grads) / math.sqrt(budget)
    _, _, vt = np.linalg.svd(g, full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T)


def _model_dtype(generator: Callable) -> torch.dtype:
    """The dtype the generator declares (``dtype`` attribute), else float32 as the noise of :func:`estimate`."""
    dtype = getattr(generator, "dtype", torch.float32)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
