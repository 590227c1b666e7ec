"""Estimators: the estimate is the mean of iid group means.

One code path serves every design. A group is one sample (MC), a pair
(antithetic), k coupled noises (K-antithetic, any coupling) or one scrambled
Sobol' replicate (RQMC); the design only decides how a group's noises are
drawn. Statistics stream through mergeable accumulators batch by batch.
:func:`run_designs` is the one loop over designs that :func:`compare`, the
command line, galleries and solver evaluation share.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from uqdiff._util import callable_name, package_version, to_numpy
from uqdiff.designs import IID, NoiseDesign, as_design
from uqdiff.designs.features import NoiseFeatures
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.estimators import checkpoint as _checkpoint
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.checkpoint import Checkpoint
from uqdiff.estimators.control_variates import ControlVariates, against_mc, fit_control, pilot_groups
from uqdiff.estimators.results import ComparisonResult, EstimateResult, StatisticResult, quantile, trust_warning
from uqdiff.estimators.stopping import StoppingRule, groups_for_budget
from uqdiff.samplers.base import Recording, as_sampler, device_of, is_out_of_memory
from uqdiff.samplers.repeat import check_first_batch, tolerance_of, wants_check

StatisticsLike = Callable | Sequence[Callable] | Mapping[str, Callable]
CheckpointLike = Checkpoint | str | os.PathLike
R = TypeVar("R")


def named_statistics(statistics: StatisticsLike, *, kind: str = "statistic") -> dict[str, Callable]:
    """The statistics by name: a dict keeps its keys; otherwise each callable's ``name`` or ``__name__``.

    A lambda (or a callable with no name) is called ``statistic`` when it is the only one,
    ``statistic_<position>`` among several, rather than ``<lambda>``. Registry names
    (``"mean"``) are for the command line and configs; in Python a statistic is a callable.
    """
    if isinstance(statistics, (str, bytes)):
        raise TypeError(
            f"{kind} must be a callable, a list of callables or a dict of them, got the string {statistics!r}; "
            f"registry names are for the command line and configs: use uqdiff.statistics.get_statistic({statistics!r})"
        )
    if isinstance(statistics, Mapping):
        named = {str(k): v for k, v in statistics.items()}
    else:
        items = [statistics] if callable(statistics) else list(statistics)
        named = {}
        for i, s in enumerate(items):
            name = callable_name(s, default=kind if len(items) == 1 else f"{kind}_{i}")
            if name in named:
                raise ValueError(f"two {kind}s are named {name!r}; pass a dict to name them")
            named[name] = s
    if not named:
        raise ValueError(f"give at least one {kind}")
    for name, s in named.items():
        if not callable(s):
            raise TypeError(f"{kind} {name!r} is not callable (got {type(s).__name__})")
    return named


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
    output_shapes: dict[str, tuple[int, ...]] | None = None,
    first: list | None = None,
    features: NoiseFeatures | None = None,
    coefficients: Mapping[str, np.ndarray] | None = None,
    members: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-group means and within-group sums of squares of each statistic for the given groups.

    The generator sees at most ``batch_size`` noises at a time; images are
    reduced to statistic values before the next call. ``output_shapes``, if
    given, records the per-image shape of the generator output and of each
    statistic at their first batch, and later batches must match it.
    An exception from the generator is re-raised as :class:`GeneratorError`
    naming the groups and the seed (out-of-memory errors pass unchanged).

    ``generator`` is a :class:`~uqdiff.samplers.base.Sampler` (see :func:`as_sampler`): every
    batch is a slice of one :class:`~uqdiff.designs.streams.NoiseStream` that makes each slot on
    demand, whatever the sampler. ``noise_shape`` is the shape of its first draw (x_T), which
    noise features read. ``first``, if given (a list), receives the first noise of the first
    batch (a one-noise stream), its output, the batch's size and where it is, for the repeat check.

    Noise control variates: with ``features`` and ``coefficients`` (statistic name -> array of
    shape (p, *statistic shape)), each statistic is replaced by S - beta . f(z), which has the same
    mean because every feature has mean zero. With ``features`` alone, the group means of the
    features come back under the key :data:`FEATURES` (a pilot fits the coefficients from them).
    ``members``, if given (a dict), receives each key's values per group member, arrays of shape
    (groups, group size, ...), appended batch by batch: a pilot that compares designs needs them.
    """
    shapes = {} if output_shapes is None else output_shapes
    k = design.group_size
    generator = as_sampler(generator, noise_shape=noise_shape, device=device)
    batch_size = min(batch_size, getattr(generator, "max_batch", None) or batch_size)  # a sampler's largest batch
    noise = design.stream(indices, seed=seed, dtype=dtype)
    values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    if features is not None and coefficients is None:
        values[FEATURES] = []
    for lo in range(0, len(noise), batch_size):
        chunk = noise[lo : lo + batch_size]
        feats = None
        if features is not None:  # features of x_T, the first draw, whatever the sampler draws after it
            feats = features(chunk.slot(0, noise_shape, offset=0, device=device)).cpu().numpy()
        where = lambda row, lo=lo: (
            f"group {int(indices[(lo + row) // k])} (noise {(lo + row) % k} of the group), seed {seed!r}"
        )
        probe = chunk[0:1]
        try:
            images = generator(chunk)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            first, last = int(indices[lo // k]), int(indices[(lo + len(chunk) - 1) // k])
            raise GeneratorError(
                f"generator raised {type(exc).__name__}: {exc} on groups {first}..{last}, seed {seed!r}"
            ) from exc
        if not isinstance(images, (torch.Tensor, np.ndarray)) or images.ndim == 0:
            raise TypeError(
                f"the generator must return a torch tensor or numpy array with one row per noise, got "
                f"{type(images).__name__} for a batch of {len(chunk)} noises at {where(0)}"
            )
        if len(images) != len(chunk):
            raise ValueError(f"generator returned {len(images)} outputs for a batch of {len(chunk)} noises")
        _check_output_shape(shapes, "generator output", tuple(images.shape[1:]), where(0))
        _check_output_shape(shapes, "generator output dtype", (output_kind(images, where(0)),), where(0))
        finite = (
            torch.isfinite(images)
            if isinstance(images, torch.Tensor)
            else torch.from_numpy(np.isfinite(np.asarray(images)))
        )
        if not bool(finite.all()):
            bad = int(torch.nonzero(~finite.reshape(len(chunk), -1).all(dim=1))[0])
            raise FloatingPointError(f"generator output has NaN or Inf at {where(bad)}")
        untouched = None
        if first is not None and lo == 0:
            first.extend([probe, images[0:1], len(chunk), where(0)])
            untouched = images[0:1].clone() if isinstance(images, torch.Tensor) else np.array(images[0:1])
        for name, stat in statistics.items():
            try:
                out = stat(images)
            except Exception as exc:  # keep its type (callers catch it), add what uqdiff was doing
                if hasattr(exc, "add_note"):  # Python 3.11+
                    exc.add_note(
                        f"uqdiff: raised by statistic {name!r} on a batch of generator outputs of shape "
                        f"{tuple(images.shape)} and dtype {images.dtype} (groups from {where(0)})"
                    )
                raise
            if untouched is not None and not _same_values(images[0:1], untouched):
                raise ValueError(
                    f"statistic {name!r} changed the images in place (e.g. x.clamp_(...), x -= ..., x[...] = ...): "
                    f"every statistic and the repeat check see the same batch. Compute on a copy (x = x.clone()) "
                    f"or with out-of-place operations"
                )
            try:
                v = to_numpy(out)
            except (TypeError, ValueError):
                raise TypeError(
                    f"statistic {name!r} must return numbers (a tensor or array with one row per image), "
                    f"got {type(out).__name__} {str(out)[:60]!r}"
                ) from None
            if v.ndim == 0 or len(v) != len(chunk):
                raise ValueError(
                    f"statistic {name!r} returned shape {v.shape} for a batch of {len(chunk)} images; "
                    f"expected ({len(chunk)}, ...)"
                )
            _check_output_shape(shapes, f"statistic {name!r}", v.shape[1:], where(0))
            bad_rows = ~np.isfinite(v.reshape(len(v), -1)).all(axis=1)
            if bad_rows.any():
                raise FloatingPointError(f"statistic {name!r} is NaN or Inf at {where(int(np.argmax(bad_rows)))}")
            if coefficients is not None:
                v = v - np.tensordot(feats, coefficients[name], axes=(1, 0))
            values[name].append(v)
        if feats is not None and coefficients is None:
            values[FEATURES].append(feats)
        del images
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts).reshape(len(indices), k, *parts[0].shape[1:])
        if members is not None:
            members.setdefault(name, []).append(v)
        mean = v.mean(axis=1)
        out[name] = (mean, ((v - mean[:, None]) ** 2).sum(axis=1))
    return out


#: The key under which :func:`evaluate_groups` returns the group means of noise features.
FEATURES = "noise features"


class GeneratorError(RuntimeError):
    """The generator failed; the message names the groups and the seed of the failing batch."""


class CallbackError(RuntimeError):
    """A ``callback`` given to :func:`estimate` raised; the run stopped (checkpoint saved first)."""


def _check_output_shape(shapes: dict[str, tuple], what: str, shape: tuple, where: str) -> None:
    """Every batch's ``what`` (a per-image shape, or a dtype as a 1-tuple) must be the first batch's."""
    expected = shapes.setdefault(what, tuple(shape))
    if tuple(shape) == expected:
        return
    if what.endswith("dtype"):
        raise ValueError(
            f"{what} changed from {expected[0]} to {shape[0]} between batches, at {where}: values of different "
            f"types would be averaged together (an integer batch of a float sampler is usually rescaled or "
            f"rounded). Make the generator return one dtype for every batch, e.g. end it with .float()"
        )
    raise ValueError(f"{what} shape changed from {expected} to {tuple(shape)} per image between batches, at {where}")


def _same_values(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> bool:
    """Bitwise-equal contents, NaNs included (outputs are checked finite later)."""
    if isinstance(a, torch.Tensor):
        return bool(torch.equal(a, b)) or bool(((a == b) | (a.isnan() & b.isnan())).all())
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def output_kind(images: torch.Tensor | np.ndarray, where: str) -> str:
    """The dtype of a generator's output as text; complex and non-numeric outputs are refused."""
    dtype = images.dtype
    if isinstance(images, torch.Tensor):
        complex_, numeric = dtype.is_complex, True
    else:
        complex_, numeric = np.issubdtype(dtype, np.complexfloating), dtype.kind in "biuf"
    if complex_:
        raise TypeError(
            f"the generator returned complex values ({dtype}) at {where}; statistics would silently drop the "
            f"imaginary part. Return real images: .real, .abs() or torch.view_as_real(...) as the statistic needs"
        )
    if not numeric:
        raise TypeError(
            f"the generator returned a numpy array of dtype {dtype} at {where}, not numbers; return a float tensor "
            f"or array (an object array usually means a list of images of different shapes, or of tensors: stack "
            f"them with torch.stack or np.stack)"
        )
    return str(dtype).removeprefix("torch.")


def estimate(
    generator: Callable,
    statistics: StatisticsLike,
    *,
    budget: int | None = None,
    stopping: StoppingRule | None = None,
    design: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    batch_size: int = 64,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callable[[int, Mapping[str, GroupAccumulator]], None] | None = None,
    checkpoint: CheckpointLike | None = None,
    executor: Any = None,
    control_variates: ControlVariates | NoiseFeatures | None = None,
) -> EstimateResult:
    """Estimate E[S(G(z))], z ~ N(0, I), with a confidence interval, for each statistic S.

    The estimate is the mean of iid group means; the interval comes from their spread.

    Parameters
    ----------
    generator : callable
        Noise batch (B, *noise_shape) -> images (B, ...), a torch tensor or numpy array.
    statistics : callable, list of callables or dict of name to callable
        Images (B, ...) -> values (B,) or maps (B, ...).
    budget : int, optional
        Noises drawn from the design (= generator evaluations for a plain generator); a
        multiple of the design's group size giving at least 2 groups. Give this or ``stopping``.
    stopping : StoppingRule, optional
        A rule that sizes the run, e.g. ``TargetPrecision(halfwidth=0.01, max_budget=10_000)``.
    design : NoiseDesign or str
        How the noises of a group are drawn (``"mc"``, ``"antithetic"``, ``KAntithetic(8)``, ...), or
        ``"auto"`` (or ``AutoDesign(...)``): a pilot of 10 % of the budget compares MC, pairs, other
        designs and noise control variates per statistic and a fresh main stage runs the best
        (``config["auto"]`` holds the evidence; the budget counts the pilot).
    noise_shape : tuple of int, optional
        Shape of one noise; default the generator's ``noise_shape`` attribute.
    batch_size : int
        Noises per generator call (halved once, with a warning, on out-of-memory).
    seed : int or sequence of int
        Group g's noise is a pure function of (seed, g): batching, sharding and resuming never change a result.
    confidence_level : float
        Two-sided level of the intervals.
    interval_method : {"t", "normal"}
        Student-t on (groups - 1) degrees of freedom, or the normal quantile (the paper's choice for MC and AMC).
    device, dtype
        Where and in which floating dtype the noise is made; default the generator's device, float32.
    progress : bool
        Show a progress bar counting generator calls.
    callback : callable, optional
        ``callback(n_noises, accumulators)`` after every batch (running traces); must not modify them.
    checkpoint : Checkpoint or path, optional
        Save the run's state (``Checkpoint(path, resume=True)`` continues one and gives exactly the
        uninterrupted result). A bare path starts a new checkpoint.
    executor : RayExecutor, optional
        Spread groups over Ray workers with the same result, bit for bit.
    control_variates : ControlVariates or NoiseFeatures, optional
        Noise control variates: a pilot (``pilot_share`` of the budget, not reused) fits S on
        features of the noise with known mean zero (``DCTFeatures``), and the main groups
        estimate E[S - beta . f(z)] = E[S]. The pilot's noises count in the budget; the
        result's ``implied_efficiency`` is against plain MC on S itself. Needs ``budget``
        (not ``stopping``) and no checkpoint.

    Returns
    -------
    EstimateResult
        One :class:`StatisticResult` per statistic, the budget and the generator calls made.
        With control variates, ``config["control_variates"]`` holds the fitted coefficients
        and each statistic's predicted gain.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work, before any model call.
    GeneratorError
        When the generator fails; the message names the groups and the seed.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> g = LinearGenerator(np.array([0.5]), np.array([[0.1, 0.2]]))
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=1)
    >>> r["statistic"].estimate, r["statistic"].width   # a linear statistic cancels exactly in pairs
    (0.5, 0.0)
    >>> from uqdiff.estimators.stopping import TargetPrecision
    >>> r = estimate(g, lambda x: x[:, 0] ** 2, stopping=TargetPrecision(halfwidth=0.01, max_budget=10_000), seed=1)
    >>> r.config["stopping"]["target_met"], r["statistic"].width <= 0.02
    ({'statistic': True}, True)
    >>> from uqdiff.designs.features import DCTFeatures
    >>> g = LinearGenerator(np.zeros(64))  # the images are the noise
    >>> r = estimate(g, lambda x: x.mean(dim=1) ** 2, budget=400, control_variates=DCTFeatures(2), seed=0)
    >>> round(r["statistic"].estimate, 4), r["statistic"].implied_efficiency > 100  # truth: E[mean^2] = 1/64
    (0.0156, True)
    """
    if not callable(generator):
        raise TypeError(f"generator must be a callable from a noise batch to images, got {type(generator).__name__}")
    from uqdiff.estimators import auto as _auto  # the automatic choice runs estimate itself

    if _auto.is_auto(design):
        return _estimate_auto(
            generator, statistics, design=design, budget=budget, stopping=stopping, noise_shape=noise_shape,
            batch_size=batch_size, seed=seed, confidence_level=confidence_level, interval_method=interval_method,
            device=device, dtype=dtype, progress=progress, callback=callback, checkpoint=checkpoint,
            executor=executor, control_variates=control_variates,
        )  # fmt: skip
    design = as_design(design)
    stats = named_statistics(statistics)
    sampler = as_sampler(generator, noise_shape=noise_shape, device=device)
    noise_shape = sampler.noise_shape
    design.check_dim(math.prod(noise_shape))
    if (budget is None) == (stopping is None):
        raise TypeError("give either budget=... (noises) or stopping=TargetPrecision(...), not both and not neither")
    if stopping is not None and not isinstance(stopping, StoppingRule):
        raise TypeError(f"stopping must be a StoppingRule such as TargetPrecision(...), got {type(stopping).__name__}")
    n_groups = groups_for_budget(budget, design) if budget is not None else None
    control = as_control(control_variates)
    if control is not None:
        if stopping is not None or checkpoint is not None:
            raise TypeError(
                "control_variates work with budget=..., without stopping= or checkpoint= (not supported yet)"
            )
        control.features.check_shape(noise_shape)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype (the noise is Gaussian), got {dtype!r}")
    quantile(confidence_level, 1, interval_method)  # validates both before any model call
    entropy(seed)
    checkpoint = Checkpoint.of(checkpoint)
    evaluator = GroupEvaluator(
        sampler, stats, design, noise_shape, seed, batch_size, noise_device(sampler, device), dtype
    )
    config = {
        "design": design.name,
        "noise_shape": list(noise_shape),
        "seed": entropy(seed),
        "dtype": str(dtype),
        "statistics": list(stats),
        "confidence_level": confidence_level,
        "interval_method": interval_method,
        "budget": budget,
        "stopping": repr(stopping) if stopping is not None else None,
    }
    run = _Run(evaluator, config, checkpoint, callback, executor, progress, budget or stopping.max_budget)
    k = design.group_size
    try:
        if control is not None:
            results, info = controlled_run(run, control, n_groups, confidence_level, interval_method)
            extra = {"control_variates": info}
        elif stopping is None:
            main = run.stage("main", 0, n_groups)
            results = stage_results(main.accumulators, design.name, k, confidence_level, interval_method)
            extra = {}
        else:
            results, info = stopping.run(
                lambda name, lo, hi, design=None: run.stage(name, lo, hi, design).accumulators,
                design=design,
                confidence_level=confidence_level,
                interval_method=interval_method,
            )
            extra = {"stopping": info}
        run.save()
    finally:
        run.close()
    warn_if_skewed(results)
    config = {
        "noise_shape": list(noise_shape),
        "batch_size": batch_size,
        "confidence_level": confidence_level,
        "interval_method": interval_method,
        "group_size": k,
        **extra,
    }
    noises = run.n_noises + run.pilot_noises
    return EstimateResult(
        results=results,
        design=design.name,
        seed=seed,
        budget=noises,
        generator_calls=noises * sampler.calls_per_noise,
        config=config,
    )


def _estimate_auto(generator, statistics, *, design, budget, stopping, noise_shape, batch_size, seed,
                   confidence_level, interval_method, device, dtype, progress, callback, checkpoint, executor,
                   control_variates) -> EstimateResult:  # fmt: skip
    """``design="auto"``: validate what the automatic choice supports, then run it (see :mod:`.auto`)."""
    from uqdiff.estimators import auto as _auto

    if stopping is not None or budget is None:
        raise TypeError("design='auto' needs budget=... (noises in all, pilot included), not stopping=")
    for name, value in (("checkpoint", checkpoint), ("callback", callback), ("control_variates", control_variates)):
        if value is not None:
            what = "AutoDesign(control_variates=...)" if name == "control_variates" else "a fixed design"
            raise TypeError(f"design='auto' does not take {name}=; use {what}")
    groups_for_budget(budget, IID())
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    quantile(confidence_level, 1, interval_method)
    entropy(seed)
    sampler = as_sampler(generator, noise_shape=noise_shape, device=device)
    return _auto.run_auto(
        sampler,
        named_statistics(statistics),
        auto=design if isinstance(design, _auto.AutoDesign) else _auto.AutoDesign(),
        budget=int(budget),
        noise_shape=sampler.noise_shape,
        batch_size=int(batch_size),
        seed=seed,
        confidence_level=confidence_level,
        interval_method=interval_method,
        device=device,
        dtype=dtype,
        progress=progress,
        executor=executor,
    )


def stage_results(
    accumulators: Mapping[str, GroupAccumulator], design: str, group_size: int, level: float, method: str
) -> dict[str, StatisticResult]:
    """The result of each statistic from a stage's accumulators of iid group means."""
    return {
        name: StatisticResult.from_moments(
            acc.moments(),
            statistic=name,
            design=design,
            group_size=group_size,
            confidence_level=level,
            interval_method=method,
        )
        for name, acc in accumulators.items()
    }


def as_control(control_variates: ControlVariates | NoiseFeatures | None) -> ControlVariates | None:
    """The control-variate options: bare features get the default pilot."""
    if control_variates is None or isinstance(control_variates, ControlVariates):
        return control_variates
    if isinstance(control_variates, NoiseFeatures):
        return ControlVariates(control_variates)
    raise TypeError(
        f"control_variates must be ControlVariates(...) or NoiseFeatures such as DCTFeatures(), "
        f"got {type(control_variates).__name__}"
    )


def controlled_run(
    run: _Run, control: ControlVariates, n_groups: int, confidence_level: float, interval_method: str
) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
    """Fit the control variates on a pilot of the first groups (unless given), then estimate on the rest.

    The main groups' statistics are S - beta . f(z) with beta fixed before they are drawn, so the
    estimate is the mean of iid group means of a statistic with the same expectation as S.
    """
    evaluator = run.evaluator
    design, k = evaluator.design, evaluator.design.group_size
    features = control.features
    names = features.names(evaluator.noise_shape)
    raw_marginal, fits = {}, {}
    if control.coefficients is None:
        n_pilot = pilot_groups(n_groups, control.pilot_share)
        parts = list(evaluator.with_control(features, None).batches(0, n_pilot))
        means = {key: np.concatenate([p[key][0] for _, p in parts]) for key in parts[0][1]}
        for name in evaluator.stats:
            within = sum(p[name][1].sum(axis=0) for _, p in parts)
            raw_marginal[name] = within / (n_pilot * k) + means[name].var(axis=0, ddof=1)
            fits[name] = fit_control(means[name], means[FEATURES])
        coefficients = {name: fit.coefficients for name, fit in fits.items()}
        run.pilot_noises = n_pilot * k
    else:
        n_pilot, coefficients = 0, {}
        for name in evaluator.stats:
            if name not in control.coefficients:
                raise ValueError(f"control_variates.coefficients has no entry for statistic {name!r}")
            beta = np.asarray(control.coefficients[name], dtype=np.float64)
            if beta.ndim == 0 or len(beta) != len(names):
                raise ValueError(
                    f"coefficients of {name!r} must have {len(names)} rows (one per feature), got {beta.shape}"
                )
            coefficients[name] = beta
    run.evaluator = evaluator.with_control(features, coefficients)
    main = run.stage("main", n_pilot, n_groups)
    results = stage_results(main.accumulators, design.name, k, confidence_level, interval_method)
    if fits:
        results = {name: against_mc(r, raw_marginal[name], n_pilot * k) for name, r in results.items()}
    info = {
        "features": features.name,
        "feature_names": names,
        "pilot_budget": n_pilot * k,
        "coefficients": {name: beta.tolist() for name, beta in coefficients.items()},
        "ridge": {name: fit.ridge for name, fit in fits.items()},
        "predicted_gain": {
            name: 1.0 / fit.variance_ratio if fit.variance_ratio > 0 else None for name, fit in fits.items()
        },
    }
    return results, info


def warn_if_skewed(results: Mapping[str, StatisticResult]) -> None:
    """Warn, naming the remedy, where an interval may not keep its level (see :func:`trust_warning`)."""
    for name, r in results.items():
        if r.skewness is None:
            continue
        spread = bool(np.any(np.asarray(r.standard_error) > 0))  # no spread at all is warned elsewhere
        message = trust_warning(name, r.n_groups, r.skewness, r.interval_method, spread, r.kurtosis)
        if message:
            warnings.warn(message, stacklevel=3)


def calls_per_noise(generator: Any) -> int:
    """Images a generator makes per noise: its ``calls_per_noise`` attribute (e.g. common noise), else 1."""
    return int(getattr(generator, "calls_per_noise", 1))


def noise_device(generator: Any, device: torch.device | str | None) -> torch.device:
    """The device to make noise on; refuses a CUDA device on a machine without CUDA before any model call."""
    chosen = device_of(generator, device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(chosen)!r} was asked for but CUDA is not available here; use device='cpu'")
    return chosen


class GroupEvaluator:
    """Evaluates ranges of groups batch by batch; halves the batch once on out-of-memory."""

    def __init__(self, generator, stats, design, noise_shape, seed, batch_size, device, dtype) -> None:
        self.generator, self.stats, self.design = generator, stats, design
        self.noise_shape, self.seed, self.batch_size, self.device, self.dtype = (
            noise_shape,
            seed,
            batch_size,
            device,
            dtype,
        )
        self.output_shapes: dict[str, tuple[int, ...]] = {}
        self.features: NoiseFeatures | None = None  # noise control variates (see evaluate_groups)
        self.coefficients: Mapping[str, np.ndarray] | None = None
        self.halved_from: int | None = None
        self.check_pending = wants_check(generator)  # the repeat check, on the first batch

    def with_design(self, design: NoiseDesign) -> GroupEvaluator:
        """This evaluator for another design (a stopping rule's stage), sharing the recorded output shapes."""
        other = copy.copy(self)
        other.design = design
        return other

    def with_control(self, features: NoiseFeatures, coefficients: Mapping[str, np.ndarray] | None) -> GroupEvaluator:
        """This evaluator with noise control variates: features' group means (a pilot) or adjusted statistics."""
        other = copy.copy(self)
        other.features, other.coefficients = features, coefficients
        return other

    def probe_output(self) -> np.ndarray:
        """The sampler's output for group 0's first noise, run alone (batch 1): a fingerprint of the sampler."""
        generator = self.generator.generator if isinstance(self.generator, Recording) else self.generator
        sampler = as_sampler(generator, noise_shape=self.noise_shape, device=self.device)
        noise = self.design.stream(np.arange(1), seed=self.seed, dtype=self.dtype)
        return to_numpy(sampler(noise[0:1]))

    @property
    def groups_per_batch(self) -> int:
        return max(1, self.batch_size // self.design.group_size)

    def batches(self, lo: int, hi: int, members: dict[str, list[np.ndarray]] | None = None):
        """Yield (first group, {name: (means, within)}) for groups lo..hi-1 in order (``members``: see evaluate_groups)."""
        start = lo
        while start < hi:
            indices = np.arange(start, min(start + self.groups_per_batch, hi))
            first = [] if self.check_pending else None
            try:
                parts = evaluate_groups(
                    self.generator,
                    self.stats,
                    self.design,
                    indices,
                    noise_shape=self.noise_shape,
                    seed=self.seed,
                    batch_size=self.batch_size,
                    device=self.device,
                    dtype=self.dtype,
                    output_shapes=self.output_shapes,
                    first=first,
                    features=self.features,
                    coefficients=self.coefficients,
                    members=members,
                )
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._halve(exc, start)
                continue
            if first:
                noise_one, output_one, batch, where = first
                check_first_batch(self.generator, noise_one, output_one, batch=batch, where=where)
                self.check_pending = False
            yield start, parts
            start = int(indices[-1]) + 1

    def _halve(self, exc: BaseException, start: int) -> None:
        if self.halved_from is not None or self.batch_size == 1:
            halved = "" if self.halved_from is None else f" (already halved from {self.halved_from})"
            raise MemoryError(
                f"out of memory at batch_size {self.batch_size}{halved}, groups from {start}; "
                f"pass a smaller batch_size ({type(exc).__name__}: {exc})"
            ) from exc
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.halved_from, self.batch_size = self.batch_size, self.batch_size // 2
        warnings.warn(
            f"out of memory at batch_size {self.halved_from}; going on with {self.batch_size} "
            "(results are unchanged: noise depends only on group indices)",
            stacklevel=2,
        )


#: A run projected to take longer than this from its first batch is refused (a year).
LONGEST_RUN_S = 365.25 * 24 * 3600
#: A run projected to take longer than this without a checkpoint gets a warning (an hour).
WARN_RUN_S = 3600.0


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


class _Run:
    """The stages of one run: fills their accumulators, reports, and keeps the checkpoint current."""

    def __init__(
        self, evaluator, config, checkpoint: Checkpoint | None, callback, executor, progress, total: int
    ) -> None:
        self.evaluator, self.callback, self.executor = evaluator, callback, executor
        self.checkpoint, self.version = checkpoint, package_version()
        self.config = dict(config)
        self.stages: dict[str, _checkpoint.Stage] = {}
        self.group_sizes: dict[str, int] = {}  # per stage, where a stopping rule runs its own design
        self.batches_since_save = 0
        self.consistent = True
        self.pilot_noises = 0  # noises a control-variate pilot spent outside the stages
        self.sampler_output: dict | None = None  # the sampler's fingerprint, checked before new groups run
        self.total, self.started, self.timed = total, None, False  # the time projection after the first batch
        # a sampler exempt from the repeat check may keep undesigned randomness: its output cannot fingerprint it
        self.fingerprint_pending = checkpoint is not None and wants_check(evaluator.generator)
        if checkpoint is not None:
            e, path = evaluator, checkpoint.path
            self.config["design_fingerprint"] = _checkpoint.design_fingerprint(
                e.design, math.prod(e.noise_shape), e.seed
            )
            _checkpoint.remove_stray_temporaries(path)
            if path.exists():
                if not checkpoint.resume:
                    raise _checkpoint.CheckpointError(
                        f"checkpoint {str(path)!r} exists; pass Checkpoint(path, resume=True) to continue it, "
                        "or remove it to start over"
                    )
                meta, self.stages = _checkpoint.load(path)
                _checkpoint.check_matches(path, meta, self.config, self.version)
                self.sampler_output = meta.get("sampler_output")
        per_noise = calls_per_noise(evaluator.generator)
        self.bar = _progress_bar(total * per_noise, evaluator.design.name) if progress else None

    @property
    def n_noises(self) -> int:
        k = self.evaluator.design.group_size
        return sum(s.n_done * self.group_sizes.get(name, k) for name, s in self.stages.items())

    def stage(self, name: str, lo: int, hi: int, design: NoiseDesign | None = None) -> _checkpoint.Stage:
        """Fill stage ``name`` with groups lo..hi-1, skipping those a checkpoint already holds.

        A stopping rule may run a stage under its own ``design`` (e.g. a block of RQMC points).
        """
        stage = self.stages.setdefault(name, _checkpoint.Stage.empty(list(self.evaluator.stats)))
        evaluator = self.evaluator if design is None else self.evaluator.with_design(design)
        self.group_sizes[name] = evaluator.design.group_size
        try:
            for a, b in stage.missing(lo, hi):
                self._check_sampler()
                self.started = self.started or (time.perf_counter(), self.n_noises)
                if self.executor is None:
                    for start, parts in evaluator.batches(a, b):
                        self._add(stage, start, parts=parts, k=evaluator.design.group_size)
                else:
                    self.executor.run(
                        evaluator,
                        a,
                        b,
                        lambda start, accs, shapes: self._add(
                            stage, start, accs=accs, shapes=shapes, k=evaluator.design.group_size
                        ),
                    )
        except BaseException as exc:
            self._save_after_failure(exc)
            raise
        return stage

    def _check_sampler(self) -> None:
        """Before a checkpointed run adds groups: the sampler's output on one fixed noise, kept or compared.

        A checkpoint cannot store the sampler (it is code), but it can store what the sampler
        does: resuming with another model of the same output shape would otherwise mix the two.
        One extra model call per run that has groups left, none for a finished checkpoint.
        """
        if not self.fingerprint_pending:
            return
        now = _checkpoint.sampler_fingerprint(self.evaluator.probe_output(), tolerance_of(self.evaluator.generator))
        if self.sampler_output is not None:
            where = f"group 0's first noise under seed {self.evaluator.seed!r}"
            _checkpoint.check_sampler(self.checkpoint.path, self.sampler_output, now, where)
        else:
            self.sampler_output = now
        self.fingerprint_pending = False

    def _add(self, stage, start, accs=None, parts=None, shapes=None, k=None) -> None:
        """Count one batch (``parts``) or one shard (its accumulators ``accs``) in the stage."""
        for what, shape in (shapes or {}).items():
            _check_output_shape(self.evaluator.output_shapes, what, shape, f"the shard from group {start}")
        self.consistent = False  # a failure from here until mark_done must not be checkpointed
        if parts is not None:
            for n, (means, within) in parts.items():
                stage.accumulators[n].add(start, means, within)
            count = len(means)
        else:
            for n, acc in accs.items():
                stage.accumulators[n].merge(acc)
            count = acc.count
        stage.mark_done(start, start + count)
        self.consistent = True
        k = self.evaluator.design.group_size if k is None else k
        if self.bar is not None:
            self.bar.update(count * k * calls_per_noise(self.evaluator.generator))
            self.bar.set_postfix_str(
                _running(stage.accumulators, self.config["confidence_level"], self.config["interval_method"])
            )
        if self.callback is not None:
            try:
                self.callback(self.n_noises, stage.accumulators)
            except Exception as exc:
                raise CallbackError(
                    f"the callback raised {type(exc).__name__}: {exc} after {self.n_noises} noises; the run stopped "
                    f"there (the model was fine). Fix the callback, or catch errors inside it to let runs go on"
                ) from exc
        self._project_time()
        self.batches_since_save += 1
        if self.checkpoint is not None and self.batches_since_save >= self.checkpoint.every:
            self.save()

    def _project_time(self) -> None:
        """After the first batch: refuse a budget that cannot finish, warn of a long one without a checkpoint.

        The first batch includes one-time costs (the repeat check, a capture's trace, warm-up),
        so the projection errs long.
        """
        if self.timed or self.started is None or self.config.get("stopping"):  # a rule may stop long before its cap
            return
        self.timed = True
        t0, n0 = self.started
        done, left = self.n_noises - n0, self.total - self.n_noises
        if done <= 0 or left <= 0:
            return
        seconds = (time.perf_counter() - t0) / done * left
        said = f"at the first batch's pace ({done} noises in {time.perf_counter() - t0:.3g} s) the remaining "
        said += f"{left} noises of the budget would take about {_duration(seconds)}"
        if seconds > LONGEST_RUN_S:
            raise ValueError(
                f"this run cannot finish: {said}. Use a smaller budget, or a stopping rule (TargetPrecision) that "
                f"stops at the precision you need"
            )
        if seconds > WARN_RUN_S and self.checkpoint is None:
            warnings.warn(
                f"{said}, with no checkpoint: an interruption would lose it all. Pass "
                f"checkpoint=Checkpoint(path, resume=True), or a smaller budget",
                stacklevel=5,
            )

    def save(self) -> None:
        if self.checkpoint is not None:
            _checkpoint.save(self.checkpoint.path, self.config, self.stages, self.version, self.sampler_output)
            self.batches_since_save = 0

    def _save_after_failure(self, exc: BaseException) -> None:
        if self.checkpoint is None or not self.stages or not self.consistent:
            return
        self.save()
        done = sum(s.n_done for s in self.stages.values())
        if isinstance(exc, Exception) and hasattr(exc, "add_note"):
            exc.add_note(
                f"checkpoint {str(self.checkpoint.path)!r} holds the {done} groups finished before the failure; "
                "rerun with Checkpoint(path, resume=True) to continue"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def compare(
    generator: Callable,
    statistics: StatisticsLike,
    *,
    budget: int,
    designs: Sequence[NoiseDesign | str] = ("mc", "antithetic"),
    baseline: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    batch_size: int = 64,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    checkpoint: CheckpointLike | None = None,
    executor: Any = None,
) -> ComparisonResult:
    """Run several designs at the same budget and compare their intervals with the baseline's.

    Parameters
    ----------
    generator, statistics
        As for :func:`estimate`.
    budget : int
        Noises drawn per design (each design gets the same number of generator calls).
    designs : sequence of NoiseDesign or str
        The designs to run; the baseline is added when missing.
    baseline : NoiseDesign or str
        The design the efficiency (CI_baseline / CI)^2 is measured against: plain MC by default.
    seed : int or sequence of int
        Design d runs on its own stream ``[*seed, crc32(d.name)]`` so the runs are independent;
        each :class:`EstimateResult` states its seed, and ``estimate(..., seed=that)`` repeats it.
    checkpoint : Checkpoint or path, optional
        One checkpoint per design: ``run.ckpt`` -> ``run.<crc32 of the design name>.ckpt``.
    noise_shape, batch_size, confidence_level, interval_method, device, dtype, progress, executor
        As for :func:`estimate`.

    Returns
    -------
    ComparisonResult
        The runs by design name, with :meth:`ComparisonResult.efficiency` against the baseline.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a generator fails; the message names the groups and the seed.

    Examples
    --------
    >>> from uqdiff.samplers import LinearGenerator
    >>> c = compare(LinearGenerator([0.0, 1.0]), lambda x: x[:, 0] + x[:, 1] ** 2, budget=512, seed=0)
    >>> list(c.estimates), c.baseline, c.efficiency("statistic", "mc")
    (['mc', 'antithetic'], 'mc', 1.0)
    """
    checkpoint = Checkpoint.of(checkpoint)
    runs, base = run_designs(
        designs,
        lambda d, s, ckpt: estimate(
            generator,
            statistics,
            budget=budget,
            design=d,
            noise_shape=noise_shape,
            batch_size=batch_size,
            seed=s,
            confidence_level=confidence_level,
            interval_method=interval_method,
            device=device,
            dtype=dtype,
            progress=progress,
            checkpoint=ckpt,
            executor=executor,
        ),
        seed=seed,
        baseline=baseline,
        checkpoint=checkpoint,
    )
    return ComparisonResult(estimates=runs, baseline=base)


def run_designs(
    designs: Sequence[NoiseDesign | str],
    run: Callable[[NoiseDesign, list[int], Checkpoint | None], R],
    *,
    seed: SeedLike,
    baseline: NoiseDesign | str | None = "mc",
    checkpoint: Checkpoint | None = None,
) -> tuple[dict[str, R], str | None]:
    """The one loop over designs: ``run(design, its seed, its checkpoint)`` for each, baseline first.

    Every design runs on its own stream (:func:`design_seed`) with its own checkpoint
    (:meth:`Checkpoint.for_design`), so runs are independent and each resumes alone. The
    baseline is added in front when missing (``baseline=None``: no baseline). Returns the
    results by design name and the baseline's name.
    """
    chosen = comparison_designs(designs, baseline=baseline)
    entropy(seed)
    results = {
        d.name: run(d, design_seed(seed, d), None if checkpoint is None else checkpoint.for_design(d.name))
        for d in chosen
    }
    return results, (None if baseline is None else chosen[0].name)


def comparison_designs(
    designs: Sequence[NoiseDesign | str], *, baseline: NoiseDesign | str | None = "mc"
) -> list[NoiseDesign]:
    """The designs a comparison runs: distinct, the baseline first (added when it was not given)."""
    if isinstance(designs, (str, NoiseDesign)):
        raise TypeError(f"designs must be a list of designs, got {designs!r}; for one design use estimate(design=...)")
    chosen = [as_design(d) for d in designs]
    if not chosen:
        raise ValueError("give at least one design")
    names = [d.name for d in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"designs must differ, got {names}")
    if baseline is not None:
        base = as_design(baseline)
        rest = [d for d in chosen if d.name != base.name]
        chosen = [next((d for d in chosen if d.name == base.name), base), *rest]
    return chosen


def design_seed(seed: SeedLike, design: NoiseDesign) -> list[int]:
    """The seed a comparison gives a design: ``[*seed, crc32(design name)]``, one stream per design."""
    return substream(seed, zlib.crc32(design.name.encode()))


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
