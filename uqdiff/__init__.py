"""uqdiff: uncertainty quantification of diffusion-model outputs with designed noise.

Estimate E[S(G(z))], z ~ N(0, I), with an honest confidence interval, using
noise designs (antithetic pairs, K-antithetic groups, couplings, scrambled
Sobol' RQMC) in which every single noise stays exactly N(0, I).
"""

from uqdiff.checkpoint import CheckpointError
from uqdiff.designs import (
    IID,
    Antithetic,
    Equicorrelated,
    GaussianCoupling,
    KAntithetic,
    NoiseDesign,
    SobolRQMC,
    SubspaceCoupling,
    get_design,
)
from uqdiff.distributed import RayExecutor
from uqdiff.estimate import GeneratorError, compare, estimate
from uqdiff.gallery import compare_galleries, estimate_gallery
from uqdiff.results import ComparisonResult, ConfidenceInterval, EstimateResult, StatisticResult
from uqdiff.paired import paired_estimate
from uqdiff.simultaneous import simultaneous_bands

__version__ = "0.1.0"

__all__ = [
    "IID",
    "Antithetic",
    "CheckpointError",
    "ComparisonResult",
    "ConfidenceInterval",
    "Equicorrelated",
    "EstimateResult",
    "GaussianCoupling",
    "GeneratorError",
    "KAntithetic",
    "NoiseDesign",
    "RayExecutor",
    "SobolRQMC",
    "StatisticResult",
    "SubspaceCoupling",
    "compare",
    "compare_galleries",
    "estimate",
    "estimate_gallery",
    "get_design",
    "paired_estimate",
    "simultaneous_bands",
]
