"""Frozen result objects: one per statistic, one per run, one per comparison."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from uqdiff._util import plain, scalar
from uqdiff.designs import NoiseDesign
from uqdiff.estimators.accumulator import Moments

#: How an interval is made from the group means: Student-t on (groups - 1) df, or the normal quantile.
INTERVAL_METHODS = ("t", "normal")


class ConfidenceInterval(NamedTuple):
    low: float | np.ndarray
    high: float | np.ndarray


class Exportable:
    """One way to export every result: ``to_dict``, ``to_frame``, ``to_json`` and ``to_markdown``.

    Results are frozen dataclasses. ``to_dict`` holds every field in plain JSON types
    (nested results through their own ``to_dict``, NaN as null); ``to_frame`` is the
    result's table, built from ``_rows`` (one row of the scalar fields unless a result
    says otherwise); ``to_json`` and ``to_markdown`` print those two.
    """

    def to_dict(self) -> dict[str, Any]:
        """Every field in plain JSON types, ready for ``json.dumps``."""
        return {f.name: export(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def _rows(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}]

    def to_frame(self):
        """The result as a pandas DataFrame, one row per entry of its table."""
        import pandas as pd

        return pd.DataFrame(self._rows())

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict`` as JSON; keyword arguments go to ``json.dumps`` (e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_markdown(self) -> str:
        """``to_frame`` as a GitHub markdown table, numbers to 4 significant digits."""
        return markdown_table(self.to_frame())


def export(value: Any) -> Any:
    """A field's value in plain JSON types: results by their ``to_dict``, intervals as low/high, frames as rows."""
    if isinstance(value, Exportable):
        return value.to_dict()
    if isinstance(value, ConfidenceInterval):
        return {"low": plain(value.low), "high": plain(value.high)}
    if isinstance(value, NoiseDesign):
        correlation = value.correlation()
        return {"name": value.name, "group_size": value.group_size, "correlation": plain(correlation)}
    if isinstance(value, Mapping):
        return {str(k): export(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(v, Exportable) for v in value):
        return [export(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return plain(value.to_dict("records"))
    return plain(value)


@dataclass(frozen=True)
class StatisticResult(Exportable):
    """Estimate of E[S] for one statistic under one design.

    ``implied_efficiency`` is the within-run relative efficiency against plain MC at
    the same number of model calls: marginal variance / (group size x variance
    of group means). It is implied by one run's own spread, not measured: the
    efficiency of a side-by-side run is :meth:`ComparisonResult.efficiency`. ``rho`` is the mean within-group correlation of S implied
    by Var(group mean) = sigma^2 (1 + (k-1) rho) / k; for pairs it is the pair
    correlation of proposition 6. Both are None for groups of one.
    """

    statistic: str
    design: str
    estimate: float | np.ndarray
    standard_error: float | np.ndarray
    confidence_interval: ConfidenceInterval
    confidence_level: float
    interval_method: str
    df: int
    n_noises: int
    n_groups: int
    group_size: int
    marginal_variance: float | np.ndarray
    implied_efficiency: float | np.ndarray | None
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
        interval_method: str = "t",
    ) -> StatisticResult:
        """Interval from the spread of iid group means: mean +- q * sd(group means) / sqrt(groups)."""
        n, k = moments.count, group_size
        if n < 2:
            raise ValueError(f"an interval needs at least 2 groups, got {n}")
        var_groups = moments.m2 / (n - 1)
        se = np.sqrt(var_groups / n)
        q = quantile(confidence_level, n - 1, interval_method)
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
            interval_method=interval_method,
            df=n - 1,
            n_noises=n * k,
            n_groups=n,
            group_size=k,
            marginal_variance=scalar(marginal),
            implied_efficiency=None if efficiency is None else scalar(efficiency),
            rho=None if rho is None else scalar(rho),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (arrays become nested lists), ready for JSON; the interval as low, high, width."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "confidence_interval":
                out["low"], out["high"] = plain(value.low), plain(value.high)
                out["width"] = plain(self.width)
            else:
                out[name] = plain(value)
        return out

    def _rows(self) -> list[dict[str, Any]]:
        """One row for a scalar statistic; one per element of a map, with its flat index."""
        d = self.to_dict()
        if np.ndim(self.estimate) == 0:
            return [d]
        flat = {k: np.ravel(v) for k, v in d.items() if isinstance(v, list)}
        return [{**d, **{k: v[i] for k, v in flat.items()}, "element": i} for i in range(np.size(self.estimate))]

    def __str__(self) -> str:
        if np.ndim(self.estimate) == 0:
            eff = "" if self.implied_efficiency is None else f", implied efficiency {self.implied_efficiency:.3g}"
            return (
                f"{self.statistic} [{self.design}]: {self.estimate:.6g} "
                f"({self.confidence_level:.0%} CI {self.low:.6g} .. {self.high:.6g}, width {self.width:.3g}; "
                f"{self.n_noises} noises in {self.n_groups} groups{eff})"
            )
        return (
            f"{self.statistic} [{self.design}]: map of shape {np.shape(self.estimate)}, "
            f"mean CI width {np.mean(self.width):.3g} ({self.n_noises} noises in {self.n_groups} groups)"
        )


def quantile(confidence_level: float, df: float, interval_method: str) -> float:
    """Two-sided critical value: Student-t on ``df`` degrees of freedom or the normal one."""
    if (
        isinstance(confidence_level, bool)
        or not isinstance(confidence_level, (int, float, np.floating))
        or not 0.0 < confidence_level < 1.0
    ):
        raise ValueError(f"confidence_level must be a number in (0, 1), got {confidence_level!r}")
    if interval_method not in INTERVAL_METHODS:
        raise ValueError(f"interval_method must be one of {INTERVAL_METHODS}, got {interval_method!r}")
    p = 0.5 + confidence_level / 2
    return float(stats.t.ppf(p, df) if interval_method == "t" else stats.norm.ppf(p))


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
    law = stats.t(result.df) if result.interval_method == "t" else stats.norm()
    return scalar(2 * law.sf(t))


@dataclass(frozen=True)
class EstimateResult(Exportable):
    """All statistics of one run: ``result["mean"]`` is a StatisticResult.

    ``budget`` is the number of noises drawn from the design; ``generator_calls`` the
    number of images the generator made (more than ``budget`` when one noise feeds
    several generators, as in paired comparisons). ``seed`` is the seed this run's
    noise came from (in a comparison, each design's own stream).
    """

    results: dict[str, StatisticResult]
    design: str
    seed: Any
    budget: int
    generator_calls: int
    config: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> StatisticResult:
        try:
            return self.results[name]
        except KeyError:
            raise KeyError(f"no statistic {name!r}; this run has {sorted(self.results)}") from None

    def __iter__(self):
        return iter(self.results.values())

    def _rows(self) -> list[dict[str, Any]]:
        """One row per scalar statistic (maps: one row per element, with its flat index)."""
        return [row for r in self.results.values() for row in r._rows()]

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results.values())


@dataclass(frozen=True)
class ComparisonResult(Exportable):
    """Several designs at the same budget; efficiency = (CI_baseline / CI_design)^2 as in table 2.

    The baseline is plain MC unless the comparison named another design. Each design
    ran on its own noise stream (its :attr:`EstimateResult.seed`), so the runs are
    independent; ``estimate(..., design=d, seed=result.estimates[d].seed)`` repeats one.
    """

    estimates: dict[str, EstimateResult]
    baseline: str

    def efficiency(self, statistic: str, design: str) -> float:
        """Squared ratio of the baseline's mean CI width to the design's, from these side-by-side runs."""
        base = np.mean(self.estimates[self.baseline][statistic].width)
        width = np.mean(self.estimates[design][statistic].width)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0: both widths zero
            return float((base / width) ** 2)

    def _rows(self) -> list[dict[str, Any]]:
        """Rows (statistic, design) with estimate, interval, width, both efficiencies and the design's seed.

        Maps are summarized by their mean estimate, interval and width; their
        implied efficiency is the median over elements, since constant pixels
        (e.g. always clipped) give ratios near 0/0.
        """
        rows = []
        for design, est in self.estimates.items():
            for name, r in est.results.items():
                implied = r.implied_efficiency
                rows.append(
                    {
                        "statistic": name,
                        "design": design,
                        "estimate": float(np.mean(r.estimate)),
                        "low": float(np.mean(r.low)),
                        "high": float(np.mean(r.high)),
                        "width": float(np.mean(r.width)),
                        "efficiency": self.efficiency(name, design),
                        "implied_efficiency": None if implied is None else float(np.nanmedian(implied)),
                        "budget": est.budget,
                        "n_groups": r.n_groups,
                        "seed": str(plain(est.seed)),
                    }
                )
        return rows

    def __str__(self) -> str:
        frame = self.to_frame()
        return (
            frame.to_string(index=False, float_format=lambda x: f"{x:.4g}")
            + f"\nefficiency = (CI width of {self.baseline} / CI width)^2; each design on its own seed (column seed)"
        )


def markdown_table(frame) -> str:
    """A DataFrame as a markdown table, numbers to 4 significant digits (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
