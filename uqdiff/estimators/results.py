"""Frozen result objects: one per statistic, one per run, one per comparison."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from uqdiff._util import plain, scalar
from uqdiff.designs import NoiseDesign
from uqdiff.estimators.accumulator import Moments
from uqdiff.estimators.intervals import (
    DEFAULT_INTERVAL_METHOD,
    FEW_GROUPS,
    excess_kurtosis,
    implied_efficiency,
    interval_p_value,
    mean_interval,
    skewness,
    variance_ratio_interval,
)


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

    The estimate is the mean of the n iid group means and the interval comes from
    their spread; ``interval_method`` says how (see :func:`mean_interval`).
    ``skewness`` is the sample skewness of the group means (None with fewer than
    3 groups): the default interval corrects for it, and a large value with few
    groups means even the corrected interval may undercover. ``kurtosis`` is their
    sample excess kurtosis (None with fewer than 4 groups): heavy tails, or with the
    skewness a two-valued shape, that the warnings of :func:`trust_warning` read.

    ``marginal_variance`` estimates Var S(G(z)) as within / (n k) + M2 / (n - 1),
    unbiased whatever the dependence inside a group. ``implied_efficiency`` is the
    within-run relative efficiency against plain MC at the same number of model
    calls, marginal variance / (k x variance of group means), multiplied by
    (n - 3) / (n - 1), which removes the upward bias of the reciprocal variance
    for normal group means; ``implied_efficiency_low`` / ``_high`` is its
    F-based interval (the two variance estimates treated as independent, on
    n k - 1 and n - 1 degrees of freedom). It is implied by one run's own spread,
    not measured: the efficiency of a side-by-side run is
    :meth:`ComparisonResult.efficiency`. ``rho`` is the mean within-group
    correlation of S implied by Var(group mean) = sigma^2 (1 + (k-1) rho) / k; for
    pairs it is the pair correlation of proposition 6. The three are None for groups of one.
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
    skewness: float | np.ndarray | None
    marginal_variance: float | np.ndarray
    implied_efficiency: float | np.ndarray | None
    implied_efficiency_low: float | np.ndarray | None
    implied_efficiency_high: float | np.ndarray | None
    rho: float | np.ndarray | None
    kurtosis: float | np.ndarray | None = None

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
        interval_method: str = DEFAULT_INTERVAL_METHOD,
    ) -> StatisticResult:
        """The result of a run from the moments of its iid group means."""
        n, k = moments.count, group_size
        if n < 2:
            raise ValueError(f"an interval needs at least 2 groups, got {n}")
        low, high, se = mean_interval(
            n, moments.mean, moments.m2, moments.m3, confidence_level=confidence_level, interval_method=interval_method
        )
        var_groups = moments.m2 / (n - 1)
        marginal = moments.within / (n * k) + var_groups
        eff = eff_low = eff_high = rho = None
        if k > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = marginal / (k * var_groups)
                rho = (1.0 / raw - 1.0) / (k - 1)
            eff, eff_low, eff_high = implied_efficiency(raw, n, n * k - 1, confidence_level)
        return cls(
            statistic=statistic,
            design=design,
            estimate=scalar(moments.mean),
            standard_error=scalar(se),
            confidence_interval=ConfidenceInterval(scalar(low), scalar(high)),
            confidence_level=confidence_level,
            interval_method=interval_method,
            df=n - 1,
            n_noises=n * k,
            n_groups=n,
            group_size=k,
            skewness=scalar(skewness(n, moments.m2, moments.m3)) if n >= 3 else None,
            marginal_variance=scalar(marginal),
            implied_efficiency=None if eff is None else scalar(eff),
            implied_efficiency_low=None if eff_low is None else scalar(eff_low),
            implied_efficiency_high=None if eff_high is None else scalar(eff_high),
            rho=None if rho is None else scalar(rho),
            kurtosis=scalar(excess_kurtosis(n, moments.m2, moments.m4)) if n >= 4 else None,
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


def p_value(result: StatisticResult, null: float | np.ndarray = 0.0) -> float | np.ndarray:
    """Two-sided p-value of E[S] = ``null`` that inverts the result's own interval.

    The smallest alpha at which the result's 1 - alpha interval (skew-t, t or normal, as the
    result was made) excludes ``null``: p < 1 - confidence_level exactly when ``null`` lies outside
    ``confidence_interval``. A zero standard error gives 1 when the estimate equals the null and 0
    otherwise (every group mean agreed).
    """
    gamma = 0.0 if result.skewness is None else result.skewness
    return scalar(
        interval_p_value(
            result.estimate, result.standard_error, gamma, result.n_groups, result.df, null, result.interval_method
        )
    )


class ByStatistic:
    """``result["name"]`` and iteration over the per-statistic results of a run (its ``results`` dict)."""

    def __getitem__(self, name: str) -> Any:
        try:
            return self.results[name]
        except KeyError:
            raise KeyError(f"no statistic {name!r}; this run has {sorted(self.results)}") from None

    def __iter__(self):
        return iter(self.results.values())


@dataclass(frozen=True)
class EstimateResult(ByStatistic, Exportable):
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

    def efficiency_interval(self, statistic: str, design: str) -> ConfidenceInterval:
        """F interval of :meth:`efficiency`, at the baseline run's confidence level.

        The two runs are independent, so (se_baseline / se_design)^2 is a ratio of two independent
        variance estimates on (groups - 1) degrees of freedom each: exactly F-distributed for normal
        group means (the quantiles and group counts in the widths are constants): it covered 0.951
        there, and only 0.566 on chi-square group means (``benchmarks/efficiency_interval_coverage.py``):
        like every F interval of variances it is too narrow for heavy-tailed group means. The
        baseline against itself is exactly 1.
        """
        eff = self.efficiency(statistic, design)
        if design == self.baseline:
            return ConfidenceInterval(eff, eff)
        a, b = self.estimates[self.baseline][statistic], self.estimates[design][statistic]
        low, high = variance_ratio_interval(eff, a.n_groups - 1, b.n_groups - 1, a.confidence_level)
        return ConfidenceInterval(float(low), float(high))

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
                few = min(r.n_groups, self.estimates[self.baseline][name].n_groups) < FEW_GROUPS
                rows.append(
                    {
                        "statistic": name,
                        "design": design,
                        "estimate": float(np.mean(r.estimate)),
                        "low": float(np.mean(r.low)),
                        "high": float(np.mean(r.high)),
                        "width": float(np.mean(r.width)),
                        "efficiency": self.efficiency(name, design),
                        "efficiency_low": self.efficiency_interval(name, design).low,
                        "efficiency_high": self.efficiency_interval(name, design).high,
                        "implied_efficiency": None if implied is None else float(np.nanmedian(implied)),
                        "implied_low": _median_or_none(r.implied_efficiency_low),
                        "implied_high": _median_or_none(r.implied_efficiency_high),
                        "skewness": _median_or_none(r.skewness),
                        "budget": est.budget,
                        "n_groups": r.n_groups,
                        "flag": f"few groups (< {FEW_GROUPS}): efficiency uncertain" if few else "",
                        "seed": str(plain(est.seed)),
                    }
                )
        return rows

    def __str__(self) -> str:
        frame = self.to_frame()
        flagged = frame["flag"].astype(bool).any()
        frame = frame.drop(columns=["flag"]).assign(flag=np.where(frame["flag"].astype(bool), "*", ""))
        lines = [
            frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"),
            f"efficiency = (CI width of {self.baseline} / CI width)^2 from these side-by-side runs (F interval: "
            "efficiency_low .. efficiency_high); "
            "implied_efficiency (low .. high) = the same ratio read from each design's own run; "
            "each design on its own seed (column seed)",
        ]
        if flagged:
            lines.append(
                f"* fewer than {FEW_GROUPS} groups (here or in {self.baseline}): the efficiency is itself "
                "an estimate with a wide spread; use a larger budget or several seeds"
            )
        return "\n".join(lines)


def _median_or_none(value: Any) -> float | None:
    return None if value is None else float(np.nanmedian(value))


def markdown_table(frame) -> str:
    """A DataFrame as a markdown table, numbers to 4 significant digits (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
