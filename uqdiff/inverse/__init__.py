"""Inverse problems: measurement operators, measurements, diffusion priors and solver evaluation.

The solvers themselves (DPS, DDS) live in :mod:`uqdiff.samplers.posterior`;
they are ordinary uqdiff generators, so every noise design applies to them.
"""

from uqdiff.inverse.measurement import Measurement, measure
from uqdiff.inverse.operators import (
    OPERATORS,
    BoxInpainting,
    GaussianBlur,
    Inpainting,
    MeasurementOperator,
    MotionBlur,
    RandomInpainting,
    SuperResolution,
    get_operator,
)
from uqdiff.inverse.priors import DiffusionPrior, UNetPrior, VEDenoiserPrior

__all__ = [
    "OPERATORS",
    "BoxInpainting",
    "DiffusionPrior",
    "GaussianBlur",
    "Inpainting",
    "Measurement",
    "MeasurementOperator",
    "MotionBlur",
    "RandomInpainting",
    "SuperResolution",
    "UNetPrior",
    "VEDenoiserPrior",
    "get_operator",
    "measure",
]
