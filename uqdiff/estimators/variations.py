"""Variations around one chosen noise: how much a sample's statistics move when its noise is perturbed.

The plain blend c z0 + (1 - c) w (eq. 1 of the variations paper) is not
N(0, I): its variance is c^2 + (1 - c)^2 < 1 for 0 < c < 1, so the model sees
noise it was not trained on. The variance-preserving blend
``blend(z0, w, c) = c z0 + sqrt(1 - c^2) w`` with w ~ N(0, I) independent of z0
is N(c z0, (1 - c^2) I) for a fixed z0, and N(0, I) when z0 ~ N(0, I) itself:
perturbations of a chosen sample live on the same scale as ordinary noise.

:class:`Variations` is a generator, noise w -> G(blend(z0, w, c)), so the
ordinary :func:`uqdiff.estimate` gives E[S | z0, c] with an interval under any
design of w (antithetic w gives the mirrored pair c z0 +- sqrt(1 - c^2) w).
Every w of a design is exactly N(0, I), so the estimate is exact for the
conditional law. :func:`estimate_variations` answers "how far does S move
from its value at z0": the mean shift E[S] - S(G(z0)) and the root mean
squared deviation sqrt(E[(S - S(G(z0)))^2]), both from one ordinary
:func:`uqdiff.estimate` run (the deviation is a per-image statistic whose
anchor is fixed before sampling; its interval maps through the square root
endpoint by endpoint, which keeps its coverage exactly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uqdiff._util import scalar, to_numpy
from uqdiff.designs import IID, NoiseDesign
from uqdiff.designs.seeds import SeedLike
from uqdiff.estimators.engine import StatisticsLike, named_statistics
from uqdiff.estimators.estimate import estimate
from uqdiff.estimators.results import ConfidenceInterval, EstimateResult, Exportable, StatisticResult
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.samplers.wrappers import Variations


@dataclass(frozen=True)
class VariationSummary(Exportable):
    """How one statistic moves when the noise z0 is blended with fresh noise at strength c."""

    statistic: str
    c: float
    anchor: float  # S(G(z0))
    mean: StatisticResult  # E[S(G(blend(z0, w, c)))] with its interval
    rms_deviation: float  # sqrt(E[(S - anchor)^2])
    rms_interval: ConfidenceInterval

    @property
    def shift(self) -> float:
        """E[S] - S(G(z0)): how far the variations' average sits from the chosen sample."""
        return float(self.mean.estimate) - self.anchor

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "statistic": self.statistic,
                "c": self.c,
                "value at z0": self.anchor,
                "mean": scalar(self.mean.estimate),
                "mean low": scalar(self.mean.low),
                "mean high": scalar(self.mean.high),
                "shift": self.shift,
                "rms deviation": self.rms_deviation,
                "rms low": self.rms_interval.low,
                "rms high": self.rms_interval.high,
            }
        ]


@dataclass(frozen=True)
class VariationResult(Exportable):
    """Per-statistic :class:`VariationSummary` and the underlying :func:`uqdiff.estimate` run."""

    summaries: dict[str, VariationSummary]
    run: EstimateResult

    def __getitem__(self, statistic: str) -> VariationSummary:
        return self.summaries[statistic]

    def _rows(self) -> list[dict[str, Any]]:
        return [row for v in self.summaries.values() for row in v._rows()]


@takes_run_settings
def estimate_variations(
    sampler: Callable,
    z0: Any,
    statistics: StatisticsLike,
    *,
    c: float,
    budget: int,
    design: NoiseDesign | str = "mc",
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> VariationResult:
    """How much scalar statistics of G(z0) vary over variations G(blend(z0, w, c)), with intervals.

    Runs :func:`uqdiff.estimate` on :class:`~uqdiff.samplers.Variations` with each statistic S
    and its squared deviation (S - S(G(z0)))^2, under ``design`` for w.

    Parameters
    ----------
    sampler : callable
        As for :func:`uqdiff.estimate`; it runs on its own device.
    z0 : tensor
        The chosen noise, of the sampler's noise shape.
    statistics : callable, list or dict of callables
        Scalar per image.
    c : float
        Blend strength in [-1, 1]: 1 reproduces G(z0), 0 is ordinary sampling.
    budget : int
        Noises w drawn.
    design : NoiseDesign or str
        The design of w. Plain MC by default, as everywhere; ``"antithetic"`` mirrors each
        variation around c z0 and cancels the odd part of S.
    seed, confidence_level, interval_method, run
        As for :func:`uqdiff.estimate`.

    Returns
    -------
    VariationResult
        Per statistic: the value at z0, the mean with its interval, the shift and the rms deviation.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a sampler fails; the message names the groups and the seed.

    Examples
    --------

    >>> from uqdiff.samplers import LinearGenerator
    >>> g = LinearGenerator([0.0])                       # x = z; S = x, anchor S(G(z0)) = 2
    >>> r = estimate_variations(g, torch.tensor([2.0]), {"x": lambda x: x[:, 0]}, c=0.8, budget=4000,
    ...                         design="antithetic", seed=0)
    >>> v = r["x"]                                       # truth: shift -0.4, rms sqrt(0.4^2 + 0.36) = 0.721
    >>> round(v.shift, 6), v.rms_interval.low < 0.7211 < v.rms_interval.high
    (-0.4, True)
    """
    named = named_statistics(statistics)
    variations = Variations(sampler, z0, c)
    with torch.no_grad():  # c = 1: the sample at z0 itself, through the same sampler path
        image = Variations(sampler, z0, 1.0)(IID().stream([0], seed=0))
    anchors = {}
    for name, s in named.items():
        value = to_numpy(s(image)).reshape(-1)
        if value.shape != (1,):
            raise ValueError(f"statistic {name!r} must be scalar per image for variations, got {value.shape} per image")
        anchors[name] = float(value[0])
    deviations = {f"{name} sq. deviation": _SquaredDeviation(s, anchors[name]) for name, s in named.items()}
    result = estimate(
        variations,
        {**named, **deviations},
        budget=budget,
        design=design,
        run=run,
        seed=seed,
        confidence_level=confidence_level,
        interval_method=interval_method,
    )
    summaries = {}
    for name in named:
        sq = result[f"{name} sq. deviation"]
        lo, hi = (math.sqrt(max(float(v), 0.0)) for v in (sq.low, sq.high))
        summaries[name] = VariationSummary(
            statistic=name,
            c=variations.c,
            anchor=anchors[name],
            mean=result[name],
            rms_deviation=math.sqrt(max(float(sq.estimate), 0.0)),
            rms_interval=ConfidenceInterval(lo, hi),
        )
    return VariationResult(summaries=summaries, run=result)


class _SquaredDeviation:
    """(S(x) - anchor)^2: the anchor is fixed before sampling, so this is an ordinary per-image statistic."""

    def __init__(self, statistic: Callable, anchor: float) -> None:
        self.statistic, self.anchor = statistic, anchor

    def __call__(self, images: Any) -> np.ndarray:
        return (to_numpy(self.statistic(images)) - self.anchor) ** 2
