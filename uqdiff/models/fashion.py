"""The project's class-conditional Fashion-MNIST DDPM (diffusers format, shipped in uqdiff/assets).

Trained by ``training/train_fashion_ddpm.py``: a UNet2DModel on 28x28 images
padded to 32x32, epsilon prediction, 1000 timesteps; label 10 means "no class"
(trained with 10% label dropout), which gives unconditional samples and
classifier-free guidance. Loads offline with ``from_pretrained(local path)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from uqdiff.models.classifier import ASSETS
from uqdiff.samplers import DiffusersSampler

FASHION_DDPM_DIR = ASSETS / "fashion_mnist_ddpm"
NULL_CLASS = 10


def load_fashion_ddpm(path: str | Path = FASHION_DDPM_DIR, *, dtype: torch.dtype = torch.float32):
    """(UNet2DModel, DDPMScheduler) from the committed save_pretrained folders; no network access.

    ``dtype`` is the UNet's weights' dtype: torch.float64 for samplers whose many guided steps
    amplify float32 rounding (see docs/capture.md).
    """
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(path)
    if not (path / "unet" / "config.json").is_file():
        raise FileNotFoundError(f"no trained model in {path}; train it with training/train_fashion_ddpm.py")
    # low_cpu_mem_usage=False: the small model needs no accelerate, and diffusers then does not ask for it.
    unet = UNet2DModel.from_pretrained(
        str(path / "unet"), local_files_only=True, low_cpu_mem_usage=False, torch_dtype=dtype
    )
    scheduler = DDPMScheduler.from_pretrained(str(path / "scheduler"), local_files_only=True)
    return unet, scheduler


def fashion_prior(
    num_inference_steps: int = 100,
    *,
    class_label: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
):
    """The DDPM as a prior for posterior samplers (DPS, DDS) on 28x28 images; unconditional by default.

    ``dtype=torch.float64`` runs the UNet in double precision (about 3.4x slower on a CPU): feed it
    float64 iterates. DPS-style guidance can grow float32 rounding into visible differences.
    """
    from uqdiff.inverse.priors import UNetPrior

    unet, scheduler = load_fashion_ddpm(dtype=dtype)
    label = NULL_CLASS if class_label is None else class_label
    return UNetPrior(
        unet, scheduler, num_inference_steps=num_inference_steps, class_label=label, crop=(2, 2, 2, 2), device=device
    )


class FashionMNISTGenerator:
    """Noise -> Fashion-MNIST images (B, 1, 28, 28) in [-1, 1], by DDIM (default) or DDPM.

    ``class_label`` 0..9 picks the garment class; None samples unconditionally
    (the null label). ``sampler="ddim"`` with ``eta=0`` is deterministic in the
    initial noise; ``eta > 0`` or ``sampler="ddpm"`` makes the noise a stream
    (initial latent plus every step's noise), see DiffusersSampler.
    """

    value_range = (-1.0, 1.0)

    def __init__(
        self,
        class_label: int | None = None,
        *,
        sampler: str = "ddim",
        num_inference_steps: int = 50,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        device: torch.device | str | None = None,
        path: str | Path = FASHION_DDPM_DIR,
    ) -> None:
        from diffusers import DDIMScheduler

        if class_label is not None and not (isinstance(class_label, int) and 0 <= class_label <= 9):
            raise ValueError(f"class_label must be an int in 0..9 or None (unconditional), got {class_label!r}")
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        unet, scheduler = load_fashion_ddpm(path)
        if sampler == "ddim":
            scheduler = DDIMScheduler.from_config(scheduler.config)
        label = NULL_CLASS if class_label is None else class_label
        self.class_label = class_label
        self.sampler = DiffusersSampler(
            unet,
            scheduler,
            num_inference_steps=num_inference_steps,
            eta=eta if sampler == "ddim" else 0.0,
            class_label=label,
            guidance_scale=guidance_scale if class_label is not None else 1.0,
            null_class=NULL_CLASS,
            device=device,
        )
        self.noise_shape = self.sampler.noise_shape
        self.noise_layout = self.sampler.noise_layout
        self.device = self.sampler.device

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        return self.readout(self.sampler(noise))

    @staticmethod
    def readout(samples: torch.Tensor) -> torch.Tensor:
        """The sampler's 32x32 samples cropped to the 28x28 images the model was trained on."""
        return samples[..., 2:30, 2:30]

    def __repr__(self) -> str:
        return f"FashionMNISTGenerator(class_label={self.class_label}, sampler={self.sampler!r})"
