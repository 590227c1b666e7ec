"""uqdiff: uncertainty quantification of diffusion-model outputs with designed noise.

Estimate E[S(G(z))], z ~ N(0, I), with an honest confidence interval, using
noise designs (antithetic pairs, K-antithetic groups, couplings, scrambled
Sobol' RQMC) in which every single noise stays exactly N(0, I).

Every task function and its result type is exported here; the layers are the
subpackages, each importing only those below it:

``designs`` -> ``statistics`` -> ``inverse`` -> ``samplers`` -> ``models`` | ``estimators`` -> ``cli``.
"""

from uqdiff._util import package_version
from uqdiff.designs import (
    IID,
    Antithetic,
    Equicorrelated,
    GaussianCoupling,
    KAntithetic,
    NoiseDesign,
    SeedLike,
    SobolRQMC,
    SubspaceCoupling,
    get_design,
    load_coupling,
    save_coupling,
)
from uqdiff.estimators import (
    AuditResult,
    Checkpoint,
    CheckpointError,
    ComparisonResult,
    ConfidenceInterval,
    ContrastResult,
    EstimateResult,
    FixedObjectMetrics,
    FixedObjectResult,
    GalleryComparison,
    GalleryDifference,
    GeneratorError,
    LearnedCoupling,
    MapBands,
    PairedResult,
    RayExecutor,
    SolverEvaluation,
    StatisticResult,
    StoppingRule,
    TargetPrecision,
    VariationResult,
    VariationSummary,
    audit,
    compare,
    compare_galleries,
    estimate,
    estimate_gallery,
    estimate_variations,
    evaluate_solver,
    fixed_object_gallery,
    group_means,
    learn_coupling,
    paired_estimate,
    simultaneous_bands,
)
from uqdiff.samplers import RepeatCheckError, RepeatReport, check_repeatable

__version__ = package_version()

__all__ = [
    "IID",
    "Antithetic",
    "AuditResult",
    "Checkpoint",
    "CheckpointError",
    "ComparisonResult",
    "ConfidenceInterval",
    "ContrastResult",
    "Equicorrelated",
    "EstimateResult",
    "FixedObjectMetrics",
    "FixedObjectResult",
    "GalleryComparison",
    "GalleryDifference",
    "GaussianCoupling",
    "GeneratorError",
    "KAntithetic",
    "LearnedCoupling",
    "MapBands",
    "NoiseDesign",
    "PairedResult",
    "RayExecutor",
    "RepeatCheckError",
    "RepeatReport",
    "SeedLike",
    "SobolRQMC",
    "SolverEvaluation",
    "StatisticResult",
    "StoppingRule",
    "SubspaceCoupling",
    "TargetPrecision",
    "VariationResult",
    "VariationSummary",
    "audit",
    "check_repeatable",
    "compare",
    "compare_galleries",
    "estimate",
    "estimate_gallery",
    "estimate_variations",
    "evaluate_solver",
    "fixed_object_gallery",
    "get_design",
    "group_means",
    "learn_coupling",
    "load_coupling",
    "paired_estimate",
    "save_coupling",
    "simultaneous_bands",
]
