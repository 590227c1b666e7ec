"""Estimators: the estimate is the mean of iid group means.

One code path serves every design. A group is one sample (MC), a pair
(antithetic), k coupled noises (K-antithetic, any coupling) or one scrambled
Sobol' replicate (RQMC); the design only decides how a group's noises are
drawn. Statistics stream through mergeable accumulators batch by batch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from uqdiff._rng import SeedLike, entropy, substream
from uqdiff.accumulator import GroupAccumulator
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.generators.base import device_of, noise_shape_of
from uqdiff.results import ComparisonResult, EstimateResult, StatisticResult, quantile

StatisticsLike = Callable | Sequence[Callable] | Mapping[str, Callable]


def named_statistics(statistics: StatisticsLike) -> dict[str, Callable]:
    """Name each statistic by its ``name`` attribute, else its ``__name__``."""
    if isinstance(statistics, Mapping):
        named = dict(statistics)
    else:
        items = [statistics] if callable(statistics) else list(statistics)
        named = {}
        for s in items:
            name = getattr(s, "name", None) or getattr(s, "__name__", None) or type(s).__name__
            if name in named:
                raise ValueError(f"two statistics are named {name!r}; pass a dict to name them")
            named[name] = s
    if not named:
        raise ValueError("give at least one statistic")
    for name, s in named.items():
        if not callable(s):
            raise TypeError(f"statistic {name!r} is not callable")
    return named


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def evaluate_groups(
    generator: Callable,
    statistics: Mapping[str, Callable],
    design: NoiseDesign,
    indices: np.ndarray,
    *,
    noise_shape: tuple[int, ...],
    seed: SeedLike,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-group means and within-group sums of squares of each statistic for the given groups.

    The generator sees at most ``batch_size`` noises at a time; images are
    reduced to statistic values before the next call.
    """
    k = design.group_size
    dim = math.prod(noise_shape)
    noise = design.groups(indices, dim, seed=seed, device=device, dtype=dtype)
    noise = noise.reshape(len(indices) * k, *noise_shape)
    values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for lo in range(0, len(noise), batch_size):
        chunk = noise[lo : lo + batch_size]
        images = generator(chunk)
        where = lambda row: f"group {int(indices[(lo + row) // k])} (noise {(lo + row) % k} of the group), seed {seed!r}"
        if len(images) != len(chunk):
            raise ValueError(f"generator returned {len(images)} outputs for a batch of {len(chunk)} noises")
        finite = torch.isfinite(images) if isinstance(images, torch.Tensor) else torch.from_numpy(np.isfinite(np.asarray(images)))
        if not bool(finite.all()):
            bad = int(torch.nonzero(~finite.reshape(len(chunk), -1).all(dim=1))[0])
            raise FloatingPointError(f"generator output has NaN or Inf at {where(bad)}")
        for name, stat in statistics.items():
            v = _to_numpy(stat(images))
            if v.ndim == 0 or len(v) != len(chunk):
                raise ValueError(
                    f"statistic {name!r} returned shape {v.shape} for a batch of {len(chunk)} images; "
                    f"expected ({len(chunk)}, ...)"
                )
            bad_rows = ~np.isfinite(v.reshape(len(v), -1)).all(axis=1)
            if bad_rows.any():
                raise FloatingPointError(f"statistic {name!r} is NaN or Inf at {where(int(np.argmax(bad_rows)))}")
            values[name].append(v)
        del images
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts).reshape(len(indices), k, *parts[0].shape[1:])
        mean = v.mean(axis=1)
        out[name] = (mean, ((v - mean[:, None]) ** 2).sum(axis=1))
    return out


