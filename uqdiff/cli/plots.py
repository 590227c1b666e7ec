"""Figures of a run: widths, efficiencies, running estimates, pixel maps, PN vs RR correlations.

Figures are built as ``matplotlib.figure.Figure`` objects and saved directly, so
writing them needs no pyplot backend and changes no global state (a notebook
user's backend and rcParams stay as they were). Every axis says what it shows
and in which unit; designs keep one colour across all figures of a run.

A width, an efficiency or an interval that rests on fewer than
:data:`~uqdiff.estimators.results.FEW_GROUPS` groups is flagged where it is drawn,
as the report flags it: hatched, faded or dotted, with the words
"only n groups: rough" beside it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from uqdiff.cli.runs import RunOutput
from uqdiff.estimators.intervals import FEW_GROUPS

#: Unit of each statistic's value (on the image mapped to [0, 1], times its ``scale`` where it has one).
UNITS = {
    "mean": "pixel value, [0, 1] scale",
    "std": "pixel value, [0, 1] scale",
    "brightness": "luma, [0, 1] scale",
    "contrast": "% of the pixel range",
    "centroid": "row index",
    "slope": "per pixel, [0, 1] scale",
    "max_slope": "per pixel, [0, 1] scale",
    "pixel_map": "pixel value, [0, 1] scale",
    "l1": "pixel value, [0, 1] scale",
    "psnr": "dB",
    "ssim": "unitless, at most 1",
}

#: The style of every figure here, applied to each figure alone (never to matplotlib's global rcParams).
STYLE = {"font.size": 10, "axes.titlesize": 11}
DPI = 110
#: Colour of the few-groups flag's words.
FLAG_COLOR = "firebrick"


def subplots(rows: int, cols: int, *, figsize: tuple[float, float], **kwargs):
    """A figure and its axes, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kwargs)


def unit_of(statistic) -> str:
    """The unit of a statistic, noting a ``scale`` other than 1 (e.g. 0..255)."""
    unit = UNITS.get(statistic.name, "statistic's unit")
    scale = getattr(statistic, "scale", 1.0)
    return unit.replace("[0, 1]", f"[0, {scale:g}]") if scale != 1.0 else unit


def rough(n_groups: float) -> str:
    """The flag of a figure that rests on fewer than FEW_GROUPS groups (the report's words)."""
    return f"only {int(n_groups)} groups: rough"


def _few(n_groups: float) -> bool:
    return bool(n_groups < FEW_GROUPS)


def write_plots(output: RunOutput, frame, folder: Path) -> list[Path]:
    """All figures the run supports, saved as PNGs in ``folder``; returns their paths."""
    paths = []
    with rc_context(STYLE):
        for name, fig in figures(output, frame).items():
            fig.savefig(folder / name, dpi=DPI, bbox_inches="tight")
            paths.append(folder / name)
    return paths


def figures(output: RunOutput, frame) -> dict[str, Figure]:
    """Every figure the run supports by file name; ``frame`` is :func:`uqdiff.cli.report.summary_frame`'s.

    The style holds for these figures only (matplotlib's global rcParams stay as they were).
    """
    colors = {d: colormaps["tab10"](i % 10) for i, d in enumerate(output.estimates)}
    with rc_context(STYLE):
        out = {"ci_width.png": width_figure(output, frame, colors)}
        if _efficiency_statistics(output, frame):
            out["efficiency.png"] = efficiency_figure(output, frame, colors)
        if any(output.traces[d] for d in output.traces):
            out["running_estimate.png"] = running_figure(output, colors)
        maps = [n for n in output.statistics if any(np.ndim(e[n].estimate) for e in output.estimates.values())]
        out.update({f"{name}_maps.png": pixel_map_figure(output, name) for name in maps})
        if output.correlations is not None:
            out["pn_rr_correlations.png"] = correlation_figure(output)
    return out


