"""The figures of a comparison of solvers: forest plot of the differences, variance components, the CLI files.

Figures are inspected as matplotlib objects (error bars, lines, bars, texts), not as pixels, on a toy
comparison of three stand-in solvers over 16 images (under a second).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer, ErrorbarContainer

from uqdiff import evaluate_solvers
from uqdiff.cli import solver_plots
from uqdiff.cli.main import main
from uqdiff.cli.plots import FLAG_COLOR
from uqdiff.samplers import LinearGenerator
from uqdiff.statistics import L1, PSNR


def _solver(bias, noise, seed):
    jacobian = noise * np.random.default_rng(seed).standard_normal((16, 2))
    return lambda m: LinearGenerator((m.truth + bias).clamp(-1, 1).numpy(), jacobian)


@pytest.fixture(scope="module")
def comparison():
    """A and B: the same bias, different noise (an unresolved l1 pair); C: worse; C's l1 has no image spread."""
    rng = np.random.default_rng(0)
    truths = (
        torch.linspace(-0.6, 0.6, 16).reshape(16, 1, 1, 1)
        + 0.1 * torch.from_numpy(rng.standard_normal((16, 1, 4, 4))).float()
    )
    solvers = {"A": _solver(0.05, 0.1, 0), "B": _solver(0.05, 0.1, 1), "C": _solver(0.2, 0.1, 0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_solvers(solvers, truths, "box_inpainting", budget=8, statistics=[L1, PSNR], seed=0)


@pytest.fixture(scope="module")
def figures(comparison):
    return solver_plots.solver_figures(comparison)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def _title(fig) -> str:
    """The figure's title as one line (undoing the wrapping, which may break after a hyphen)."""
    return fig._suptitle.get_text().replace("-\n", "-").replace("\n", " ")


def test_the_toy_has_resolved_and_unresolved_pairs(comparison):
    resolved = [d.resolved for per in comparison.differences.values() for d in per.values()]
    assert any(resolved) and not all(resolved)
    assert comparison.n_images == 16 and comparison.confidence_level == 0.95


def test_forest_has_one_interval_per_pair_and_metric_with_its_ends(comparison, figures):
    fig = figures["forest.png"]
    assert len(fig.axes) == len(comparison.differences)
    labels = {t.get_text(): t.get_position()[1] for t in fig.axes[0].get_yticklabels()}  # the rows, shared
    assert list(labels) == ["A - B", "A - C", "B - C"] and labels["A - B"] > labels["B - C"]  # first on top
    for ax, (stat, diffs) in zip(fig.axes, comparison.differences.items()):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == len(diffs)
        for bar, (pair, d) in zip(bars, diffs.items()):
            (x0, y0), (x1, y1) = bar.lines[2][0].get_segments()[0]
            np.testing.assert_allclose(sorted([x0, x1]), [d.low, d.high])
            assert y0 == y1 == labels[pair]  # horizontal, on its pair's row
            assert float(np.ravel(bar.lines[0].get_xdata())[0]) == pytest.approx(d.estimate)
        assert ax.get_title().startswith(f"{stat}: {comparison.ranking[stat]}")
        low, high = ax.get_xlim()
        assert low < min(0, *(d.low for d in diffs.values())) and high > max(0, *(d.high for d in diffs.values()))


def test_resolved_pairs_are_filled_and_the_others_open(comparison, figures):
    fig = figures["forest.png"]
    for ax, diffs in zip(fig.axes, comparison.differences.values()):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        for bar, d in zip(bars, diffs.values()):
            face = matplotlib.colors.to_rgba(bar.lines[0].get_markerfacecolor())
            if d.resolved:
                assert face == matplotlib.colors.to_rgba(solver_plots.RESOLVED_COLOR)
            else:
                assert face == matplotlib.colors.to_rgba("white")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "resolved: Holm-adjusted p < 0.05 (filled)" in legend and "not resolved (open)" in legend


def test_forest_draws_the_zero_line_and_says_direction_unit_and_level(comparison, figures):
    fig = figures["forest.png"]
    for ax in fig.axes:
        zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 0]]
        assert len(zero) == 1 and zero[0].get_linestyle() == "--"
    l1, psnr = (ax.get_xlabel() for ax in fig.axes)
    assert "[0, 1] scale" in l1 and "lower is better: left of 0" in l1
    assert "(dB)" in psnr and "higher is better: right of 0" in psnr
    assert "95% t interval of each pair" in _title(fig)


