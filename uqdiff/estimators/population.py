"""Which solver is better over a population of images: two-level intervals on common noise.

The question users of inverse solvers ask is not about one image: over the images a solver will
meet, is solver A better than solver B on PSNR, L1 or SSIM, by how much, and how sure are we?
The images are a sample from that population, and each image's expected metric is itself
estimated from the solver's noise. Two-stage sampling answers it with the package's one idea one
level up: **the population estimate is the mean of independent image means**. Image i's estimate
y_i (the mean of its groups under the noise design) has

    E[y_i] = mu_i,  Var(y_i) = sigma_b^2 + E[se_i^2]

over images, where sigma_b^2 is the spread of the true per-image means mu_i and se_i^2 the noise
variance of y_i. The images are iid, so the mean of y_i over I images has the usual interval
from the spread of the y_i, with I - 1 degrees of freedom: both levels are in that spread, and no
model of either is needed. Splitting it, sigma_b^2 = s_y^2 - mean(se_i^2) and the per-sample noise
variance v = n mean(se_i^2), gives the classical allocation: with an image costing c samples, the
variance per unit cost is smallest at n* = sqrt(c v / sigma_b^2) samples per image.

Solvers are compared on the same images with the same noise (``paired_estimate`` on each image:
the whole stream where their draws match, the common leading coordinates otherwise), so the
per-image difference d_i is precise, and the population difference is the mean of the d_i over
images with a t interval. Pairs are tested with Holm's step-down correction, and a ranking says
which orderings are resolved at the chosen level.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uqdiff.designs import NoiseDesign
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.estimators.engine import named_statistics
from uqdiff.estimators.intervals import (
    excess_kurtosis,
    holm,
    interval_p_value,
    mean_interval,
    ratio_of_means_interval,
    skewness,
    trust_warning,
)
from uqdiff.estimators.paired import paired_estimate
from uqdiff.estimators.results import ConfidenceInterval, Exportable, markdown_table
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.inverse.measurement import Measurement, measure
from uqdiff.statistics import L1, PSNR, SSIM

SolverFactory = Callable[[Measurement], Callable]
#: The trust warnings of one image's run (its own interval over noise groups), silenced here:
#: the population interval is over images, and it gets its own warning.
PER_IMAGE_WARNINGS = (r"'.*' has only \d+ groups", r"the group means of '.*' are")
DEFAULT_STATISTICS = (L1, PSNR, SSIM)


class _WithInterval(Exportable):
    """A result with a ``confidence_interval`` field: ``low`` and ``high``, exported as two columns."""

    confidence_interval: ConfidenceInterval

    @property
    def low(self) -> float:
        return self.confidence_interval.low

    @property
    def high(self) -> float:
        return self.confidence_interval.high

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        interval = out.pop("confidence_interval")  # exported as {"low": ..., "high": ...}
        out["low"], out["high"] = interval["low"], interval["high"]
        return out


@dataclass(frozen=True)
class PopulationMean(_WithInterval):
    """One solver's population mean of one metric, with the two variance components.

    ``between_variance`` is the spread of the true per-image means over images; ``within_variance``
    the noise variance of one sample under the design (n x the mean squared standard error of an
    image's estimate). ``recommended_samples_per_image`` minimizes the variance per unit cost when
    an image costs ``image_cost`` samples (inf when the images agree: more samples, not more
    images, help).
    """

    solver: str
    statistic: str
    estimate: float
    confidence_interval: ConfidenceInterval
    standard_error: float
    n_images: int
    samples_per_image: int
    between_variance: float
    within_variance: float
    recommended_samples_per_image: float


@dataclass(frozen=True)
class SolverDifference(_WithInterval):
    """The population mean of one metric for ``first`` minus ``second``, on common noise.

    ``p_value`` is the two-sided t test of no difference over images, ``p_holm`` that p-value after
    Holm's correction over every pair of this metric; ``resolved`` when ``p_holm`` is below
    1 - confidence level. ``efficiency`` is the variance of the same difference from independent
    plain MC per solver (same images, same samples) over this run's, both including the images'
    own spread; ``noise_efficiency`` is the same ratio for the noise part alone (per image), with
    ``noise_efficiency_low`` / ``_high`` its interval over the images (a ratio of means, delta method
    on the log scale, at the result's level).
    """

    first: str
    second: str
    statistic: str
    estimate: float
    confidence_interval: ConfidenceInterval
    p_value: float
    p_holm: float
    resolved: bool
    efficiency: float
    noise_efficiency: float
    noise_efficiency_low: float = math.nan
    noise_efficiency_high: float = math.nan


@dataclass(frozen=True)
class SolverComparison(Exportable):
    """Population means, differences and rankings of several solvers over the same images.

    ``means[statistic][solver]``, ``differences[statistic]["A - B"]``, ``ranking[statistic]`` (a
    line such as ``"DDS > DPS ~ RED"``: ``>`` resolved at the level, ``~`` not), ``per_image``
    (one row per image, solver and statistic: estimate and standard error), ``common_noise``
    (what the solvers shared on each image).
    """

    task: str
    design: str
    samples_per_image: int
    n_images: int
    confidence_level: float
    means: dict[str, dict[str, PopulationMean]]
    differences: dict[str, dict[str, SolverDifference]]
    ranking: dict[str, str]
    per_image: list[dict[str, Any]]
    common_noise: str
    seed: Any
    looks: list[int] = dataclasses.field(default_factory=list)

    def conclusion(self) -> str:
        """One sentence per metric: the ranking, what is resolved, and the best solver's interval."""
        level = f"{self.confidence_level:.0%}"
        lines = []
        for stat, order in self.ranking.items():
            best = order.split(" ")[0]
            m = self.means[stat][best]
            lines.append(
                f"{stat}: {order} over {self.n_images} images ({level} Holm-adjusted); {best} "
                f"{m.estimate:.4g} ({m.low:.4g} .. {m.high:.4g})."
            )
        return " ".join(lines)

    def _rows(self) -> list[dict[str, Any]]:
        rows = [{"kind": "mean", **m.to_dict()} for per in self.means.values() for m in per.values()]
        rows += [{"kind": "difference", **d.to_dict()} for per in self.differences.values() for d in per.values()]
        return rows

    def to_markdown(self) -> str:
        means = [m.to_dict() for per in self.means.values() for m in per.values()]
        diffs = [d.to_dict() for per in self.differences.values() for d in per.values()]
        import pandas as pd

        return (
            f"{self.conclusion()}\n\n## Population means\n\n{markdown_table(pd.DataFrame(means))}\n\n"
            f"## Differences (common noise: {self.common_noise})\n\n{markdown_table(pd.DataFrame(diffs))}\n"
        )

    def __str__(self) -> str:
        return self.to_markdown()


@takes_run_settings
def evaluate_solvers(
    solvers: Mapping[str, SolverFactory],
    images: Sequence[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
    task: str,
    *,
    budget: int = 16,
    design: NoiseDesign | str = "mc",
    statistics: Sequence[Callable] = DEFAULT_STATISTICS,
    sigma_y: float = 0.05,
    operator_params: dict[str, Any] | None = None,
    image_cost: float = 1.0,
    initial_images: int | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    run: RunSettings | None = None,
) -> SolverComparison:
    """Compare inverse solvers over a population of images: two-level intervals, common noise, Holm.

    Parameters
    ----------
    solvers : mapping of name to factory
        At least two; each factory takes a :class:`~uqdiff.inverse.Measurement` and returns a
        sampler (any uqdiff generator, a ``Captured`` third-party loop, ...). On each image every
        solver is driven by the same noise.
    images : sequence of (C, H, W) tensors or arrays, or a (N, C, H, W) batch
        Ground truths on the [-1, 1] scale, a sample of the population the comparison is about;
        at least 2 (a two-level interval needs the images' own spread); 10 or more for a useful one.
    task : str
        The measurement operator (``"box_inpainting"``, ``"super_resolution"``, ...).
    budget : int
        Posterior samples per image and solver (noises of the design).
    design : NoiseDesign or str
        The design of the common noise on each image.
    statistics : sequence of callables
        Each takes a ground truth and returns its reconstruction statistic (``L1``, ``PSNR``,
        ``SSIM``: the default). A statistic's ``higher_is_better`` (default True) orders the ranking.
    sigma_y, operator_params
        Measurement noise and the operator's parameters.
    image_cost : float
        The cost of one more image (its measurement, its data) in units of one posterior sample,
        for the recommended samples per image.
    initial_images : int, optional
        Stop early: start with this many of the images, double while some pair of solvers is not
        resolved, up to all of them. Each of the L planned looks tests and reports at level
        1 - (1 - confidence_level) / L (Bonferroni over looks), so the intervals and the ranking
        keep ``confidence_level`` whichever look the run stops at; ``confidence_level`` of the
        result says the level used and ``looks`` the image counts seen.
    seed, confidence_level
        As for :func:`uqdiff.estimate`. Image i's measurement uses ``[*seed, i]`` (as
        :func:`evaluate_solver`) and its noise ``[*seed, i, 1]``.
    run : RunSettings, optional
        As for :func:`uqdiff.estimate`; a checkpoint becomes one file per image.

    Returns
    -------
    SolverComparison
        Population means with variance components and allocation advice, pairwise differences
        with Holm-adjusted tests and efficiencies, rankings, per-image rows.

    Raises
    ------
    ValueError, TypeError
        Before any model call: fewer than two solvers or images, images off the [-1, 1] scale,
        statistics given as names, a non-positive image cost.

    Examples
    --------
    Two stand-in solvers (any DPS, DDS or captured loop fits the same slot): the second is
    noisier around the same reconstruction, so its L1 is worse.

    >>> from uqdiff.samplers import LinearGenerator
    >>> truths = torch.linspace(-0.5, 0.5, 8).reshape(8, 1, 1, 1).expand(8, 1, 4, 4).contiguous()
    >>> def solver(scale):
    ...     return lambda m: LinearGenerator(m.naive[0].numpy(), scale * np.ones((16, 2)))
    >>> c = evaluate_solvers({"A": solver(0.05), "B": solver(0.2)}, truths, "box_inpainting",
    ...                      budget=8, statistics=[L1], seed=0)
    >>> c.ranking["l1"], c.differences["l1"]["A - B"].resolved
    ('A > B', True)
    """
    names = list(solvers)
    if len(names) < 2:
        raise ValueError(f"give at least two solvers to compare, got {names}; for one solver use evaluate_solver")
    if isinstance(statistics, (str, bytes)) or not statistics or any(isinstance(f, str) for f in statistics):
        raise TypeError(
            "statistics must be callables that take the ground truth and return a statistic "
            f"(e.g. uqdiff.statistics.L1, PSNR, SSIM), got {statistics!r}"
        )
    truths = [
        torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
        for x in images
    ]
    if len(truths) < 2:
        raise ValueError(
            f"a population interval needs at least 2 images (their spread is half of it), got {len(truths)}; "
            "10 or more give a useful one"
        )
    lo, hi = min(float(t.min()) for t in truths), max(float(t.max()) for t in truths)
    if lo < -1 - 1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"ground truths must be on the [-1, 1] scale of the priors, got values in [{lo:.4g}, {hi:.4g}]; "
            "map 8-bit images with x / 127.5 - 1"
        )
    if not (isinstance(image_cost, (int, float)) and math.isfinite(image_cost) and image_cost > 0):
        raise ValueError(f"image_cost must be a positive number of sample-equivalents, got {image_cost!r}")
    seed = entropy(seed)
    settings = RunSettings.of(run)
    looks = _looks(len(truths), initial_images)
    # Bonferroni over the planned looks: each look is tested and reported at level 1 - alpha / L,
    # so whichever look the run stops at, its intervals and tests keep 1 - alpha (union bound).
    level = 1 - (1 - confidence_level) / len(looks)
    directions: dict[str, bool] = {}
    per_image, arms, contrasts = [], [], []
    common, design_name = "", ""
    for n_images in looks:
        for i in range(len(arms), n_images):
            truth = truths[i]
            m = measure(truth, task, sigma_y=sigma_y, seed=substream(seed, i), **(operator_params or {}))
            stats = named_statistics([f(m.truth) for f in statistics])
            directions = {name: bool(getattr(s, "higher_is_better", True)) for name, s in stats.items()}
            with warnings.catch_warnings():  # one image's interval is not this result's: nor its warnings
                for text in PER_IMAGE_WARNINGS:
                    warnings.filterwarnings("ignore", message=text, category=UserWarning)
                paired = paired_estimate(
                    {name: solvers[name](m) for name in names},
                    stats,
                    budget=budget,
                    design=design,
                    seed=substream(seed, i, 1),
                    confidence_level=confidence_level,
                    run=settings.for_part(f"image {i}"),
                )
            common, design_name = paired.common_noise, paired.design
            arms.append(paired.arms)
            contrasts.append(paired.contrasts)
            for stat, per in paired.arms.items():
                for solver, r in per.items():
                    per_image.append(
                        {
                            "image": i,
                            "solver": solver,
                            "statistic": stat,
                            "estimate": float(r.estimate),
                            "standard_error": float(r.standard_error),
                        }
                    )
        differences = {stat: _differences(stat, names, contrasts, level) for stat in directions}
        if all(d.resolved for per in differences.values() for d in per.values()):
            break  # every pair resolved: more images would not change the ranking's resolution
    with warnings.catch_warnings():
        if len(arms) < looks[-1]:  # stopped early: the few-images warning is about a run that was enough
            warnings.simplefilter("ignore", UserWarning)
        means = {
            stat: {s: _population_mean(s, stat, [a[stat][s] for a in arms], budget, image_cost, level) for s in names}
            for stat in directions
        }
    ranking = {stat: _ranking(means[stat], differences[stat], directions[stat]) for stat in directions}
    return SolverComparison(
        task=task,
        design=design_name,
        samples_per_image=budget,
        n_images=len(arms),
        confidence_level=level,
        means=means,
        differences=differences,
        ranking=ranking,
        per_image=per_image,
        common_noise=common,
        seed=seed,
        looks=[n for n in looks if n <= len(arms)],
    )


def _looks(n_images: int, initial: int | None) -> list[int]:
    """Image counts at which a sequential run looks: initial, doubling, up to every image given."""
    if initial is None:
        return [n_images]
    if isinstance(initial, bool) or not isinstance(initial, int) or not 2 <= initial <= n_images:
        raise ValueError(f"initial_images must be an int from 2 to the {n_images} images given, got {initial!r}")
    looks = [initial]
    while looks[-1] < n_images:
        looks.append(min(2 * looks[-1], n_images))
    return looks


def from_inference(make_algorithm: Callable[[Measurement], Any], *, max_batch: int | None = None) -> SolverFactory:
    """A solver factory for algorithms with the common ``inference(observation, num_samples)`` interface.

    InverseBench (Zheng et al. 2025) runs its solvers behind ``algo.inference(observation,
    num_samples)``; ``make_algorithm(measurement)`` builds one for a measurement, and each call is
    run under :class:`~uqdiff.samplers.Captured`, so every Gaussian draw the algorithm makes is the
    design's. Give ``max_batch=1`` for algorithms that only sample one at a time.

    >>> class Toy:  # an algorithm as such libraries write them: its noise drawn inside
    ...     def __init__(self, spread):
    ...         self.spread = spread
    ...     def inference(self, observation, num_samples=1):
    ...         return observation + self.spread * torch.randn(num_samples, *observation.shape[1:])
    >>> solvers = {"sharp": from_inference(lambda m: Toy(0.1)), "blurry": from_inference(lambda m: Toy(0.4))}
    >>> c = evaluate_solvers(solvers, torch.zeros(4, 1, 4, 4), "box_inpainting", budget=8, statistics=[L1])
    >>> c.ranking["l1"], c.common_noise
    ('sharp > blurry', 'the whole noise stream, slot by slot')
    """
    from uqdiff.samplers.capture import Captured

    def factory(measurement: Measurement):
        algorithm = make_algorithm(measurement)
        return Captured(
            lambda n: algorithm.inference(measurement.y, num_samples=n),
            max_batch=max_batch,
            name=type(algorithm).__name__,
        )

    return factory


def _population_mean(solver, stat, results, budget, image_cost, level) -> PopulationMean:
    """The mean of the image estimates with its interval over images, and the two variance components."""
    y = np.array([float(r.estimate) for r in results])
    se2 = np.array([float(r.standard_error) ** 2 for r in results])
    n = len(y)
    dev = y - y.mean()
    low, high, se = mean_interval(n, y.mean(), (dev**2).sum(), (dev**3).sum(), confidence_level=level)
    message = trust_warning(
        f"{solver} {stat} over images",
        n,
        skewness(n, (dev**2).sum(), (dev**3).sum()),
        "skew-t",
        bool(np.any(dev != 0)),
        excess_kurtosis(n, (dev**2).sum(), (dev**4).sum()) if n >= 4 else None,
    )
    if message:
        warnings.warn(
            message.replace(" (for RQMC: more replicates of fewer points)", "").replace("groups", "images"),
            stacklevel=3,
        )
    within_image = float(se2.mean())  # the noise variance of one image's estimate
    between = max(float(np.var(y, ddof=1)) - within_image, 0.0)
    per_sample = budget * within_image
    best = math.sqrt(image_cost * per_sample / between) if between > 0 else math.inf
    return PopulationMean(
        solver=solver,
        statistic=stat,
        estimate=float(y.mean()),
        confidence_interval=ConfidenceInterval(float(low), float(high)),
        standard_error=float(se),
        n_images=n,
        samples_per_image=budget,
        between_variance=between,
        within_variance=per_sample,
        recommended_samples_per_image=best,
    )


def _differences(stat, names, contrasts, level) -> dict[str, SolverDifference]:
    """Every pair's population difference (t over images), Holm-adjusted, with its efficiency."""
    raw = {}
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            per = [c[stat][f"{a} - {b}"] for c in contrasts]
            d = np.array([float(c.result.estimate) for c in per])
            se2 = np.array([float(c.result.standard_error) ** 2 for c in per])
            independent = np.array([float(c.independent_mc_variance) for c in per])
            n, dev = len(d), d - d.mean()
            s2 = float(np.var(d, ddof=1))
            low, high, se = mean_interval(
                n, d.mean(), (dev**2).sum(), (dev**3).sum(), confidence_level=level, interval_method="t"
            )
            p = float(interval_p_value(d.mean(), se, 0.0, n, n - 1, 0.0, "t"))  # inverts the same t interval
            between = max(s2 - float(se2.mean()), 0.0)
            eff = (between + independent.mean()) / (between + se2.mean()) if between + se2.mean() > 0 else math.nan
            noise_eff = ratio_of_means_interval(independent, se2, level)
            raw[f"{a} - {b}"] = (a, b, float(d.mean()), (low, high), p, eff, noise_eff)
    adjusted = dict(zip(raw, holm(np.array([v[4] for v in raw.values()]))))
    return {
        name: SolverDifference(
            first=a,
            second=b,
            statistic=stat,
            estimate=est,
            confidence_interval=ConfidenceInterval(float(ci[0]), float(ci[1])),
            p_value=p,
            p_holm=float(adjusted[name]),
            resolved=bool(adjusted[name] < 1 - level),
            efficiency=float(eff),
            noise_efficiency=float(noise_eff[0]),
            noise_efficiency_low=float(noise_eff[1]),
            noise_efficiency_high=float(noise_eff[2]),
        )
        for name, (a, b, est, ci, p, eff, noise_eff) in raw.items()
    }


def _ranking(means: Mapping[str, PopulationMean], diffs: Mapping[str, SolverDifference], higher: bool) -> str:
    """Solvers from best to worst; '>' where the step to the next is resolved, '~' where it is not."""
    order = sorted(means, key=lambda s: means[s].estimate, reverse=higher)
    parts = [order[0]]
    for a, b in zip(order, order[1:]):
        d = diffs.get(f"{a} - {b}") or diffs.get(f"{b} - {a}")
        parts += [">" if d.resolved else "~", b]
    return " ".join(parts)
