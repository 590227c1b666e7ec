"""Bias audits: how often a conditional generator's images have an attribute, condition by condition.

An audit is a paired estimate (:func:`uqdiff.paired.paired_estimate`): every
condition's generator gets the same noise, the statistic is the attribute (a
boolean or a probability per image, possibly one per class), and the
contrasts are the differences between conditions. Two things are added on
top: proportion intervals that stay inside [0, 1] (:func:`proportion_interval`)
and a multiplicity correction over all differences (Holm's step-down
p-values from statsmodels, with Bonferroni simultaneous intervals).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uqdiff.designs import NoiseDesign
from uqdiff.estimate import _to_numpy
from uqdiff.paired import PairedResult, paired_estimate
from uqdiff.results import ConfidenceInterval, _plain, markdown_table, quantile


def proportion_interval(
    estimate: float | np.ndarray,
    standard_error: float | np.ndarray,
    *,
    n_evaluations: int,
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
    near 0 and 1. n_eff is not capped at the number of images: a design that
    beats MC earns the narrower interval. When p_hat is 0 or 1 the standard
    error is 0 and says nothing, so n_eff falls back to the number of images,
    which gives [0, q^2 / (n + q^2)] (and its mirror), the score-interval
    analogue of the rule of three. A zero standard error with p_hat inside
    (0, 1) (every group mean equal) gives a zero-width interval, as the
    t interval does.

    >>> lo, hi = proportion_interval(0.0, 0.0, n_evaluations=100, df=99)   # hi = t^2 / (100 + t^2)
    >>> lo, round(hi, 4)
    (0.0, 0.0379)
    >>> lo, hi = proportion_interval(0.5, 0.05, n_evaluations=100, df=99)
    >>> round(lo, 3), round(hi, 3)
    (0.403, 0.597)
    """
    p = np.clip(np.asarray(estimate, dtype=np.float64), 0.0, 1.0)
    se = np.asarray(standard_error, dtype=np.float64)
    q = quantile(confidence_level, df, "t")
    degenerate = (p <= 0.0) | (p >= 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(degenerate, float(n_evaluations), p * (1 - p) / se**2)
        a = np.where(np.isinf(n_eff), 0.0, q**2 / n_eff)
        center = (p + a / 2) / (1 + a)
        half = q / (1 + a) * np.sqrt(np.where(np.isinf(n_eff), 0.0, p * (1 - p) / n_eff + a**2 / (4 * q**2)))
    return ConfidenceInterval(_scalar(np.clip(center - half, 0, 1)), _scalar(np.clip(center + half, 0, 1)))


def effective_sample_size(estimate: float | np.ndarray, standard_error: float | np.ndarray) -> float | np.ndarray:
    """n_eff = p(1 - p) / se^2: how many iid Bernoulli draws give the same standard error."""
    p, se = np.asarray(estimate, dtype=np.float64), np.asarray(standard_error, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _scalar(p * (1 - p) / se**2)


class Attribute:
    """An attribute function checked to return booleans or probabilities in [0, 1], (B,) or (B, a)."""

    def __init__(self, fn: Callable, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"attribute must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__

    def __call__(self, images) -> np.ndarray:
        v = _to_numpy(self.fn(images))
        if v.ndim not in (1, 2):
            raise ValueError(f"attribute {self.name!r} must return shape (B,) or (B, a), got {v.shape}")
        if v.size and (np.nanmin(v) < 0 or np.nanmax(v) > 1):
            raise ValueError(
                f"attribute {self.name!r} must return booleans or probabilities in [0, 1], "
                f"got values in [{np.nanmin(v):.4g}, {np.nanmax(v):.4g}]"
            )
        return v


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Per-condition proportions and the differences between conditions, as tables.

    ``proportions``: one row per (condition, attribute) with the estimate,
    its standard error, the Wilson-n_eff interval (``low``, ``high``), the
    same interval at the Bonferroni level over all cells (``low_simultaneous``,
    ``high_simultaneous``), ``n_effective`` and the design's own efficiency.
    ``differences``: one row per (contrast, attribute) with the t interval,
    the Bonferroni-adjusted interval over the whole family, the raw and Holm
    p-values, ``reject`` (Holm at 1 - confidence_level), and the efficiency of
    common noise + design against independent MC at the same total budget
    (``efficiency``) and against independent runs of the same design
    (``crn_efficiency``). ``trend`` (if asked): the least-squares slope of
    the proportion against the condition scores, per attribute.
    """

    proportions: Any
    differences: Any
    trend: Any
    conditions: list[str]
    attributes: list[str]
    design: str
    seed: Any
    n_noises: int
    n_evaluations: int
    confidence_level: float

    def matrix(self, column: str = "estimate"):
        """conditions x attributes table of one column of ``proportions`` (e.g. a confusion matrix)."""
        return self.proportions.pivot(index="condition", columns="attribute", values=column).loc[
            self.conditions, self.attributes
        ]

    def to_markdown(self) -> str:
        """The three tables as markdown sections."""
        parts = ["### Proportions", markdown_table(self.proportions), "", "### Differences", markdown_table(self.differences)]
        if self.trend is not None:
            parts += ["", "### Trend (slope of the proportion per unit score)", markdown_table(self.trend)]
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        meta = {f: _plain(getattr(self, f)) for f in
                ("conditions", "attributes", "design", "seed", "n_noises", "n_evaluations", "confidence_level")}
        tables = {"proportions": self.proportions, "differences": self.differences, "trend": self.trend}
        return {**meta, **{k: None if v is None else v.to_dict(orient="records") for k, v in tables.items()}}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), default=_plain, **kwargs)

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
        _forest(right, shown, self.confidence_level)
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
                ax.text(j, i, f"{m[i, j]:.2f}\n[{lo[i, j]:.2f},{hi[i, j]:.2f}]", ha="center", va="center",
                        fontsize=6, color=color)
        ax.set_xticks(range(m.shape[1]), self.attributes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(m.shape[0]), self.conditions, fontsize=8)
        ax.set_xlabel("attribute")
        ax.set_ylabel("condition")
        ax.set_title("Proportions with simultaneous (Bonferroni) Wilson-n_eff intervals", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.7)


def _forest(ax, rows, confidence_level: float) -> None:
    y = np.arange(len(rows))[::-1]
    colors = np.where(rows.reject, "tab:red", "tab:gray")
    ax.hlines(y, rows.low_adjusted, rows.high_adjusted, color=colors, lw=1)
    ax.hlines(y, rows.low, rows.high, color=colors, lw=4, alpha=0.6)
    ax.scatter(rows.estimate, y, c=colors, zorder=3, s=16)
    ax.axvline(0, color="black", lw=0.8)
    labels = [c if a == "" else f"{c} [{a}]" for c, a in zip(rows.contrast, rows.attribute)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("difference in proportion")
    ax.set_title(f"Differences: {confidence_level:.0%} t (thick), Bonferroni (thin); red = Holm rejects", fontsize=10)


def audit(
    generators: Mapping[Hashable, Callable],
    attribute: Callable,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    reference: Hashable | None = None,
    trend: Sequence[float] | None = None,
    attribute_names: Sequence[str] | None = None,
    seed: Any = 0,
    confidence_level: float = 0.95,
    **options: Any,
) -> AuditResult:
    """Proportion of images with ``attribute`` for each condition, and all differences, on common noise.

    ``generators`` maps each condition (class label, prompt, difficulty) to
    its generator; ``attribute(images)`` returns booleans or probabilities,
    (B,) or (B, a) for several attributes at once (e.g. a classifier's
    one-hot verdict), named by ``attribute_names``. Differences are all pairs
    of conditions, or each against ``reference``; Holm corrects over all of
    them (every pair and attribute: one family). ``trend`` gives a score per
    condition (e.g. its difficulty) and adds the least-squares slope of the
    proportion on the score. ``budget`` is the number of noises per
    condition; ``options`` go to :func:`uqdiff.estimate`.

    >>> from uqdiff.generators import LinearGenerator
    >>> gens = {level: LinearGenerator([0.3 * level], [[1.0, 0.5]]) for level in (0, 1, 2)}
    >>> r = audit(gens, lambda x: x[:, 0] > 1.0, budget=512, design="antithetic", trend=[0, 1, 2], seed=1)
    >>> print(r.proportions[["condition", "estimate", "low", "high"]].round(3).to_string(index=False))
    condition  estimate   low  high
            0     0.188 0.159 0.219
            1     0.268 0.238 0.299
            2     0.357 0.330 0.386
    >>> print(r.trend[["estimate", "low", "high", "p_value"]].round(3).to_string(index=False))   # truth 0.087
     estimate  low  high  p_value
        0.085 0.07   0.1      0.0
    """
    level = confidence_level
    names = [str(c) for c in generators]
    contrasts = None
    if trend is not None:
        s = np.asarray(trend, dtype=np.float64)
        if s.shape != (len(names),) or not np.isfinite(s).all() or np.ptp(s) == 0:
            raise ValueError(f"trend must give {len(names)} finite, not all equal scores (one per condition), got {list(trend)}")
        contrasts = {"trend": (s - s.mean()) / ((s - s.mean()) ** 2).sum()}
    attr = Attribute(attribute)
    run = paired_estimate(
        generators, {"attribute": attr}, budget=budget, design=design, reference=reference, contrasts=contrasts,
        seed=seed, confidence_level=level, interval="t", **options,
    )
    first = next(iter(run.arms["attribute"].values()))
    n_attr = int(np.size(first.estimate))
    attributes = _attribute_names(attribute_names, n_attr, attr.name, np.ndim(first.estimate))
    proportions = _proportions(run, names, attributes, level)
    differences = _differences(run, attributes, level, exclude={"trend"})
    trend_rows = None
    if trend is not None:
        trend_rows = _differences(run, attributes, level, only={"trend"}).drop(
            columns=["condition_a", "condition_b", "arm_correlation", "low_adjusted", "high_adjusted", "p_holm", "reject"]
        )
    return AuditResult(
        proportions=proportions, differences=differences, trend=trend_rows, conditions=names, attributes=attributes,
        design=run.design, seed=seed, n_noises=run.n_noises, n_evaluations=run.n_evaluations, confidence_level=level,
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
        lo, hi = proportion_interval(p, se, n_evaluations=r.n_evaluations, df=r.df, confidence_level=level)
        slo, shi = proportion_interval(p, se, n_evaluations=r.n_evaluations, df=r.df,
                                       confidence_level=1 - (1 - level) / cells)
        n_eff = np.ravel(effective_sample_size(p, se))
        eff = np.ravel(r.efficiency) if r.efficiency is not None else np.full(len(p), np.nan)
        for j, a in enumerate(attributes):
            rows.append({
                "condition": c, "attribute": a, "estimate": p[j], "standard_error": se[j],
                "low": np.ravel(lo)[j], "high": np.ravel(hi)[j],
                "low_simultaneous": np.ravel(slo)[j], "high_simultaneous": np.ravel(shi)[j],
                "n_effective": n_eff[j], "n_evaluations": r.n_evaluations, "design_efficiency": eff[j],
            })
    return pd.DataFrame(rows)


def _differences(run: PairedResult, attributes: list[str], level: float, *, exclude=(), only=None):
    """Rows per (contrast, attribute) with Holm p-values and Bonferroni intervals over the rows."""
    import pandas as pd
    from statsmodels.stats.multitest import multipletests

    rows = []
    for name, c in run.contrasts["attribute"].items():
        if name in exclude or (only is not None and name not in only):
            continue
        arms = [a for a, w in c.weights.items() if w == 1.0] + [a for a, w in c.weights.items() if w == -1.0]
        r = c.result
        cols = {
            "estimate": r.estimate, "standard_error": r.standard_error, "low": r.low, "high": r.high,
            "p_value": c.p_value, "efficiency": c.efficiency, "crn_efficiency": c.crn_efficiency,
            "arm_correlation": c.arm_correlation if c.arm_correlation is not None else np.nan,
        }
        flat = {k: np.broadcast_to(np.ravel(np.asarray(v, dtype=np.float64)), (len(attributes),)) for k, v in cols.items()}
        for j, a in enumerate(attributes):
            rows.append({"contrast": name, "condition_a": arms[0] if len(arms) == 2 else "",
                         "condition_b": arms[1] if len(arms) == 2 else "", "attribute": a,
                         **{k: float(v[j]) for k, v in flat.items()}, "df": r.df})
    frame = pd.DataFrame(rows)
    alpha = 1 - level
    reject, p_holm, _, _ = multipletests(frame.p_value.to_numpy(), alpha=alpha, method="holm")
    q = np.array([quantile(1 - alpha / len(frame), df, "t") for df in frame.df])
    frame["low_adjusted"] = frame.estimate - q * frame.standard_error
    frame["high_adjusted"] = frame.estimate + q * frame.standard_error
    frame["p_holm"], frame["reject"] = p_holm, reject
    order = ["contrast", "condition_a", "condition_b", "attribute", "estimate", "standard_error", "low", "high",
             "low_adjusted", "high_adjusted", "p_value", "p_holm", "reject", "efficiency", "crn_efficiency",
             "arm_correlation"]
    return frame[order]


def _scalar(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else x
