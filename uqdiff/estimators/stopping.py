"""Sequential stopping to a target precision: Stein's two-stage rule with an inflated pilot variance.

Stopping as soon as the running interval is narrow enough undercovers: runs
that happen to look precise stop early. The two-stage rule avoids this. A
pilot of n0 groups gives s0, the standard deviation of group means; the main
stage then draws n = ceil((q * inflation * s0 / tolerance)^2) *new* groups,
q the two-sided quantile of Student-t on n0 - 1 degrees of freedom. The
estimate is the mean of the main stage alone and its half-width is
q * inflation * s0 / sqrt(n) <= tolerance. Because n depends on the pilot
only, the main-stage mean is independent of s0, and for normal group means
(mean - mu) sqrt(n) / s0 is exactly t on n0 - 1 degrees of freedom (Stein,
1945): coverage is nominal without inflation; the inflation (1.2 by
default, as qmcpy's CubMCCLT) protects skewed statistics and small pilots.
Every design works unchanged; for RQMC a group is a replicate, so the main
stage adds replicates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from uqdiff._util import scalar
from uqdiff.estimators.accumulator import Moments
from uqdiff.estimators.results import ConfidenceInterval, StatisticResult, quantile

DEFAULT_PILOT_GROUPS = 32
DEFAULT_INFLATION = 1.2


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
    interval: str,
    inflation: float,
) -> float:
    """Main-stage groups that bring every element of every statistic within its tolerance (inf if unreachable)."""
    need = 2.0
    for name, m in pilot.items():
        q = quantile(confidence_level, m.count - 1, interval)
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
    interval: str,
    inflation: float,
) -> StatisticResult:
    """The main stage's estimate with the pilot-based half-width q * inflation * s0 / sqrt(n)."""
    base = StatisticResult.from_moments(
        main,
        statistic=statistic,
        design=design,
        group_size=group_size,
        confidence_level=confidence_level,
        interval=interval,
    )
    q = quantile(confidence_level, pilot.count - 1, interval)
    se = inflation * np.sqrt(pilot.m2 / (pilot.count - 1) / main.count)
    return dataclasses.replace(
        base,
        standard_error=scalar(se),
        confidence_interval=ConfidenceInterval(scalar(main.mean - q * se), scalar(main.mean + q * se)),
        df=pilot.count - 1,
    )


def validate(target_halfwidth, rel_tol, inflation: float) -> None:
    """Raise a one-line error for a target that is missing, negative or not a number."""
    if target_halfwidth is None and rel_tol is None:
        raise ValueError("give target_halfwidth=... or rel_tol=... (or both) for a sequential run")
    values = dict(target_halfwidth) if isinstance(target_halfwidth, Mapping) else {"target_halfwidth": target_halfwidth}
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
        raise ValueError(f"target_halfwidth has no entry for statistic {name!r}; it has {sorted(target_halfwidth)}")
    return float(target_halfwidth[name])
