"""The public front: :func:`estimate` and :func:`compare`.

The estimate is the mean of iid group means. :func:`estimate` picks the strategy that sizes
the run (a fixed budget, a stopping rule, noise control variates, the automatic choice) and
hands it to the one :class:`~uqdiff.estimators.engine.Engine` that draws the groups; how the run
executes (batching, device, checkpoint, Ray, progress) is one :class:`RunSettings`.
:func:`run_designs` is the one loop over designs that :func:`compare`, the command line,
galleries and solver evaluation share.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from uqdiff.designs import IID, NoiseDesign, as_design
from uqdiff.designs.features import NoiseFeatures
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.estimators.auto import AutoChoice, AutoDesign, is_auto
from uqdiff.estimators.control_variates import ControlledBudget, ControlVariates, as_control
from uqdiff.estimators.engine import Engine, FixedBudget, StatisticsLike, Strategy
from uqdiff.estimators.results import ComparisonResult, EstimateResult
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.estimators.stopping import StoppingRule

R = TypeVar("R")


@takes_run_settings
def estimate(
    sampler: Callable,
    statistics: StatisticsLike,
    *,
    budget: int | None = None,
    stopping: StoppingRule | None = None,
    design: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    control_variates: ControlVariates | NoiseFeatures | None = None,
    run: RunSettings | None = None,
) -> EstimateResult:
    """Estimate E[S(G(z))], z ~ N(0, I), with a confidence interval, for each statistic S.

    The estimate is the mean of iid group means; the interval comes from their spread.

    Parameters
    ----------
    sampler : callable
        Noise batch (B, *noise_shape) -> outputs (B, ...), a torch tensor or numpy array: a plain
        function, a :class:`~uqdiff.samplers.Captured` third-party loop, a pipeline adapter, any
        :class:`~uqdiff.samplers.base.SamplerLike`.
    statistics : callable, list of callables or dict of name to callable
        Outputs (B, ...) -> values (B,) or maps (B, ...).
    budget : int, optional
        Noises drawn from the design (= sampler evaluations for a plain sampler); a multiple of
        the design's group size giving at least 2 groups. Give this or ``stopping``.
    stopping : StoppingRule, optional
        A rule that sizes the run, e.g. ``TargetPrecision(halfwidth=0.01, max_budget=10_000)``.
    design : NoiseDesign or str
        How the noises of a group are drawn (``"mc"``, ``"antithetic"``, ``KAntithetic(8)``, ...), or
        ``"auto"`` (or ``AutoDesign(...)``): a pilot of 10 % of the budget compares MC, pairs, other
        designs and noise control variates per statistic and a fresh main stage runs the best
        (``config["auto"]`` holds the evidence; the budget counts the pilot).
    noise_shape : tuple of int, optional
        Shape of one noise; default the sampler's ``noise_shape`` attribute.
    seed : int or sequence of int
        Group g's noise is a pure function of (seed, g): batching, sharding and resuming never change a result.
    confidence_level : float
        Two-sided level of the intervals.
    interval_method : {"skew-t", "t", "normal"}
        ``"skew-t"`` (default): Student-t on (groups - 1) degrees of freedom with Hall's correction
        for the skewness of the group means; ``"t"``: plain Student-t; ``"normal"``: the normal
        quantile (the paper's choice for MC and AMC).
    control_variates : ControlVariates or NoiseFeatures, optional
        Noise control variates: a pilot (``pilot_share`` of the budget, not reused) fits S on
        features of the noise with known mean zero (``DCTFeatures``), and the main groups
        estimate E[S - beta . f(z)] = E[S]. The pilot's noises count in the budget; the
        result's ``implied_efficiency`` is against plain MC on S itself. Needs ``budget``.
    run : RunSettings, optional
        How the run executes (batch size, device, dtype, progress, checkpoint, executor,
        callback); none of them changes the estimate. Default ``RunSettings()``.

    Returns
    -------
    EstimateResult
        One :class:`StatisticResult` per statistic, the budget and the sampler calls made.
        With control variates, ``config["control_variates"]`` holds the fitted coefficients
        and each statistic's predicted gain.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work, before any model call.
    GeneratorError
        When the sampler fails; the message names the groups and the seed.

    Examples
    --------
    >>> import numpy as np
    >>> from uqdiff.samplers import LinearGenerator
    >>> g = LinearGenerator(np.array([0.5]), np.array([[0.1, 0.2]]))
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=1)
    >>> r["statistic"].estimate, r["statistic"].width   # a linear statistic cancels exactly in pairs
    (0.5, 0.0)
    >>> from uqdiff.estimators.stopping import TargetPrecision
    >>> r = estimate(g, lambda x: x[:, 0] ** 2, stopping=TargetPrecision(halfwidth=0.01, max_budget=10_000), seed=1)
    >>> r.config["stopping"]["target_met"], r["statistic"].width <= 0.02
    ({'statistic': True}, True)
    >>> from uqdiff.designs.features import DCTFeatures
    >>> g = LinearGenerator(np.zeros(64))  # the images are the noise
    >>> r = estimate(g, lambda x: x.mean(dim=1) ** 2, budget=400, control_variates=DCTFeatures(2), seed=0)
    >>> round(r["statistic"].estimate, 4), r["statistic"].implied_efficiency > 100  # truth: E[mean^2] = 1/64
    (0.0156, True)
    """
    settings = RunSettings.of(run)
    strategy = choose_strategy(budget=budget, stopping=stopping, design=design, control_variates=control_variates)
    return Engine(
        sampler,
        statistics,
        design=IID() if is_auto(design) else design,
        seed=seed,
        noise_shape=noise_shape,
        settings=settings,
        confidence_level=confidence_level,
        interval_method=interval_method,
        strategy=strategy,
    ).run()


def choose_strategy(
    *,
    budget: int | None,
    stopping: StoppingRule | None,
    design: NoiseDesign | str | AutoDesign,
    control_variates: ControlVariates | NoiseFeatures | None,
) -> Strategy:
    """The strategy :func:`estimate`'s arguments ask for; refuses combinations that do not go together."""
    if (budget is None) == (stopping is None):
        raise TypeError("give either budget=... (noises) or stopping=TargetPrecision(...), not both and not neither")
    if stopping is not None and not isinstance(stopping, StoppingRule):
        raise TypeError(f"stopping must be a StoppingRule such as TargetPrecision(...), got {type(stopping).__name__}")
    control = as_control(control_variates)
    if is_auto(design):
        if stopping is not None:
            raise TypeError("design='auto' needs budget=... (noises in all, pilot included), not stopping=")
        if control is not None:
            raise TypeError("design='auto' does not take control_variates=; use AutoDesign(control_variates=...)")
        return AutoChoice(design if isinstance(design, AutoDesign) else AutoDesign(), budget)
    if control is not None:
        if stopping is not None:
            raise TypeError("control_variates work with budget=..., not with stopping= (not supported yet)")
        return ControlledBudget(budget, control)
    return stopping if stopping is not None else FixedBudget(budget)


