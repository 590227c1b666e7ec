"""DiffPIR written the way research code writes it, run under uqdiff's ``Captured``.

:func:`diffpir` is plug-and-play image restoration with a diffusion denoiser (Zhu et al., "Denoising
Diffusion Models for Plug-and-Play Image Restoration", CVPR workshops 2023) in the usual research
form: it knows nothing of uqdiff, draws x_T with ``torch.randn`` and each step's fresh noise with
``torch.randn_like`` inside its loop. At every step it

1. denoises: x0 = D(x_t, t), the network's estimate of the clean image;
2. solves the data subproblem x0 <- argmin_z ||y - H z||^2 + rho_t ||z - x0||^2 with
   rho_t = lam * sigma_y^2 / sigma_bar_t^2 and sigma_bar_t^2 = (1 - alpha_bar_t) / alpha_bar_t,
   here by a few gradient steps (the paper's choice for operators without a closed form);
3. re-noises: x_{t-1} = sqrt(alpha_bar_{t-1}) x0 + sqrt(1 - alpha_bar_{t-1})
   (sqrt(1 - zeta) eps_hat + sqrt(zeta) eps), eps_hat the noise implied by (x_t, x0), eps fresh.

:func:`factory` wraps it for uqdiff: ``Captured`` hands every one of those draws to the noise
design, so common noise, antithetic pairs and RQMC reach a loop whose source was not changed.
The module-level :func:`fashion` and :func:`terrain` are ready-made factories (measurement ->
sampler) for the command line, run from the repository root::

    uqdiff evaluate --model fashion --solvers dps dds examples.diffpir:fashion --task inpainting \\
        --images 10 --budget 8 --steps 20
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import torch

LAM = 7.0  # the paper's lambda for noisy restoration
# share of fresh noise in the re-noising step: the paper's range is 0.2-1; at 20 steps on the
# Fashion-MNIST DDPM 1.0 gave the best PSNR on 3 test images (19.4 / 19.2 / 20.6 dB at 0.3 against
# 21.7 / 20.9 / 22.0 at 1.0 for inpainting / super-resolution x2 / blur; a one-off check, not a benchmark)
ZETA = 1.0
DATA_STEPS = 5  # gradient steps on the data subproblem per diffusion step
STEPS = {"fashion": 20, "terrain": 10}


def diffpir(
    n: int,
    *,
    denoise: Callable[[torch.Tensor, int], torch.Tensor],
    alphas_cumprod: list[float],
    shape: tuple[int, ...],
    y: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    sigma_y: float,
    lam: float = LAM,
    zeta: float = ZETA,
    data_steps: int = DATA_STEPS,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` DiffPIR reconstructions (n, *shape) of the measurement ``y = forward(x) + noise``.

    ``denoise(x, i)`` is the clean-image estimate at step i of the schedule ``alphas_cumprod``
    (noisiest first); ``forward`` is the measurement operator, assumed linear with norm at most 1
    (masks, average pooling, normalized blurs), which makes 1 / (2 (1 + rho)) a safe gradient step.
    """
    ab = [float(a) for a in alphas_cumprod] + [1.0]
    x = torch.randn(n, *shape, device=device)
    for i in range(len(ab) - 1):
        x0 = denoise(x, i)
        rho = lam * sigma_y**2 * ab[i] / (1 - ab[i])
        z = x0.detach()
        with torch.enable_grad():
            for _ in range(data_steps):
                z = z.detach().requires_grad_(True)
                loss = ((forward(z) - y) ** 2).sum() + rho * ((z - x0) ** 2).sum()
                (grad,) = torch.autograd.grad(loss, z)
                z = z - grad / (2 * (1 + rho))
        x0 = z.detach()
        if ab[i + 1] == 1.0:  # the last step returns the restored image
            return x0
        eps_hat = (x - math.sqrt(ab[i]) * x0) / math.sqrt(1 - ab[i])
        eps = math.sqrt(1 - zeta) * eps_hat + math.sqrt(zeta) * torch.randn_like(x)
        x = math.sqrt(ab[i + 1]) * x0 + math.sqrt(1 - ab[i + 1]) * eps
    return x


@cache
def _prior(model: str, steps: int, device: str | None):
    from uqdiff.models.problems import model_prior

    return model_prior(model, steps, device=device)


def factory(model: str = "fashion", *, steps: int | None = None, device: str | None = None):
    """measurement -> ``Captured`` DiffPIR on ``model``'s prior (``"fashion"`` or ``"terrain"``)."""
    from uqdiff.samplers import Captured

    prior = _prior(model, STEPS[model] if steps is None else steps, device)

    def make(measurement):
        if tuple(measurement.operator.image_shape) != tuple(prior.image_shape):  # before any model call
            raise ValueError(
                f"DiffPIR on the {model} model restores images {tuple(prior.image_shape)}, but the measurement is "
                f"of images {tuple(measurement.operator.image_shape)}"
            )
        op = measurement.operator.to(prior.device)
        y = measurement.y.to(prior.device)

        def run(n: int) -> torch.Tensor:
            x = diffpir(
                n,
                denoise=prior.x0,
                alphas_cumprod=prior.alphas_cumprod.tolist(),
                shape=prior.sample_shape,
                y=y,
                forward=lambda z: op(prior.image(z)),
                sigma_y=measurement.sigma_y,
                device=prior.device,
            )
            return prior.image(x)

        return Captured(run, name="DiffPIR")

    return make


def fashion(measurement):
    """DiffPIR on the Fashion-MNIST DDPM, 20 steps (a command-line ``module:factory``)."""
    return factory("fashion")(measurement)


def terrain(measurement):
    """DiffPIR on the terrain consistency model's denoiser, 10 steps (a command-line ``module:factory``)."""
    return factory("terrain")(measurement)
