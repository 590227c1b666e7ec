"""Generators: noise-to-image callables, and oracle generators with known answers."""

from uqdiff.generators.base import NumpyGenerator, Recording, device_of, noise_shape_of
from uqdiff.generators.oracles import ClippedGaussianDDIM, GaussianDDIM, LinearGenerator, landscape_oracle

__all__ = [
    "ClippedGaussianDDIM",
    "GaussianDDIM",
    "LinearGenerator",
    "NumpyGenerator",
    "Recording",
    "device_of",
    "landscape_oracle",
    "noise_shape_of",
]
