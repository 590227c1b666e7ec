"""Frozen result objects: one per statistic, one per run, one per comparison."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from uqdiff._util import plain, scalar
from uqdiff.designs import NoiseDesign
from uqdiff.estimators.accumulator import Moments

#: How an interval is made from the group means (see :func:`mean_interval`): Student-t corrected for the
#: skewness of the group means (the default), plain Student-t on groups - 1 df, or the normal quantile.
INTERVAL_METHODS = ("skew-t", "t", "normal")
DEFAULT_INTERVAL_METHOD = "skew-t"
#: Share of the (soft-thresholded) sample skewness that the skew-t interval corrects for (see mean_interval).
SKEW_SHRINK = 0.75
#: Fewer groups than this: efficiencies are flagged in every table and every interval is warned (see trust_warning).
FEW_GROUPS = 16


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


def implied_efficiency(
    ratio: np.ndarray | float, n_groups: int, marginal_df: int, confidence_level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(efficiency, low, high) from a raw ratio marginal variance / (k x variance of group means).

    The efficiency is ``ratio * (n - 3) / (n - 1)`` (NaN for n <= 3), which removes the upward bias
    of a reciprocal variance for normal group means; the interval is the F interval of two
    independent variance estimates on ``marginal_df`` and n - 1 degrees of freedom.
    """
    n = n_groups
    alpha = 1.0 - confidence_level
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = ratio * (n - 3) / (n - 1) if n > 3 else np.full(np.shape(ratio), np.nan)
        low = ratio / stats.f.ppf(1 - alpha / 2, marginal_df, n - 1)
        high = ratio / stats.f.ppf(alpha / 2, marginal_df, n - 1)
    return eff, low, high


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


