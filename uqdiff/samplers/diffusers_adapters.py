"""Adapters that turn diffusers models, schedulers and pipelines into uqdiff generators.

A uqdiff design must control *all* the randomness of a sample, or its
couplings (antithetic pairs, K-antithetic groups, RQMC) hold only for part of
it. Two ways here:

* :class:`PipelineGenerator` runs any diffusers pipeline under capture
  (:class:`uqdiff.samplers.Captured`): every Gaussian draw the pipeline and its
  scheduler make comes from the design's noise stream, whatever the scheduler.
* :class:`DiffusersSampler` is uqdiff's own loop over a UNet and a DDIM or DDPM
  scheduler, which takes x_T and each step's noise from a noise tensor. It is kept
  because the project's Fashion-MNIST DDPM and every figure recorded with it use
  this layout (and the fixed-noise path); for other schedulers, text-conditioned
  UNets or pipelines, use :class:`PipelineGenerator` or :class:`Captured`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from uqdiff.samplers.base import noise_shape_of
from uqdiff.samplers.capture import Captured

DDPM_VARIANCES = ("fixed_small", "fixed_large")


class DiffusersSampler:
    """A diffusers UNet plus a DDIM or DDPM scheduler, as a uqdiff generator.

    Noise layout (the generator's ``noise_shape``, after the batch dimension):

    * deterministic DDIM (``DDIMScheduler`` with ``eta == 0``): ``(C, H, W)``,
      the initial latent x_T (scaled by the scheduler's ``init_noise_sigma``);
    * stochastic samplers (``DDPMScheduler``, or DDIM with ``eta > 0``):
      ``(1 + num_steps, C, H, W)``; slot 0 is x_T and slot ``1 + i`` the noise
      injected at step ``i``. A slot whose step adds no noise (the DDPM step
      at t = 0, the last DDIM step when ``set_alpha_to_one``) is read but has
      no effect on the output. The whole stream is one Gaussian vector, so an
      antithetic pair (z, -z) negates x_T and every step's noise at once.

    ``class_label`` fixes the class of a class-conditional UNet. A
    ``guidance_scale`` w other than 1 applies classifier-free guidance,
    eps = eps_u + w (eps_c - eps_u), with ``null_class`` as the unconditional
    label; both model calls share one doubled batch. The UNet runs in
    ``dtype``; the scheduler update runs in float32. The caller's scheduler is
    copied, not mutated; the caller's UNet is moved to ``device`` and ``dtype``
    and put in eval mode. Outputs are the raw final samples (float32, not
    clipped), nominally in ``value_range``.

    >>> from diffusers import DDPMScheduler, UNet2DModel
    >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
    ...                    down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ...                    layers_per_block=1, norm_num_groups=4)
    >>> g = DiffusersSampler(unet, DDPMScheduler(), num_inference_steps=3, device="cpu")
    >>> g.stochastic, g.noise_shape, g(torch.zeros(2, *g.noise_shape)).shape
    (True, (4, 1, 8, 8), torch.Size([2, 1, 8, 8]))
    """

    value_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(
        self,
        unet: Any,
        scheduler: Any,
        *,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        class_label: int | None = None,
        guidance_scale: float = 1.0,
        null_class: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        supported = _supported_schedulers()
        if not isinstance(scheduler, supported):
            names = ", ".join(cls.__name__ for cls in supported)
            raise TypeError(f"unsupported scheduler {type(scheduler).__name__}; supported: {names}")
        ddpm = isinstance(scheduler, supported[1])
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        eta = float(eta)
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {eta}")
        if eta and ddpm:
            raise ValueError("eta applies to DDIMScheduler only; DDPM is always fully stochastic")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        guidance_scale = float(guidance_scale)
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")

        self.scheduler = scheduler.__class__.from_config(scheduler.config)
        self.scheduler.set_timesteps(num_inference_steps)
        self.ddpm = ddpm
        if ddpm:
            _check_ddpm_config(self.scheduler.config)

        config = getattr(unet, "config", None)
        channels, size = getattr(config, "in_channels", None), getattr(config, "sample_size", None)
        if channels is None or size is None:
            raise TypeError("the unet needs a diffusers-style config with in_channels and sample_size")
        out_channels = getattr(config, "out_channels", channels)
        if out_channels != channels:  # e.g. a learned variance; DDIM's step would broadcast it silently
            raise ValueError(
                f"the unet maps {channels} channels to {out_channels}; only predictions shaped like the sample "
                "(epsilon, sample or v) are supported"
            )
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        self.sample_shape: tuple[int, int, int] = (int(channels), int(height), int(width))

        self.guided = guidance_scale != 1.0
        if self.guided and class_label is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs a class_label to guide towards")
        if self.guided and null_class is None:
            raise ValueError(
                f"guidance_scale={guidance_scale} (classifier-free guidance) needs null_class, "
                "the label the model was trained with for 'no class'"
            )
        for name, label in (("class_label", class_label), ("null_class", null_class)):
            if label is not None:
                _check_label(name, label, config)

        self.device = torch.device(device) if device is not None else _default_device()
        self.dtype = dtype
        self.unet = _placed(unet, self.device, dtype) if isinstance(unet, torch.nn.Module) else unet
        self.eta = eta
        self.class_label = class_label
        self.guidance_scale = guidance_scale
        self.null_class = null_class

    @property
    def stochastic(self) -> bool:
        """Whether the sampler injects noise after x_T (DDPM, or DDIM with eta > 0)."""
        return self.ddpm or self.eta > 0

    @property
    def num_steps(self) -> int:
        """The number of denoising steps (model evaluations per image, doubled under guidance)."""
        return len(self.scheduler.timesteps)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one noise: x_T, or x_T plus one slot per step for stochastic samplers."""
        return (1 + self.num_steps, *self.sample_shape) if self.stochastic else self.sample_shape

    @property
    def noise_layout(self) -> tuple[tuple[int, ...], ...]:
        """The draws the noise packs: x_T, then one per step for stochastic samplers (fed slot by slot)."""
        return (tuple(self.sample_shape),) * (1 + self.num_steps if self.stochastic else 1)

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        """Run the sampler from each noise of the batch; returns (B, C, H, W) float32 on ``self.device``."""
        return self.run(noise)

    def run(self, noise: torch.Tensor) -> torch.Tensor:
        """The sampler with autograd left as the caller set it: differentiable in the noise.

        For :func:`uqdiff.estimators.gradient_directions`; a backward pass through every step
        costs about twice the forward one and keeps the activations of all steps in memory.
        """
        noise = _checked(noise, self.noise_shape).to(device=self.device, dtype=torch.float32)
        x = (noise[:, 0] if self.stochastic else noise) * self.scheduler.init_noise_sigma
        labels = self._labels(len(x))
        for i, t in enumerate(self.scheduler.timesteps):
            out = self._model_output(x, t, labels)
            if self.ddpm:
                x = self._ddpm_step(out, t, x, noise[:, 1 + i])
            elif self.stochastic:
                x = self.scheduler.step(out, t, x, eta=self.eta, variance_noise=noise[:, 1 + i]).prev_sample
            else:
                x = self.scheduler.step(out, t, x).prev_sample
        return x

    def _labels(self, batch: int) -> torch.Tensor | None:
        """Class labels for one model call: (c, ..., c) or, guided, (c, ..., c, null, ..., null)."""
        if self.class_label is None:
            return None
        labels = torch.full((batch,), self.class_label, dtype=torch.long, device=self.device)
        if self.guided:
            labels = torch.cat([labels, torch.full_like(labels, self.null_class)])
        return labels

    def _model_output(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The (guided) model prediction at x_t, in float32."""
        x_in = self.scheduler.scale_model_input(x, t).to(self.dtype)
        if self.guided:
            x_in = torch.cat([x_in, x_in])
        out = self.unet(x_in, t) if labels is None else self.unet(x_in, t, class_labels=labels)
        out = getattr(out, "sample", out).float()
        if not self.guided:
            return out
        cond, uncond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)

    def _ddpm_step(self, out: torch.Tensor, t: torch.Tensor, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One DDPM ancestral step with explicit noise, as DDPMScheduler.step (which only takes a generator)."""
        s, cfg = self.scheduler, self.scheduler.config
        prev_t = s.previous_timestep(t)
        alpha_prod_t = s.alphas_cumprod[t]
        alpha_prod_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_prev = 1 - alpha_prod_prev
        current_alpha_t = alpha_prod_t / alpha_prod_prev
        current_beta_t = 1 - current_alpha_t

        if cfg.prediction_type == "epsilon":
            x0 = (x - beta_prod_t**0.5 * out) / alpha_prod_t**0.5
        elif cfg.prediction_type == "sample":
            x0 = out
        else:  # v_prediction; others are rejected at construction
            x0 = alpha_prod_t**0.5 * x - beta_prod_t**0.5 * out
        if cfg.thresholding:
            x0 = _dynamic_threshold(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        elif cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)

        # posterior mean, eq. (7) of Ho et al. (2020)
        mean = (alpha_prod_prev**0.5 * current_beta_t / beta_prod_t) * x0 + (
            current_alpha_t**0.5 * beta_prod_prev / beta_prod_t
        ) * x
        if t <= 0:
            return mean
        if cfg.variance_type == "fixed_large":
            variance = current_beta_t
        else:  # fixed_small, clamped as in DDPMScheduler._get_variance
            variance = torch.clamp(beta_prod_prev / beta_prod_t * current_beta_t, min=1e-20)
        return mean + variance**0.5 * noise


class PipelineGenerator(Captured):
    """A diffusers pipeline as a uqdiff generator, every Gaussian draw of the pipeline from the design.

    Each call runs ``pipeline(<batch>=B, output_type="pt", **call_kwargs)`` under capture
    (:class:`uqdiff.samplers.Captured`), where ``<batch>`` is ``num_images_per_prompt`` or
    ``batch_size``, whichever the pipeline's ``__call__`` takes (give a single prompt, not a
    list). The initial latent and the noise every stochastic scheduler injects at its steps
    (DDPM, DDIM with eta > 0, Euler and KDPM2 ancestral, DPM-Solver++ SDE, the consistency
    models' multistep sampler, DPMSolverSDE's Brownian tree) all come from the design's noise
    stream; pipelines without ``latents=`` (DDPMPipeline, DDIMPipeline) work the same way.
    A ``generator=`` in ``call_kwargs`` is allowed and has no effect on the noise.

    ``noise_shape``, if given, is checked against the per-sample shape of the pipeline's first
    draw. ``shared`` and ``allow_other_randomness`` are as for :class:`Captured`: a pipeline that
    draws class labels at random (the consistency-model pipeline without ``class_labels``), or
    DPMSolverSDEScheduler without ``noise_sampler_seed`` (a random seed for its Brownian tree, which
    does not change the noise served), is refused unless allowed. Images come back as a float32
    (B, C, H, W) tensor on the pipeline's device, in the pipeline's post-processed range, (0, 1)
    for diffusers' image processors.
    """

    value_range: tuple[float, float] = (0.0, 1.0)

    def __init__(
        self,
        pipeline: Any,
        *,
        noise_shape: tuple[int, ...] | None = None,
        shared: bool | Sequence[Sequence[int]] = False,
        allow_other_randomness: bool = False,
        **call_kwargs: Any,
    ) -> None:
        params = inspect.signature(pipeline.__call__).parameters
        self.batch_arg = next((p for p in ("num_images_per_prompt", "batch_size") if p in params), None)
        if self.batch_arg is None:
            raise TypeError(
                f"{type(pipeline).__name__}.__call__ takes neither num_images_per_prompt nor batch_size; wrap it "
                "in uqdiff.samplers.Captured(lambda n: ...) with your own batching"
            )
        reserved = sorted({"latents", self.batch_arg} & call_kwargs.keys())
        if reserved:
            raise TypeError(
                f"PipelineGenerator sets {', '.join(reserved)} itself: the batch from the noise, and the "
                "initial latent is the pipeline's first draw, made from the design; do not pass it"
            )
        if "output_type" in params:
            call_kwargs.setdefault("output_type", "pt")
        self.pipeline = pipeline
        self.call_kwargs = call_kwargs
        self.expected_shape = None if noise_shape is None else noise_shape_of(None, noise_shape)
        self.device = torch.device(getattr(pipeline, "device", "cpu"))
        super().__init__(
            self._images, shared=shared, allow_other_randomness=allow_other_randomness, name=type(pipeline).__name__
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        shape = super().noise_shape
        if self.expected_shape is not None and shape != self.expected_shape:
            raise ValueError(
                f"{self.name} draws its first noise (the initial latent) with per-sample shape {shape}, "
                f"not the noise_shape {self.expected_shape} given"
            )
        return shape

    @torch.no_grad()
    def _images(self, batch: int) -> torch.Tensor:
        """Images (B, C, H, W) of one pipeline call for ``batch`` samples."""
        out = self.pipeline(**{self.batch_arg: batch}, **self.call_kwargs)
        images = out.images if hasattr(out, "images") else out[0]
        if isinstance(images, np.ndarray):  # diffusers' numpy images are channels-last
            images = torch.from_numpy(images).permute(0, 3, 1, 2)
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"pipeline returned {type(images).__name__} images; pass output_type='pt' or 'np' to get arrays"
            )
        if len(images) != batch:
            raise ValueError(f"pipeline returned {len(images)} images for a batch of {batch}")
        return images.to(device=self.device, dtype=torch.float32)


def _supported_schedulers() -> tuple[type, type]:
    """(DDIMScheduler, DDPMScheduler), imported here so that uqdiff.samplers imports without diffusers."""
    try:
        from diffusers import DDIMScheduler, DDPMScheduler
    except ImportError as err:
        raise ImportError("DiffusersSampler needs diffusers: pip install diffusers") from err
    return DDIMScheduler, DDPMScheduler


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _placed(unet: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The unet on ``device`` in eval mode, cast only if its dtype differs.

    diffusers 0.42 warns on every ``ModelMixin.to(dtype)`` and refuses it for
    quantized models, so a model already in ``dtype`` is left alone.
    """
    unet = unet.to(device)
    if any(p.is_floating_point() and p.dtype != dtype for p in unet.parameters()):
        unet = unet.to(dtype)
    return unet.eval()


def _checked(noise: torch.Tensor, expected: tuple[int, ...]) -> torch.Tensor:
    """The noise batch, after checking it is (B, *expected): a wrong layout would silently mis-assign slots."""
    if not isinstance(noise, torch.Tensor):
        noise = torch.as_tensor(np.asarray(noise))
    if tuple(noise.shape[1:]) != tuple(expected):
        raise ValueError(f"expected noise of shape (B, {', '.join(map(str, expected))}), got {tuple(noise.shape)}")
    return noise


def _check_ddpm_config(cfg: Any) -> None:
    """Reject DDPMScheduler settings the explicit update does not reproduce."""
    if cfg.variance_type not in DDPM_VARIANCES:
        raise ValueError(
            f"DDPMScheduler variance_type {cfg.variance_type!r} is not supported; "
            f"use one of {', '.join(DDPM_VARIANCES)}"
        )
    if cfg.prediction_type not in ("epsilon", "sample", "v_prediction"):
        raise ValueError(f"DDPMScheduler prediction_type {cfg.prediction_type!r} is not supported")


def _check_label(name: str, label: int, config: Any) -> None:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {label!r}")
    n_classes = getattr(config, "num_class_embeds", None)
    has_embedding = n_classes is not None or getattr(config, "class_embed_type", None) is not None
    if hasattr(config, "num_class_embeds") and not has_embedding:  # diffusers UNets silently ignore class_labels then
        raise ValueError(f"{name}={label} given, but the unet has no class embedding, so labels would be ignored")
    if n_classes is not None and not 0 <= label < n_classes:
        raise ValueError(f"{name}={label} is out of range for a unet with {n_classes} class embeddings")


def _dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al., 2022), as DDPMScheduler._threshold_sample."""
    flat = x0.reshape(len(x0), -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value)[:, None]
    return (flat.clamp(-s, s) / s).reshape(x0.shape)