def estimate(
    generator: Callable,
    statistics: StatisticsLike,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    batch_size: int = 64,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval: str = "t",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callable[[int, Mapping[str, GroupAccumulator]], None] | None = None,
) -> EstimateResult:
    """Estimate E[S(G(z))], z ~ N(0, I), with a confidence interval, for each statistic S.

    ``budget`` is the number of model evaluations; it must be a multiple of
    the design's group size and give at least 2 groups. The interval is
    Student-t on (groups - 1) degrees of freedom by default; ``interval="normal"``
    uses the normal quantile, the paper's choice for MC and AMC.
    ``callback(n_evaluations, accumulators)`` runs after every batch (running
    traces, reports); it must not modify the accumulators.

    >>> from uqdiff.generators import LinearGenerator
    >>> g = LinearGenerator(np.array([0.5]), np.array([[0.1, 0.2]]))
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=1)
    >>> r["<lambda>"].estimate, r["<lambda>"].width   # a linear statistic cancels exactly in pairs
    (0.5, 0.0)
    """
    design = as_design(design)
    stats = named_statistics(statistics)
    noise_shape = noise_shape_of(generator, noise_shape)
    design.check_dim(math.prod(noise_shape))
    n_groups = _groups_for_budget(budget, design)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    quantile(confidence_level, 1, interval)  # validates both before any model call
    entropy(seed)
    device = device_of(generator, device)
    accumulators = {name: GroupAccumulator() for name in stats}
    k = design.group_size
    per_call = max(1, batch_size // k)
    bar = _progress_bar(n_groups * k, design.name) if progress else None
    for start in range(0, n_groups, per_call):
        indices = np.arange(start, min(start + per_call, n_groups))
        parts = evaluate_groups(
            generator, stats, design, indices,
            noise_shape=noise_shape, seed=seed, batch_size=batch_size, device=device, dtype=dtype,
        )
        for name, (means, within) in parts.items():
            accumulators[name].add(start, means, within)
        if bar is not None:
            bar.update(len(indices) * k)
            bar.set_postfix_str(_running(accumulators, confidence_level, interval))
        if callback is not None:
            callback(int(indices[-1] + 1) * k, accumulators)
    if bar is not None:
        bar.close()
    results = {
        name: StatisticResult.from_moments(
            acc.moments(), statistic=name, design=design.name, group_size=k,
            confidence_level=confidence_level, interval=interval,
        )
        for name, acc in accumulators.items()
    }
    config = {"noise_shape": list(noise_shape), "batch_size": batch_size, "confidence_level": confidence_level,
              "interval": interval, "group_size": k}
    return EstimateResult(results=results, design=design.name, seed=seed, budget=n_groups * k, config=config)


def compare(
    generator: Callable,
    statistics: StatisticsLike,
    *,
    budget: int,
    designs: Sequence[NoiseDesign | str] = ("mc", "antithetic"),
    seed: int = 0,
    **options: Any,
) -> ComparisonResult:
    """Run several designs at the same budget of model evaluations and compare their intervals.

    Plain MC is always run as the baseline (added if missing). Each design
    draws from its own stream, seed ``[seed, crc32(design name)]``, so the runs
    are independent. ``options`` are passed to :func:`estimate`.
    """
    runs = {
        d.name: estimate(generator, statistics, budget=budget, design=d, seed=design_seed(seed, d), **options)
        for d in comparison_designs(designs)
    }
    return ComparisonResult(estimates=runs, baseline="mc")


def comparison_designs(designs: Sequence[NoiseDesign | str]) -> list[NoiseDesign]:
    """The designs :func:`compare` runs: distinct, with plain MC first when it was not given."""
    chosen = [as_design(d) for d in designs]
    if not any(d.name == "mc" for d in chosen):
        chosen.insert(0, as_design("mc"))
    names = [d.name for d in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"designs must differ, got {names}")
    return chosen


def design_seed(seed: SeedLike, design: NoiseDesign) -> list[int]:
    """The seed :func:`compare` gives a design: ``[seed, crc32(design name)]``, one stream per design."""
    return substream(seed, zlib.crc32(design.name.encode()))


def _groups_for_budget(budget: int, design: NoiseDesign) -> int:
    k = design.group_size
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of model evaluations, got {budget!r}")
    if budget % k:
        lower, upper = budget // k * k, (budget // k + 1) * k
        raise ValueError(
            f"budget {budget} is not a multiple of the group size {k} of design {design.name!r}; "
            f"use {lower or upper} or {upper}"
        )
    if budget // k < 2:
        raise ValueError(
            f"budget {budget} gives {budget // k} group(s) of {k} for design {design.name!r}; "
            f"an interval needs at least 2 groups (budget >= {2 * k})"
        )
    return int(budget // k)


def _progress_bar(total: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="eval", leave=False)


def _running(accumulators: dict[str, GroupAccumulator], level: float, interval: str) -> str:
    """Running estimate +- half-width for up to three scalar statistics."""
    shown = []
    for name, acc in list(accumulators.items()):
        if acc.shape != () or acc.count < 2 or len(shown) == 3:
            continue
        m = acc.moments()
        half = quantile(level, m.count - 1, interval) * math.sqrt(float(m.m2) / (m.count - 1) / m.count)
        shown.append(f"{name}={float(m.mean):.4g}±{half:.2g}")
    return " ".join(shown)
