"""Generators: noise-to-image callables, and oracle generators with known answers."""

from uqdiff.generators.base import NumpyGenerator, device_of, noise_shape_of
from uqdiff.generators.oracles import GaussianDDIM, LinearGenerator

__all__ = ["GaussianDDIM", "LinearGenerator", "NumpyGenerator", "device_of", "noise_shape_of"]
