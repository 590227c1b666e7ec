"""Fixed-object background generation: one object, a gallery of K diverse backgrounds (coupling paper, sec. 4.2).

Given an image x*, a foreground mask m and a deterministic DDIM sampler G,

1. DDIM inversion gives the noise z_inv with G(z_inv) ~ x*;
2. the gallery starts from the subspace coupling z_i = M * z_inv + (1 - M) * v_i:
   the foreground noise is identical across the gallery, the background noises
   v_1..v_K are repulsively coupled (K-antithetic, correlation -1/(K-1));
3. Adam moves only the foreground noise to fit the masked foreground (eq. 3),
   min sum_i ||m * (G(z_i) - x*)||^2 with (1 - M) * z_i = (1 - M) * z_i^(0),
   so the repulsive background noise stays exactly as drawn.

M is the image mask in noise space: the Fashion-MNIST model samples 32x32
and crops 28x28 images, so the padding margins count as background.

Statistical caveat: the foreground part of every z_i is the fixed inverted
noise, then an optimized one, so z_i is not N(0, I); only the background
coordinates keep the design's N(0, I) marginals. The galleries are a
conditional construction for one image, not draws for :func:`uqdiff.estimate`.

The metrics follow the paper's appendix B.3 on [0, 1]-scaled pixels:
background diversity (pairwise L2 over background pixels), foreground RMSE
against x*, and Boundary-TV in a band of ``width`` pixels around the mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from uqdiff.designs import Equicorrelated, KAntithetic, NoiseDesign
from uqdiff.designs.seeds import SeedLike
from uqdiff.estimators.results import Exportable
from uqdiff.inverse.priors import DiffusionPrior
from uqdiff.samplers.posterior import ddim_step, implied_eps
from uqdiff.statistics.gallery import MeanPairwiseL2
from uqdiff.statistics.pixel import PixelMap

#: Background couplings by name: repulsive (the method) and independent (the Object-inv. + random BG baseline).
BACKGROUNDS = {"repulsive": KAntithetic, "independent": lambda k: Equicorrelated(k, 0.0)}
VALUE_RANGE = (-1.0, 1.0)


def ddim_sample(prior: DiffusionPrior, noise: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (eta = 0): noise (B, *sample_shape) -> images (B, *image_shape), differentiable.

    The same update as the posterior samplers (:func:`ddim_step` with the noise
    implied by the clipped x0 estimate), with the autograd graph kept so a loss
    on the images can be back-propagated to the noise. This is diffusers'
    DDIM with ``use_clipped_model_output=True``; :class:`uqdiff.samplers.DiffusersSampler`
    keeps diffusers' default (the unclipped noise), so the two agree wherever
    the x0 estimate is not clipped.
    """
    ab = prior.alphas_cumprod.tolist() + [1.0]
    x = noise
    for i in range(prior.num_steps):
        x0 = prior.x0(x, i)
        x = ddim_step(x0, implied_eps(x, x0, ab[i]), ab[i], ab[i + 1], 0.0, None)
    return prior.image(x)


@torch.no_grad()
def ddim_invert(prior: DiffusionPrior, images: torch.Tensor, *, pad_value: float = -1.0) -> torch.Tensor:
    """DDIM inversion: images (B, *image_shape) in [-1, 1] -> noises (B, *sample_shape) with G(noise) ~ image.

    Runs :func:`ddim_sample`'s steps backwards, from the clean image (level 1)
    to the noisiest level, with the usual approximation: the noise estimate
    for the step from level i+1 up to level i is the network's at level i's
    timestep, evaluated at the current (less noisy) iterate. Margins the prior
    crops are filled with ``pad_value`` (-1, black, as the Fashion model was trained).
    """
    images = _check_images(prior, images)
    t, b, l, r = prior.crop
    x = F.pad(images.to(prior.device, torch.float32), (l, r, t, b), value=pad_value)
    ab = prior.alphas_cumprod.tolist() + [1.0]
    for i in reversed(range(prior.num_steps)):
        eps = implied_eps(x, prior.x0(x, i), ab[i])
        x0 = (x - math.sqrt(1 - ab[i + 1]) * eps) / math.sqrt(ab[i + 1])
        x = ddim_step(x0, eps, ab[i + 1], ab[i], 0.0, None)
    return x


