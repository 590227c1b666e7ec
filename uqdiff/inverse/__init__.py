"""Inverse problems, what a solver needs: measurement operators, measurements and diffusion priors.

The solvers (DPS, DDS) are samplers (:mod:`uqdiff.samplers.posterior`), ordinary uqdiff
generators, so every noise design applies to them; their evaluation over ground-truth
images is :func:`uqdiff.evaluate_solver`.
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
