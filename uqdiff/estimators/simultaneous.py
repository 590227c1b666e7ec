"""Pixel maps with simultaneous confidence: bands that hold for every pixel at once.

A per-pixel 95% interval misses about 5% of the pixels of a map, so "where
does the mean image differ from the reference" read off per-pixel intervals
finds spurious pixels. Simultaneous bands widen every interval by one common
critical value so that all pixels are covered at once with the stated
probability:

* ``"bonferroni"``: the t quantile at level alpha / pixels. Needs only the
  moments of the group means, so it streams with any run; conservative when
  pixels are correlated (neighbouring pixels always are).
* ``"max-t"``: the quantile of max over pixels of |mean - truth| / se, from a
  Gaussian multiplier bootstrap of the group means (the groups are iid, so
  the law of the studentized map is that of sums of their centred copies).
  It follows the correlation the pixels really have, so it is narrower than
  Bonferroni, but only with enough groups: the bootstrap statistics live in
  the (n - 1)-dimensional span of the centred group means, so with few groups
  their maximum over many pixels is far too small (measured all-pixel coverage
  with normal group means over 1024 pixels, as the honesty issue measured it:
  0.65-0.72 at 8 groups, 0.87-0.89 at 16). Below :data:`MIN_GROUPS_MAX_T` groups the bands therefore
  fall back to Bonferroni (``MapBands.method`` says which was used, and a
  warning says why). It needs the group means of every pixel (:func:`group_means`
  keeps them: groups x pixels floats, fine for maps up to ~10^5 pixels x 10^3
  groups). A streaming variant would keep, for B bootstrap draws, the running
  sums of w_bg x_g with w_bg keyed by (seed, group): B x pixels memory
  independent of the number of groups; not needed for the maps here.

:func:`holm_pixels` gives the matching test map: pixels where the mean
differs from a null map, Holm-corrected over all pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from uqdiff._util import callable_name, scalar, to_numpy
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.designs.seeds import SeedLike, entropy
from uqdiff.estimators.estimate import estimate
from uqdiff.estimators.intervals import holm, quantile
from uqdiff.estimators.results import ConfidenceInterval, Exportable, StatisticResult, p_value
from uqdiff.estimators.settings import RunSettings, takes_run_settings

METHODS = ("max-t", "bonferroni")
#: Fewer groups than this and "max-t" falls back to Bonferroni (see the module docstring).
MIN_GROUPS_MAX_T = 64


@dataclass(frozen=True, eq=False)
class MapBands(Exportable):
    """Per-pixel (``pointwise``) and all-pixels-at-once (``simultaneous``) intervals of a mean map.

    Both are estimate +- critical value x standard error; ``critical_value``
    is the simultaneous one, ``pointwise_critical_value`` the usual t quantile.
    """

    estimate: np.ndarray
    standard_error: np.ndarray
    pointwise: ConfidenceInterval
    simultaneous: ConfidenceInterval
    method: str
    critical_value: float
    pointwise_critical_value: float
    confidence_level: float
    n_groups: int

    def _rows(self) -> list[dict[str, Any]]:
        """One row per pixel (flat index): estimate, both intervals."""
        columns = {
            "estimate": self.estimate,
            "standard_error": self.standard_error,
            "low": self.pointwise.low,
            "high": self.pointwise.high,
            "low_simultaneous": self.simultaneous.low,
            "high_simultaneous": self.simultaneous.high,
        }
        flat = {k: np.ravel(v) for k, v in columns.items()}
        return [{"element": i, **{k: float(v[i]) for k, v in flat.items()}} for i in range(np.size(self.estimate))]

    def excludes(self, null: float | np.ndarray = 0.0, *, simultaneous: bool = True) -> np.ndarray:
        """Boolean map: pixels whose (simultaneous or pointwise) interval excludes ``null``."""
        band = self.simultaneous if simultaneous else self.pointwise
        return (band.low > null) | (band.high < null)

    def plot(self, *, null: float | np.ndarray | None = 0.0, title: str | None = None, cmap: str = "viridis"):
        """Figure: the mean map, the two half-width maps on one scale, and where each excludes ``null``."""
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure

        est = _image(self.estimate)
        half_point = _image(self.pointwise.high - self.estimate)
        half_sim = _image(self.simultaneous.high - self.estimate)
        panels = 4 if null is not None else 3
        fig = Figure(figsize=(3.6 * panels, 3.6), layout="constrained")
        axes = fig.subplots(1, panels)
        im = axes[0].imshow(est, cmap=cmap)
        fig.colorbar(im, ax=axes[0], shrink=0.8)
        axes[0].set_title("mean map", fontsize=10)
        top = float(np.nanmax(half_sim)) or 1.0
        for ax, half, label in (
            (axes[1], half_point, "pointwise"),
            (axes[2], half_sim, f"simultaneous ({self.method})"),
        ):
            im = ax.imshow(half, cmap="magma", vmin=0, vmax=top)
            ax.set_title(f"{label} half-width", fontsize=10)
        fig.colorbar(im, ax=axes[1:3], shrink=0.8)
        if null is not None:
            level = _image(self.excludes(null, simultaneous=False).astype(int) + self.excludes(null).astype(int))
            colors = ListedColormap(["#f0f0f0", "#fdae61", "#d7191c"])
            im = axes[3].imshow(level, cmap=colors, vmin=-0.5, vmax=2.5)
            bar = fig.colorbar(im, ax=axes[3], shrink=0.8, ticks=[0, 1, 2])
            bar.ax.set_yticklabels(["neither", "pointwise", "both"], fontsize=8)
            axes[3].set_title(f"interval excludes {null if np.ndim(null) == 0 else 'null map'}", fontsize=10)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(
            title
            or f"{self.confidence_level:.0%} bands, c = {self.pointwise_critical_value:.2f} "
            f"pointwise, {self.critical_value:.2f} simultaneous ({self.n_groups} groups)",
            fontsize=11,
        )
        return fig


@takes_run_settings
def group_means(
    sampler: Callable,
    statistic: Callable,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> tuple[StatisticResult, np.ndarray]:
    """The result of :func:`uqdiff.estimate` for one statistic, and its group means (groups, ...).

    It is ``estimate`` itself (same groups, same result, bit for bit), with
    the statistic wrapped to keep its values: ``estimate`` evaluates the
    noises in group order, so they fold into group means the way it does.
    Memory: noises x statistic size. The options are those of
    :func:`uqdiff.estimate`; ``run`` may not hold a checkpoint or an executor: the group
    means are kept in this process, so a resumed or sharded run would miss some.

    Returns
    -------
    (StatisticResult, numpy.ndarray)
        The statistic's result and its group means, shape (groups, ...), for :func:`simultaneous_bands`.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistic, options), before any model call.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> r, means = group_means(LinearGenerator(np.zeros((2, 2)), np.eye(4)), lambda x: x, budget=32, seed=0)
    >>> means.shape, bool(np.allclose(means.mean(axis=0), r.estimate))
    ((32, 2, 2), True)
    """
    design = as_design(design)
    settings = RunSettings.of(run)
    if settings.checkpoint is not None or settings.executor is not None:
        raise TypeError(
            "group_means keeps the group means in this process: run it without a checkpoint or executor "
            "(a resumed or sharded run would miss some)"
        )
    recorder = _Recorder(statistic)
    result = estimate(
        sampler,
        {recorder.name: recorder},
        budget=budget,
        design=design,
        noise_shape=noise_shape,
        run=run,
        seed=seed,
        confidence_level=confidence_level,
        interval_method=interval_method,
    )
    values = np.concatenate(recorder.values)
    return result[recorder.name], values.reshape(-1, design.group_size, *values.shape[1:]).mean(axis=1)


class _Recorder:
    """A statistic that keeps a copy of every value it returns, in call order."""

    def __init__(self, statistic: Callable) -> None:
        self.statistic = statistic
        self.name = callable_name(statistic, default="statistic")
        self.values: list[np.ndarray] = []

    def __call__(self, images) -> np.ndarray:
        v = to_numpy(self.statistic(images))
        self.values.append(v)
        return v


def simultaneous_bands(
    result: StatisticResult,
    *,
    method: str = "bonferroni",
    group_means: np.ndarray | None = None,
    n_bootstrap: int = 4000,
    seed: SeedLike = 0,
) -> MapBands:
    """Pointwise and simultaneous bands for a map-valued result, at the result's confidence level.

    ``method="max-t"`` needs the run's ``group_means`` (from :func:`group_means`).
    Its critical value is the (1 - alpha) quantile of max_p |T_p| under the
    multiplier bootstrap, T_p = sum_g w_g (x_gp - mean_p) / (s_p sqrt(n - 1)),
    w ~ N(0, I): given the data each T_p is exactly N(0, 1) and the T_p have
    the sample correlation of the pixels. With few groups the studentized
    pixels are t, not normal, so the normal-scale quantile is carried to the
    t law on (groups - 1) df through its per-pixel tail probability (the same
    step Bonferroni takes). Pixels with zero spread are left out of the max
    (their band has zero width). With fewer than :data:`MIN_GROUPS_MAX_T`
    groups, unless the group means span fewer than groups - 1 dimensions, the
    bootstrap is not trusted and Bonferroni is used instead (with a warning;
    ``MapBands.method`` records it).

    Parameters
    ----------
    result : StatisticResult
        A map-valued result (e.g. of a ``PixelMap`` statistic).
    method : {"bonferroni", "max-t"}
        Bonferroni over the pixels, or the max-t multiplier bootstrap.
    group_means : numpy.ndarray, optional
        The run's group means, needed by ``"max-t"``.
    n_bootstrap : int
        Bootstrap draws for ``"max-t"``.
    seed : int or sequence of int
        Seed of the bootstrap weights.

    Returns
    -------
    MapBands
        Pointwise and simultaneous intervals with their critical values.

    Raises
    ------
    ValueError
        For an unknown method, missing or mismatched group means, or too few bootstrap draws.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> rng = np.random.default_rng(0)
    >>> g = LinearGenerator(np.zeros((6, 6)), rng.normal(size=(36, 4)))
    >>> r, means = group_means(g, lambda x: x, budget=64, seed=1)
    >>> b = simultaneous_bands(r, method="max-t", group_means=means)
    >>> t = simultaneous_bands(r, method="bonferroni")
    >>> print(f"{b.pointwise_critical_value:.2f} < max-t {b.critical_value:.2f} < Bonferroni {t.critical_value:.2f}")
    2.00 < max-t 2.97 < Bonferroni 3.35
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    est = np.asarray(result.estimate, dtype=np.float64)
    se = np.asarray(result.standard_error, dtype=np.float64)
    level, df, law = result.confidence_level, result.df, result.interval_method
    pixels = max(1, est.size)
    if method == "max-t":
        x = _checked_group_means(group_means, result, n_bootstrap)
        if not _bootstrap_spans_the_map(x):
            warnings.warn(
                f"max-t bands need at least {MIN_GROUPS_MAX_T} groups to hold when the pixels vary in more "
                f"directions than the groups can span (this run has {result.n_groups} groups): using Bonferroni "
                "bands instead; run more groups for the narrower max-t bands",
                stacklevel=2,
            )
            method = "bonferroni"
    if method == "bonferroni":
        alpha_pixel = (1 - level) / pixels
    else:
        q_normal = _max_normal_quantile(x, level, n_bootstrap, seed)
        # Bonferroni bounds the max too; with nearly independent pixels the bootstrap's own Monte Carlo
        # error can put its quantile a little above that bound, so the sharper valid one is kept
        alpha_pixel = max(2 * sps.norm.sf(q_normal), (1 - level) / pixels)
    q = quantile(1 - alpha_pixel, df, law)
    q0 = quantile(level, df, law)
    band = lambda c: ConfidenceInterval(scalar(est - c * se), scalar(est + c * se))
    return MapBands(
        estimate=scalar(est),
        standard_error=scalar(se),
        pointwise=band(q0),
        simultaneous=band(q),
        method=method,
        critical_value=q,
        pointwise_critical_value=q0,
        confidence_level=level,
        n_groups=result.n_groups,
    )


