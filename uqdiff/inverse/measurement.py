"""One corrupted observation y = A(x) + sigma_y * e of one ground-truth image.

An evaluation asks how the *solver's* randomness spreads its reconstructions
for a fixed observation, so the operator's random parts and the measurement
noise are drawn once per image, from the image's own seed, and every posterior
sample of that image sees the same y.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.inverse.operators import MeasurementOperator, get_operator


@dataclass(frozen=True)
class Measurement:
    """The observation ``y`` (1, ...), its operator and noise level; ``truth`` is kept for evaluation."""

    y: torch.Tensor
    operator: MeasurementOperator
    sigma_y: float
    seed: list[int]
    truth: torch.Tensor = field(repr=False)

    @property
    def naive(self) -> torch.Tensor:
        """The prior-free reconstruction (1, C, H, W): masked, upsampled or blurred image."""
        return self.operator.naive(self.y)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||y - A(x)|| per image of the batch x (the DPS guidance loss, not squared)."""
        r = self.y.to(x) - self.operator(x)
        return r.reshape(len(x), -1).norm(dim=1)


def measure(
    truth: torch.Tensor | np.ndarray,
    task: str | MeasurementOperator,
    *,
    sigma_y: float = 0.05,
    seed: SeedLike = 0,
    **operator_params: Any,
) -> Measurement:
    """Corrupt one image ``truth`` (C, H, W) on the [-1, 1] scale with the operator ``task``.

    ``task`` is an operator name (see ``OPERATORS``; ``operator_params`` go to
    it) or an operator. The operator's random parts use stream ``(seed, 0)``
    and the measurement noise stream ``(seed, 1)``.

    >>> m = measure(torch.zeros(1, 8, 8), "inpainting", seed=3)
    >>> m.y.shape, 0.3 <= m.operator.missing_ratio <= 0.7, m.sigma_y
    (torch.Size([1, 1, 8, 8]), True, 0.05)
    """
    x = torch.as_tensor(np.asarray(truth, dtype=np.float32)) if not isinstance(truth, torch.Tensor) else truth.float()
    if x.ndim != 3:
        raise ValueError(f"truth must be one image (C, H, W), got shape {tuple(x.shape)}")
    sigma_y = float(sigma_y)
    if not (np.isfinite(sigma_y) and sigma_y >= 0):
        raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
    seed = entropy(seed)
    if isinstance(task, MeasurementOperator):
        if operator_params:
            raise TypeError("operator parameters go with an operator name, not an operator object")
        op = task
        if op.image_shape != tuple(x.shape):
            raise ValueError(f"operator is for images {op.image_shape}, truth has shape {tuple(x.shape)}")
    else:
        op = get_operator(task, tuple(x.shape), seed=substream(seed, 0), **operator_params)
    x = x.unsqueeze(0)
    with torch.no_grad():
        clean = op(x)
    noise = np.random.default_rng(substream(seed, 1)).standard_normal(clean.shape).astype(np.float32)
    y = clean + sigma_y * torch.from_numpy(noise)
    return Measurement(y=y, operator=op, sigma_y=sigma_y, seed=seed, truth=x[0])