def test_forest_names_the_adjusted_level_of_early_stopping(comparison):
    stopped = dataclasses.replace(comparison, confidence_level=1 - 0.05 / 3, looks=[4, 8, 16])
    fig = solver_plots.forest_figure(stopped, solver_plots.directions_of(stopped.means))
    title = _title(fig)
    assert "98.33% t interval" in title and "Bonferroni-adjusted over the looks" in title and "4, 8, 16" in title
    assert any("p < 0.0167" in t for t in _texts(fig))


def test_variance_plot_stacks_both_components_per_solver(comparison, figures):
    fig = figures["variance_components.png"]
    assert len(fig.axes) == len(comparison.means)
    for ax, (stat, means) in zip(fig.axes, comparison.means.items()):
        between, within = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [t.get_text() for t in ax.get_xticklabels()] == list(means)
        for b, w, m in zip(between.patches, within.patches, means.values()):
            assert b.get_height() == pytest.approx(m.between_variance)
            assert w.get_height() == pytest.approx(m.within_variance / m.samples_per_image)  # at this run's n
            assert w.get_y() == pytest.approx(m.between_variance)  # stacked on the images' spread
        assert ax.get_title() == stat
    assert "dB²" in fig.axes[1].get_ylabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("between images") for t in legend) and any(t.startswith("within image") for t in legend)


def test_variance_plot_writes_the_allocation_on_each_bar(comparison, figures):
    fig = figures["variance_components.png"]
    for ax, means in zip(fig.axes, comparison.means.values()):
        notes = [t.get_text() for t in ax.texts]
        assert len(notes) == len(means)
        for note, m in zip(notes, means.values()):
            n = m.recommended_samples_per_image
            assert note.endswith(f"n* = {'∞' if not np.isfinite(n) else f'{n:.2g}'}")
            assert note.startswith("noise ")
    assert "n* = ∞" in [t.get_text().split("\n")[1] for t in fig.axes[0].texts]  # C's l1: the images agree
    title = _title(fig)
    assert "n = 8 samples per image" in title and "an image costs 1 sample)" in title


def test_few_images_are_flagged(comparison):
    few = dataclasses.replace(comparison, n_images=4)
    for fig in solver_plots.solver_figures(few).values():
        flag = [t for t in fig.legends[0].get_texts() if "rough" in t.get_text()]
        assert [t.get_text() for t in flag] == ["only 4 images: rough (fewer than 16)"]
        assert flag[0].get_color() == FLAG_COLOR
    for fig in solver_plots.solver_figures(comparison).values():  # 16 images: no flag
        assert not any("rough" in t for t in _texts(fig))


def test_write_solver_plots_saves_both(comparison, tmp_path):
    paths = solver_plots.write_solver_plots(comparison, tmp_path)
    assert [p.name for p in paths] == ["forest.png", "variance_components.png"]
    for p in paths:
        assert matplotlib.image.imread(p).ndim == 3


FASHION_DATA = Path("/usr/share/datasets/fashion-mnist")
TOY_SOLVERS = """\
class Toy:
    noise_shape = (2,)
    def __init__(self, truth, spread):
        self.truth, self.spread = truth, spread
    def __call__(self, z):
        return (self.truth + self.spread * z.sum(dim=1).reshape(-1, 1, 1, 1)).clamp(-1, 1)
def sharp(m):
    return Toy(m.truth, 0.05)
def blurry(m):
    return Toy(m.truth, 0.3)
"""


@pytest.mark.skipif(not FASHION_DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.filterwarnings("ignore:.*has only 4 images:UserWarning")
def test_evaluate_solvers_writes_both_figures_and_the_report_shows_them(tmp_path, monkeypatch):
    """The smallest `evaluate --solvers` of tests/test_cli.py: stand-in solvers on 4 Fashion-MNIST truths."""
    (tmp_path / "toy_solvers.py").write_text(TOY_SOLVERS)
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "--model", "fashion", "--solvers", "toy_solvers:sharp", "toy_solvers:blurry"]
    args += ["--statistics", "l1", "psnr", "--images", "4", "--budget", "8", "-q"]
    assert main([*args, "--out", "plots"]) == 0
    for name in ("forest.png", "variance_components.png"):
        assert matplotlib.image.imread(tmp_path / "plots" / name).ndim == 3
        assert f"![{name}]({name})" in (tmp_path / "plots" / "report.md").read_text()
    assert main([*args, "--out", "none", "--no-plots"]) == 0
    assert not list((tmp_path / "none").glob("*.png"))
    assert "## Plots" not in (tmp_path / "none" / "report.md").read_text()