@takes_run_settings
def compare(
    sampler: Callable,
    statistics: StatisticsLike,
    *,
    budget: int,
    designs: Sequence[NoiseDesign | str] = ("mc", "antithetic"),
    baseline: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> ComparisonResult:
    """Run several designs at the same budget and compare their intervals with the baseline's.

    Parameters
    ----------
    sampler, statistics
        As for :func:`estimate`.
    budget : int
        Noises drawn per design (each design gets the same number of sampler calls).
    designs : sequence of NoiseDesign or str
        The designs to run; the baseline is added when missing.
    baseline : NoiseDesign or str
        The design the efficiency (CI_baseline / CI)^2 is measured against: plain MC by default.
    seed : int or sequence of int
        Design d runs on its own stream ``[*seed, crc32(d.name)]`` so the runs are independent;
        each :class:`EstimateResult` states its seed, and ``estimate(..., seed=that)`` repeats it.
    noise_shape, confidence_level, interval_method
        As for :func:`estimate`.
    run : RunSettings, optional
        As for :func:`estimate`; a checkpoint becomes one per design: ``run.ckpt`` ->
        ``run.<crc32 of the design name>.ckpt``.

    Returns
    -------
    ComparisonResult
        The runs by design name, with :meth:`ComparisonResult.efficiency` against the baseline.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a sampler fails; the message names the groups and the seed.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> c = compare(LinearGenerator([0.0, 1.0]), lambda x: x[:, 0] + x[:, 1] ** 2, budget=512, seed=0)
    >>> list(c.estimates), c.baseline, c.efficiency("statistic", "mc")
    (['mc', 'antithetic'], 'mc', 1.0)
    """
    runs, base = run_designs(
        designs,
        lambda d, s, each: estimate(
            sampler,
            statistics,
            budget=budget,
            design=d,
            noise_shape=noise_shape,
            seed=s,
            confidence_level=confidence_level,
            interval_method=interval_method,
            run=each,
        ),
        seed=seed,
        baseline=baseline,
        run=run,
    )
    return ComparisonResult(estimates=runs, baseline=base)


def run_designs(
    designs: Sequence[NoiseDesign | str],
    each: Callable[[NoiseDesign, list[int], RunSettings], R],
    *,
    seed: SeedLike,
    baseline: NoiseDesign | str | None = "mc",
    run: RunSettings | None = None,
) -> tuple[dict[str, R], str | None]:
    """The one loop over designs: ``each(design, its seed, its run settings)`` for each, baseline first.

    Every design runs on its own stream (:func:`design_seed`) with its own checkpoint
    (:meth:`Checkpoint.for_design`), so runs are independent and each resumes alone. The
    baseline is added in front when missing (``baseline=None``: no baseline). Returns the
    results by design name and the baseline's name.
    """
    settings = RunSettings.of(run)
    chosen = comparison_designs(designs, baseline=baseline)
    entropy(seed)
    results = {d.name: each(d, design_seed(seed, d), settings.for_part(d.name)) for d in chosen}
    return results, (None if baseline is None else chosen[0].name)


def comparison_designs(
    designs: Sequence[NoiseDesign | str], *, baseline: NoiseDesign | str | None = "mc"
) -> list[NoiseDesign]:
    """The designs a comparison runs: distinct, the baseline first (added when it was not given)."""
    if isinstance(designs, (str, NoiseDesign)):
        raise TypeError(f"designs must be a list of designs, got {designs!r}; for one design use estimate(design=...)")
    chosen = [as_design(d) for d in designs]
    if not chosen:
        raise ValueError("give at least one design")
    names = [d.name for d in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"designs must differ, got {names}")
    if baseline is not None:
        base = as_design(baseline)
        rest = [d for d in chosen if d.name != base.name]
        chosen = [next((d for d in chosen if d.name == base.name), base), *rest]
    return chosen


def design_seed(seed: SeedLike, design: NoiseDesign) -> list[int]:
    """The seed a comparison gives a design: ``[*seed, crc32(design name)]``, one stream per design."""
    return substream(seed, zlib.crc32(design.name.encode()))
