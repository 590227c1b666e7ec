"""Evaluate a diffusion inverse solver with intervals: table 3 and table 8 of paper 001 for any solver.

For each ground-truth image the measurement is drawn once (its own seed); the
solver's posterior samples are then ordinary uqdiff estimates of E[L1],
E[PSNR], E[SSIM] (and the posterior-mean image) under each noise design at
the same budget. Per image and over images the result reports estimates, CI
widths and the relative efficiency (CI_MC / CI)^2, the centralized and
standard PN vs RR correlations of the reconstruction errors, and the sanity
check that the posterior mean beats the prior-free reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

from uqdiff._util import callable_name
from uqdiff.designs import NoiseDesign
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.estimators.engine import named_statistics
from uqdiff.estimators.estimate import comparison_designs, estimate, run_designs
from uqdiff.estimators.results import ComparisonResult, Exportable, markdown_table
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.inverse.measurement import Measurement, measure
from uqdiff.samplers.base import Recording
from uqdiff.statistics import L1, PSNR, SSIM, PixelMap, pn_rr_correlations

SolverFactory = Callable[[Measurement], Callable[[torch.Tensor], torch.Tensor]]
#: Reconstruction statistics: each takes the ground truth and returns the statistic for that image.
StatisticFactory = Callable[[torch.Tensor], Callable]
DEFAULT_STATISTICS: tuple[StatisticFactory, ...] = (L1, PSNR, SSIM)
#: Their registry names, for the command line and configs.
RECONSTRUCTION_STATISTICS = tuple(cls.name for cls in DEFAULT_STATISTICS)
_MEAN_IMAGE = "_posterior_mean"


@dataclass(frozen=True)
class SolverEvaluation(Exportable):
    """Per-image and aggregated results of one solver on one task.

    * ``per_image``: one row per (image, design, statistic): estimate, low,
      high, width, efficiency (CI_MC / CI)^2 against that image's MC run.
    * ``summary``: per (design, statistic), averaged over images: estimate,
      width, efficiency = (mean MC width / mean width)^2 as in table 3, and
      the within-run ``implied_efficiency`` pooled over images.
    * ``correlations``: per image, mean standard and centralized correlations
      of reconstruction errors for PN pairs (antithetic run) and RR pairs
      (consecutive MC samples), as in tables 7 and 8.
    * ``sanity``: per image, PSNR of the naive reconstruction and of the
      posterior mean (average of all samples of all designs).
    """

    task: str
    solver: str
    per_image: pd.DataFrame
    summary: pd.DataFrame
    correlations: pd.DataFrame
    sanity: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)

    def efficiency(self, statistic: str, design: str) -> float:
        row = self.summary[(self.summary.statistic == statistic) & (self.summary.design == design)]
        if row.empty:
            raise KeyError(f"no summary row for statistic {statistic!r} and design {design!r}")
        return float(row.efficiency.iloc[0])

    def _rows(self) -> list[dict[str, Any]]:
        """The per-image table: one row per (image, design, statistic)."""
        return self.per_image.to_dict(orient="records")

    def to_markdown(self) -> str:
        lines = [
            f"### {self.solver} on {self.task}",
            "",
            f"Averaged over images; efficiency = (mean CI width of {self.config.get('baseline', 'mc')} / mean CI width)^2.",
            "",
        ]
        lines += markdown_table(self.summary.round(4)).splitlines()
        if not self.correlations.empty:
            lines += ["", "PN vs RR correlations of reconstruction errors (mean over images of per-image means):", ""]
            lines += markdown_table(
                self.correlations.drop(columns="image").mean().to_frame("mean").T.round(3)
            ).splitlines()
        lines += ["", "Sanity: PSNR (dB) of the naive reconstruction and of the posterior mean:", ""]
        lines += markdown_table(self.sanity.round(2)).splitlines()
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


@takes_run_settings
def evaluate_solver(
    solver: SolverFactory,
    images: Sequence[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
    task: str,
    *,
    budget: int = 32,
    designs: Sequence[NoiseDesign | str] = ("mc", "antithetic"),
    baseline: NoiseDesign | str = "mc",
    statistics: Sequence[StatisticFactory] = DEFAULT_STATISTICS,
    sigma_y: float = 0.05,
    operator_params: dict[str, Any] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    correlation_pairs: int = 50,
    name: str | None = None,
    run: RunSettings | None = None,
) -> SolverEvaluation:
    """Run ``solver`` on every image under every design at ``budget`` noises per image and design.

    Parameters
    ----------
    solver : callable
        ``solver(measurement)`` returns the generator (noise -> reconstructions on the [-1, 1]
        scale) for one measurement, e.g. ``lambda m: DPS(prior, m)``.
    images : sequence of (C, H, W) arrays or tensors
        Ground truths on the [-1, 1] scale.
    task : str
        A measurement operator's registry name (``"super_resolution"``, ``"box_inpainting"``, ...).
    budget : int
        Noises (posterior samples) per image and design.
    designs : sequence of NoiseDesign or str
        The baseline is added when missing; the antithetic run (when present) gives the PN
        pairs and the MC run the RR pairs of the correlation diagnostics.
    baseline : NoiseDesign or str
        The design the efficiency (CI_baseline / CI)^2 is measured against: plain MC by default.
    statistics : sequence of callables
        Each takes an image's ground truth and returns its reconstruction statistic: the
        classes ``L1``, ``PSNR``, ``SSIM`` (the default) or any ``truth -> statistic``.
    sigma_y, operator_params
        Measurement noise and the operator's parameters.
    seed : int or sequence of int
        Image j's measurement uses ``[*seed, j]``; its run of design d ``[*seed, j, crc32(d)]``, so
        runs are independent across images and designs and any single image can be re-run alone.
    confidence_level, interval_method
        As for :func:`uqdiff.estimate`.
    run : RunSettings, optional
        As for :func:`uqdiff.estimate`; a checkpoint becomes one file per image and design.
    correlation_pairs : int
        Pairs of samples kept per image for the PN vs RR correlations.
    name : str, optional
        The solver's name in the tables (default: the factory's name).

    Returns
    -------
    SolverEvaluation
        Per-image and averaged estimates, widths and efficiencies, correlations and sanity checks.

    Raises
    ------
    TypeError
        For statistics given as names (those are for the command line) or not callable.
    ValueError
        For no images or an unknown task, before any solver call.

    Examples
    --------
    A stand-in solver whose reconstructions are linear in the noise (any DPS or DDS sampler fits the same slot):

    >>> from uqdiff.samplers import LinearGenerator
    >>> truths = torch.zeros(1, 1, 16, 16)
    >>> solver = lambda m: LinearGenerator(m.naive[0].numpy(), 0.1 * np.ones((256, 2)))
    >>> ev = evaluate_solver(solver, truths, "box_inpainting", budget=16, seed=0)
    >>> sorted(set(ev.per_image.design)), ev.efficiency("l1", "mc")
    (['antithetic', 'mc'], 1.0)
    """
    if isinstance(statistics, (str, bytes)) or not statistics or any(isinstance(f, str) for f in statistics):
        raise TypeError(
            "statistics must be callables that take the ground truth and return a statistic "
            f"(e.g. uqdiff.statistics.L1, PSNR, SSIM), got {statistics!r}; names are for the command line"
        )
    if any(not callable(f) for f in statistics):
        raise TypeError(f"every statistic must be callable (truth -> statistic), got {list(statistics)}")
    truths = [
        torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
        for x in images
    ]
    if not truths:
        raise ValueError("give at least one ground-truth image")
    chosen = comparison_designs(designs, baseline=baseline)
    settings = RunSettings.of(run)
    names = [d.name for d in chosen]
    seed = entropy(seed)
    rows, corr_rows, sanity_rows, stat_names = [], [], [], []
    for j, truth in enumerate(truths):
        m = measure(truth, task, sigma_y=sigma_y, seed=substream(seed, j), **(operator_params or {}))
        stats = named_statistics([f(m.truth) for f in statistics])
        stat_names = list(stats)
        if _MEAN_IMAGE in stats:
            raise ValueError(f"{_MEAN_IMAGE!r} is reserved for the posterior-mean image")
        stats[_MEAN_IMAGE] = PixelMap(value_range=(-1.0, 1.0))
        generator = solver(m)
        recorders = {
            d.name: Recording(generator, 2 * correlation_pairs if d.name in ("mc", "antithetic") else 0) for d in chosen
        }
        runs, base = run_designs(
            chosen,
            lambda d, s, each, recorders=recorders, stats=stats: estimate(
                recorders[d.name],
                stats,
                budget=budget,
                design=d,
                seed=s,
                confidence_level=confidence_level,
                interval_method=interval_method,
                run=each,
            ),
            seed=substream(seed, j),
            baseline=baseline,
            run=settings.for_part(f"image {j}"),
        )
        recorded = {d: torch.as_tensor(rec.images()) for d, rec in recorders.items()}
        comparison = ComparisonResult(estimates=runs, baseline=base)
        for d, result in runs.items():
            for s in stat_names:
                r = result[s]
                rows.append(
                    {
                        "image": j,
                        "design": d,
                        "statistic": s,
                        "estimate": r.estimate,
                        "low": r.low,
                        "high": r.high,
                        "width": r.width,
                        "efficiency": comparison.efficiency(s, d),
                        "budget": r.n_noises,
                        "standard_error": r.standard_error,
                        "marginal_variance": r.marginal_variance,
                    }
                )
        mean_image = np.mean([result[_MEAN_IMAGE].estimate for result in runs.values()], axis=0) * 2 - 1
        psnr = PSNR(m.truth)
        sanity_rows.append(
            {
                "image": j,
                "naive_psnr": float(psnr(m.naive)[0]),
                "posterior_mean_psnr": float(psnr(torch.as_tensor(mean_image, dtype=torch.float32)[None])[0]),
            }
        )
        if "antithetic" in recorded and "mc" in recorded:
            corr_rows.append({"image": j, **_pn_rr(recorded["antithetic"], recorded["mc"], m.truth)})
    per_image = pd.DataFrame(rows)
    summary = _summary(per_image, baseline=names[0], confidence_level=confidence_level)
    config = {
        "budget": budget,
        "generator_calls": budget * len(names) * len(truths),
        "designs": names,
        "baseline": names[0],
        "statistics": stat_names,
        "sigma_y": sigma_y,
        "operator_params": operator_params or {},
        "seed": seed,
        "batch_size": settings.batch_size,
        "confidence_level": confidence_level,
        "n_images": len(truths),
    }
    label = name or callable_name(solver, default="solver")
    return SolverEvaluation(
        task=task,
        solver=label,
        per_image=per_image,
        summary=summary,
        correlations=pd.DataFrame(corr_rows),
        sanity=pd.DataFrame(sanity_rows),
        config=config,
    )


def _pn_rr(antithetic: torch.Tensor, mc: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Mean per-pair correlations of reconstruction errors: PN = antithetic groups, RR = consecutive MC samples."""
    pairs = min(len(antithetic) // 2, len(mc) // 2)
    err = lambda x: (x - truth.double()).numpy()
    pos, neg = err(antithetic[0 : 2 * pairs : 2]), err(antithetic[1 : 2 * pairs : 2])
    r1, r2 = err(mc[0 : 2 * pairs : 2]), err(mc[1 : 2 * pairs : 2])
    res = pn_rr_correlations(pos, neg, r1, r2)
    return {k: float(np.nanmean(v)) for k, v in vars(res).items()} | {"pairs": pairs}


def _summary(per_image: pd.DataFrame, *, baseline: str, confidence_level: float) -> pd.DataFrame:
    """Table 3's efficiency from mean widths, plus the within-run efficiency pooled over images.

    ``low`` / ``high`` bound the average over *these* images (the images fixed, the noise
    random: the normal interval on sqrt(sum se^2) / images). For the population the images
    come from, whose spread adds to it, use :func:`uqdiff.evaluate_solvers`.

    ``implied_efficiency`` = sum of marginal variances / sum of (n x se^2): the
    design's variance reduction against MC at the same budget, read from the
    design's own run (see StatisticResult.implied_efficiency). It does not pay the
    sampling error of a second, independent MC run, so with few images it is
    the steadier of the two figures.
    """
    df = per_image.assign(_nse2=per_image.budget * per_image.standard_error**2, _se2=per_image.standard_error**2)
    agg = (
        df.groupby(["statistic", "design"], sort=False)
        .agg(
            estimate=("estimate", "mean"),
            width=("width", "mean"),
            images=("image", "nunique"),
            budget=("budget", "first"),
            _marginal=("marginal_variance", "sum"),
            _nse2=("_nse2", "sum"),
            _se2=("_se2", "sum"),
        )
        .reset_index()
    )
    half = scipy_stats.norm.ppf(0.5 + confidence_level / 2) * np.sqrt(agg._se2) / agg.images
    agg.insert(agg.columns.get_loc("estimate") + 1, "low", agg.estimate - half)
    agg.insert(agg.columns.get_loc("low") + 1, "high", agg.estimate + half)
    base_width = agg[agg.design == baseline].set_index("statistic").width
    agg["efficiency"] = [(base_width[s] / w) ** 2 if w > 0 else math.inf for s, w in zip(agg.statistic, agg.width)]
    agg["implied_efficiency"] = agg._marginal / agg._nse2
    return agg.drop(columns=["_marginal", "_nse2", "_se2"])
