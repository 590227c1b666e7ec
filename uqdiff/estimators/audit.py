"""Bias audits: how often a conditional generator's images have an attribute, condition by condition.

An audit is a paired estimate (:func:`uqdiff.estimators.paired.paired_estimate`): every
condition's generator gets the same noise, the statistic is the attribute (a
boolean or a probability per image, possibly one per class), and the
contrasts are the differences between conditions. Two things are added on
top: proportion intervals that stay inside [0, 1] (:func:`proportion_interval`)
and a multiplicity correction over all differences (Holm's step-down
p-values, with Bonferroni simultaneous intervals).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from uqdiff._util import callable_name, scalar, to_numpy
from uqdiff.designs import NoiseDesign
from uqdiff.designs.seeds import SeedLike
from uqdiff.estimators.intervals import holm, newcombe_limits, quantile, wilson_limits
from uqdiff.estimators.paired import PairedResult, paired_estimate
from uqdiff.estimators.results import ConfidenceInterval, Exportable, StatisticResult, markdown_table
from uqdiff.estimators.settings import RunSettings, takes_run_settings


def proportion_interval(
    estimate: float | np.ndarray,
    standard_error: float | np.ndarray,
    *,
    n_noises: int,
    df: int,
    confidence_level: float = 0.95,
) -> ConfidenceInterval:
    """Wilson score interval on the effective sample size n_eff = p(1 - p) / se^2; always inside [0, 1].

    Designed noise makes the group means non-Bernoulli, so the count of
    successes is not binomial; following Korn and Graubard (1998), the
    design's standard error is turned into the number of independent
    Bernoulli draws that would give it, and the Wilson interval is taken on
    that n_eff with the Student-t quantile on the run's degrees of freedom
    (Wilson on n_eff (z/t)^2 with z, as Korn-Graubard do for Clopper-Pearson).
    Unlike the Wald interval it never leaves [0, 1] and keeps its coverage
    near 0 and 1. As Korn and Graubard do, n_eff is capped at the number of
    images (design effect at least 1): designs make a proportion's group
    means discrete and few-valued (an antithetic pair of a threshold near the
    median hits exactly once unless both miss), so a small se can be a rare
    event of its own, and uncapped intervals covered only 84% in such a case
    (tests/test_audit.py). The design's gain still shows in the standard
    error, ``implied_design_efficiency`` and the differences (through the common-noise
    correlation). When p_hat is 0 or 1 the standard error is 0 and says
    nothing; n_eff is then the number of images, which gives
    [0, q^2 / (n + q^2)] (and its mirror), the score-interval analogue of the
    rule of three.

    >>> lo, hi = proportion_interval(0.0, 0.0, n_noises=100, df=99)   # hi = t^2 / (100 + t^2)
    >>> lo, round(hi, 4)
    (0.0, 0.0379)
    >>> lo, hi = proportion_interval(0.5, 0.05, n_noises=100, df=99)
    >>> round(lo, 3), round(hi, 3)
    (0.403, 0.597)
    """
    q = quantile(confidence_level, df, "t")
    return ConfidenceInterval(*(scalar(v) for v in wilson_limits(estimate, standard_error, n_noises, q)))


def difference_interval(
    a: StatisticResult, b: StatisticResult, difference: StatisticResult, *, confidence_level: float = 0.95
) -> ConfidenceInterval:
    """Interval for p_a - p_b inside [-1, 1]: Newcombe's hybrid score method with the run's correlation.

    The t interval of a difference of proportions fails where it matters in
    audits: with both proportions near 0 (or 1) most group differences are
    equal, the standard error collapses and the interval shrinks to a point.
    Newcombe's method 10 (Stat. Med. 1998) combines the two arms' score
    intervals instead, here the Wilson-n_eff ones of :func:`proportion_interval`:
    L = d - sqrt(da^2 - 2 r da eb + eb^2), U = d + sqrt(ea^2 - 2 r ea db + db^2),
    with da, ea (db, eb) the distances from p_a (p_b) to its lower and upper
    limits. r is the correlation of the two estimates that common noise
    creates, measured by the same run: (se_a^2 + se_b^2 - se_d^2) / (2 se_a se_b),
    0 when either standard error is 0. ``a``, ``b`` and ``difference`` are
    results of one paired run.
    """
    q = quantile(confidence_level, difference.df, "t")
    return ConfidenceInterval(*(scalar(v) for v in _newcombe(a, b, difference, q)))


def _newcombe(a: StatisticResult, b: StatisticResult, d: StatisticResult, q) -> tuple[np.ndarray, np.ndarray]:
    return newcombe_limits(
        a.estimate, a.standard_error, a.n_noises, b.estimate, b.standard_error, b.n_noises, d.standard_error, q
    )


def difference_p_value(a: StatisticResult, b: StatisticResult, difference: StatisticResult) -> float | np.ndarray:
    """Two-sided p-value of p_a = p_b that agrees with :func:`difference_interval`: the smallest
    alpha at which the 1 - alpha interval excludes 0 (bisection on log alpha, to 1e-12 relative)."""
    d = np.asarray(difference.estimate, dtype=np.float64)
    lo, hi = np.full(d.shape, np.log(1e-15)), np.zeros(d.shape)  # log alpha; excludes at hi, not (yet) at lo
    excludes = lambda log_alpha: _excludes_zero(a, b, difference, np.exp(log_alpha))
    at_floor = excludes(lo)
    for _ in range(60):
        mid = (lo + hi) / 2
        ex = excludes(mid)
        hi, lo = np.where(ex, mid, hi), np.where(ex, lo, mid)
    p = np.where(at_floor, 1e-15, np.exp(hi))
    return scalar(np.where(excludes(np.full(d.shape, -1e-12)), p, 1.0))


def _excludes_zero(a, b, d, alpha: np.ndarray) -> np.ndarray:
    q = sps.t.isf(alpha / 2, d.df)
    low, high = _newcombe(a, b, d, q)
    return (low > 0) | (high < 0)


def effective_sample_size(
    estimate: float | np.ndarray, standard_error: float | np.ndarray, *, n_noises: int
) -> float | np.ndarray:
    """The n_eff :func:`proportion_interval` uses: p(1 - p) / se^2 capped at the image count, which
    it also is where p_hat is 0 or 1 (how many iid Bernoulli draws give the same standard error)."""
    p, se = np.asarray(estimate, dtype=np.float64), np.asarray(standard_error, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.minimum(p * (1 - p) / se**2, n_noises)
    return scalar(np.where((p <= 0) | (p >= 1), float(n_noises), n_eff))


class Attribute:
    """An attribute function checked to return booleans or probabilities in [0, 1], (B,) or (B, a)."""

    def __init__(self, fn: Callable, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"attribute must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or callable_name(fn, default="attribute")

    def __call__(self, images) -> np.ndarray:
        v = to_numpy(self.fn(images))
        if v.ndim not in (1, 2):
            raise ValueError(f"attribute {self.name!r} must return shape (B,) or (B, a), got {v.shape}")
        if v.size and (np.nanmin(v) < 0 or np.nanmax(v) > 1):
            raise ValueError(
                f"attribute {self.name!r} must return booleans or probabilities in [0, 1], "
                f"got values in [{np.nanmin(v):.4g}, {np.nanmax(v):.4g}]"
            )
        return v


@dataclass(frozen=True, eq=False)
class AuditResult(Exportable):
    """Per-condition proportions and the differences between conditions, as tables.

    ``proportions``: one row per (condition, attribute) with the estimate,
    its standard error, the Wilson-n_eff interval (``low``, ``high``), the
    same interval at the Bonferroni level over all cells (``low_simultaneous``,
    ``high_simultaneous``), ``n_effective`` and the design's own implied efficiency.
    ``differences``: one row per (pair of conditions, attribute) with the
    Newcombe interval (:func:`difference_interval`), the same at the
    Bonferroni level over the whole family (``low_adjusted``, ``high_adjusted``),
    the p-value that inverts it and its Holm adjustment (``p_holm``),
    ``reject`` (Holm at 1 - confidence_level), and the implied efficiency of
    common noise + design against independent MC at the same total budget
    (``implied_efficiency``) and against independent runs of the same design
    (``implied_crn_efficiency``). ``trend`` (if asked): the least-squares slope of
    the proportion against the condition scores, per attribute, with its
    t interval and t-test p-value (a single pre-planned test, outside the
    Holm family).
    """

    proportions: Any
    differences: Any
    trend: Any
    conditions: list[str]
    attributes: list[str]
    design: str
    seed: Any
    budget: int
    generator_calls: int
    confidence_level: float

    def matrix(self, column: str = "estimate"):
        """conditions x attributes table of one column of ``proportions`` (e.g. a confusion matrix)."""
        return self.proportions.pivot(index="condition", columns="attribute", values=column).loc[
            self.conditions, self.attributes
        ]

    def to_markdown(self) -> str:
        """The three tables as markdown sections (their columns differ, so one stacked table would be mostly empty)."""
        parts = [
            "### Proportions",
            markdown_table(self.proportions),
            "",
            "### Differences",
            markdown_table(self.differences),
        ]
        if self.trend is not None:
            parts += ["", "### Trend (slope of the proportion per unit score)", markdown_table(self.trend)]
        return "\n".join(parts)

    def _rows(self) -> list[dict[str, Any]]:
        """The three tables stacked, each row tagged with its ``table`` (proportion, difference, trend)."""
        tables = {"proportion": self.proportions, "difference": self.differences, "trend": self.trend}
        return [
            {"table": name, **row}
            for name, frame in tables.items()
            if frame is not None
            for row in frame.to_dict(orient="records")
        ]

    def plot(self, *, max_differences: int = 20, title: str | None = None):
        """Figure: proportions with intervals (a heatmap for many attributes) and a forest plot of differences.

        Thick bars: per-comparison intervals; thin bars: simultaneous
        (Bonferroni) ones; red: differences Holm rejects. Shows the
        ``max_differences`` smallest Holm p-values. Uses matplotlib's object
        API (no pyplot state); save with ``fig.savefig(path)``.
        """
        from matplotlib.figure import Figure

        shown = self.differences.sort_values(["p_holm", "p_value"]).head(max_differences)
        many = len(self.attributes) > 3
        height = max(4.0, 0.32 * len(shown) + 1.5, 0.45 * len(self.conditions) + 1.5 if many else 0)
        fig = Figure(figsize=(14 if many else 12, height), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1.1, 1] if many else [1, 1])
        if many:
            self._heatmap(left, fig)
        else:
            self._proportion_bars(left)
        _forest(right, shown, self.confidence_level, with_attribute=len(self.attributes) > 1)
        if title:
            fig.suptitle(title)
        return fig

    def _proportion_bars(self, ax) -> None:
        x = np.arange(len(self.conditions))
        for j, attr in enumerate(self.attributes):
            rows = self.proportions[self.proportions.attribute == attr].set_index("condition").loc[self.conditions]
            xs = x + (j - (len(self.attributes) - 1) / 2) * 0.15
            color = f"C{j}"
            ax.vlines(xs, rows.low_simultaneous, rows.high_simultaneous, color=color, lw=1)
            ax.vlines(xs, rows.low, rows.high, color=color, lw=4, alpha=0.6)
            ax.plot(xs, rows.estimate, "o", color=color, label=attr)
        ax.set_xticks(x, self.conditions, rotation=30 if len(self.conditions) > 6 else 0, ha="right")
        ax.set_xlabel("condition")
        ax.set_ylabel("proportion")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"Proportions: {self.confidence_level:.0%} Wilson-n_eff (thick), simultaneous (thin)", fontsize=10)
        ax.legend(fontsize=8)

    def _heatmap(self, ax, fig) -> None:
        m = self.matrix().to_numpy(dtype=float)
        lo = self.matrix("low_simultaneous").to_numpy(dtype=float)
        hi = self.matrix("high_simultaneous").to_numpy(dtype=float)
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                color = "white" if m[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}\n[{lo[i, j]:.2f},{hi[i, j]:.2f}]",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color=color,
                )
        ax.set_xticks(range(m.shape[1]), self.attributes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(m.shape[0]), self.conditions, fontsize=8)
        ax.set_xlabel("attribute")
        ax.set_ylabel("condition")
        ax.set_title("Proportions with simultaneous (Bonferroni) Wilson-n_eff intervals", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.7)


def _forest(ax, rows, confidence_level: float, *, with_attribute: bool) -> None:
    y = np.arange(len(rows))[::-1]
    colors = np.where(rows.reject, "tab:red", "tab:gray")
    ax.hlines(y, rows.low_adjusted, rows.high_adjusted, color=colors, lw=1)
    ax.hlines(y, rows.low, rows.high, color=colors, lw=4, alpha=0.6)
    ax.scatter(rows.estimate, y, c=colors, zorder=3, s=16)
    ax.axvline(0, color="black", lw=0.8)
    labels = [f"{c} [{a}]" if with_attribute else c for c, a in zip(rows.contrast, rows.attribute)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("difference in proportion")
    ax.set_title(
        f"Differences: {confidence_level:.0%} Newcombe (thick), Bonferroni (thin)\nred: Holm rejects", fontsize=10
    )


@takes_run_settings
def audit(
    samplers: Mapping[Hashable, Callable],
    attribute: Callable,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    reference: Hashable | None = None,
    trend: Sequence[float] | None = None,
    attribute_names: Sequence[str] | None = None,
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    run: RunSettings | None = None,
) -> AuditResult:
    """Proportion of images with ``attribute`` for each condition, and all differences, on common noise.

    ``samplers`` maps each condition (class label, prompt, difficulty) to
    its generator; ``attribute(images)`` returns booleans or probabilities,
    (B,) or (B, a) for several attributes at once (e.g. a classifier's
    one-hot verdict), named by ``attribute_names``. Differences are all pairs
    of conditions, or each against ``reference``; Holm corrects over all of
    them (every pair and attribute: one family). ``trend`` gives a score per
    condition (e.g. its difficulty) and adds the least-squares slope of the
    proportion on the score. ``budget`` is the number of noises per
    condition (every condition sees the same noises, so the run makes
    conditions x budget generator calls, as the result's ``generator_calls``
    says). An attribute without a name (a lambda) is called ``attribute``;
    name it with ``attribute_names``. The other options are those of
    :func:`uqdiff.estimate`; the proportion intervals are Wilson intervals on
    the effective sample size, so there is no ``interval_method``.

    Returns
    -------
    AuditResult
        The proportion, difference and trend tables.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a generator fails; the message names the groups and the seed.

    >>> from uqdiff.samplers import LinearGenerator
    >>> gens = {level: LinearGenerator([0.3 * level], [[1.0, 0.5]]) for level in (0, 1, 2)}   # truth .186 .266 .360
    >>> r = audit(gens, lambda x: x[:, 0] > 1.0, budget=512, design="antithetic", trend=[0, 1, 2], seed=1)
    >>> print(r.proportions[["condition", "estimate", "low", "high"]].round(3).to_string(index=False))
    condition  estimate   low  high
            0     0.176 0.145 0.211
            1     0.254 0.218 0.294
            2     0.346 0.306 0.388
    >>> print(r.trend[["estimate", "low", "high", "p_value"]].round(3).to_string(index=False))   # truth 0.087
     estimate   low  high  p_value
        0.085 0.071   0.1      0.0
    """
    level = confidence_level
    names = [str(c) for c in samplers]
    contrasts = None
    if trend is not None:
        s = np.asarray(trend, dtype=np.float64)
        if s.shape != (len(names),) or not np.isfinite(s).all() or np.ptp(s) == 0:
            raise ValueError(
                f"trend must give {len(names)} finite, not all equal scores (one per condition), got {list(trend)}"
            )
        contrasts = {"trend": (s - s.mean()) / ((s - s.mean()) ** 2).sum()}
    attr = Attribute(attribute)
    paired = paired_estimate(
        samplers,
        {"attribute": attr},
        budget=budget,
        design=design,
        reference=reference,
        contrasts=contrasts,
        noise_shape=noise_shape,
        run=run,
        seed=seed,
        confidence_level=level,
    )
    first = next(iter(paired.arms["attribute"].values()))
    n_attr = int(np.size(first.estimate))
    attributes = _attribute_names(attribute_names, n_attr, attr.name, np.ndim(first.estimate))
    proportions = _proportions(paired, names, attributes, level)
    differences = _differences(paired, attributes, level)
    trend_rows = None if trend is None else _trend(paired, attributes)
    return AuditResult(
        proportions=proportions,
        differences=differences,
        trend=trend_rows,
        conditions=names,
        attributes=attributes,
        design=paired.design,
        seed=seed,
        budget=paired.budget,
        generator_calls=paired.generator_calls,
        confidence_level=level,
    )


def _attribute_names(given: Sequence[str] | None, n: int, default: str, ndim: int) -> list[str]:
    if given is None:
        return [default] if ndim == 0 else [str(j) for j in range(n)]
    names = [str(a) for a in given]
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"attribute_names must be {n} distinct names (the attribute returns {n} values), got {names}")
    return names


def _proportions(run: PairedResult, conditions: list[str], attributes: list[str], level: float):
    import pandas as pd

    cells = len(conditions) * len(attributes)
    rows = []
    for c in conditions:
        r = run.arms["attribute"][c]
        p, se = np.ravel(r.estimate), np.ravel(r.standard_error)
        lo, hi = proportion_interval(p, se, n_noises=r.n_noises, df=r.df, confidence_level=level)
        slo, shi = proportion_interval(p, se, n_noises=r.n_noises, df=r.df, confidence_level=1 - (1 - level) / cells)
        n_eff = np.ravel(effective_sample_size(p, se, n_noises=r.n_noises))
        eff = np.ravel(r.implied_efficiency) if r.implied_efficiency is not None else np.full(len(p), np.nan)
        for j, a in enumerate(attributes):
            rows.append(
                {
                    "condition": c,
                    "attribute": a,
                    "estimate": p[j],
                    "standard_error": se[j],
                    "low": np.ravel(lo)[j],
                    "high": np.ravel(hi)[j],
                    "low_simultaneous": np.ravel(slo)[j],
                    "high_simultaneous": np.ravel(shi)[j],
                    "n_effective": n_eff[j],
                    "n_noises": r.n_noises,
                    "implied_design_efficiency": eff[j],
                }
            )
    return pd.DataFrame(rows)


def _differences(run: PairedResult, attributes: list[str], level: float):
    """Rows per (pair of conditions, attribute): Newcombe intervals, Holm p-values, Bonferroni intervals."""
    alpha = 1 - level
    arms = run.arms["attribute"]
    pairs = {name: c for name, c in run.contrasts["attribute"].items() if name != "trend"}
    q_adjusted = quantile(1 - alpha / (len(pairs) * len(attributes)), next(iter(arms.values())).df, "t")
    rows = []
    for name, c in pairs.items():
        a = next(arm for arm, w in c.weights.items() if w == 1.0)
        b = next(arm for arm, w in c.weights.items() if w == -1.0)
        ra, rb, r = arms[a], arms[b], c.result
        low, high = _newcombe(ra, rb, r, quantile(level, r.df, "t"))
        low_adj, high_adj = _newcombe(ra, rb, r, q_adjusted)
        rows += _contrast_rows(
            name,
            c,
            attributes,
            condition_a=a,
            condition_b=b,
            low=low,
            high=high,
            low_adjusted=low_adj,
            high_adjusted=high_adj,
            p_value=difference_p_value(ra, rb, r),
            arm_correlation=c.arm_correlation,
        )
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame.p_value.to_numpy())
    frame["reject"] = frame["p_holm"] <= alpha  # statsmodels' rule: reject where the adjusted p <= alpha
    order = [
        "contrast",
        "condition_a",
        "condition_b",
        "attribute",
        "estimate",
        "standard_error",
        "low",
        "high",
        "low_adjusted",
        "high_adjusted",
        "p_value",
        "p_holm",
        "reject",
        "implied_efficiency",
        "implied_crn_efficiency",
        "arm_correlation",
    ]
    return frame[order]


def _trend(run: PairedResult, attributes: list[str]):
    """Rows per attribute for the trend contrast: its t interval and t-test p-value."""
    import pandas as pd

    c = run.contrasts["attribute"]["trend"]
    return pd.DataFrame(_contrast_rows("trend", c, attributes, low=c.result.low, high=c.result.high, p_value=c.p_value))


def _contrast_rows(name: str, c, attributes: list[str], **columns: Any) -> list[dict[str, Any]]:
    """One row per attribute; every column broadcast to the attributes."""
    cols = {
        "estimate": c.result.estimate,
        "standard_error": c.result.standard_error,
        "implied_efficiency": c.implied_efficiency,
        "implied_crn_efficiency": c.implied_crn_efficiency,
        **columns,
    }
    flat = {
        k: v
        if isinstance(v, str)
        else np.broadcast_to(np.ravel(np.asarray(np.nan if v is None else v, dtype=np.float64)), (len(attributes),))
        for k, v in cols.items()
    }
    return [
        {"contrast": name, "attribute": a, **{k: v if isinstance(v, str) else float(v[j]) for k, v in flat.items()}}
        for j, a in enumerate(attributes)
    ]
