"""Few-step control variates: a cheap sampler of the same model corrects the full one (two fidelities).

A sampler with few steps (10 DDIM steps instead of 50) fed the *same* noise gives a statistic
strongly correlated with the full sampler's (pixel mean: 0.94 on the project's Fashion-MNIST DDPM).
With Y = S(G(z)) and X = S(G_cheap(z)) for one group of the design, the estimator is

    mu_hat = mean over n main groups of (Ybar_g - alpha Xbar_g) + alpha * mean over m extra groups of Xbar_g'

The main groups run both generators on the same noise; the extra groups run only the cheap one,
on an independent seed stream. Whatever alpha, E[mu_hat] = E[Y] (the cheap mean cancels, it need
not be known) and, the two means being independent, Var(mu_hat) = Var(D) / n + alpha^2 Var(X) / m
with D = Ybar - alpha Xbar. alpha and (n, m) are fixed by a pilot on a third seed stream that the
estimate does not reuse, so they are constants for the final stage: the estimate is unbiased and
the interval is that of a two-sample mean: uqdiff's skew-t (or t) on the Welch-Satterthwaite df.

Cost is counted in expensive calls (noises through the full sampler); a cheap call costs w of one.
The allocation minimizes the variance at the remaining budget (see :func:`estimate_two_fidelity`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uqdiff.designs import NoiseDesign, as_design
from uqdiff.designs.seeds import SeedLike, substream
from uqdiff.estimators.accumulator import Moments
from uqdiff.estimators.engine import Engine, FixedBudget, GeneratorError, StatisticsLike
from uqdiff.estimators.intervals import DEFAULT_INTERVAL_METHOD, corrected_interval, trust_warning, welch_df
from uqdiff.estimators.paired import ContrastStatistic
from uqdiff.estimators.results import ByStatistic, ConfidenceInterval, Exportable
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.samplers.base import Sampler, as_sampler
from uqdiff.samplers.wrappers import CommonNoise

#: Groups of the pilot at least, whatever ``pilot_share``: fewer give no usable covariance.
MIN_PILOT_GROUPS = 4
#: Seed tags of the three independent stages: the seed of stage s is ``[*seed, tag]``.
STAGE_TAGS = {"pilot": 0, "main": 1, "extra": 2}


@dataclass(frozen=True)
class TwoFidelityStatistic(Exportable):
    """The two-fidelity estimate of E[S(G(z))] for one scalar statistic.

    ``df`` is the Welch-Satterthwaite degrees of freedom of the two independent means
    (n - 1 when no extra cheap groups ran). ``alpha`` is the control-variate weight used
    (0: plain estimation with the expensive generator). ``rho`` is the correlation of the
    expensive and cheap group means over every group that ran both (pilot and main).
    ``efficiency`` is the variance plain MC with the expensive generator would have at the
    same total cost (pilot included) over this run's: sigma^2 / (total cost x standard_error^2),
    sigma^2 the marginal variance of S(G(z)) from the pilot and main groups.
    """

    statistic: str
    estimate: float
    low: float
    high: float
    standard_error: float
    df: float
    alpha: float
    rho: float | None
    efficiency: float | None
    confidence_level: float

    @property
    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.low, self.high)

    @property
    def width(self) -> float:
        return self.high - self.low

    def __str__(self) -> str:
        rho = "nan" if self.rho is None or math.isnan(self.rho) else f"{self.rho:.3f}"
        eff = "nan" if self.efficiency is None or math.isnan(self.efficiency) else f"{self.efficiency:.3g}"
        return (
            f"{self.statistic}: {self.estimate:.5g} ({self.confidence_level:.0%} CI {self.low:.5g} .. {self.high:.5g}; "
            f"alpha {self.alpha:.3f}, rho {rho}, efficiency {eff} vs MC at equal cost)"
        )


@dataclass(frozen=True)
class TwoFidelityResult(ByStatistic, Exportable):
    """Every statistic of one two-fidelity run: ``result["mean"]`` is a :class:`TwoFidelityStatistic`.

    ``target`` is the statistic the allocation (``main_groups``, ``extra_groups``) was
    optimized for: the first one given. ``cost_ratio`` is w, the cost of a cheap call in
    expensive calls, measured by timing the pilot unless given (``cost_ratio_measured``).
    ``n_expensive_calls`` and ``n_cheap_calls`` count noises through each generator, pilot
    included (the repeat check's one or two extra samples per generator are not counted, as
    in :func:`uqdiff.estimate`); ``total_cost = n_expensive_calls + cost_ratio * n_cheap_calls``,
    of which ``pilot_cost`` went to the pilot, is at most ``budget`` unless a measured w above 1
    made the pilot overrun (with a warning). ``seeds`` holds each stage's seed.
    """

    results: dict[str, TwoFidelityStatistic]
    target: str
    design: str
    group_size: int
    seed: Any
    budget: int
    cost_ratio: float
    cost_ratio_measured: bool
    pilot_groups: int
    main_groups: int
    extra_groups: int
    n_expensive_calls: int
    n_cheap_calls: int
    pilot_cost: float
    total_cost: float
    seeds: dict[str, list[int]] = field(default_factory=dict)

    def _rows(self) -> list[dict[str, Any]]:
        """One row per statistic, with the run's allocation and costs."""
        run = {
            "design": self.design,
            "pilot_groups": self.pilot_groups,
            "main_groups": self.main_groups,
            "extra_groups": self.extra_groups,
            "cost_ratio": self.cost_ratio,
            "total_cost": self.total_cost,
        }
        return [{**r.to_dict(), **run} for r in self.results.values()]

    def __str__(self) -> str:
        how = "measured" if self.cost_ratio_measured else "given"
        head = (
            f"two-fidelity [{self.design}]: pilot {self.pilot_groups} groups, {self.main_groups} main groups "
            f"(both generators), {self.extra_groups} extra cheap groups of {self.group_size}; "
            f"cost ratio {self.cost_ratio:.3g} ({how}); cost {self.total_cost:.6g} of budget {self.budget} "
            f"({self.n_expensive_calls} expensive + {self.n_cheap_calls} cheap calls)"
        )
        return "\n".join([head, *(str(r) for r in self.results.values())])


