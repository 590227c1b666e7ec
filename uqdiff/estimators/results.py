"""Frozen result objects: one per statistic, one per run, one per comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from uqdiff._util import plain, scalar
from uqdiff.estimators.accumulator import Moments

INTERVALS = ("t", "normal")


class ConfidenceInterval(NamedTuple):
    low: float | np.ndarray
    high: float | np.ndarray


@dataclass(frozen=True)
class StatisticResult:
    """Estimate of E[S] for one statistic under one design.

    ``efficiency`` is the within-run relative efficiency against plain MC at
    the same number of model calls: marginal variance / (group size x variance
    of group means). ``rho`` is the mean within-group correlation of S implied
    by Var(group mean) = sigma^2 (1 + (k-1) rho) / k; for pairs it is the pair
    correlation of proposition 6. Both are None for groups of one.
    """

    statistic: str
    design: str
    estimate: float | np.ndarray
    standard_error: float | np.ndarray
    confidence_interval: ConfidenceInterval
    confidence_level: float
    interval: str
    df: int
    n_evaluations: int
    n_groups: int
    group_size: int
    marginal_variance: float | np.ndarray
    efficiency: float | np.ndarray | None
    rho: float | np.ndarray | None

    @property
    def low(self) -> float | np.ndarray:
        return self.confidence_interval.low

    @property
    def high(self) -> float | np.ndarray:
        return self.confidence_interval.high

    @property
    def width(self) -> float | np.ndarray:
        return self.confidence_interval.high - self.confidence_interval.low

    @classmethod
    def from_moments(
        cls,
        moments: Moments,
        *,
        statistic: str,
        design: str,
        group_size: int,
        confidence_level: float = 0.95,
        interval: str = "t",
    ) -> StatisticResult:
        """Interval from the spread of iid group means: mean +- q * sd(group means) / sqrt(groups)."""
        n, k = moments.count, group_size
        if n < 2:
            raise ValueError(f"an interval needs at least 2 groups, got {n}")
        var_groups = moments.m2 / (n - 1)
        se = np.sqrt(var_groups / n)
        q = quantile(confidence_level, n - 1, interval)
        marginal = (moments.within + k * moments.m2) / (n * k - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            efficiency = marginal / (k * var_groups) if k > 1 else None
            rho = (k * var_groups / marginal - 1.0) / (k - 1) if k > 1 else None
        return cls(
            statistic=statistic,
            design=design,
            estimate=scalar(moments.mean),
            standard_error=scalar(se),
            confidence_interval=ConfidenceInterval(scalar(moments.mean - q * se), scalar(moments.mean + q * se)),
            confidence_level=confidence_level,
            interval=interval,
            df=n - 1,
            n_evaluations=n * k,
            n_groups=n,
            group_size=k,
            marginal_variance=scalar(marginal),
            efficiency=None if efficiency is None else scalar(efficiency),
            rho=None if rho is None else scalar(rho),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (arrays become nested lists), ready for JSON."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "confidence_interval":
                out["low"], out["high"] = plain(value.low), plain(value.high)
                out["width"] = plain(self.width)
            else:
                out[name] = plain(value)
        return out

    def __str__(self) -> str:
        if np.ndim(self.estimate) == 0:
            eff = "" if self.efficiency is None else f", efficiency {self.efficiency:.3g}"
            return (
                f"{self.statistic} [{self.design}]: {self.estimate:.6g} "
                f"({self.confidence_level:.0%} CI {self.low:.6g} .. {self.high:.6g}, width {self.width:.3g}; "
                f"{self.n_evaluations} evaluations in {self.n_groups} groups{eff})"
            )
        return (
            f"{self.statistic} [{self.design}]: map of shape {np.shape(self.estimate)}, "
            f"mean CI width {np.mean(self.width):.3g} ({self.n_evaluations} evaluations in {self.n_groups} groups)"
        )


def quantile(confidence_level: float, df: int, interval: str) -> float:
    """Two-sided critical value: Student-t on ``df`` degrees of freedom or the normal one."""
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    p = 0.5 + confidence_level / 2
    return float(stats.t.ppf(p, df) if interval == "t" else stats.norm.ppf(p))


def p_value(result: StatisticResult, null: float | np.ndarray = 0.0) -> float | np.ndarray:
    """Two-sided p-value of E[S] = ``null`` from the result's own reference law (t or normal).

    A zero standard error gives 1 when the estimate equals the null and 0
    otherwise (every group mean agreed).
    """
    diff = np.asarray(result.estimate) - null
    se = np.asarray(result.standard_error)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(diff) / se
    t = np.where(se > 0, t, np.where(diff == 0, 0.0, np.inf))
    law = stats.t(result.df) if result.interval == "t" else stats.norm()
    return scalar(2 * law.sf(t))


@dataclass(frozen=True)
class EstimateResult:
    """All statistics of one run: ``result["mean"]`` is a StatisticResult."""

    results: dict[str, StatisticResult]
    design: str
    seed: Any
    budget: int
    config: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> StatisticResult:
        try:
            return self.results[name]
        except KeyError:
            raise KeyError(f"no statistic {name!r}; this run has {sorted(self.results)}") from None

    def __iter__(self):
        return iter(self.results.values())

    def to_frame(self):
        """One row per scalar statistic (maps: one row per element, with its flat index)."""
        import pandas as pd

        rows = []
        for r in self.results.values():
            d = r.to_dict()
            if np.ndim(r.estimate) == 0:
                rows.append(d)
                continue
            flat = {k: np.ravel(v) for k, v in d.items() if isinstance(v, list)}
            for i in range(np.size(r.estimate)):
                rows.append({**d, **{k: v[i] for k, v in flat.items()}, "element": i})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "seed": plain(self.seed),
            "budget": self.budget,
            "config": self.config,
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results.values())


@dataclass(frozen=True)
class ComparisonResult:
    """Several designs at the same budget; efficiency = (CI_MC / CI_design)^2 as in table 2."""

    estimates: dict[str, EstimateResult]
    baseline: str

    def efficiency(self, statistic: str, design: str) -> float:
        """Squared ratio of the baseline's mean CI width to the design's."""
        base = np.mean(self.estimates[self.baseline][statistic].width)
        width = np.mean(self.estimates[design][statistic].width)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0: both widths zero
            return float((base / width) ** 2)

    def to_frame(self):
        """Rows (statistic, design) with estimate, interval, width and both efficiencies.

        Maps are summarized by their mean estimate, interval and width; their
        implied efficiency is the median over elements, since constant pixels
        (e.g. always clipped) give ratios near 0/0.
        """
        import pandas as pd

        rows = []
        for design, est in self.estimates.items():
            for name, r in est.results.items():
                rows.append(
                    {
                        "statistic": name,
                        "design": design,
                        "estimate": float(np.mean(r.estimate)),
                        "low": float(np.mean(r.low)),
                        "high": float(np.mean(r.high)),
                        "width": float(np.mean(r.width)),
                        "efficiency": self.efficiency(name, design),
                        "implied_efficiency": None if r.efficiency is None else float(np.nanmedian(r.efficiency)),
                        "n_evaluations": r.n_evaluations,
                        "n_groups": r.n_groups,
                    }
                )
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        """The table of :meth:`to_frame` as a GitHub markdown table."""
        return markdown_table(self.to_frame())

    def to_json(self, **kwargs) -> str:
        return json.dumps(
            {"baseline": self.baseline, "designs": {k: v.to_dict() for k, v in self.estimates.items()}}, **kwargs
        )

    def __str__(self) -> str:
        frame = self.to_frame()
        return frame.to_string(index=False, float_format=lambda x: f"{x:.4g}")


def markdown_table(frame) -> str:
    """A DataFrame as a markdown table, numbers to 4 significant digits (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