def skewness(n: int, m2: np.ndarray, m3: np.ndarray) -> np.ndarray:
    """Sample skewness (M3 / n) / (M2 / n)^1.5 of n values from their central sums; 0 where they do not vary."""
    m2, m3 = np.asarray(m2, dtype=np.float64), np.asarray(m3, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (m3 / n) / (m2 / n) ** 1.5
    return np.where(m2 > 0, g, 0.0)


def excess_kurtosis(n: int, m2: np.ndarray, m4: np.ndarray) -> np.ndarray:
    """Sample excess kurtosis (M4 / n) / (M2 / n)^2 - 3 of n values from their central sums; 0 where they do not vary."""
    m2, m4 = np.asarray(m2, dtype=np.float64), np.asarray(m4, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (m4 / n) / (m2 / n) ** 2 - 3.0
    return np.where(m2 > 0, g, 0.0)


def mean_interval(
    n: int | np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    m3: np.ndarray,
    *,
    confidence_level: float = 0.95,
    interval_method: str = DEFAULT_INTERVAL_METHOD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, standard error) of the mean of n iid values from their mean and central sums M2, M3.

    Vectorized over any shape (maps, or many runs at once in a coverage study).

    * ``"t"``: mean +- t_{n-1} s / sqrt(n): exact for normal group means; under skew it
      undercovers by O(n^-1/2) (``benchmarks/interval_coverage.py``: 0.924-0.928 on exp(Z) with
      128 groups of K-antithetic or equicorrelated noise).
    * ``"normal"``: the normal quantile instead of t (the paper's choice for MC and AMC).
    * ``"skew-t"`` (the default): the t interval corrected for the skewness of the group
      means by Hall's (1992) monotone cubic transformation of the studentized mean,
      g(x) = x + a x^2 + a^2 x^3 / 3 + a / (2n) with a = gamma / 3, inverted in closed
      form. The sample skewness is soft-thresholded by half its null standard error,
      0.5 sqrt(6 / n), so for symmetric group means the interval is the t interval (at most
      1.014x wider on the symmetric statistics of the coverage benchmark), and then multiplied by
      :data:`SKEW_SHRINK` = 0.75: the full correction overcovers lattice data (a 2.3 %
      indicator: 0.97-0.98 at 64-512 groups in a trial run of that benchmark with the full correction), less of it leaves continuous skew
      undercovered; 0.75 kept both within 95 % +- 2 % in ``benchmarks/interval_coverage.py``.
      In that benchmark it covered 0.924-0.974 where t covered 0.915-0.966 (0.3's noise). With fewer than
      about 16 strongly skewed groups (not in the benchmark) no interval built from the group
      means alone is reliable: results warn then.
    """
    n_arr = np.asarray(n, dtype=np.float64)
    m2 = np.asarray(m2, dtype=np.float64)
    se = np.sqrt(m2 / (n_arr - 1)) / np.sqrt(n_arr)
    low, high = corrected_interval(mean, se, skewness(n, m2, m3), n_arr, n_arr - 1, confidence_level, interval_method)
    return low, high, se


def corrected_interval(
    mean: np.ndarray,
    se: np.ndarray,
    gamma: np.ndarray,
    n: np.ndarray | float,
    df: np.ndarray | float,
    confidence_level: float,
    interval_method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of :func:`mean_interval` from a standard error, a skewness and a number of values.

    ``gamma`` is the skewness of one value and ``n`` the number of values, so the estimate's own
    skewness is gamma / sqrt(n); an estimate made of several independent means (two-fidelity)
    passes its skewness times sqrt(n) with n its effective number of values (df + 1).
    """
    q = quantile(confidence_level, df, interval_method)
    if interval_method != "skew-t":
        return mean - q * se, mean + q * se
    n = np.asarray(n, dtype=np.float64)
    s = se * np.sqrt(n)
    gamma = SKEW_SHRINK * np.sign(gamma) * np.maximum(np.abs(gamma) - 0.5 * np.sqrt(6.0 / n), 0.0)
    a, b = gamma / 3.0, gamma / (6.0 * n)

    def inverse(y):  # g^-1(y) for g(x) = ((1 + a x)^3 - 1) / (3 a) + b
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (np.cbrt(1.0 + 3.0 * a * (y - b)) - 1.0) / a
        return np.where(np.abs(a) > 1e-12, x, y - b)

    upper, lower = inverse(q / np.sqrt(n)), inverse(-q / np.sqrt(n))
    return mean - s * upper, mean - s * lower


#: Sarle's bimodality coefficient above which group means count as lumped in few values: a two-valued
#: sample gives exactly 1, a normal one about 1/3, a uniform 0.56. At 0.7 the rules together warn 3.3 %
#: of normal samples of 16 groups, 3.5 % of 24, 0.6 % of 32 (uniform: 12 %, 5 %, 2 %); 0.6 warned 13 %
#: of the normal ones at 16, 0.8 missed the lumped hard cells (benchmarks/hard_coverage.py).
LUMPED = 0.7


def trust_warning(
    name: str, n_groups: float, gamma: Any, interval_method: str, spread: bool, kurtosis: Any = None
) -> str | None:
    """Why the interval of ``name`` may not keep its level, naming the remedy; None when nothing shows.

    Rules, each measured in ``benchmarks/hard_coverage.py``:

    * fewer than :data:`FEW_GROUPS` groups that vary: their shape cannot be checked (RQMC with
      8 replicates of a two-valued statistic covered 0.69, ``benchmarks/results/coverage/bounded.md``);
    * Cochran's rule for skew: a t interval needs n > 25 gamma^2 groups, applied where the
      skewness is clearly not noise (|gamma| > 2 sqrt(6 / n));
    * with fewer than 64 groups, two shapes that the skewness alone misses: heavy tails (excess
      kurtosis above both 2 sqrt(24 / n), its null noise, and n / 10), and a lumped, two-valued
      shape (Sarle's bimodality coefficient (gamma^2 + 1) / (kurtosis + 3) above :data:`LUMPED`;
      a uniform gives 0.56, two values 1).
    """
    n = float(n_groups)
    if n < FEW_GROUPS and spread:
        return (
            f"{name!r} has only {n:.3g} groups: its interval ({interval_method}) rests on nearly normal group means, "
            f"which {n:.3g} groups cannot check (a skewed or two-valued statistic undercovers unseen). Use at least "
            f"{FEW_GROUPS} groups (for RQMC: more replicates of fewer points), or for a bounded statistic the "
            f"betting interval (uqdiff.betting_interval on uqdiff.group_means), valid at every n"
        )
    gamma = np.abs(np.asarray(gamma, dtype=np.float64))
    bad = (n < 25 * gamma**2) & (gamma > 2 * math.sqrt(6 / n))
    shape = f"skewed (skewness {float(gamma.max()):.2g}"
    remedy = f"groups > 25 x skewness^2 = {int(25 * float(gamma.max()) ** 2) + 1}"
    if not bad.any() and kurtosis is not None and n < 64 and spread:
        g2 = np.asarray(kurtosis, dtype=np.float64)
        heavy = (g2 > 2 * math.sqrt(24 / n)) & (g2 > n / 10)
        lumped = (gamma**2 + 1) / np.maximum(g2 + 3, 1e-12) > LUMPED
        bad = heavy | lumped
        if heavy.any():
            shape, remedy = f"heavy-tailed (excess kurtosis {float(g2.max()):.2g}", "at least 64 groups"
        else:
            shape, remedy = "lumped in few values (two-valued or bimodal", "at least 64 groups"
    if not bad.any():
        return None
    where = "" if np.ndim(gamma) == 0 else f" at {int(bad.sum())} of {bad.size} elements"
    return (
        f"the group means of {name!r} are {shape}{where} over {n:.3g} groups): its interval ({interval_method}) "
        f"may undercover; use more groups (a larger budget, or a design with smaller groups) so that {remedy}, "
        f"or for a bounded statistic the betting interval"
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
    if interval_method == "normal":
        return float(stats.norm.ppf(p))
    q = stats.t.ppf(p, df)
    return float(q) if np.ndim(q) == 0 else q


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
    law = stats.norm() if result.interval_method == "normal" else stats.t(result.df)
    return scalar(2 * law.sf(t))


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
            f"efficiency = (CI width of {self.baseline} / CI width)^2 from these side-by-side runs; "
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