@takes_run_settings
def estimate_two_fidelity(
    sampler: Callable,
    cheap_sampler: Callable,
    statistics: StatisticsLike,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    pilot_share: float = 0.1,
    cost_ratio: float | None = None,
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = DEFAULT_INTERVAL_METHOD,
    run: RunSettings | None = None,
) -> TwoFidelityResult:
    """Estimate E[S(G(z))] with a cheaper sampler of the same noise as control variate, with an interval.

    Three stages on three independent seed streams ``[*seed, 0]``, ``[*seed, 1]``, ``[*seed, 2]``:

    1. **Pilot**: groups of the design through both generators. From their group means
       (Ybar expensive, Xbar cheap) it estimates, per statistic, beta = Cov(Ybar, Xbar) / Var(Xbar)
       and the correlation rho, and (unless ``cost_ratio`` is given) w = time of the cheap
       generator / time of the expensive one on the same noises (first batch left out as warm-up
       when there are several). The pilot is not reused: alpha and the allocation are then
       constants, so the final estimate is unbiased and its interval honest.
    2. **Main**: n groups through both generators on the same noise; D_g = Ybar_g - alpha Xbar_g.
    3. **Extra**: m groups through the cheap generator only.

    The estimate is mean(D) + alpha mean(Xbar extra), with variance Var(D) / n + alpha^2 Var(Xbar) / m
    (independent means). With remaining budget R (after the pilot) in units of groups, G = R / k,
    each main group costs 1 + w and each extra group w, i.e. n + (n + m) w = G. Writing
    N = n + m, the variance for the best alpha given (n, m), alpha = beta m / (n + m), is
    Var(Ybar) [(1 - rho^2) / n + rho^2 / N], minimized at

        n = G s_D / (s_D + sqrt(w) s_X),  N = G s_X / sqrt(w) / (s_D + sqrt(w) s_X),

    with s_D^2 = Var(Ybar) (1 - rho^2) and s_X^2 = beta^2 Var(Xbar) from the pilot, so
    n is proportional to s_D and N to s_X / sqrt(w). n is rounded (at least 2) and the rest
    of the budget goes to m extra groups (at least 2). With a known cheap mean alpha would be
    beta; with an estimated one, beta m / (n + m) has the smaller variance (the two are close
    when m >> n, the useful case). When the pilot predicts no gain (w >= 1, a cheap statistic
    without spread, weak correlation: sqrt(1 - rho^2) + rho sqrt(w) near or above 1), the
    main stage is plain estimation with the expensive generator (alpha = 0, m = 0).

    Parameters
    ----------
    sampler : callable
        The expensive sampler: noise batch (B, *noise_shape) -> images (B, ...).
    cheap_sampler : callable
        A cheaper sampler taking the same noise (e.g. fewer steps of the same model): its
        statistic needs to be correlated with the expensive one at the same noise, not equal
        in mean (its bias cancels).
    statistics : callable, list of callables or dict of name to callable
        Scalar statistics, images (B, ...) -> values (B,), applied to both generators' outputs.
        The allocation is optimized for the first (the target); alpha is fitted per statistic.
    budget : int
        Total cost in expensive-generator calls (noises through the full sampler), pilot
        included; a cheap call costs w of one.
    design : NoiseDesign or str
        The noise design of every stage (``"mc"``, ``"antithetic"``, ``KAntithetic(8)``, ...);
        the group means are its group means, as in :func:`uqdiff.estimate`.
    pilot_share : float
        Share of the budget for the pilot, in (0, 0.5]; the pilot has at least 4 groups. Until w is
        measured it is sized as if a cheap call cost as much as an expensive one (w = 1), so it
        stays within its share for any cheaper model.
    cost_ratio : float, optional
        w in (0, 1), the cost of a cheap call in expensive calls (e.g. 10 / 50 for DDIM steps);
        default: timed on the pilot. Give it to make runs reproducible.
    noise_shape : tuple of int, optional
        Shape of one noise; default the generator's ``noise_shape`` attribute. The cheap generator
        must take the same shape.
    seed : int or sequence of int
        Stage s runs on ``[*seed, tag_s]`` (pilot 0, main 1, extra 2).
    confidence_level : float
        Two-sided level of the intervals.
    interval_method : {"skew-t", "t", "normal"}
        As in :func:`uqdiff.estimate` (skew-t by default), on the Welch-Satterthwaite degrees of
        freedom of the two independent means; the same warnings for few or skewed groups.
    run : RunSettings, optional
        As for :func:`uqdiff.estimate`: every stage runs on the engine, with its progress bar,
        executor and checkpoint (one file per sampler and stage beside the given path; a
        checkpointed run needs ``cost_ratio``, so that a resumed run plans the same stages). The
        pilot runs in this process and is redrawn on resume.

    Returns
    -------
    TwoFidelityResult
        Per statistic the estimate, interval, standard error, Welch df, alpha, rho and predicted
        efficiency against plain MC at the same total cost; the run's calls, w and costs.

    Raises
    ------
    ValueError, TypeError
        Before any model call: a generator that is not callable, a cheap generator declaring another
        ``noise_shape``, a budget that is not a positive int or is too small for the pilot and two
        main groups (the message gives the minimum), ``pilot_share`` outside (0, 0.5], ``cost_ratio``
        outside (0, 1) (a cheap model that costs as much as the full one is no control variate),
        bad seed, batch size, dtype or confidence level. On the first pilot batch: a cheap generator
        that does not take the same noise batch or returns another number of rows, and statistics
        that return maps instead of one number per image.
    GeneratorError
        When a generator fails; the message names the groups and the seed.

    Warns
    -----
    UserWarning
        When a cheap statistic does not vary in the pilot (its alpha is 0, and for the target no
        extra groups run), and when the measured w is 1 or more.

    Examples
    --------
    A full sampler and a cheap one (mean 0.4, not 0.5) that misses a small part of the output; the
    cheap mean cancels, and at a cost ratio of 0.1 most of the budget buys cheap extra groups:

    >>> from uqdiff.samplers import LinearGenerator
    >>> full = LinearGenerator([0.5], [[1.0, 0.3]])
    >>> cheap = LinearGenerator([0.4], [[1.0, 0.0]])
    >>> r = estimate_two_fidelity(full, cheap, {"x": lambda y: y[:, 0]}, budget=400, cost_ratio=0.1, seed=0)
    >>> print(r)  # doctest: +NORMALIZE_WHITESPACE
    two-fidelity [mc]: pilot 36 groups, 177 main groups (both generators), 1657 extra cheap groups of 1;
    cost ratio 0.1 (given); cost 400 of budget 400 (213 expensive + 1870 cheap calls)
    x: 0.48064 (95% CI 0.41765 .. 0.54363; alpha 0.901, rho 0.962, efficiency 2.76 vs MC at equal cost)
    >>> r["x"].low < 0.5 < r["x"].high, r.total_cost <= 400
    (True, True)
    """
    for name, g in (("sampler", sampler), ("cheap_sampler", cheap_sampler)):
        if not callable(g):
            raise TypeError(f"{name} must be a callable from a noise batch to outputs, got {type(g).__name__}")
    design = as_design(design)
    settings = RunSettings.of(run)
    hi_sampler = as_sampler(sampler, noise_shape=noise_shape, device=settings.device)
    given = getattr(hi_sampler, "tensor_shape", hi_sampler.noise_shape)
    declared = isinstance(cheap_sampler, Sampler) or getattr(cheap_sampler, "noise_shape", None) is not None
    lo_sampler = as_sampler(cheap_sampler, noise_shape=None if declared else given, device=settings.device)
    noise_shape = hi_sampler.noise_shape
    if lo_sampler.noise_shape != noise_shape:
        raise ValueError(
            f"cheap_sampler draws x_T of shape {lo_sampler.noise_shape} but sampler {noise_shape}; a control "
            "variate needs both samplers on the same noise (same model, fewer steps)"
        )
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive int (cost in expensive-sampler calls), got {budget!r}")
    budget = int(budget)
    if not _is_number(pilot_share) or not 0.0 < pilot_share <= 0.5:
        raise ValueError(f"pilot_share must be a number in (0, 0.5], got {pilot_share!r}")
    if cost_ratio is not None and (not _is_number(cost_ratio) or not 0.0 < cost_ratio < 1.0):
        raise ValueError(
            f"cost_ratio must be a number in (0, 1), the cost of a cheap call in expensive calls, got {cost_ratio!r}; "
            "a cheap model that costs as much as the full one is no control variate (use uqdiff.estimate)"
        )
    if settings.checkpoint is not None and cost_ratio is None:
        raise TypeError(
            "a checkpointed two-fidelity run needs cost_ratio=...: a cost ratio timed on the pilot differs from run "
            "to run, and a resumed run must plan the same stages as the interrupted one"
        )
    k = design.group_size
    w_plan = 1.0 if cost_ratio is None else float(cost_ratio)
    n_pilot = max(MIN_PILOT_GROUPS, int(pilot_share * budget / (k * (1 + w_plan))))
    needed = math.ceil(MIN_PILOT_GROUPS * k * (1 + w_plan) + 2 * k)
    if budget < n_pilot * k * (1 + w_plan) + 2 * k:
        assumed = "" if cost_ratio is not None else " (w = 1 until measured; pass cost_ratio= to plan with the real w)"
        raise ValueError(
            f"budget {budget} is too small: the pilot needs {MIN_PILOT_GROUPS} groups of {k} noise(s) through both "
            f"samplers, cost {MIN_PILOT_GROUPS * k * (1 + w_plan):.4g} at cost ratio {w_plan:g}{assumed}, and the "
            f"main stage at least 2 groups ({2 * k}); use budget >= {needed}"
        )
    seeds = {stage: substream(seed, tag) for stage, tag in STAGE_TAGS.items()}
    engines = {
        role: Engine(
            s, statistics, design=design, seed=seed, noise_shape=noise_shape, settings=settings.for_part(role),
            confidence_level=confidence_level, interval_method=interval_method, strategy=FixedBudget(budget),
        )
        for role, s in (("sampler", hi_sampler), ("cheap_sampler", lo_sampler))
    }  # fmt: skip
    stats = engines["sampler"].statistics
    pilot_hi, pilot_lo, times = _pilot(engines["sampler"], engines["cheap_sampler"], n_pilot, seeds["pilot"])
    if cost_ratio is None:
        w, measured = _measured_ratio(times), True
        if w >= 1:
            warnings.warn(
                f"cheap_sampler took {w:.3g} x the time of sampler per noise in the pilot: it is no control "
                "variate here; going on with the expensive sampler alone",
                stacklevel=3,
            )
    else:
        w, measured = float(cost_ratio), False

    fits = {name: _fit(pilot_hi[name].mean(axis=1), pilot_lo[name].mean(axis=1)) for name in stats}
    flat = [name for name, f in fits.items() if f["var_lo"] <= 0]
    if flat:
        warnings.warn(
            f"the cheap statistic(s) {', '.join(map(repr, flat))} did not vary over the {n_pilot} pilot groups: "
            "no control variate for them (alpha = 0)"
            + (" and no extra cheap groups are run" if next(iter(stats)) in flat else ""),
            stacklevel=3,
        )
    pilot_cost = n_pilot * k * (1 + w)
    n, m = _allocate(fits[next(iter(stats))], remaining=budget - pilot_cost, k=k, w=w)
    if (budget - pilot_cost) / k < 2:
        warnings.warn(
            f"the pilot cost {pilot_cost:.4g} of budget {budget} at the measured cost ratio {w:.3g}; the main stage "
            f"still runs 2 groups, so the run costs more than the budget",
            stacklevel=3,
        )
    alphas = {name: fits[name]["beta"] * m / (n + m) if m else 0.0 for name in stats}
    plan = f"two-fidelity: pilot {n_pilot}, main {n}, extra {m}, alpha {alphas}"
    if m:  # both samplers on the main stage's noise: per noise [hi, lo, hi - alpha lo, hi + lo] of each statistic
        main_engine = Engine(
            CommonNoise({"sampler": hi_sampler, "cheap_sampler": lo_sampler}),
            {name: ContrastStatistic(stat, np.array([[1.0, -alphas[name]], [1.0, 1.0]])) for name, stat in stats.items()},
            design=design, seed=seeds["main"], noise_shape=noise_shape, settings=settings.for_part("main"),
            confidence_level=confidence_level, interval_method=interval_method, strategy=_Planned(n * k, plan),
        )  # fmt: skip
        main_engine.evaluator.check_pending = False  # both samplers passed the repeat check in the pilot
        main = _run_stage(main_engine, "main", n)
        main_d = {name: _component(main[name], 2) for name in stats}
        main_hi = {name: _component(main[name], 0) for name in stats}
        main_lo = {name: _component(main[name], 1) for name in stats}
        main_sum = {name: _component(main[name], 3) for name in stats}
        extra_engine = engines["cheap_sampler"]
        extra_engine.strategy = _Planned(m * k, plan)
        extra = _run_stage(extra_engine, "extra", m, seed=seeds["extra"])
    else:
        hi_engine = engines["sampler"]
        hi_engine.strategy = _Planned(n * k, plan)
        main_hi = main_d = _run_stage(hi_engine, "main", n, seed=seeds["main"])
    n_expensive = (n_pilot + n) * k
    n_cheap = (n_pilot + (n + m if m else 0)) * k
    total_cost = n_expensive + w * n_cheap
    results = {}
    for name in stats:
        hi_p, lo_p, sum_p = (_moments(v) for v in (pilot_hi[name], pilot_lo[name], pilot_hi[name] + pilot_lo[name]))
        hi_all = hi_p.merge(main_hi[name])
        rho = _correlation(hi_p, lo_p, sum_p)  # without a cheap main stage, from the pilot alone
        if m:
            rho = _correlation(hi_all, lo_p.merge(main_lo[name]), sum_p.merge(main_sum[name]))
        sigma2 = float(hi_all.within) / (hi_all.count * k) + float(hi_all.m2) / (hi_all.count - 1)
        results[name] = _interval(
            name,
            main_d[name],
            extra[name] if m else None,
            alpha=alphas[name],
            rho=rho,
            sigma2=sigma2,
            total_cost=total_cost,
            confidence_level=confidence_level,
            interval_method=interval_method,
        )
    return TwoFidelityResult(
        results=results,
        target=next(iter(stats)),
        design=design.name,
        group_size=k,
        seed=seed,
        budget=budget,
        cost_ratio=w,
        cost_ratio_measured=measured,
        pilot_groups=n_pilot,
        main_groups=n,
        extra_groups=m,
        n_expensive_calls=n_expensive,
        n_cheap_calls=n_cheap,
        pilot_cost=pilot_cost,
        total_cost=total_cost,
        seeds=seeds,
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


class _Planned(FixedBudget):
    """A stage of a planned two-fidelity run: its repr (in a checkpoint) is the plan, so a resume must match it."""

    def __init__(self, budget: int, plan: str) -> None:
        super().__init__(budget)
        self.plan = plan

    def __repr__(self) -> str:
        return self.plan


def _pilot(hi: Engine, lo: Engine, n_groups: int, seed) -> tuple[dict, dict, list[tuple[float, float]]]:
    """Both samplers on the pilot's groups, batch by batch: values per member (hi, lo) and each batch's times.

    The first batch is checked before the rest is spent: the cheap sampler must take the same noise
    and return as many rows, and the statistics must be scalar. The engines run the repeat check.
    """
    hi_parts, lo_parts, times = [], [], []
    per = hi.evaluator.groups_per_batch
    chunks = [(a, min(a + per, n_groups)) for a in range(0, n_groups, per)]
    if len(chunks) == 1 and n_groups >= 2:  # two batches, so the first (warm-up) can be left out of the timing
        chunks = [(0, n_groups // 2), (n_groups // 2, n_groups)]
    for b, (a, z) in enumerate(chunks):
        t0 = time.perf_counter()
        hi_values = hi.values(a, z, seed=seed)
        t1 = time.perf_counter()
        try:
            lo_values = lo.values(a, z, seed=seed)
        except GeneratorError as exc:
            if b:
                raise
            raise GeneratorError(
                f"cheap_sampler failed on the first pilot batch, noise of shape (B, *{hi.noise_shape}) that "
                f"sampler took: it must take the same noise (same model, fewer steps). {exc}"
            ) from exc
        except Exception as exc:
            if b:
                raise
            shapes = [e.evaluator.output_shapes.get("generator output") for e in (hi, lo)]
            if None not in shapes and shapes[0] != shapes[1]:
                raise ValueError(
                    f"cheap_sampler returns outputs of shape {shapes[1]} per image, sampler {shapes[0]}: the "
                    f"statistics must apply to both, so the cheap sampler must return images of the same shape "
                    f"(same model, fewer steps). {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(exc, (ValueError, TypeError)):
                raise
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(
                f"cheap_sampler does not fit sampler on the first pilot batch: {exc}; it must take the same "
                f"noise batch (B, *{hi.noise_shape}) and return one output per noise"
            ) from exc
        t2 = time.perf_counter()
        if b == 0:
            for name, v in hi_values.items():
                if v.ndim > 2:
                    raise ValueError(
                        f"statistic {name!r} returns maps of shape {v.shape[2:]} per image; "
                        "estimate_two_fidelity takes scalar statistics (one number per image): "
                        "reduce the map (e.g. its mean) or estimate maps with uqdiff.estimate"
                    )
        hi_parts.append(hi_values)
        lo_parts.append(lo_values)
        times.append((t1 - t0, t2 - t1))
    join = lambda parts: {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}  # noqa: E731
    return join(hi_parts), join(lo_parts), times


def _run_stage(engine: Engine, name: str, n_groups: int, seed: SeedLike | None = None) -> dict[str, Moments]:
    """One checkpointed stage of ``n_groups`` groups on ``engine``: each statistic's moments."""
    engine.open()
    try:
        accumulators = engine.stage(name, 0, n_groups, seed=seed)
        engine.save()
    finally:
        engine.close()
    return {stat: acc.moments() for stat, acc in accumulators.items()}


def _moments(values: np.ndarray) -> Moments:
    """Moments of the group means of per-member values (groups, group size)."""
    means = values.mean(axis=1)
    return Moments.of(means, ((values - means[:, None]) ** 2).sum(axis=1))


def _component(m: Moments, i: int) -> Moments:
    """Element ``i`` of the moments of a vector statistic."""
    return Moments(m.count, m.mean[i], m.m2[i], m.within[i], m.m3[i], m.m4[i])


def _measured_ratio(times: list[tuple[float, float]]) -> float:
    """Time of the cheap generator over the expensive one's: the median of the per-batch ratios.

    The first batch is left out when there are more (it pays the models' warm-up, mostly the
    expensive one's, which runs first); the median resists a batch that caught another job's load
    (a single pilot batch once priced a 10-step DDIM call at 0.07 of a 50-step one instead of 0.2).
    """
    use = times[1:] if len(times) > 1 else times
    return float(np.median([max(lo, 1e-9) / max(hi, 1e-9) for hi, lo in use]))


def _fit(hi: np.ndarray, lo: np.ndarray) -> dict[str, float]:
    """Pilot moments of the group means: variances, covariance, beta = Cov / Var(lo)."""
    var_hi, var_lo = float(np.var(hi, ddof=1)), float(np.var(lo, ddof=1))
    cov = float(np.cov(hi, lo, ddof=1)[0, 1])
    if var_lo <= 1e-300:
        var_lo, cov = 0.0, 0.0
    return {"var_hi": var_hi, "var_lo": var_lo, "cov": cov, "beta": cov / var_lo if var_lo > 0 else 0.0}


def _allocate(fit: dict[str, float], *, remaining: float, k: int, w: float) -> tuple[int, int]:
    """(main groups n, extra cheap groups m) minimizing the target's variance within ``remaining`` cost.

    Falls back to (all the budget in plain groups, 0) when the pilot predicts no gain over them.
    """
    groups = remaining / k  # the budget left, in expensive groups
    n_plain = max(2, int(math.floor(groups + 1e-9)))
    var_hi, var_lo, cov, beta = fit["var_hi"], fit["var_lo"], fit["cov"], fit["beta"]
    if w >= 1 or var_lo <= 0:
        return n_plain, 0
    s_d = math.sqrt(max(var_hi - cov * beta, 0.0))  # sd of Ybar - beta Xbar: Var(Ybar) (1 - rho^2)
    s_x = abs(beta) * math.sqrt(var_lo)  # sd of beta Xbar
    if s_d + math.sqrt(w) * s_x <= 0:
        return n_plain, 0
    n = max(2, round(groups * s_d / (s_d + math.sqrt(w) * s_x)))
    m = int(math.floor((groups - n * (1 + w)) / w + 1e-9))
    while m > 0 and n * (1 + w) + m * w > groups + 1e-9:  # floating point: never over the budget
        m -= 1
    if m < 2:
        return n_plain, 0
    alpha = beta * m / (n + m)
    var_cv = (var_hi - 2 * alpha * cov + alpha**2 * var_lo) / n + alpha**2 * var_lo / m
    return (n, m) if var_cv < var_hi / n_plain else (n_plain, 0)


def _correlation(hi: Moments, lo: Moments, total: Moments) -> float:
    """Correlation of the hi and lo group means from the moments of hi, lo and hi + lo (NaN without spread)."""
    a, b = float(hi.m2), float(lo.m2)
    if a <= 0 or b <= 0:
        return math.nan
    return float(np.clip((float(total.m2) - a - b) / 2 / math.sqrt(a * b), -1.0, 1.0))


def _interval(
    name: str,
    d: Moments,
    extra: Moments | None,
    *,
    alpha: float,
    rho: float,
    sigma2: float,
    total_cost: float,
    confidence_level: float,
    interval_method: str,
) -> TwoFidelityStatistic:
    """Estimate and interval of mean(d) + alpha mean(extra), two independent means.

    The same interval as :func:`uqdiff.estimate`'s (skew-t by default) on the Welch-Satterthwaite
    degrees of freedom: the estimate's third cumulant is the sum of the two means' (alpha^3 for
    the extra one), so its skewness is that over se^3, and the effective number of values df + 1.
    """
    parts = [(d, 1.0)] + ([] if extra is None else [(extra, alpha)])
    variances, cumulants = [], []  # of each weighted mean: sample variance / n, third cumulant (population)
    for moments, weight in parts:
        k = moments.count
        variances.append(weight**2 * float(moments.m2) / (k - 1) / k)
        cumulants.append(weight**3 * float(moments.m3) / k / k**2)
    estimate = float(d.mean) + (0.0 if extra is None else alpha * float(extra.mean))
    df = float(d.count - 1) if extra is None else welch_df(variances, [d.count, extra.count])
    se = math.sqrt(sum(variances))
    population = sum(v * (p.count - 1) / p.count for v, (p, _) in zip(variances, parts))
    gamma = sum(cumulants) / population**1.5 * math.sqrt(df + 1) if population > 0 else 0.0
    low, high = corrected_interval(estimate, se, gamma, df + 1, df, confidence_level, interval_method)
    message = trust_warning(name, df + 1, gamma, interval_method, se > 0)
    if message:
        warnings.warn(message, stacklevel=4)
    with np.errstate(divide="ignore", invalid="ignore"):
        efficiency = float(np.float64(sigma2) / (total_cost * se**2))
    return TwoFidelityStatistic(
        statistic=name,
        estimate=estimate,
        low=float(low),
        high=float(high),
        standard_error=se,
        df=df,
        alpha=float(alpha),
        rho=rho,
        efficiency=efficiency,
        confidence_level=confidence_level,
    )
