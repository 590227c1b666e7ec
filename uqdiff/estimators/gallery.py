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
from scipy import stats as sps

from uqdiff._util import plain, scalar
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.estimators.estimate import StatisticsLike, design_seed, estimate, named_statistics
from uqdiff.estimators.results import ConfidenceInterval, EstimateResult, StatisticResult, markdown_table, quantile
from uqdiff.statistics.gallery import PerImage


def estimate_gallery(
    generator: Callable,
    gallery_statistics: StatisticsLike,
    *,
    design: NoiseDesign | str,
    budget: int,
    seed: Any = 0,
    batch_size: int = 64,
    **options: Any,
) -> EstimateResult:
    """Estimate E[gallery statistic] when each group of ``design`` is one gallery, with intervals.

    ``budget`` counts model evaluations (a multiple of the gallery size K, at
    least 2 galleries). ``options`` go to :func:`uqdiff.estimate`. For a
    gallery of K independent images use ``Equicorrelated(K, 0.0)`` (its
    coupling matrix is the identity); ``IID`` has group size 1. The results'
    ``marginal_variance`` is the variance of the gallery values; ``efficiency``
    and ``rho`` are None (they compare images inside a group, and here every
    image of a group carries the same gallery value by construction).

    >>> from uqdiff.designs import Equicorrelated, KAntithetic
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < k:
        raise ValueError(
            f"batch_size must be an int >= the gallery size {k} so batches hold whole galleries, got {batch_size!r}"
        )
    stats = {name: PerImage(s, gallery_size=k, name=name) for name, s in named_statistics(gallery_statistics).items()}
    result = estimate(generator, stats, design=design, budget=budget, seed=seed, batch_size=batch_size, **options)
    results = {
        name: dataclasses.replace(
            r, marginal_variance=scalar(np.square(r.standard_error) * r.n_groups), efficiency=None, rho=None
        )
        for name, r in result.results.items()
    }
    return dataclasses.replace(result, results=results, config={**result.config, "gallery_size": k})


@dataclass(frozen=True)
class GalleryDifference:
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
        denom = va**2 / a.df + vb**2 / b.df
        df = (va + vb) ** 2 / denom if denom > 0 else float(a.df + b.df)
        q = quantile(confidence_level, df, "t")
        p = float(2 * sps.t.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
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
class GalleryComparison:
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

    def to_frame(self):
        """One row per (statistic, design): estimate, interval, and the difference from the baseline."""
        import pandas as pd

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
                    }
                )
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        return markdown_table(self.to_frame())

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "estimates": {d: r.to_dict() for d, r in self.estimates.items()},
            "differences": {
                s: {d: plain(dataclasses.asdict(v)) for d, v in m.items()} for s, m in self.differences.items()
            },
        }


def compare_galleries(
    generator: Callable,
    gallery_statistics: StatisticsLike,
    *,
    designs: Sequence[NoiseDesign | str],
    budget: int,
    seed: Any = 0,
    confidence_level: float = 0.95,
    **options: Any,
) -> GalleryComparison:
    """Estimate gallery statistics under several designs and compare each with the first.

    Every design runs :func:`estimate_gallery` at the same ``budget`` (model
    evaluations; a multiple of every gallery size) on its own stream
    ``[seed, crc32(design name)]`` as in :func:`uqdiff.compare`, so the runs
    are independent and a difference gets a Welch t interval and p-value.
    The first design is the baseline, e.g. ``Equicorrelated(K, 0.0)`` for K
    independent images.
    """
    chosen = [as_design(d) for d in designs]
    names = [d.name for d in chosen]
    if len(chosen) < 2 or len(set(names)) != len(names):
        raise ValueError(f"designs must be at least 2 distinct designs, got {names}")
    runs = {
        d.name: estimate_gallery(
            generator,
            gallery_statistics,
            design=d,
            budget=budget,
            seed=design_seed(seed, d),
            confidence_level=confidence_level,
            **options,
        )
        for d in chosen
    }
    base = names[0]
    differences = {
        stat: {
            name: GalleryDifference.welch(runs[name][stat], runs[base][stat], confidence_level=confidence_level)
            for name in names[1:]
        }
        for stat in runs[base].results
    }
    return GalleryComparison(estimates=runs, baseline=base, differences=differences)
