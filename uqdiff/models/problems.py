"""Ready-made inverse problems on the project's models: ground truths, priors and solvers by name.

Shared by ``uqdiff evaluate`` and ``benchmarks/inverse_solvers.py`` so both
run the same problems:

* ``fashion``: the Fashion-MNIST DDPM as the prior; ground truths drawn from
  the Fashion-MNIST test set (indices from ``seed``); DPS, DDS and RSD (whose
  repulsion kernel works on the Fashion-MNIST classifier's features by default).
* ``terrain``: the terrain consistency model's denoiser as a black-box prior
  (DDS only); ground truths are terrains generated from held-out noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from uqdiff.inverse.priors import DiffusionPrior
from uqdiff.samplers.posterior import DDS, DPS
from uqdiff.samplers.repulsive import RSD

PROBLEM_MODELS = ("fashion", "terrain")
SOLVERS = ("dps", "dds")
#: Solvers whose K particles per measurement interact, so a set of them lies inside one group of
#: independent noises (``AntitheticSets(4)``, ``Equicorrelated(4, 0.0)``): ``uqdiff evaluate
#: --solvers`` offers them (with ``antithetic-sets:4`` by default), ``--solver`` does not.
PARTICLE_SOLVERS = ("rsd",)
#: Per model, the tasks and their operator parameters (see the benchmark's docstring for why).
TASKS: dict[str, dict[str, dict[str, Any]]] = {
    "fashion": {"inpainting": {}, "super_resolution": {"factor": 2}, "gaussian_blur": {"std": 1.0, "kernel_size": 7}},
    "terrain": {"inpainting": {"missing": (0.92, 0.96)}, "super_resolution": {"factor": 4, "mode": "avgpool"}},
}
#: RSD's particles per set on the command line and in :func:`solver_factory`.
RSD_PARTICLES = 4
DEFAULT_STEPS = {("fashion", "dps"): 50, ("fashion", "dds"): 50, ("fashion", "rsd"): 50, ("terrain", "dds"): 10}
FASHION_TRUTH_SEED = 2024
TERRAIN_TRUTH_SEED = 909_090


def check_problem(model: str, solver: str, task: str | None = None) -> None:
    """One-line errors for a model/solver(/task) combination that does not exist."""
    if model not in PROBLEM_MODELS:
        raise ValueError(f"model must be one of {', '.join(PROBLEM_MODELS)} for inverse problems, got {model!r}")
    if solver not in SOLVERS + PARTICLE_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS + PARTICLE_SOLVERS)}, got {solver!r}")
    if (model, solver) not in DEFAULT_STEPS:
        supported = ", ".join(s for m, s in DEFAULT_STEPS if m == model)
        why = "needs a differentiable prior" if solver == "dps" else "is not set up"
        raise ValueError(f"solver {solver!r} {why} for the {model} model; it supports: {supported}")
    if task is not None and task not in TASKS[model]:
        raise ValueError(f"task must be one of {', '.join(TASKS[model])} for the {model} model, got {task!r}")


def ground_truths(model: str, n: int, *, seed: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """``n`` ground-truth images (n, C, H, W) on the [-1, 1] scale and a record of where they came from."""
    if model == "fashion":
        from uqdiff.models.fashion_mnist import load_fashion_mnist

        seed = FASHION_TRUTH_SEED if seed is None else seed
        images, _ = load_fashion_mnist("test")
        pick = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
        return torch.as_tensor(images[pick], dtype=torch.float32)[:, None] / 127.5 - 1, {"test_indices": pick.tolist()}
    if model == "terrain":
        from uqdiff.models.terrain import SIZE

        seed = TERRAIN_TRUTH_SEED if seed is None else seed
        held_out = np.random.default_rng(seed).standard_normal((n, 1, SIZE, SIZE))
        return _terrain()(torch.as_tensor(held_out, dtype=torch.float32)), {"truth_seed": seed, "difficulty": 50}
    raise ValueError(f"model must be one of {', '.join(PROBLEM_MODELS)}, got {model!r}")


def solver_factory(
    model: str, solver: str, *, steps: int | None = None, device: str | None = None, **options: Any
) -> Callable:
    """``measurement -> generator`` for ``solver`` on ``model``'s prior; ``options`` go to DPS, DDS or RSD.

    RSD's repulsion kernel defaults to the Fashion-MNIST classifier's features
    (:func:`uqdiff.models.classifier.classifier_features`; ``features=None`` for pixels) and its
    weight to ``gamma=3.0``, a mild repulsion on those features (see :class:`~uqdiff.samplers.RSD`).
    Run RSD with a design whose groups are whole sets of independent noises (``AntitheticSets(4)``).
    """
    check_problem(model, solver)
    steps = DEFAULT_STEPS[model, solver] if steps is None else steps
    # DPS in float64: its guided steps grow float32 rounding into batch-dependent outputs that the
    # repeat check refuses (a 16-image CLI run stopped on image 7); see docs/capture.md
    prior = model_prior(model, steps, device=device, dtype=torch.float64 if solver == "dps" else torch.float32)
    if solver == "rsd":
        from uqdiff.models.classifier import classifier_features

        if "features" not in options:
            options["features"] = classifier_features(device=prior.device)
        options.setdefault("gamma", 3.0)
        options.setdefault("particles", RSD_PARTICLES)
        return lambda m: RSD(prior, m, **options)
    cls = DPS if solver == "dps" else DDS
    return lambda m: cls(prior, m, **options)


def model_prior(
    model: str, steps: int, *, device: str | None = None, dtype: torch.dtype = torch.float32
) -> DiffusionPrior:
    """``model``'s diffusion prior on ``steps`` solver steps: what a solver of one's own needs.

    ``fashion``: the Fashion-MNIST DDPM (a differentiable UNet prior, in ``dtype``, on ``device``,
    default CUDA when available); ``terrain``: the terrain consistency model's denoiser as a
    black-box variance-exploding prior (CPU, no gradients).
    """
    if model == "fashion":
        from uqdiff.models.fashion import fashion_prior

        return fashion_prior(steps, device=device, dtype=dtype)
    if model == "terrain":
        from uqdiff.inverse.priors import VEDenoiserPrior
        from uqdiff.models.terrain import SIZE

        return VEDenoiserPrior(_terrain().denoise, (1, SIZE, SIZE), num_steps=steps)
    raise ValueError(f"model must be one of {', '.join(PROBLEM_MODELS)}, got {model!r}")


def _terrain():
    from uqdiff.models.terrain import TerrainGenerator

    return TerrainGenerator(difficulty=50)
