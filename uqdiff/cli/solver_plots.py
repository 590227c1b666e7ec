"""Figures of a comparison of solvers over images: a forest plot of the differences, the variance components.

``forest.png`` shows, per metric, every pair "A - B" as its estimate with its interval over images,
a zero line, and the pairs resolved by Holm's correction filled; the axis says which way is better.
``variance_components.png`` splits the variance of one image's estimate into the images' own spread
and the solver's noise at the run's samples per image, with the recommended samples per image n*
written on each bar: a reader sees whether more images or more samples per image would help.

Both follow :mod:`uqdiff.cli.plots`: built as ``Figure`` objects without pyplot, the style held
per figure, titles wrapped to the figure's width, and a figure that rests on fewer than
:data:`~uqdiff.estimators.intervals.FEW_GROUPS` images (the groups of a population interval) says so
in the flag colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from uqdiff.cli.plots import DPI, FLAG_COLOR, STYLE, UNITS, legend_below, subplots, suptitle
from uqdiff.estimators.intervals import FEW_GROUPS
from uqdiff.estimators.population import SolverComparison

#: What each figure shows, one line, for the report under the figure.
CAPTIONS = {
    "forest.png": "Every pair's population difference (first - second) per metric with its interval over images; "
    "filled: resolved after Holm's correction; the axis says which side of zero favours the first solver.",
    "variance_components.png": "The variance of one image's estimate per solver and metric: the images' own "
    "spread (between) and the solver's noise at this run's samples per image (within); n* on each bar is the "
    "samples per image that minimize the population mean's variance per unit cost.",
}
RESOLVED_COLOR = "tab:blue"
OPEN_COLOR = "dimgray"
BETWEEN_COLOR = "tab:blue"
WITHIN_COLOR = "tab:orange"
#: The unit of a variance of each reconstruction metric (the unit of the metric, squared).
VARIANCE_UNITS = {"psnr": "dB²", "l1": "squared pixel value, [0, 1] scale", "ssim": "unitless"}


def level_text(level: float) -> str:
    """A confidence level as a percentage without false digits: 0.95 -> '95%', 0.9875 -> '98.75%'."""
    return f"{100 * level:.4g}%"


def directions_of(statistics) -> dict[str, bool | None]:
    """Whether higher is better for each statistic name, from the registry; None where not known."""
    from uqdiff.statistics import STATISTICS

    return {s: getattr(STATISTICS.get(s), "higher_is_better", None) for s in statistics}


def write_solver_plots(
    comparison: SolverComparison, folder: str | Path, directions: Mapping[str, bool | None] | None = None
) -> list[Path]:
    """``forest.png`` and ``variance_components.png`` in ``folder``; returns their paths."""
    paths = []
    with rc_context(STYLE):
        for name, fig in solver_figures(comparison, directions).items():
            fig.savefig(Path(folder) / name, dpi=DPI, bbox_inches="tight")
            paths.append(Path(folder) / name)
    return paths


def solver_figures(
    comparison: SolverComparison, directions: Mapping[str, bool | None] | None = None
) -> dict[str, Figure]:
    """The figures of a comparison by file name. ``directions[metric]``: True where higher is better,
    False where lower is, None where not known (default: the statistic registry's ``higher_is_better``)."""
    directions = {**directions_of(comparison.means), **(directions or {})}
    with rc_context(STYLE):
        return {
            "forest.png": forest_figure(comparison, directions),
            "variance_components.png": variance_figure(comparison),
        }


def _few_images(comparison: SolverComparison) -> bool:
    return comparison.n_images < FEW_GROUPS


def _flag_handle(comparison: SolverComparison) -> Line2D:
    return Line2D([], [], ls="none", label=f"only {comparison.n_images} images: rough (fewer than {FEW_GROUPS})")


def _colour_flag(legend) -> None:
    for text in legend.get_texts():
        if "rough" in text.get_text():
            text.set_color(FLAG_COLOR)


def _direction(statistic: str, higher: bool | None, first: str = "", second: str = "") -> str:
    """The x label of a metric's differences: unit, and which side of zero favours the first solver
    (named when the figure has one pair)."""
    unit = UNITS.get(statistic, "the statistic's unit").replace(", at most 1", "")  # a difference is not
    what = f"{first} - {second}" if first else "first - second"
    if higher is None:
        return f"{what} ({unit})"
    word, side = ("higher", "right") if higher else ("lower", "left")
    return f"{what} ({unit})\n{word} is better: {side} of 0, {first or 'the first solver'} is better"


def _p_text(p: float) -> str:
    return "p_Holm < 1e-4" if p < 1e-4 else f"p_Holm {p:.2g}"


def forest_figure(comparison: SolverComparison, directions: Mapping[str, bool | None]) -> Figure:
    """Per metric, every pair's difference with its interval over images; resolved pairs (Holm) filled."""
    metrics = list(comparison.differences)
    pairs = list(comparison.differences[metrics[0]])
    longest = max(len(p) for p in pairs)
    fig, axes = subplots(
        1,
        len(metrics),
        figsize=(4.0 * len(metrics) + 0.07 * longest, 2.6 + 0.5 * len(pairs)),
        squeeze=False,
        sharey=True,
    )
    level, alpha = comparison.confidence_level, 1 - comparison.confidence_level
    y = np.arange(len(pairs))[::-1]  # the first pair on top
    for ax, stat in zip(axes[0], metrics):
        diffs = comparison.differences[stat]
        ends = [0.0] + [v for d in diffs.values() for v in (d.low, d.high) if math.isfinite(v)]
        lo, hi = min(ends), max(ends)
        pad = 0.12 * (hi - lo) or 1.0
        for row, pair in zip(y, pairs):
            d = diffs[pair]
            colour = RESOLVED_COLOR if d.resolved else OPEN_COLOR
            ax.errorbar(
                d.estimate,
                row,
                xerr=[[d.estimate - d.low], [d.high - d.estimate]],
                fmt="o",
                ms=6,
                color=colour,
                mfc=colour if d.resolved else "white",
                mew=1.5,
                lw=2.0 if d.resolved else 1.3,
                capsize=4,
            )
            # the label starts at the estimate and runs towards the panel's middle, so it stays inside
            left = d.estimate <= (lo + hi) / 2
            ax.annotate(
                f"{d.estimate:+.3g}, {_p_text(d.p_holm)}",
                (d.estimate, row),
                xytext=(-4 if left else 4, 7),
                textcoords="offset points",
                ha="left" if left else "right",
                va="bottom",
                fontsize=8,
                color=colour,
                bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.8),
            )
        ax.axvline(0.0, color="black", ls="--", lw=1, zorder=0.5)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-0.6, len(pairs) - 0.2)  # room above the top interval for its label
        ax.set_yticks(y, pairs)
        ax.set_title(f"{stat}: {comparison.ranking.get(stat, '')}", fontsize=10)
        names = (diffs[pairs[0]].first, diffs[pairs[0]].second) if len(pairs) == 1 else ()
        ax.set_xlabel(_direction(stat, directions.get(stat), *names), fontsize=9)
        ax.grid(axis="x", color="0.9", lw=0.8)
        ax.set_axisbelow(True)
    looks = comparison.looks
    stopped = (
        f"; level Bonferroni-adjusted over the looks of early stopping (at {', '.join(map(str, looks))} images)"
        if len(looks) > 1
        else ""
    )
    suptitle(
        fig,
        f"Differences between solvers over {comparison.n_images} images ({comparison.samples_per_image} samples "
        f"per image on common noise, {comparison.design}): {level_text(level)} t interval of each pair, not adjusted "
        f"for the other pairs{stopped}; filled where resolved after Holm's correction over the pairs of a metric",
    )
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            color=RESOLVED_COLOR,
            lw=2,
            label=f"resolved: Holm-adjusted p < {alpha:.3g} (filled)",
        ),
        Line2D([], [], marker="o", mfc="white", color=OPEN_COLOR, label="not resolved (open)"),
        Line2D([], [], color="black", ls="--", lw=1, label="no difference"),
    ]
    if _few_images(comparison):
        handles.append(_flag_handle(comparison))
    _colour_flag(legend_below(fig, handles))
    return fig