def _checked_group_means(group_means: np.ndarray | None, result: StatisticResult, n_bootstrap: int) -> np.ndarray:
    """The group means as (groups, values), checked against the result; refuses what max-t cannot use."""
    if group_means is None:
        raise ValueError(
            "method='max-t' needs group_means=...; get them with uqdiff.estimators.simultaneous.group_means"
        )
    x = np.asarray(group_means, dtype=np.float64).reshape(len(group_means), -1)
    size = max(1, np.size(result.estimate))
    if len(x) != result.n_groups or x.shape[1] != size:
        raise ValueError(f"group_means must have shape ({result.n_groups}, {size} values), got {np.shape(group_means)}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 100:
        raise ValueError(f"n_bootstrap must be an int >= 100, got {n_bootstrap!r}")
    return x


def _bootstrap_spans_the_map(group_means: np.ndarray) -> bool:
    """Whether the multiplier bootstrap can be trusted: enough groups, or group means in a low-dimensional span.

    The bootstrap statistics live in the span of the n - 1 centred group means. With at least
    MIN_GROUPS_MAX_T groups that is enough; with fewer it is only when the group means span fewer
    than n - 1 dimensions (the pixels are driven by few directions, which the groups then see all of).
    """
    x = np.asarray(group_means, dtype=np.float64).reshape(len(group_means), -1)
    n = len(x)
    if n >= MIN_GROUPS_MAX_T:
        return True
    centred = x - x.mean(axis=0)
    scale = np.sqrt((centred**2).sum(axis=0))
    scaled = centred[:, scale > 0] / scale[scale > 0]
    return scaled.size > 0 and int(np.linalg.matrix_rank(scaled, tol=1e-8 * np.sqrt(scaled.shape[1]))) < n - 1


def _max_normal_quantile(x: np.ndarray, level: float, n_bootstrap: int, seed: SeedLike) -> float:
    n = len(x)
    centred = x - x.mean(axis=0)
    s = np.sqrt((centred**2).sum(axis=0))  # = s_p sqrt(n - 1)
    keep = s > 0
    if not keep.any():
        return float(sps.norm.isf((1 - level) / 2))
    scaled = centred[:, keep] / s[keep]
    rng = np.random.default_rng(np.random.SeedSequence(entropy(seed)))
    chunk = max(1, min(n_bootstrap, 2**24 // scaled.shape[1]))  # bounds memory at ~128 MB
    maxima = []
    for lo in range(0, n_bootstrap, chunk):
        w = rng.standard_normal((min(chunk, n_bootstrap - lo), n))
        maxima.append(np.abs(w @ scaled).max(axis=1))
    return float(np.quantile(np.concatenate(maxima), level))


def holm_pixels(
    result: StatisticResult, null: float | np.ndarray = 0.0, *, confidence_level: float | None = None
) -> np.ndarray:
    """Boolean map of pixels where E[S] differs from ``null``, Holm-corrected over all pixels.

    Family-wise error at 1 - confidence_level (the result's level by
    default): the test companion of the bands, sharper than Bonferroni for
    the pixels with the strongest evidence.
    """
    level = result.confidence_level if confidence_level is None else confidence_level
    return holm(np.asarray(p_value(result, null), dtype=np.float64)) <= 1 - level


def _image(values: np.ndarray) -> np.ndarray:
    """A 2-D array to show: (H, W) as is, (1, H, W) squeezed, (C, H, W) averaged over channels."""
    v = np.asarray(values, dtype=np.float64)
    while v.ndim > 2:
        v = v[0] if v.shape[0] == 1 else v.mean(axis=0)
    return v
