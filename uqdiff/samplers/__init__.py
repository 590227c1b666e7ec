"""Samplers: noise -> image. The generator protocol, oracle generators with known answers,
diffusers adapters, the DPS/DDS posterior samplers and wrappers that change a generator.

A generator is any callable from a noise batch (B, *noise_shape) to images (B, ...);
see :mod:`uqdiff.samplers.base`. diffusers is imported only when a diffusers adapter is built,
so the pure-torch parts (oracles, DPS, DDS, wrappers) import without it.
"""

from uqdiff.samplers.base import NumpyGenerator, Recording, device_of, noise_shape_of
from uqdiff.samplers.diffusers_adapters import DiffusersSampler, PipelineGenerator
from uqdiff.samplers.oracles import ClippedGaussianDDIM, GaussianDDIM, LinearGenerator, landscape_oracle
from uqdiff.samplers.posterior import DDS, DPS, PosteriorSampler, ddim_step, implied_eps
from uqdiff.samplers.wrappers import CommonNoise, SkipGradient, Variations, blend

__all__ = [
    "DDS",
    "DPS",
    "ClippedGaussianDDIM",
    "CommonNoise",
    "DiffusersSampler",
    "GaussianDDIM",
    "LinearGenerator",
    "NumpyGenerator",
    "PipelineGenerator",
    "PosteriorSampler",
    "Recording",
    "SkipGradient",
    "Variations",
    "blend",
    "ddim_step",
    "device_of",
    "implied_eps",
    "landscape_oracle",
    "noise_shape_of",
]