def _variance_unit(statistic: str) -> str:
    if statistic in VARIANCE_UNITS:
        return VARIANCE_UNITS[statistic]
    return f"squared {UNITS[statistic]}" if statistic in UNITS else "the statistic's unit squared"


def _image_cost(comparison: SolverComparison) -> float | None:
    """The image cost behind the recommendations: n*^2 between / within, from the first finite one."""
    for per in comparison.means.values():
        for m in per.values():
            n = m.recommended_samples_per_image
            if math.isfinite(n) and m.within_variance > 0:
                return n**2 * m.between_variance / m.within_variance
    return None


def _samples(n: float) -> str:
    return "∞" if not math.isfinite(n) else f"{n:.0f}" if n >= 10 else f"{n:.2g}"


def variance_figure(comparison: SolverComparison) -> Figure:
    """Per metric, stacked bars per solver: between-image and within-image (noise) variance, n* on each."""
    metrics = list(comparison.means)
    solvers = list(comparison.means[metrics[0]])
    n = comparison.samples_per_image
    width = max(3.6, 0.8 + 0.9 * len(solvers) + 0.05 * sum(len(s) for s in solvers))
    fig, axes = subplots(1, len(metrics), figsize=(width * len(metrics), 4.4), squeeze=False)
    x = np.arange(len(solvers))
    for ax, stat in zip(axes[0], metrics):
        means = [comparison.means[stat][s] for s in solvers]
        between = np.array([m.between_variance for m in means])
        within = np.array([m.within_variance / m.samples_per_image for m in means])
        ax.bar(x, between, width=0.6, color=BETWEEN_COLOR)
        ax.bar(x, within, width=0.6, bottom=between, color=WITHIN_COLOR, alpha=0.85, hatch="//", edgecolor="white")
        total = between + within
        for i, m in enumerate(means):
            share = within[i] / total[i] if total[i] > 0 else math.nan
            ax.annotate(
                f"noise {share:.0%}\nn* = {_samples(m.recommended_samples_per_image)}",
                (x[i], total[i]),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylim(0, 1.3 * float(total.max()) if total.max() > 0 else 1.0)  # room for the labels
        ax.set_xticks(x, solvers)
        for text in ax.get_xticklabels():
            if len(text.get_text()) > 6:
                text.set(rotation=20, ha="right", rotation_mode="anchor")
        ax.set_title(stat)
        ax.set_ylabel(f"variance of one image's estimate\n({_variance_unit(stat)})", fontsize=9)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    cost = _image_cost(comparison)
    cost_text = (
        "at the run's image cost"
        if cost is None
        else f"an image costs {cost:.3g} sample{'' if math.isclose(cost, 1) else 's'}"
    )
    suptitle(
        fig,
        f"Where the variance of one image's estimate comes from, over {comparison.n_images} images at n = {n} "
        f"samples per image. n* = the samples per image that minimize the population mean's variance per unit "
        f"cost ({cost_text}): n* above {n}, more samples per image help more than more images; below {n}, more "
        f"images do.",
    )
    handles = [
        Patch(color=BETWEEN_COLOR, label="between images: spread of the true per-image means"),
        Patch(
            facecolor=WITHIN_COLOR,
            alpha=0.85,
            hatch="//",
            edgecolor="white",
            label=f"within image: the solver's noise, at n = {n} samples",
        ),
    ]
    if any(
        not math.isfinite(m.recommended_samples_per_image) for per in comparison.means.values() for m in per.values()
    ):
        handles.append(
            Line2D([], [], ls="none", label="n* = ∞: no spread between the images seen, only more samples help")
        )
    if _few_images(comparison):
        handles.append(_flag_handle(comparison))
    _colour_flag(legend_below(fig, handles))
    return fig
