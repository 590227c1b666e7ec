"""Figures of a run: widths, running estimates, pixel maps, PN vs RR correlations.

Figures are built as ``matplotlib.figure.Figure`` objects and saved directly, so
writing them needs no pyplot backend and changes no global state (a notebook
user's backend and rcParams stay as they were). Every axis says what it shows
and in which unit; designs keep one colour across all figures of a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure

from uqdiff.cli.runs import RunOutput

#: Unit of each statistic's value (on the image mapped to [0, 1], times its ``scale`` where it has one).
UNITS = {
    "mean": "pixel value, [0, 1] scale",
    "brightness": "luma, [0, 1] scale",
    "contrast": "percentage points",
    "centroid": "row index",
    "slope": "per pixel, [0, 1] scale",
    "pixel_map": "pixel value, [0, 1] scale",
}

#: The style of every figure here, applied to each figure alone (never to matplotlib's global rcParams).
STYLE = {"font.size": 10, "axes.titlesize": 11}
DPI = 110


def _subplots(rows: int, cols: int, *, figsize: tuple[float, float], **kwargs):
    """A figure and its axes, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kwargs)


def unit_of(statistic) -> str:
    """The unit of a statistic, noting a ``scale`` other than 1 (e.g. 0..255)."""
    unit = UNITS.get(statistic.name, "statistic's unit")
    scale = getattr(statistic, "scale", 1.0)
    return unit.replace("[0, 1]", f"[0, {scale:g}]") if scale != 1.0 else unit


def write_plots(output: RunOutput, frame, folder: Path) -> list[Path]:
    """All figures the run supports; returns their paths. The style holds for these figures only."""
    colors = {d: colormaps["tab10"](i % 10) for i, d in enumerate(output.estimates)}
    with rc_context(STYLE):
        paths = [_widths(output, frame, colors, folder / "ci_width.png")]
        if any(output.traces[d] for d in output.traces):
            paths.append(_running(output, colors, folder / "running_estimate.png"))
        maps = [n for n in output.statistics if any(np.ndim(e[n].estimate) for e in output.estimates.values())]
        paths += [_pixel_maps(output, name, folder / f"{name}_maps.png") for name in maps]
        if output.correlations is not None:
            paths.append(_correlations(output, folder / "pn_rr_correlations.png"))
    return paths


def _grid(n: int, width: float = 4.2, height: float = 3.4):
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = _subplots(rows, cols, figsize=(width * cols, height * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def _widths(output: RunOutput, frame, colors, path: Path) -> Path:
    names = list(output.statistics)
    designs = list(output.estimates)
    fig, axes = _grid(len(names))
    level = output.config.confidence_level
    for ax, name in zip(axes, names):
        rows = frame[frame.statistic == name].set_index("design").loc[designs]
        x = np.arange(len(designs))
        bars = ax.bar(x, rows["width"], color=[colors[d] for d in designs])
        if "efficiency" in rows:
            ax.bar_label(bars, labels=[_times(e) for e in rows["efficiency"]], fontsize=8, padding=2)
            ax.margins(y=0.15)
        ax.set_xticks(x, [output.labels[d] for d in designs], rotation=20, ha="right")
        average = " (mean over pixels)" if np.ndim(output.estimates[designs[0]][name].estimate) else ""
        ax.set_title(f"{name}{average}")
        ax.set_ylabel(f"{level:.0%} CI width\n({unit_of(output.statistics[name])})")
    note = "\nbar labels: efficiency = (CI width of MC / CI width)$^2$" if "efficiency" in frame else ""
    fig.suptitle(f"Confidence-interval width per design ({output.config.budget} model calls each){note}")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _times(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def _running(output: RunOutput, colors, path: Path) -> Path:
    names = [n for n in output.statistics if any(n in t for t in output.traces.values())]
    fig, axes = _grid(len(names), width=4.6)
    level = output.config.confidence_level
    for ax, name in zip(axes, names):
        late = []
        for design, traces in output.traces.items():
            t = traces[name]
            ax.plot(t.n_noises, t.estimate, color=colors[design], label=output.labels[design], lw=1.4)
            ax.fill_between(t.n_noises, t.low, t.high, color=colors[design], alpha=0.18, lw=0)
            keep = t.n_noises >= t.n_noises[-1] / 4
            late += [t.low[keep], t.high[keep]]
        if name in output.truths:
            ax.axhline(output.truths[name], color="black", ls="--", lw=1, label="exact answer")
        lo, hi = float(np.min(np.concatenate(late))), float(np.max(np.concatenate(late)))
        pad = 0.15 * (hi - lo) or 1e-9
        ax.set_ylim(lo - pad, hi + pad)  # early intervals on 1 or 2 degrees of freedom would flatten the rest
        ax.set_title(name)
        ax.set_xlabel("model evaluations")
        ax.set_ylabel(unit_of(output.statistics[name]))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    fig.suptitle(f"Running estimate with its {level:.0%} confidence band")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=DPI)
    return path


def _pixel_maps(output: RunOutput, name: str, path: Path) -> Path:
    designs = list(output.estimates)
    means = [np.asarray(output.estimates[d][name].estimate).reshape(-1, *_hw(output, d, name)).mean(0) for d in designs]
    widths = [np.asarray(output.estimates[d][name].width).reshape(-1, *_hw(output, d, name)).mean(0) for d in designs]
    fig, axes = _subplots(2, len(designs), figsize=(2.6 * len(designs) + 1.2, 5.6), squeeze=False)
    unit = unit_of(output.statistics[name])
    level = output.config.confidence_level
    for row, (maps, cmap, what) in enumerate([(means, "gray", "mean"), (widths, "magma", f"{level:.0%} CI width")]):
        vmin, vmax = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
        for ax, d, m in zip(axes[row], designs, maps):
            im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(f"{output.labels[d]}: {what}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        bar = fig.colorbar(im, ax=list(axes[row]), shrink=0.9)
        bar.set_label(f"{what}\n({unit})", fontsize=9)
    fig.suptitle(
        f"Pixel-wise mean and {level:.0%} CI width ({output.config.budget} model calls per design; "
        "shared colour scale per row)",
        fontsize=10,
    )
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _hw(output: RunOutput, design: str, name: str) -> tuple[int, int]:
    return np.shape(output.estimates[design][name].estimate)[-2:]


def _correlations(output: RunOutput, path: Path) -> Path:
    c = output.correlations
    fig, axes = _subplots(1, 2, figsize=(10, 3.8), sharey=True)
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
    fig.savefig(path, dpi=DPI)
    return path