def _grid(n: int, width: float = 4.2, height: float = 3.4):
    """A grid of ``n`` panels; ``width`` and ``height`` per panel in inches."""
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(width * cols, height * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def _tick_labels(ax, x, labels: list[str], n_groups: list[float]) -> None:
    """Design names as tick labels, each with the few-groups flag under it where it applies (in red)."""
    ax.set_xticks(x, [f"{label}\n{rough(n)}" if _few(n) else label for label, n in zip(labels, n_groups)])
    for text, n in zip(ax.get_xticklabels(), n_groups):
        text.set(rotation=30, ha="right", va="top", rotation_mode="anchor", fontsize=9)
        if _few(n):
            text.set_color(FLAG_COLOR)


def _map_note(output: RunOutput, name: str) -> str:
    return " (mean over pixels)" if np.ndim(output.estimates[next(iter(output.estimates))][name].estimate) else ""


def width_figure(output: RunOutput, frame, colors) -> Figure:
    """CI width per design, one panel per statistic; widths on few groups hatched and flagged."""
    names = list(output.statistics)
    designs = list(output.estimates)
    fig, axes = _grid(len(names), width=max(4.2, 0.6 + 1.0 * len(designs)), height=3.8)
    level = output.config.confidence_level
    flagged = False
    for ax, name in zip(axes, names):
        rows = frame[frame.statistic == name].set_index("design").loc[designs]
        x = np.arange(len(designs))
        groups = list(rows["n_groups"])
        bars = ax.bar(x, rows["width"], color=[colors[d] for d in designs], edgecolor=[colors[d] for d in designs])
        for bar, d, n in zip(bars, designs, groups):
            if _few(n):  # faded and hatched: the width of an interval on few groups is itself rough
                bar.set_facecolor(to_rgba(colors[d], 0.3))
                bar.set_hatch("///")
                flagged = True
        ax.bar_label(bars, labels=[f"{w:.3g}" for w in rows["width"]], fontsize=8, padding=2)
        ax.margins(y=0.15)
        _tick_labels(ax, x, [output.labels[d] for d in designs], groups)
        ax.set_title(f"{name}{_map_note(output, name)}")
        ax.set_ylabel(f"{level:.0%} CI width\n({unit_of(output.statistics[name])})")
    title = f"{level:.0%} confidence-interval width per design ({output.config.budget} model calls each)"
    if flagged:
        title += f"\nhatched: interval from fewer than {FEW_GROUPS} groups, its width rough"
    suptitle(fig, title)
    fig.tight_layout()
    return fig


def _efficiency_statistics(output: RunOutput, frame) -> list[str]:
    """Statistics with an efficiency to show: against MC side by side, or implied within a run."""
    others = frame[frame.design != "mc"]
    shown = []
    for name in output.statistics:
        rows = others[others.statistic == name]
        implied = "implied_low" in rows and np.isfinite(rows["implied_low"].astype(float)).any()
        if len(rows) and ("efficiency" in rows or implied):
            shown.append(name)
    return shown


def efficiency_figure(output: RunOutput, frame, colors) -> Figure:
    """Efficiency against MC per design: side by side (a point) and within the run (with its interval)."""
    names = _efficiency_statistics(output, frame)
    side = "efficiency" in frame and "mc" in output.estimates
    designs = [d for d in output.estimates if d != "mc"]
    fig, axes = _grid(len(names), width=max(4.4, 0.8 + 1.2 * len(designs)), height=4.0)
    level = output.config.confidence_level
    flagged = False
    for ax, name in zip(axes, names):
        rows = frame[frame.statistic == name].set_index("design")
        base = int(rows.loc["mc", "n_groups"]) if side else None
        groups = [min(int(rows.loc[d, "n_groups"]), base or np.inf) for d in designs]
        flagged = flagged or any(_few(n) for n in groups)
        values = []
        shift = 0.13 if side else 0.0  # side by side left of the design's tick, within run right of it
        for i, d in enumerate(designs):
            r = rows.loc[d]
            alpha = 0.5 if _few(groups[i]) else 1.0
            if side and np.isfinite(r["efficiency"]):
                e = float(r["efficiency"])
                few = _few(groups[i])
                ax.plot(
                    i - shift,
                    e,
                    marker="o",
                    ms=7,
                    ls="none",
                    color=colors[d],
                    mfc="white" if few else colors[d],
                    mew=1.6,
                    alpha=alpha,
                )
                ax.annotate(
                    _times(e),
                    (i - shift, e),
                    xytext=(-6, 0),
                    textcoords="offset points",
                    ha="right",
                    va="center",
                    fontsize=8,
                    color=FLAG_COLOR if few else "black",
                )
                values.append(e)
            low, high, centre = _num(r, "implied_low"), _num(r, "implied_high"), _num(r, "implied_efficiency")
            if np.isfinite(low) and np.isfinite(high):
                mid = centre if np.isfinite(centre) else float(np.sqrt(low * high))
                few = _few(r["n_groups"])
                bar = ax.errorbar(
                    i + shift,
                    mid,
                    yerr=[[mid - low], [high - mid]],
                    fmt="s" if np.isfinite(centre) else "none",
                    ms=5,
                    color=colors[d],
                    mfc="white" if few else colors[d],
                    capsize=4,
                    lw=1.4,
                    alpha=0.5 if few else 1.0,
                )
                if few:
                    bar.lines[2][0].set_linestyle("--")
                values += [low, high]
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        positive = [v for v in values if np.isfinite(v) and v > 0]
        if positive and len(positive) == len(values):
            ax.set_yscale("log")
        ax.set_xlim(-0.6, len(designs) - 0.4)
        _tick_labels(ax, np.arange(len(designs)), [output.labels[d] for d in designs], groups)
        scale = ", log scale" if ax.get_yscale() == "log" else ""
        ax.set_ylabel(f"efficiency against MC\n(MC = 1, dotted{scale})")
        summary = " (summarized over pixels)" if _map_note(output, name) else ""
        ax.set_title(f"{name}{summary}")
    handles = []
    if side:
        handles.append(
            Line2D(
                [], [], marker="o", ls="none", color="dimgray", label="side by side: (CI width of MC / CI width)$^2$"
            )
        )
    handles.append(
        Line2D([], [], marker="s", color="dimgray", label=f"within run: implied efficiency, {level:.0%} interval")
    )
    if flagged:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                mfc="white",
                ls="--",
                color="dimgray",
                alpha=0.6,
                label=f"open, faded, dashed: fewer than {FEW_GROUPS} groups, rough",
            )
        )
    what = "Efficiency" if side else "Implied efficiency (read within the run)"
    suptitle(fig, f"{what} against plain MC at the same budget ({output.config.budget} model calls each)")
    legend_below(fig, handles)
    return fig


