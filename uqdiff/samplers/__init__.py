"""Samplers: noise -> image. The generator protocol, oracle generators with known answers,
diffusers adapters, the DPS/DDS posterior samplers, the RSD particle solver, wrappers that change
a generator, and :class:`Captured`, which runs a sampler someone else wrote with every Gaussian draw taken from
the design (checked by the repeat check, :func:`check_repeatable`).

A sampler is any callable from a noise batch (B, *noise_shape) to outputs (B, ...),
:class:`SamplerLike`; see :mod:`uqdiff.samplers.base`. diffusers is imported only when a diffusers adapter is built,
so the pure-torch parts (oracles, DPS, DDS, wrappers) import without it.
"""

from uqdiff.samplers.base import (
    NumpyGenerator,
    Recording,
    Sampler,
    SamplerLike,
    TensorSampler,
    as_sampler,
    device_of,
    noise_shape_of,
)
from uqdiff.samplers.capture import Captured, CapturedCallError, CaptureError, Draw
from uqdiff.samplers.diffusers_adapters import DiffusersSampler, PipelineGenerator
from uqdiff.samplers.oracles import ClippedGaussianDDIM, GaussianDDIM, LinearGenerator, landscape_oracle
from uqdiff.samplers.posterior import DDS, DPS, PosteriorSampler, ddim_step, implied_eps
from uqdiff.samplers.repeat import RepeatCheckError, RepeatReport, check_repeatable
from uqdiff.samplers.repulsive import RSD, rbf_bandwidth, repulsion_gradient
from uqdiff.samplers.wrappers import CommonNoise, SkipGradient, Variations, blend

__all__ = [
    "Captured",
    "CaptureError",
    "CapturedCallError",
    "DDS",
    "DPS",
    "ClippedGaussianDDIM",
    "CommonNoise",
    "DiffusersSampler",
    "Draw",
    "GaussianDDIM",
    "LinearGenerator",
    "NumpyGenerator",
    "PipelineGenerator",
    "PosteriorSampler",
    "Recording",
    "Sampler",
    "SamplerLike",
    "TensorSampler",
    "as_sampler",
    "RSD",
    "RepeatCheckError",
    "RepeatReport",
    "SkipGradient",
    "Variations",
    "blend",
    "check_repeatable",
    "ddim_step",
    "device_of",
    "implied_eps",
    "landscape_oracle",
    "noise_shape_of",
    "rbf_bandwidth",
    "repulsion_gradient",
]
