"""Diffusion priors for posterior samplers: a Tweedie denoiser on a variance-preserving schedule.

A solver only needs, at each of its steps i = 0 .. N-1 (noisiest first), the
cumulative signal level alpha_bar_i of x_i = sqrt(alpha_bar_i) x0 +
sqrt(1 - alpha_bar_i) eps and the denoiser's estimate of x0 from x_i. Epsilon
UNets (diffusers) give that directly; variance-exploding denoisers D(x, sigma)
such as the terrain consistency model fit through alpha_bar = 1 / (1 + sigma^2)
and x_ve = x_vp sqrt(1 + sigma^2). Priors also map the model's sample space to
the image space the measurement sees (the Fashion-MNIST model pads 28 to 32).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Margins = tuple[int, int, int, int]  # top, bottom, left, right


class DiffusionPrior(ABC):
    """A denoiser on a decreasing noise schedule, as the solvers see it."""

    #: (C, H, W) of the model's samples.
    sample_shape: tuple[int, int, int]
    #: alpha_bar of each step, noisiest first (float64, increasing).
    alphas_cumprod: torch.Tensor
    #: whether ``x0`` can be differentiated with respect to x (DPS needs it).
    differentiable: bool = True
    device: torch.device = torch.device("cpu")
    #: pixels cropped from the sample to get the image: (top, bottom, left, right).
    crop: Margins = (0, 0, 0, 0)

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.sample_shape
        t, b, l, r = self.crop
        return c, h - t - b, w - l - r

    @abstractmethod
    def x0(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """The denoiser's estimate of the clean sample from x at ``step`` (model space)."""

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Sample space -> image space (a crop: linear, so the solvers can use its adjoint)."""
        t, b, l, r = self.crop
        return x[..., t : x.shape[-2] - b, l : x.shape[-1] - r]

    def image_adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`image`: pad the cropped margins with zeros."""
        t, b, l, r = self.crop
        return F.pad(v, (l, r, t, b))


class UNetPrior(DiffusionPrior):
    """An epsilon-prediction diffusers UNet with its DDPM/DDIM scheduler's training schedule.

    The N inference steps are the scheduler's own ``set_timesteps(N)`` spacing;
    the x0 estimate is clipped to the scheduler's ``clip_sample_range`` when
    its config asks for clipping, as the samplers do.
    """

    def __init__(
        self,
        unet: Any,
        scheduler: Any,
        *,
        num_inference_steps: int = 100,
        class_label: int | None = None,
        crop: Margins = (0, 0, 0, 0),
        device: torch.device | str | None = None,
    ) -> None:
        cfg = scheduler.config
        if cfg.prediction_type != "epsilon":
            raise ValueError(
                f"UNetPrior needs an epsilon-prediction model, got prediction_type={cfg.prediction_type!r}"
            )
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        sched = scheduler.__class__.from_config(cfg)
        sched.set_timesteps(num_inference_steps)
        self.timesteps = sched.timesteps.clone()
        self.alphas_cumprod = sched.alphas_cumprod.double()[self.timesteps]
        self.clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
        ucfg = unet.config
        size = ucfg.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.sample_shape = (int(ucfg.in_channels), int(h), int(w))
        self.crop = tuple(int(m) for m in crop)  # type: ignore[assignment]
        if len(self.crop) != 4 or min(self.crop) < 0 or self.image_shape[1] < 1 or self.image_shape[2] < 1:
            raise ValueError(
                f"crop must be 4 non-negative margins (top, bottom, left, right) inside the sample, got {crop!r}"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.unet = unet.to(self.device).eval().requires_grad_(False)
        self.class_label = class_label

    def x0(self, x: torch.Tensor, step: int) -> torch.Tensor:
        t = self.timesteps[step]
        ab = float(self.alphas_cumprod[step])
        labels = None if self.class_label is None else torch.full((len(x),), self.class_label, device=x.device)
        weights = next(self.unet.parameters()).dtype  # a float64 prior takes float32 iterates too
        out = self.unet(x.to(weights), t.to(x.device), class_labels=labels)
        eps = getattr(out, "sample", out).to(torch.promote_types(x.dtype, torch.float32))
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        return x0 if self.clip is None else x0.clamp(-self.clip, self.clip)


class VEDenoiserPrior(DiffusionPrior):
    """A variance-exploding denoiser ``denoise(x, sigma)`` (numpy or torch, batched) on Karras sigmas.

    Steps run from ``sigma_max`` down to ``sigma_min`` on the schedule of
    Karras et al. (2022) with exponent ``rho``. The denoiser is treated as a
    black box (no gradients): use it with solvers that do not backpropagate
    through the network, such as DDS.
    """

    differentiable = False

    def __init__(
        self,
        denoise: Any,
        sample_shape: tuple[int, int, int],
        *,
        num_steps: int = 10,
        sigma_max: float = 80.0,
        sigma_min: float = 0.02,
        rho: float = 7.0,
    ) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        ramp = np.linspace(0, 1, num_steps)
        sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self.alphas_cumprod = 1.0 / (1.0 + self.sigmas**2)
        self.denoise = denoise
        self.sample_shape = tuple(int(s) for s in sample_shape)  # type: ignore[assignment]

    def x0(self, x: torch.Tensor, step: int) -> torch.Tensor:
        sigma = float(self.sigmas[step])
        x_ve = (x.detach() * math.sqrt(1 + sigma**2)).to("cpu", torch.float32)
        out = self.denoise(x_ve.numpy(), sigma)
        return torch.as_tensor(np.asarray(out, dtype=np.float32)).to(x.device)