def _num(row, column: str) -> float:
    """A number of a frame row; NaN where the column is missing or empty (groups of one)."""
    value = row.get(column)
    return np.nan if value is None else float(value)


def suptitle(fig, text: str, fontsize: float = 11) -> None:
    """The figure's title, each line wrapped to the figure's width (one panel is narrow)."""
    chars = max(30, int(fig.get_size_inches()[0] / (0.0085 * fontsize)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")), fontsize=fontsize)


def legend_below(fig, handles):
    """A legend under the panels, as many columns as the figure's width holds, and room left for it."""
    width, height = fig.get_size_inches()
    entry = 0.6 + 0.075 * max(len(h.get_label()) for h in handles)  # inches at font size 9
    ncol = int(max(1, min(len(handles), width // entry)))
    legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    rows = -(-len(handles) // ncol)
    fig.tight_layout(rect=(0, min(0.5, (0.15 + 0.24 * rows) / height), 1, 1))
    return legend


def _times(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def running_figure(output: RunOutput, colors) -> Figure:
    """Running estimate and band per design; a trace of one point shows as a point with its interval.

    The part of a trace on fewer than FEW_GROUPS groups is dotted and its band faded.
    """
    names = [n for n in output.statistics if any(n in t for t in output.traces.values())]
    fig, axes = _grid(len(names), width=4.6)
    level = output.config.confidence_level
    final_groups = {}
    some_few = False
    for ax, name in zip(axes, names):
        late = []
        for design, traces in output.traces.items():
            if name not in traces:
                continue
            t = traces[name]
            k = output.estimates[design][name].group_size
            groups = t.n_noises // k
            final_groups[design] = int(groups[-1])
            c = colors[design]
            few = groups < FEW_GROUPS
            some_few = some_few or bool(few.any())
            cut = int(few.sum())  # the points on few groups come first
            for part, style, shade in [(slice(0, cut + 1 if cut else 0), ":", 0.1), (slice(cut, None), "-", 0.18)]:
                n, e, lo, hi = t.n_noises[part], t.estimate[part], t.low[part], t.high[part]
                if len(n) == 0:
                    continue
                ax.plot(n, e, color=c, ls=style, lw=1.4, marker="o", ms=3.5)
                ax.fill_between(n, lo, hi, color=c, alpha=shade, lw=0)
            alone = _isolated(np.isfinite(t.low) & np.isfinite(t.high))
            if alone.any():  # a band needs two neighbouring intervals: an interval alone shows as a bar
                e = t.estimate[alone]
                ax.errorbar(
                    t.n_noises[alone],
                    e,
                    yerr=[e - t.low[alone], t.high[alone] - e],
                    color=c,
                    capsize=4,
                    ls="none",
                    alpha=0.5 if few[alone].all() else 1.0,
                )
            keep = (t.n_noises >= t.n_noises[-1] / 4) & (groups >= min(4, groups[-1]))  # not on 1 or 2 df
            late += [t.low[keep], t.high[keep], t.estimate[keep]]
        if name in output.truths:
            ax.axhline(output.truths[name], color="black", ls="--", lw=1, zorder=1.5)  # under the lines
        span = np.concatenate(late)
        span = span[np.isfinite(span)]
        lo, hi = float(span.min()), float(span.max())
        pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 1e-9
        ax.set_ylim(lo - pad, hi + pad)  # early intervals on 1 or 2 degrees of freedom would flatten the rest
        ax.set_title(name)
        ax.set_xlabel("model evaluations")
        ax.set_ylabel(unit_of(output.statistics[name]))
        ax.set_xlim(0, 1.04 * max(float(t[name].n_noises[-1]) for t in output.traces.values() if name in t))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [
        Line2D(
            [],
            [],
            color=colors[d],
            marker="o",
            ms=3.5,
            ls=":" if _few(n) else "-",
            label=f"{output.labels[d]} ({rough(n)})" if _few(n) else output.labels[d],
        )
        for d, n in final_groups.items()
    ]
    if any(name in output.truths for name in names):
        handles.append(Line2D([], [], color="black", ls="--", lw=1, label="exact answer"))
    if some_few:
        handles.append(
            Line2D([], [], color="gray", ls=":", marker="o", ms=3.5, label=f"dotted, faded band: < {FEW_GROUPS} groups")
        )
    suptitle(fig, f"Running estimate with its {level:.0%} confidence band (after each batch)")
    legend = legend_below(fig, handles)
    for text in legend.get_texts():
        if "rough" in text.get_text():
            text.set_color(FLAG_COLOR)
    return fig


def _isolated(finite: np.ndarray) -> np.ndarray:
    """Points with an interval whose neighbours have none (a band of one point draws nothing)."""
    padded = np.concatenate([[False], finite, [False]])
    return finite & ~padded[:-2] & ~padded[2:]


def pixel_map_figure(output: RunOutput, name: str) -> Figure:
    """Pixel-wise mean and CI width per design; width maps on few groups framed and flagged."""
    designs = list(output.estimates)
    means = [np.asarray(output.estimates[d][name].estimate).reshape(-1, *_hw(output, d, name)).mean(0) for d in designs]
    widths = [np.asarray(output.estimates[d][name].width).reshape(-1, *_hw(output, d, name)).mean(0) for d in designs]
    groups = [output.estimates[d][name].n_groups for d in designs]
    shape = np.shape(output.estimates[designs[0]][name].estimate)
    channels = f", mean over {shape[-3]} channels" if len(shape) >= 3 and shape[-3] > 1 else ""
    fig, axes = subplots(2, len(designs), figsize=(2.6 * len(designs) + 1.2, 6.0), squeeze=False)
    unit = unit_of(output.statistics[name])
    level = output.config.confidence_level
    for row, (maps, cmap, what) in enumerate([(means, "gray", "mean"), (widths, "magma", f"{level:.0%} CI width")]):
        vmin, vmax = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
        for ax, d, m, n in zip(axes[row], designs, maps, groups):
            im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 1 and _few(n):  # the width map of an interval on few groups: red frame and words
                ax.set_title(f"{output.labels[d]}: {what}\n{rough(n)}", fontsize=9, color=FLAG_COLOR)
                for spine in ax.spines.values():
                    spine.set(color=FLAG_COLOR, lw=2, ls="--")
            else:
                ax.set_title(f"{output.labels[d]}: {what}", fontsize=9)
        bar = fig.colorbar(im, ax=list(axes[row]), shrink=0.9)
        bar.set_label(f"{what}\n({unit})", fontsize=9)
    fig.suptitle(  # one line: the saved figure widens to hold it
        f"{name}: pixel-wise mean and {level:.0%} CI width ({output.config.budget} model calls per design; "
        f"{'shared colour scale per row' if len(designs) > 1 else 'one colour scale per row'}{channels})",
        fontsize=10,
    )
    return fig


def _hw(output: RunOutput, design: str, name: str) -> tuple[int, int]:
    return np.shape(output.estimates[design][name].estimate)[-2:]


def correlation_figure(output: RunOutput) -> Figure:
    """Histograms of the per-pair correlations of PN (antithetic) and RR (independent) image pairs."""
    c = output.correlations
    fig, axes = subplots(1, 2, figsize=(10, 3.8), sharey=True)
    bins = np.linspace(-1, 1, 41)
    for ax, kind, pn, rr in [
        (axes[0], "standard", c.pn_standard, c.rr_standard),
        (axes[1], "centralized", c.pn_centralized, c.rr_centralized),
    ]:
        ax.hist(
            pn[np.isfinite(pn)],
            bins=bins,
            alpha=0.6,
            color="tab:orange",
            label=f"PN pairs G(z), G(-z): mean {np.nanmean(pn):.2f}",
        )
        ax.hist(
            rr[np.isfinite(rr)],
            bins=bins,
            alpha=0.6,
            color="tab:blue",
            label=f"RR pairs, independent: mean {np.nanmean(rr):.2f}",
        )
        ax.set_title(f"{kind} correlation")
        ax.set_xlabel("Pearson correlation of the two images of a pair")
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("number of pairs")
    fig.suptitle(f"PN vs RR image correlations ({len(c.pn_standard)} pairs each)")
    fig.tight_layout()
    return fig
