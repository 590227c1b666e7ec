"""Estimators: group means -> estimates and intervals.

**The estimate is the mean of independent group means.** A group is one sample
(MC), a pair (antithetic), k coupled noises (K-antithetic, any coupling), one
scrambled Sobol' replicate (RQMC) or one gallery; every task below is that one
estimator run on a suitable generator and statistic:

- :func:`estimate` / :func:`compare`: one design, or several side by side against plain MC;
  ``estimate(..., control_variates=ControlVariates())`` adds noise control variates and
  ``estimate(..., design="auto")`` lets a pilot choose (:class:`AutoDesign`);
- :func:`estimate_two_fidelity`: a few-step sampler as control variate for the full one;
- :func:`paired_estimate` and :func:`audit`: contrasts of several generators under common noise;
- :func:`estimate_gallery` / :func:`compare_galleries`: statistics of whole galleries;
- :func:`estimate_variations`: how far a statistic moves around one chosen noise;
- :func:`simultaneous_bands`: pixel maps with simultaneous bands;
- :func:`evaluate_solver`: an inverse-problem solver over ground-truth images;
- :func:`learn_coupling` and :func:`fixed_object_gallery`: couplings fitted to a gallery objective.
"""

from uqdiff.estimators.accumulator import GroupAccumulator, Moments
from uqdiff.estimators.audit import AuditResult, audit, difference_interval, proportion_interval
from uqdiff.estimators.auto import AutoDesign
from uqdiff.estimators.betting import betting_interval
from uqdiff.estimators.checkpoint import Checkpoint, CheckpointError
from uqdiff.estimators.control_variates import ControlVariates
from uqdiff.estimators.directions import gradient_directions
from uqdiff.estimators.distributed import RayExecutor
from uqdiff.estimators.engine import CallbackError, Engine, FixedBudget, GeneratorError, Strategy
from uqdiff.estimators.estimate import compare, estimate
from uqdiff.estimators.fixed_object import FixedObjectMetrics, FixedObjectResult, fixed_object_gallery
from uqdiff.estimators.gallery import GalleryComparison, GalleryDifference, compare_galleries, estimate_gallery
from uqdiff.estimators.learned import LearnedCoupling, learn_coupling
from uqdiff.estimators.multifidelity import TwoFidelityResult, estimate_two_fidelity
from uqdiff.estimators.paired import ContrastResult, PairedResult, paired_estimate
from uqdiff.estimators.population import (
    PopulationMean,
    SolverComparison,
    SolverDifference,
    evaluate_solvers,
    from_inference,
)
from uqdiff.estimators.results import ComparisonResult, ConfidenceInterval, EstimateResult, StatisticResult, p_value
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.simultaneous import MapBands, group_means, simultaneous_bands
from uqdiff.estimators.solvers import SolverEvaluation, evaluate_solver
from uqdiff.estimators.stopping import RQMCDoubling, StoppingRule, TargetPrecision
from uqdiff.estimators.variations import VariationResult, VariationSummary, estimate_variations

__all__ = [
    "AuditResult",
    "AutoDesign",
    "Checkpoint",
    "CheckpointError",
    "ComparisonResult",
    "ConfidenceInterval",
    "ContrastResult",
    "ControlVariates",
    "Engine",
    "EstimateResult",
    "FixedBudget",
    "FixedObjectMetrics",
    "FixedObjectResult",
    "GalleryComparison",
    "GalleryDifference",
    "CallbackError",
    "GeneratorError",
    "GroupAccumulator",
    "LearnedCoupling",
    "MapBands",
    "Moments",
    "PairedResult",
    "PopulationMean",
    "SolverComparison",
    "SolverDifference",
    "RQMCDoubling",
    "RayExecutor",
    "RunSettings",
    "SolverEvaluation",
    "StatisticResult",
    "StoppingRule",
    "Strategy",
    "TargetPrecision",
    "TwoFidelityResult",
    "VariationResult",
    "VariationSummary",
    "audit",
    "compare",
    "compare_galleries",
    "difference_interval",
    "estimate",
    "estimate_gallery",
    "estimate_two_fidelity",
    "estimate_variations",
    "evaluate_solver",
    "fixed_object_gallery",
    "gradient_directions",
    "betting_interval",
    "evaluate_solvers",
    "from_inference",
    "group_means",
    "learn_coupling",
    "p_value",
    "paired_estimate",
    "proportion_interval",
    "simultaneous_bands",
]
