"""The command line's figures: few-groups flags, efficiency error bars, running lines at small budgets.

Figures are inspected as matplotlib objects (texts, patches, lines, containers), not as pixels.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from uqdiff.cli import plots
from uqdiff.cli.config import RunConfig
from uqdiff.cli.report import summary_frame
from uqdiff.cli.runs import run, trace_batch
from uqdiff.estimators.intervals import FEW_GROUPS


@pytest.fixture(scope="module")
def small_run():
    """A compare at a small budget: MC 32 groups, antithetic 16 pairs, RQMC only 2 replicates of 16 points."""
    config = RunConfig(
        command="compare",
        model="oracle",
        model_options={"size": 8},
        designs=("antithetic", "rqmc:16"),
        statistics=("mean", "pixel_map"),
        budget=32,
        pairs=0,
        quiet=True,
    )
    output = run(config)
    return output, summary_frame(output)


@pytest.fixture(scope="module")
def figures(small_run):
    output, frame = small_run
    return plots.figures(output, frame)


def _rqmc(output) -> str:
    """The RQMC design's name (its parameters are part of it)."""
    return next(d for d in output.estimates if d.startswith("rqmc"))


def _texts(fig) -> list[str]:
    """Every text of a figure: titles, labels, tick labels, annotations, legend entries."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def test_the_small_run_has_a_few_groups_design(small_run):
    output, _ = small_run
    assert output.estimates[_rqmc(output)]["mean"].n_groups == 2 < FEW_GROUPS
    assert output.estimates["antithetic"]["mean"].n_groups >= FEW_GROUPS
    assert output.estimates["mc"]["mean"].n_groups >= FEW_GROUPS


def test_width_bars_on_few_groups_are_hatched_and_labelled(small_run, figures):
    output, _ = small_run
    fig = figures["ci_width.png"]
    ax = fig.axes[0]
    designs = list(output.estimates)
    bars = ax.containers[0].patches
    rqmc = _rqmc(output)
    assert [bool(b.get_hatch()) for b in bars] == [d == rqmc for d in designs]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[designs.index(rqmc)] == "rqmc:16\nonly 2 groups: rough"
    assert not any("rough" in ticks[i] for i, d in enumerate(designs) if d != rqmc)
    assert any(f"fewer than {FEW_GROUPS} groups" in t for t in _texts(fig))


def test_efficiencies_carry_error_bars_and_the_flag(small_run, figures):
    output, frame = small_run
    fig = figures["efficiency.png"]
    ax = fig.axes[0]  # the mean
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # antithetic and RQMC: each its within-run interval
    rows = frame[frame.statistic == "mean"].set_index("design")
    for bar, design in zip(bars, ["antithetic", _rqmc(output)]):
        segment = bar.lines[2][0].get_segments()[0]
        np.testing.assert_allclose(
            sorted(segment[:, 1]), [rows.loc[design, "implied_low"], rows.loc[design, "implied_high"]]
        )
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == output.labels["antithetic"] and "only 2 groups: rough" in ticks[1]
    # the side-by-side efficiency is drawn and labelled, the few-groups one in the flag colour
    labels = {t.get_text(): t.get_color() for t in ax.texts}
    rqmc = plots._times(rows.loc[_rqmc(output), "efficiency"])
    assert labels[rqmc] == plots.FLAG_COLOR


def test_running_estimate_draws_a_line_at_a_small_budget(small_run, figures):
    output, _ = small_run
    for design, traces in output.traces.items():
        assert len(traces["mean"].n_noises) >= 2, design  # a line, not a single point
    rqmc = output.traces[_rqmc(output)]["mean"]
    assert np.isnan(rqmc.low[0]) and np.isfinite(rqmc.low[-1])  # one replicate: an estimate, no interval
    ax = figures["running_estimate.png"].axes[0]
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) >= 2]
    xs = [tuple(line.get_xdata()) for line in drawn]
    for design, traces in output.traces.items():
        assert tuple(traces["mean"].n_noises) in xs, design
    # RQMC's last interval has no neighbour to make a band with: it shows as an error bar
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    legend = [t.get_text() for t in figures["running_estimate.png"].legends[0].get_texts()]
    assert "rqmc:16 (only 2 groups: rough)" in legend


def test_pixel_width_map_on_few_groups_is_flagged(figures):
    fig = figures["pixel_map_maps.png"]
    titles = [ax.get_title() for ax in fig.axes]
    flagged = [t for t in titles if "rough" in t]
    assert flagged == ["rqmc:16: 95% CI width\nonly 2 groups: rough"]


def test_write_plots_saves_every_figure(small_run, tmp_path):
    output, frame = small_run
    paths = plots.write_plots(output, frame, tmp_path)
    names = {p.name for p in paths}
    assert {"ci_width.png", "efficiency.png", "running_estimate.png", "pixel_map_maps.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)


@pytest.mark.parametrize(
    "batch, budget, group, expected",
    [(32, 1024, 2, 32), (32, 64, 2, 16), (32, 16, 2, 4), (32, 64, 32, 32), (32, 32, 16, 16), (8, 16, 16, 8)],
)
def test_trace_batch(batch, budget, group, expected):
    assert trace_batch(batch, budget, group) == expected
