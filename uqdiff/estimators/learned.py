"""Learning a Gaussian coupling: fit A (unit-norm rows) to a gallery objective by projected Adam.

Theorem 3.3 of the coupling paper: any k x r matrix A with unit-norm rows gives
noises z = A u that are each exactly N(0, I), with correlation A A^T. So a
coupling can be *learned*: maximize E[objective(G(A u))] over the product of
spheres (paper 000, appendix B.1.5 for diversity, B.2 for a brightness-clustered
gallery). Once learned it is an ordinary :class:`~uqdiff.designs.GaussianCoupling`
(save it with :func:`~uqdiff.designs.save_coupling`): every image keeps the
model's law, and the estimators treat its groups like any design's.
Differentiating a whole diffusion trajectory is the expensive part;
:class:`~uqdiff.samplers.SkipGradient` replaces it by the appendix's skip-gradient estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from uqdiff.designs.gaussian import GaussianCoupling, basis_noise
from uqdiff.designs.seeds import SeedLike, substream
from uqdiff.estimators.results import Exportable
from uqdiff.samplers.base import device_of, noise_shape_of


@dataclass(frozen=True)
class LearnedCoupling(Exportable):
    """A learned coupling and its learning curve.

    ``objective[s]`` is the mean objective over the galleries of step s (before
    its update); ``correlations[s]`` is A A^T before step s, and the last entry
    is the final design's correlation.
    """

    design: GaussianCoupling
    objective: np.ndarray
    correlations: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def correlation(self) -> np.ndarray:
        return self.design.correlation()

    def _rows(self) -> list[dict[str, Any]]:
        """The learning curve: one row per step with its mean objective."""
        return [{"step": i, "objective": float(v)} for i, v in enumerate(self.objective)]


def learn_coupling(
    generator: Callable,
    objective: Callable,
    *,
    k: int | None = None,
    init: str | Sequence | np.ndarray | GaussianCoupling = "identity",
    steps: int = 100,
    lr: float = 0.05,
    galleries_per_step: int = 16,
    maximize: bool = True,
    seed: SeedLike = 0,
    noise_shape: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.float32,
    name: str = "learned",
    callback: Callable[[int, float, np.ndarray], None] | None = None,
) -> LearnedCoupling:
    """Learn a k x r coupling A, unit-norm rows, that maximizes E[objective] of its galleries.

    Step s draws ``galleries_per_step`` groups of basis noises u from
    ``[seed, s]`` (as :class:`GaussianCoupling` draws them), forms z = A u,
    evaluates the mean of ``objective(generator(z), gallery_size=k)`` (a
    gallery statistic: images (G*K, ...) -> (G,), differentiable in torch) and
    takes one projected Adam step: the gradient's radial part is removed row by
    row, the Adam step (projected again onto the rows' tangent spaces) is
    added, and every row is renormalized. Adam rather than plain gradient steps
    because the gradient's scale depends on the model and the image size,
    while Adam's per-entry step is about ``lr`` whatever that scale is; the
    renormalization keeps every row on the sphere exactly, so every
    intermediate A is itself a valid coupling. ``generator`` must be
    differentiable; wrap a sampler in :class:`SkipGradient`. ``init`` is
    "identity" (k x k, needs ``k``), a matrix with unit-norm rows, or a
    :class:`GaussianCoupling`. ``maximize=False`` minimizes (e.g. pairwise SSIM).

    Returns
    -------
    LearnedCoupling
        The learned design (a :class:`GaussianCoupling`; save it with ``save_coupling``), the
        objective at every step and the correlation A A^T before every step.

    Raises
    ------
    ValueError
        For a non-differentiable objective, bad sizes or a learning rate that is not positive.

    Examples
    --------
    >>> from uqdiff.statistics.gallery import MeanPairwiseDistance
    >>> from uqdiff.samplers import LinearGenerator
    >>> fit = learn_coupling(LinearGenerator(np.zeros(64)), MeanPairwiseDistance(), k=3, steps=150, seed=0)
    >>> off = fit.correlation[~np.eye(3, dtype=bool)]  # the repulsive coupling: -1/(k-1) = -0.5 off the diagonal
    >>> bool(np.abs(off + 0.5).max() < 0.1)           # a stochastic optimizer: within 0.1 after 150 steps
    True
    """
    a = _initial_matrix(init, k)
    k, r = a.shape
    for label, value in (("steps", steps), ("galleries_per_step", galleries_per_step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    shape = noise_shape_of(generator, noise_shape)
    dim, device = math.prod(shape), device_of(generator, None)
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    m, v = torch.zeros_like(a), torch.zeros_like(a)
    values, history = [], [(a @ a.T).numpy().copy()]
    for step in range(steps):
        u = torch.from_numpy(basis_noise(np.arange(galleries_per_step), r, dim, seed=substream(seed, step)))
        leaf = a.clone().requires_grad_(True)
        z = torch.einsum("kr,grd->gkd", leaf, u).reshape(galleries_per_step * k, *shape)
        value = torch.as_tensor(objective(generator(z.to(device=device, dtype=dtype)), gallery_size=k)).mean()
        if not value.requires_grad:
            raise ValueError(
                "the objective does not depend differentiably on the noise; use torch operations, "
                "and wrap a sampler that runs without autograd in SkipGradient"
            )
        (value if maximize else -value).backward()
        if not torch.isfinite(leaf.grad).all():
            raise FloatingPointError(f"the objective's gradient is not finite at step {step}")
        grad = _tangent(a, leaf.grad)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad.square()
        update = lr * (m / (1 - beta1 ** (step + 1))) / ((v / (1 - beta2 ** (step + 1))).sqrt() + eps)
        a = a + _tangent(a, update)
        a = a / a.norm(dim=1, keepdim=True)
        values.append(float(value.detach()))
        history.append((a @ a.T).numpy().copy())
        if callback is not None:
            callback(step, values[-1], a.numpy().copy())
    config = {
        "objective": getattr(objective, "name", type(objective).__name__),
        "maximize": maximize,
        "k": k,
        "r": r,
        "steps": steps,
        "lr": lr,
        "galleries_per_step": galleries_per_step,
        "seed": seed,
        "noise_shape": list(shape),
        "init": init if isinstance(init, str) else "matrix",
    }
    return LearnedCoupling(GaussianCoupling(a.numpy(), name=name), np.array(values), np.stack(history), config)


def _initial_matrix(init: Any, k: int | None) -> torch.Tensor:
    if isinstance(init, str):
        if init != "identity":
            raise ValueError(f"init must be 'identity', a matrix or a GaussianCoupling, got {init!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"k must be an int >= 2 for init='identity', got {k!r}")
        return torch.eye(int(k), dtype=torch.float64)
    matrix = (init if isinstance(init, GaussianCoupling) else GaussianCoupling(init)).matrix
    if k is not None and k != matrix.shape[0]:
        raise ValueError(f"k={k} does not match the {matrix.shape[0]} rows of init")
    return torch.tensor(matrix, dtype=torch.float64)


def _tangent(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g without its component along each row of a (rows of unit norm): the sphere's tangent part."""
    return g - (g * a).sum(dim=1, keepdim=True) * a
