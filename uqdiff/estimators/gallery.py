"""Gallery estimates and comparisons between designs: one value per gallery, iid galleries, intervals.

Under a design of group size K the group *is* the gallery, so the gallery
values are iid and their mean with its interval is what :func:`estimate`
computes from group means (see :mod:`uqdiff.statistics.gallery` for the
gallery statistics and :class:`~uqdiff.statistics.gallery.PerImage`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uqdiff._util import plain, scalar
from uqdiff.designs import Equicorrelated, NoiseDesign, as_design
from uqdiff.designs.seeds import SeedLike
from uqdiff.estimators.engine import StatisticsLike, named_statistics
from uqdiff.estimators.estimate import estimate, run_designs
from uqdiff.estimators.intervals import interval_p_value, quantile, welch_df
from uqdiff.estimators.results import ConfidenceInterval, EstimateResult, Exportable, StatisticResult
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.statistics.gallery import PerImage


@takes_run_settings
def estimate_gallery(
    sampler: Callable,
    gallery_statistics: StatisticsLike,
    *,
    budget: int,
    design: NoiseDesign | str,
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> EstimateResult:
    """Estimate E[gallery statistic] when each group of ``design`` is one gallery, with intervals.

    Parameters
    ----------
    sampler : callable
        As for :func:`uqdiff.estimate`.
    gallery_statistics : GalleryStatistic, list or dict of them
        Images of G galleries (G*K, ...) -> one value per gallery (G,).
    budget : int
        Noises drawn = images made: a multiple of the gallery size K, at least 2 galleries.
    design : NoiseDesign or str
        A design of group size K >= 2; each group is one gallery. For K independent images
        use ``Equicorrelated(K, 0.0)`` (its coupling matrix is the identity).
    noise_shape, seed, confidence_level, interval_method
        As for :func:`uqdiff.estimate`.
    run : RunSettings, optional
        As for :func:`uqdiff.estimate`; its ``batch_size`` must be at least K, so every batch
        holds whole galleries.

    Returns
    -------
    EstimateResult
        The results' ``marginal_variance`` is the variance of the gallery values;
        ``implied_efficiency`` and ``rho`` are None (they compare images inside a group,
        and here every image of a group carries the same gallery value by construction).

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a sampler fails; the message names the groups and the seed.

    Examples
    --------
    >>> from uqdiff.designs import KAntithetic
    >>> from uqdiff.samplers import LinearGenerator
    >>> from uqdiff.statistics import MeanPairwiseL2
    >>> g = LinearGenerator(np.zeros(16))                 # x = z, pixel variance 1
    >>> l2 = MeanPairwiseL2(value_range=(0, 1))           # expectation 2 (1 - c)
    >>> r = estimate_gallery(g, l2, design=KAntithetic(4), budget=4000, seed=0)
    >>> r["pairwise_l2"].low < 2 * (1 + 1 / 3) < r["pairwise_l2"].high
    True
    """
    design = as_design(design)
    k = design.group_size
    if k < 2:
        raise ValueError(
            f"design {design.name!r} has group size {k}; a gallery needs group size >= 2 "
            "(for K independent images use Equicorrelated(K, 0.0))"
        )
    batch_size = RunSettings.of(run).batch_size
    if batch_size < k:
        raise ValueError(
            f"batch_size must be an int >= the gallery size {k} so batches hold whole galleries, got {batch_size!r}"
        )
    named = named_statistics(gallery_statistics, kind="gallery statistic")
    stats = {name: PerImage(s, gallery_size=k, name=name) for name, s in named.items()}
    result = estimate(
        sampler,
        stats,
        budget=budget,
        design=design,
        noise_shape=noise_shape,
        run=run,
        seed=seed,
        confidence_level=confidence_level,
        interval_method=interval_method,
    )
    results = {
        name: dataclasses.replace(
            r, marginal_variance=scalar(np.square(r.standard_error) * r.n_groups), implied_efficiency=None, rho=None
        )
        for name, r in result.results.items()
    }
    return dataclasses.replace(result, results=results, config={**result.config, "gallery_size": k})


@dataclass(frozen=True)
class GalleryDifference(Exportable):
    """E[S] under ``design`` minus E[S] under ``baseline``, from independent runs (Welch t)."""

    statistic: str
    design: str
    baseline: str
    difference: float
    standard_error: float
    df: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    p_value: float

    @classmethod
    def welch(cls, a: StatisticResult, b: StatisticResult, *, confidence_level: float = 0.95) -> GalleryDifference:
        """a - b with the Welch-Satterthwaite t interval and two-sided p-value of no difference."""
        va, vb = a.standard_error**2, b.standard_error**2
        se = math.sqrt(va + vb)
        diff = float(a.estimate - b.estimate)
        df = welch_df([va, vb], [a.df + 1, b.df + 1])
        q = quantile(confidence_level, df, "t")
        p = float(interval_p_value(diff, se, 0.0, 1.0, df, 0.0, "t"))
        return cls(
            statistic=a.statistic,
            design=a.design,
            baseline=b.design,
            difference=diff,
            standard_error=se,
            df=df,
            confidence_interval=ConfidenceInterval(diff - q * se, diff + q * se),
            confidence_level=confidence_level,
            p_value=p,
        )


@dataclass(frozen=True)
class GalleryComparison(Exportable):
    """Gallery estimates per design and each design's difference from the baseline design."""

    estimates: dict[str, EstimateResult]
    baseline: str
    differences: dict[str, dict[str, GalleryDifference]]  # statistic -> design -> difference

    def difference(self, statistic: str, design: str) -> GalleryDifference:
        try:
            return self.differences[statistic][design]
        except KeyError:
            raise KeyError(
                f"no difference for statistic {statistic!r} and design {design!r}; designs: "
                f"{', '.join(d for d in self.estimates if d != self.baseline)}"
            ) from None

    def _rows(self) -> list[dict[str, Any]]:
        """One row per (statistic, design): estimate, interval, and the difference from the baseline."""
        rows = []
        for design, run in self.estimates.items():
            for stat, r in run.results.items():
                d = self.differences[stat].get(design)
                rows.append(
                    {
                        "statistic": stat,
                        "design": design,
                        "gallery_size": r.group_size,
                        "galleries": r.n_groups,
                        "estimate": r.estimate,
                        "low": r.low,
                        "high": r.high,
                        "difference": None if d is None else d.difference,
                        "diff_low": None if d is None else d.confidence_interval.low,
                        "diff_high": None if d is None else d.confidence_interval.high,
                        "p_value": None if d is None else d.p_value,
                        "seed": str(plain(run.seed)),
                    }
                )
        return rows


