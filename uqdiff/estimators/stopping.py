"""Stopping rules: when a run has drawn enough noise. :class:`TargetPrecision` is Stein's two-stage rule.

A stopping rule is one object holding everything that decides the run's size
(the target, the pilot, the cap), passed to :func:`uqdiff.estimate` as
``stopping=...`` instead of a fixed ``budget`` (qmcpy's stopping criteria are
the model). It drives the run through stages of groups and turns their
accumulators into results; the estimator stays the mean of iid group means.

:class:`TargetPrecision` works as follows.

Stopping as soon as the running interval is narrow enough undercovers: runs
that happen to look precise stop early. The two-stage rule avoids this. A
pilot of n0 groups gives s0, the standard deviation of group means; the main
stage then draws n = ceil((q * inflation * s0 / tolerance)^2) *new* groups,
q the two-sided quantile of Student-t on n0 - 1 degrees of freedom. The
estimate is the mean of the main stage alone and its half-width is
q * inflation * s0 / sqrt(n) <= tolerance. Because n depends on the pilot
only, the main-stage mean is independent of s0, and for normal group means
(mean - mu) sqrt(n) / s0 is exactly t on n0 - 1 degrees of freedom (Stein,
1945): coverage is nominal without inflation. Under skew it is not: with a
32-group pilot, exp(Z) at half-width 0.1 covered 0.895, because a small
pilot usually underestimates a right-skewed spread, and the inflation (1.2,
as qmcpy's CubMCCLT) does not make up for it. The defaults therefore draw a
pilot of at least 1024 noises (as CubMCCLT) and a main stage at least as
large as the pilot, and a pilot whose group means do not vary at all (a rare
event not yet seen) is grown, never planned from: see
``benchmarks/sequential_coverage.py`` for the coverage this gives. Every
design works unchanged; for RQMC a group is a replicate, so the main stage
adds replicates.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from uqdiff._util import plain, scalar
from uqdiff.designs.sobol import SobolBlock, SobolRQMC
from uqdiff.estimators.accumulator import Moments
from uqdiff.estimators.engine import Engine, Strategy, groups_for_budget
from uqdiff.estimators.intervals import quantile
from uqdiff.estimators.results import ConfidenceInterval, StatisticResult

DEFAULT_PILOT_GROUPS = 32
#: The default pilot draws at least this many noises (qmcpy's CubMCCLT pilot is 1024 samples).
DEFAULT_PILOT_NOISES = 1024
DEFAULT_INFLATION = 1.2


class StoppingRule(Strategy):
    """When to stop drawing groups: a :class:`~uqdiff.estimators.engine.Strategy` that may stop early.

    ``run(engine)`` asks ``engine.stage(name, lo, hi, design=...)`` for stages of groups (a
    checkpoint keeps them) and turns their accumulators into results at ``engine.confidence_level``.
    """

    #: The most noises (pilot included) the rule may draw.
    max_budget: int
    stops_early = True


@dataclass(frozen=True, kw_only=True)
class TargetPrecision(StoppingRule):
    """Run until every statistic's interval half-width is within its target (Stein's two-stage rule).

    Parameters
    ----------
    max_budget : int
        The most noises drawn, pilot included; the run stops there with a warning if the target is not met.
    halfwidth : float or mapping of statistic name to float, optional
        The absolute half-width to reach (one for all statistics, or one per statistic).
    rel_tol : float, optional
        A half-width relative to the pilot's |mean|; with ``halfwidth`` too, the larger target counts.
    pilot_budget : int, optional
        Noises in the pilot; default the larger of 32 groups and 1024 noises. A pilot whose
        group means do not vary is doubled (while the main stage keeps room to be at least
        as large); a spread that never appears is reported as a target not met, never as success.
    inflation : float
        Factor >= 1 on the pilot's standard deviation when planning and reporting.

    >>> TargetPrecision(halfwidth=0.01, max_budget=10_000)
    TargetPrecision(max_budget=10000, halfwidth=0.01, rel_tol=None, pilot_budget=None, inflation=1.2)
    """

    max_budget: int
    halfwidth: float | Mapping[str, float] | None = None
    rel_tol: float | None = None
    pilot_budget: int | None = None
    inflation: float = DEFAULT_INFLATION

    def __post_init__(self) -> None:
        validate(self.halfwidth, self.rel_tol, self.inflation)
        for name in ("max_budget", "pilot_budget"):
            value = getattr(self, name)
            if value is None and name == "pilot_budget":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive number of noises, got {value!r}")

    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        """Pilot, plan, main stage; the interval comes from the main stage with the pilot's spread."""
        design, stage = engine.design, engine.stage
        confidence_level, interval_method = engine.confidence_level, engine.interval_method
        k = design.group_size
        n_max = groups_for_budget(self.max_budget, design, "max_budget")
        if self.pilot_budget is not None:
            n_pilot = groups_for_budget(self.pilot_budget, design, "pilot_budget")
        else:
            n_pilot = max(DEFAULT_PILOT_GROUPS, -(-DEFAULT_PILOT_NOISES // k))
            n_pilot = min(n_pilot, max(DEFAULT_PILOT_GROUPS, n_max // 2))  # a small max_budget keeps a main stage
        if n_max < n_pilot + 2:
            raise ValueError(
                f"max_budget {self.max_budget} leaves no room for the pilot ({n_pilot} groups) and 2 more groups"
            )
        pilot = {name: acc.moments() for name, acc in stage("pilot", 0, n_pilot).items()}
        while _without_spread(pilot) and 4 * n_pilot <= n_max:  # grow the pilot; keep main >= pilot possible
            n_pilot *= 2
            pilot = {name: acc.moments() for name, acc in stage("pilot", 0, n_pilot).items()}
        flat = _without_spread(pilot)
        tol = tolerances(pilot, target_halfwidth=self.halfwidth, rel_tol=self.rel_tol)
        need = planned_groups(
            pilot, tol, confidence_level=confidence_level, interval_method=interval_method, inflation=self.inflation
        )
        n_main = int(min(max(need, n_pilot), n_max - n_pilot))
        main = stage("main", n_pilot, n_pilot + n_main)
        results = {
            name: two_stage_result(
                acc.moments(),
                pilot[name],
                statistic=name,
                design=design.name,
                group_size=k,
                confidence_level=confidence_level,
                interval_method=interval_method,
                inflation=self.inflation,
            )
            for name, acc in main.items()
        }
        met = {
            name: bool(np.all(np.asarray(r.width) / 2 <= tol[name])) and name not in flat for name, r in results.items()
        }
        if flat:
            warnings.warn(
                f"the group means of {', '.join(map(repr, flat))} did not vary in a pilot of {n_pilot} groups: "
                "either the statistic is exact under this design (e.g. linear under antithetic pairs) or it is a "
                "rare event not yet seen; the target is reported as not met. Raise max_budget for a rare event.",
                stacklevel=5,
            )
        missed = [n for n, ok in met.items() if not ok and n not in flat]
        if missed:
            text = ", ".join(
                f"{n} (half-width {np.max(np.asarray(results[n].width) / 2):.3g} > {np.min(tol[n]):.3g})"
                for n in missed
            )
            warnings.warn(f"max_budget {n_max * k} was reached before the target: {text}", stacklevel=5)
        info = {
            "rule": "target_precision",
            "pilot_groups": n_pilot,
            "main_groups": n_main,
            "planned_groups": need,
            "inflation": self.inflation,
            "tolerance": {n: plain(t) for n, t in tol.items()},
            "target_met": met,
            "pilot_without_spread": flat,
            "stopped_by": "target" if all(met.values()) else ("no spread" if flat and not missed else "max_budget"),
        }
        return results, {"stopping": info}


def _without_spread(pilot: Mapping[str, Moments]) -> list[str]:
    """Statistics whose pilot group means are all equal (in any element): no spread to plan from."""
    return [name for name, m in pilot.items() if np.any(np.asarray(m.m2) <= 0)]


@dataclass(frozen=True, kw_only=True)
class RQMCDoubling(StoppingRule):
    """RQMC to a target precision the way qmcpy's CubQMCRepStudentT does it: fixed replicates, doubling points.

    Each of ``replicates`` independently scrambled Sobol' sequences (extensible LMS +
    digital shift, :class:`~uqdiff.designs.sobol.SobolBlock`) starts with ``n_init``
    points (the run's ``SobolRQMC(n_init)`` design); while the Student-t half-width of
    the replicate means, t_{R-1} * inflation * sd / sqrt(R), is above the target, every
    replicate doubles its points, keeping the ones it has. RQMC's error falls faster
    than 1 / sqrt(points) on smooth integrands, so doubling n beats adding replicates
    (what :class:`TargetPrecision` does with an RQMC design). Like qmcpy's rule it stops
    at the first level that meets the target (a sequential check; measured coverage in
    ``benchmarks/rqmc_stopping.py``). The result is the mean of the R replicate means,
    its interval from their spread (``interval_method`` of the run), and the budget
    counts every point of every replicate.

    >>> RQMCDoubling(halfwidth=0.01, max_budget=2**20)
    RQMCDoubling(max_budget=1048576, halfwidth=0.01, rel_tol=None, replicates=16, inflation=1.0)
    """

    max_budget: int
    halfwidth: float | Mapping[str, float] | None = None
    rel_tol: float | None = None
    replicates: int = 16
    inflation: float = 1.0

    def __post_init__(self) -> None:
        validate(self.halfwidth, self.rel_tol, self.inflation)
        for name in ("max_budget", "replicates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"{name} must be an int >= 2, got {value!r}")

    def check(self, engine: Engine) -> None:
        design = engine.design
        if not isinstance(design, SobolRQMC) or design.scramble != "lms+shift":
            raise ValueError(
                f"RQMCDoubling runs on design=SobolRQMC(n_init) (LMS + shift scrambling), got {design.name!r}"
            )
        if self.replicates * design.n > self.max_budget:
            raise ValueError(
                f"max_budget {self.max_budget} is below one level: {self.replicates} replicates x {design.n} points"
            )

    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        design, confidence_level, interval_method = engine.design, engine.confidence_level, engine.interval_method
        n_init, r = design.n, int(self.replicates)
        q = quantile(confidence_level, r - 1, "t")
        sums: dict[str, list] = {}  # statistic -> per replicate [points, sum, sum of squares about 0]
        level, met = 0, {}
        while True:
            block = SobolBlock(n_init, level, lead=design.lead)
            for g in range(r):  # one stage per replicate and level: the rule needs each replicate's mean
                for name, acc in engine.stage(f"level {level} replicate {g}", g, g + 1, design=block).items():
                    m = acc.moments()
                    n_b = block.group_size
                    reps = sums.setdefault(name, [[0, 0.0, 0.0] for _ in range(r)])
                    p, s1, s2 = reps[g]
                    reps[g] = [p + n_b, s1 + n_b * m.mean, s2 + m.within + n_b * np.square(m.mean)]
            points = n_init * 2**level
            means = {name: np.stack([s1 / p for p, s1, _ in reps]) for name, reps in sums.items()}
            tol = {
                name: np.maximum(
                    _target_for(name, self.halfwidth) if self.halfwidth is not None else 0.0,
                    (self.rel_tol or 0.0) * np.abs(v.mean(axis=0)),
                )
                for name, v in means.items()
            }
            half = {name: q * self.inflation * v.std(axis=0, ddof=1) / np.sqrt(r) for name, v in means.items()}
            # replicates that all agree have not shown their spread yet (a lattice statistic, e.g. an
            # indicator, often gives every replicate the same count): no target is met on them
            flat = {name: bool(np.any(v.std(axis=0) == 0)) for name, v in means.items()}
            met = {name: bool(np.all(half[name] <= tol[name])) and not flat[name] for name in means}
            if all(met.values()) or 2 * points * r > self.max_budget:
                break
            level += 1
        results = {}
        for name, reps in sums.items():
            rep_means = means[name]
            within = np.sum([s2 - p * np.square(s1 / p) for p, s1, s2 in reps], axis=0)
            moments = Moments.of(rep_means, np.zeros_like(rep_means))
            moments = dataclasses.replace(moments, within=np.asarray(within))
            results[name] = StatisticResult.from_moments(
                moments,
                statistic=name,
                design=f"rqmc-doubling(n={points}, R={r})",
                group_size=points,
                confidence_level=confidence_level,
                interval_method=interval_method,
            )
        met = {
            name: bool(np.all(np.asarray(r.width) / 2 <= tol[name])) and not flat[name] for name, r in results.items()
        }
        if not all(met.values()):
            missed = ", ".join(n for n, ok in met.items() if not ok)
            why = (
                "every replicate gave the same mean, so the interval has no spread to stand on: "
                if any(flat.values())
                else ""
            )
            warnings.warn(
                f"max_budget {self.max_budget} was reached before the target (or the reported interval is wider "
                f"than the rule's t check): {missed}; {why}"
                f"stopped at {points} points x {r} replicates",
                stacklevel=5,
            )
        info = {
            "rule": "rqmc_doubling",
            "replicates": r,
            "n_init": n_init,
            "points_per_replicate": points,
            "levels": level + 1,
            "tolerance": {n: plain(t) for n, t in tol.items()},
            "target_met": met,
            "stopped_by": "target" if all(met.values()) else ("no spread" if any(flat.values()) else "max_budget"),
        }
        return results, {"stopping": info}


def tolerances(
    pilot: Mapping[str, Moments],
    *,
    target_halfwidth: float | Mapping[str, float] | None,
    rel_tol: float | None,
) -> dict[str, np.ndarray]:
    """Half-width each statistic must reach: the absolute target, rel_tol * |pilot mean|, or the larger of both."""
    out = {}
    for name, m in pilot.items():
        tol = np.zeros(np.shape(m.mean))
        if target_halfwidth is not None:
            tol = np.maximum(tol, _target_for(name, target_halfwidth))
        if rel_tol is not None:
            tol = np.maximum(tol, rel_tol * np.abs(m.mean))
        out[name] = tol
    return out


def planned_groups(
    pilot: Mapping[str, Moments],
    tolerance: Mapping[str, np.ndarray],
    *,
    confidence_level: float,
    interval_method: str,
    inflation: float,
) -> float:
    """Main-stage groups that bring every element of every statistic within its tolerance (inf if unreachable)."""
    need = 2.0
    for name, m in pilot.items():
        q = quantile(confidence_level, m.count - 1, interval_method)
        s0 = np.sqrt(m.m2 / (m.count - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            n = np.where(s0 > 0, np.ceil((q * inflation * s0 / tolerance[name]) ** 2), 0.0)
        need = max(need, float(np.nan_to_num(np.max(n), nan=math.inf)))
    return need


def two_stage_result(
    main: Moments,
    pilot: Moments,
    *,
    statistic: str,
    design: str,
    group_size: int,
    confidence_level: float,
    interval_method: str,
    inflation: float,
) -> StatisticResult:
    """The main stage's estimate with the pilot-based half-width q * inflation * s0 / sqrt(n)."""
    base = StatisticResult.from_moments(
        main,
        statistic=statistic,
        design=design,
        group_size=group_size,
        confidence_level=confidence_level,
        interval_method=interval_method,
    )
    q = quantile(confidence_level, pilot.count - 1, interval_method)
    se = inflation * np.sqrt(pilot.m2 / (pilot.count - 1) / main.count)
    return dataclasses.replace(
        base,
        standard_error=scalar(se),
        confidence_interval=ConfidenceInterval(scalar(main.mean - q * se), scalar(main.mean + q * se)),
        df=pilot.count - 1,
        # Stein's interval is a t interval on the pilot's df (no skew correction): say so, so that
        # p_value inverts this interval
        interval_method="t" if interval_method == "skew-t" else interval_method,
    )


def validate(target_halfwidth, rel_tol, inflation: float) -> None:
    """Raise a one-line error for a target that is missing, negative or not a number."""
    if target_halfwidth is None and rel_tol is None:
        raise ValueError("give halfwidth=... or rel_tol=... (or both) for a target precision")
    values = dict(target_halfwidth) if isinstance(target_halfwidth, Mapping) else {"halfwidth": target_halfwidth}
    if rel_tol is not None:
        values["rel_tol"] = rel_tol
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if isinstance(inflation, bool) or not isinstance(inflation, (int, float)) or not inflation >= 1:
        raise ValueError(f"inflation must be a number >= 1, got {inflation!r}")


def _target_for(name: str, target_halfwidth: float | Mapping[str, float]) -> float:
    if not isinstance(target_halfwidth, Mapping):
        return float(target_halfwidth)
    if name not in target_halfwidth:
        raise ValueError(f"halfwidth has no entry for statistic {name!r}; it has {sorted(target_halfwidth)}")
    return float(target_halfwidth[name])