def noise_mask(prior: DiffusionPrior, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The image-space foreground mask (h, w) as a boolean mask of the noise, sample_shape; margins are background."""
    m = _check_mask(prior, mask)
    t, b, l, r = prior.crop
    padded = F.pad(m.to(torch.uint8), (l, r, t, b), value=0).bool()
    return padded.expand(prior.sample_shape).to(prior.device)


def coupled_noise(
    inverted: torch.Tensor,
    mask: torch.Tensor,
    *,
    background: NoiseDesign,
    seed: SeedLike = 0,
    index: int = 0,
) -> torch.Tensor:
    """z_i = M * inverted + (1 - M) * v_i, i = 1..K: (K, *inverted.shape).

    ``mask`` is M in noise space (:func:`noise_mask`); v_1..v_K is group
    ``index`` of ``background`` under ``seed`` on the background coordinates
    only, so each v_i is N(0, I) there and the K of them are coupled as the
    design says (K-antithetic: correlation -1/(K-1)). The foreground noise is
    identical across the gallery and not N(0, I) (see the module docstring).
    """
    if mask.shape != inverted.shape or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a boolean tensor of the noise's shape {tuple(inverted.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    k = background.group_size
    v = background.groups([index], int((~mask).sum()), seed=seed, device=inverted.device, dtype=inverted.dtype)[0]
    z = inverted.expand(k, *inverted.shape).clone()
    z[:, ~mask] = v
    return z


@dataclass(frozen=True)
class FixedObjectResult(Exportable):
    """Galleries of :func:`fixed_object_gallery` at each checkpoint (0 = the coupled initialization)."""

    image: torch.Tensor  # (C, h, w), the input x*
    mask: torch.Tensor  # (h, w) bool, the foreground
    inverted_noise: torch.Tensor  # (C, H, W), DDIM inversion of x*
    noises: dict[int, torch.Tensor]  # optimization step -> (K, C, H, W)
    galleries: dict[int, torch.Tensor]  # optimization step -> (K, C, h, w) images in [-1, 1]
    loss: np.ndarray  # eq. 3 at iterates 0..max step
    background: str
    lr: float
    seed: SeedLike
    index: int

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(self.galleries)

    def _rows(self) -> list[dict[str, Any]]:
        """One row per checkpoint: the optimization step and the gallery's metrics."""
        return [{"step": step, **self.metrics(step).to_dict()} for step in self.steps]

    def metrics(self, step: int, *, width: int = 5) -> FixedObjectMetrics:
        """:func:`fixed_object_metrics` of the gallery at ``step``."""
        if step not in self.galleries:
            raise KeyError(f"no gallery at step {step}; checkpoints: {list(self.galleries)}")
        return fixed_object_metrics(self.galleries[step], self.image, self.mask, width=width)


def fixed_object_gallery(
    prior: DiffusionPrior,
    image: torch.Tensor,
    mask: torch.Tensor | np.ndarray,
    *,
    k: int = 4,
    optimization_steps: Iterable[int] = (10, 20, 30, 50, 100),
    lr: float = 0.01,
    background: str | NoiseDesign = "repulsive",
    seed: SeedLike = 0,
    index: int = 0,
) -> FixedObjectResult:
    """K images that keep ``image``'s masked foreground and vary the background (eq. 3 of the coupling paper).

    ``image`` is (C, h, w) in [-1, 1] (the prior's image shape), ``mask``
    (h, w) boolean with True on the object. The foreground noise is
    optimized with Adam (learning rate ``lr``) on
    sum_i ||m * (G(z_i) - image)||^2 while the background noise is held
    fixed: z = where(M, foreground, background), so no update can reach it.
    The gallery is recorded at step 0 (the coupled initialization) and at
    every ``optimization_steps`` checkpoint. ``background`` is "repulsive"
    (K-antithetic, the method), "independent" (the Object-inv. + random BG
    baseline) or a design of group size ``k``; its draw is group ``index``
    under ``seed``, so each image of a data set gets its own stream.

    Returns
    -------
    FixedObjectResult
        The noises and galleries at each checkpoint and the loss curve; ``metrics(step)``
        gives L2-B, RMSE-F and Boundary-TV of a checkpoint's gallery.

    Raises
    ------
    ValueError
        For an image, mask or background that does not fit the prior, before any model call.

    Examples
    --------
    A toy denoiser stands in for a diffusion prior (``uqdiff.models.fashion.fashion_prior`` fits the same slot):

    >>> from uqdiff.inverse.priors import DiffusionPrior
    >>> class Squash(DiffusionPrior):
    ...     sample_shape = (1, 8, 8)
    ...     alphas_cumprod = torch.linspace(0.1, 0.9, 4, dtype=torch.float64)
    ...     def x0(self, x, step):
    ...         return torch.tanh(x / 2)
    >>> mask = torch.zeros(8, 8, dtype=torch.bool)
    >>> mask[2:6, 2:6] = True
    >>> r = fixed_object_gallery(Squash(), torch.zeros(1, 8, 8), mask, k=2, optimization_steps=(5,), seed=0)
    >>> r.steps, tuple(r.galleries[5].shape)
    ((0, 5), (2, 1, 8, 8))
    """
    image = _check_images(prior, torch.as_tensor(image).unsqueeze(0))[0]
    m = _check_mask(prior, mask)
    design = _background(background, k)
    checkpoints = _checkpoints(optimization_steps)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    target = image.to(prior.device, torch.float32)
    fg = m.to(prior.device).expand(image.shape)
    big = noise_mask(prior, m)
    inverted = ddim_invert(prior, image.unsqueeze(0))[0]
    start = coupled_noise(inverted, big, background=design, seed=seed, index=index)
    fixed = start.clone()
    foreground = start.clone().requires_grad_(True)
    adam = torch.optim.Adam([foreground], lr=lr)
    noises, galleries, losses = {}, {}, []
    for step in range(checkpoints[-1] + 1):
        z = torch.where(big, foreground, fixed)
        with torch.set_grad_enabled(step < checkpoints[-1]):
            images = ddim_sample(prior, z)
            loss = (images - target).masked_fill(~fg, 0.0).square().sum()
        losses.append(float(loss.detach()))
        if step in checkpoints:
            noises[step], galleries[step] = z.detach().clone(), images.detach().clone()
        if step < checkpoints[-1]:
            adam.zero_grad()
            loss.backward()
            adam.step()
    return FixedObjectResult(
        image=image.detach().cpu(),
        mask=m.cpu(),
        inverted_noise=inverted.cpu(),
        noises={s: v.cpu() for s, v in noises.items()},
        galleries={s: v.cpu() for s, v in galleries.items()},
        loss=np.array(losses),
        background=design.name,
        lr=float(lr),
        seed=seed,
        index=index,
    )


@dataclass(frozen=True)
class FixedObjectMetrics(Exportable):
    """The paper's evaluation axes for one gallery, on [0, 1]-scaled pixels."""

    l2_background: float  # pairwise L2 in the background: higher = more diverse
    rmse_foreground: float  # RMSE against x* in the foreground: lower = more faithful
    boundary_tv: float  # mean |neighbour difference| in the boundary band: lower = smoother seam


def fixed_object_metrics(
    gallery: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | np.ndarray, *, width: int = 5
) -> FixedObjectMetrics:
    """Background diversity, foreground RMSE and Boundary-TV of a gallery (K, C, h, w) for input ``image`` (C, h, w).

    * ``l2_background``: :class:`MeanPairwiseL2` over the background pixels
      (per-pixel mean squared distance, averaged over the K(K-1)/2 pairs);
    * ``rmse_foreground``: per image sqrt(mean over mask pixels of (x - x*)^2), averaged over the gallery;
    * ``boundary_tv``: :func:`boundary_tv`, averaged over the gallery.

    The second image below keeps the object and brightens the background by
    0.5 on the [0, 1] scale: L2-B 0.5^2; 8 of its 24 band pairs cross the seam
    by 0.5, so its TV is 1/6, the gallery mean 1/12.

    >>> img = torch.zeros(1, 4, 4); m = torch.zeros(4, 4, dtype=torch.bool); m[1:3, 1:3] = True
    >>> r = fixed_object_metrics(torch.stack([img, img.masked_fill(~m, 1.0)]), img, m, width=1)
    >>> r.l2_background, r.rmse_foreground, round(r.boundary_tv, 4)
    (0.25, 0.0, 0.0833)
    """
    gallery, image = torch.as_tensor(gallery), torch.as_tensor(image)
    m = torch.as_tensor(mask)
    if gallery.ndim != 4 or tuple(gallery.shape[1:]) != tuple(image.shape) or tuple(m.shape) != tuple(image.shape[1:]):
        raise ValueError(
            f"need a gallery (K, C, h, w), an image (C, h, w) and a mask (h, w); got shapes "
            f"{tuple(gallery.shape)}, {tuple(image.shape)}, {tuple(m.shape)}"
        )
    scale = PixelMap(value_range=VALUE_RANGE)  # the statistics' own [0, 1] scaling
    unit, target = scale.to_unit(gallery.double()), scale.to_unit(image.double())
    fg = m.expand(image.shape)
    l2 = MeanPairwiseL2(value_range=VALUE_RANGE, mask=~m)(gallery.double(), gallery_size=len(gallery))
    rmse = (unit - target)[:, fg].reshape(len(gallery), -1).square().mean(dim=1).sqrt()
    return FixedObjectMetrics(
        l2_background=float(l2[0]),
        rmse_foreground=float(rmse.mean()),
        boundary_tv=float(boundary_tv(unit, m, width=width).mean()),
    )


def boundary_band(mask: torch.Tensor | np.ndarray, *, width: int = 5) -> np.ndarray:
    """Pixels within ``width`` of the mask's edge: dilation minus erosion by a (2 width + 1)^2 square.

    A pixel is in the band when its (2 width + 1) x (2 width + 1) neighbourhood
    holds both mask and non-mask pixels (outside the image counts as non-mask),
    i.e. the band reaches ``width`` pixels (chessboard distance) into and out of the object.

    >>> m = np.zeros((7, 7), dtype=bool); m[2:5, 2:5] = True
    >>> boundary_band(m, width=1).astype(int)[1]
    array([0, 1, 1, 1, 1, 1, 0])
    """
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.dtype != bool or m.ndim != 2:
        raise ValueError(f"mask must be a 2-d boolean array, got {m.dtype} of shape {m.shape}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    square = np.ones((3, 3), dtype=bool)
    return ndimage.binary_dilation(m, square, iterations=width) & ~ndimage.binary_erosion(m, square, iterations=width)


def boundary_tv(images: torch.Tensor, mask: torch.Tensor | np.ndarray, *, width: int = 5) -> torch.Tensor:
    """Boundary-TV of each image (B, C, h, w): mean |x_p - x_q| over 4-neighbour pairs (p, q) inside the band.

    The band is :func:`boundary_band`; a horizontal or vertical pair counts
    when both pixels lie in it, and the mean runs over those pairs and the
    channels. Pass [0, 1]-scaled pixels to compare with the paper's values.

    >>> m = np.zeros((6, 6), dtype=bool); m[2:4, 2:4] = True
    >>> x = torch.from_numpy(m).double()[None, None]   # a bright object on black
    >>> boundary_tv(x, m, width=1)   # band: the 4x4 around the object; 8 of its 24 pairs cross the seam
    tensor([0.3333], dtype=torch.float64)
    """
    band = torch.from_numpy(boundary_band(mask, width=width)).to(images.device)
    if images.ndim != 4 or tuple(images.shape[-2:]) != tuple(band.shape):
        raise ValueError(
            f"images must be (B, C, h, w) with (h, w) = the mask's {tuple(band.shape)}, got {tuple(images.shape)}"
        )
    horizontal = band[:, 1:] & band[:, :-1]
    vertical = band[1:, :] & band[:-1, :]
    dh = (images[..., :, 1:] - images[..., :, :-1]).abs()[..., horizontal]
    dv = (images[..., 1:, :] - images[..., :-1, :]).abs()[..., vertical]
    return torch.cat([dh, dv], dim=-1).flatten(1).mean(dim=1)


def _check_images(prior: DiffusionPrior, images) -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(
            f"image must have the prior's image shape {tuple(prior.image_shape)}, got {tuple(x.shape[1:])}"
        )
    if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        raise ValueError("image must be a finite floating-point tensor")
    lo, hi = VALUE_RANGE
    if float(x.min()) < lo or float(x.max()) > hi:
        raise ValueError(f"image values must lie in [{lo}, {hi}], got {float(x.min()):.3g} .. {float(x.max()):.3g}")
    return x


def _check_mask(prior: DiffusionPrior, mask) -> torch.Tensor:
    m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
    h, w = prior.image_shape[1:]
    if m.dtype != torch.bool or tuple(m.shape) != (h, w):
        raise ValueError(
            f"mask must be a boolean ({h}, {w}) array (the image's height and width), "
            f"got {m.dtype} of shape {tuple(m.shape)}"
        )
    if not bool(m.any()) or bool(m.all()):
        raise ValueError("mask must mark some pixels as foreground and leave some as background")
    return m


def _background(background: str | NoiseDesign, k: int) -> NoiseDesign:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k (the gallery size) must be an int >= 2, got {k!r}")
    if isinstance(background, NoiseDesign):
        if background.group_size != k:
            raise ValueError(f"background design {background.name!r} has group size {background.group_size}, not k={k}")
        return background
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)} or a NoiseDesign, got {background!r}")
    return BACKGROUNDS[background](k)


def _checkpoints(steps: Iterable[int]) -> list[int]:
    steps = list(steps)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in steps):
        raise ValueError(f"optimization_steps must be non-negative ints, got {steps!r}")
    return sorted({0, *(int(s) for s in steps)})


__all__ = [
    "BACKGROUNDS",
    "FixedObjectMetrics",
    "FixedObjectResult",
    "boundary_band",
    "boundary_tv",
    "coupled_noise",
    "ddim_invert",
    "ddim_sample",
    "fixed_object_gallery",
    "fixed_object_metrics",
    "noise_mask",
]