@takes_run_settings
def compare_galleries(
    sampler: Callable,
    gallery_statistics: StatisticsLike,
    *,
    budget: int,
    designs: Sequence[NoiseDesign | str],
    baseline: NoiseDesign | str | None = None,
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> GalleryComparison:
    """Estimate gallery statistics under several designs and compare each with the baseline.

    Parameters
    ----------
    sampler, gallery_statistics
        As for :func:`estimate_gallery`.
    budget : int
        Noises (images) per design: a multiple of the gallery size.
    designs : sequence of NoiseDesign or str
        Designs of one gallery size K (the baseline is added when missing).
    baseline : NoiseDesign or str, optional
        The design every difference is taken against. Default (or ``"mc"``): plain MC for
        galleries, K independent images, ``Equicorrelated(K, 0.0)``.
    seed : int or sequence of int
        Each design runs on its own stream ``[*seed, crc32(design name)]`` as in
        :func:`uqdiff.compare`, so the runs are independent and a difference gets a Welch
        t interval and p-value.
    noise_shape, confidence_level, interval_method, run
        As for :func:`uqdiff.compare` (one checkpoint per design).

    Returns
    -------
    GalleryComparison
        Estimates per design and each design's difference from the baseline.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a sampler fails; the message names the groups and the seed.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> from uqdiff.statistics import MeanPairwiseL2
    >>> g = LinearGenerator(np.zeros(16))                 # x = z: E[pairwise L2] = 2 (1 - c)
    >>> c = compare_galleries(g, MeanPairwiseL2(value_range=(0, 1)), budget=2000, designs=["k-antithetic:4"], seed=0)
    >>> d = c.difference("pairwise_l2", "k-antithetic(k=4)")   # truth: 2 / 3 more diverse than iid
    >>> c.baseline, d.confidence_interval.low < 2 / 3 < d.confidence_interval.high
    ('equicorrelated(k=4, c=0)', True)
    """
    chosen = [as_design(d) for d in designs]
    sizes = sorted({d.group_size for d in chosen})
    if baseline is None or (isinstance(baseline, str) and baseline.lower() in ("mc", "iid")):
        if len(sizes) != 1:
            raise ValueError(
                f"designs have gallery sizes {sizes}; the default baseline (K independent images) needs one size: "
                "compare one size at a time or pass baseline=..."
            )
        baseline = Equicorrelated(sizes[0], 0.0)
    runs, base = run_designs(
        chosen,
        lambda d, s, each: estimate_gallery(
            sampler,
            gallery_statistics,
            budget=budget,
            design=d,
            noise_shape=noise_shape,
            seed=s,
            confidence_level=confidence_level,
            interval_method=interval_method,
            run=each,
        ),
        seed=seed,
        baseline=baseline,
        run=run,
    )
    if len(runs) < 2:
        raise ValueError(f"designs must hold at least one design besides the baseline {base!r}")
    differences = {
        stat: {
            name: GalleryDifference.welch(runs[name][stat], runs[base][stat], confidence_level=confidence_level)
            for name in runs
            if name != base
        }
        for stat in runs[base].results
    }
    return GalleryComparison(estimates=runs, baseline=base, differences=differences)
