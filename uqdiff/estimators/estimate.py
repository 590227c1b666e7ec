"""Estimators: the estimate is the mean of iid group means.

One code path serves every design. A group is one sample (MC), a pair
(antithetic), k coupled noises (K-antithetic, any coupling) or one scrambled
Sobol' replicate (RQMC); the design only decides how a group's noises are
drawn. Statistics stream through mergeable accumulators batch by batch.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqdiff._util import package_version, plain
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.designs.seeds import SeedLike, entropy, substream
from uqdiff.estimators import checkpoint as _checkpoint
from uqdiff.estimators import stopping as sequential
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.results import ComparisonResult, EstimateResult, StatisticResult, quantile
from uqdiff.samplers.base import device_of, noise_shape_of

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
    output_shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-group means and within-group sums of squares of each statistic for the given groups.

    The generator sees at most ``batch_size`` noises at a time; images are
    reduced to statistic values before the next call. ``output_shapes``, if
    given, records the per-image shape of the generator output and of each
    statistic at their first batch, and later batches must match it.
    An exception from the generator is re-raised as :class:`GeneratorError`
    naming the groups and the seed (out-of-memory errors pass unchanged).
    """
    shapes = {} if output_shapes is None else output_shapes
    k = design.group_size
    dim = math.prod(noise_shape)
    noise = design.groups(indices, dim, seed=seed, device=device, dtype=dtype)
    noise = noise.reshape(len(indices) * k, *noise_shape)
    values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for lo in range(0, len(noise), batch_size):
        chunk = noise[lo : lo + batch_size]
        where = lambda row, lo=lo: (
            f"group {int(indices[(lo + row) // k])} (noise {(lo + row) % k} of the group), seed {seed!r}"
        )
        try:
            images = generator(chunk)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            first, last = int(indices[lo // k]), int(indices[(lo + len(chunk) - 1) // k])
            raise GeneratorError(
                f"generator raised {type(exc).__name__}: {exc} on groups {first}..{last}, seed {seed!r}"
            ) from exc
        if len(images) != len(chunk):
            raise ValueError(f"generator returned {len(images)} outputs for a batch of {len(chunk)} noises")
        _check_output_shape(shapes, "generator output", tuple(images.shape[1:]), where(0))
        finite = (
            torch.isfinite(images)
            if isinstance(images, torch.Tensor)
            else torch.from_numpy(np.isfinite(np.asarray(images)))
        )
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
            _check_output_shape(shapes, f"statistic {name!r}", v.shape[1:], where(0))
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


class GeneratorError(RuntimeError):
    """The generator failed; the message names the groups and the seed of the failing batch."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception means the batch did not fit in (GPU or host) memory."""
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _check_output_shape(shapes: dict[str, tuple[int, ...]], what: str, shape: tuple[int, ...], where: str) -> None:
    expected = shapes.setdefault(what, tuple(shape))
    if tuple(shape) != expected:
        raise ValueError(
            f"{what} shape changed from {expected} to {tuple(shape)} per image between batches, at {where}"
        )


def estimate(
    generator: Callable,
    statistics: StatisticsLike,
    *,
    budget: int | None = None,
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
    target_halfwidth: float | Mapping[str, float] | None = None,
    rel_tol: float | None = None,
    max_budget: int | None = None,
    pilot_budget: int | None = None,
    inflation: float = sequential.DEFAULT_INFLATION,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int = 10,
    executor: Any = None,
) -> EstimateResult:
    """Estimate E[S(G(z))], z ~ N(0, I), with a confidence interval, for each statistic S.

    ``budget`` is the number of model evaluations; it must be a multiple of
    the design's group size and give at least 2 groups. The interval is
    Student-t on (groups - 1) degrees of freedom by default; ``interval="normal"``
    uses the normal quantile, the paper's choice for MC and AMC.
    ``callback(n_evaluations, accumulators)`` runs after every batch (running
    traces, reports) with the accumulators of the stage being filled; it must
    not modify them.

    Sequential mode: instead of ``budget``, give ``target_halfwidth`` (a number,
    or one per statistic) and/or ``rel_tol``, and ``max_budget``. A pilot of
    ``pilot_budget`` evaluations (default 32 groups) plans the main stage by
    the two-stage rule of :mod:`uqdiff.estimators.stopping`; ``result.config["sequential"]``
    says whether every target was met or ``max_budget`` came first (then a
    warning is raised too).

    ``checkpoint=path`` saves the run's state every ``checkpoint_every``
    batches, at the end and when a batch fails (see :mod:`uqdiff.estimators.checkpoint`).
    Calling ``estimate`` again with the same arguments and ``resume=True``
    continues from it and gives exactly the uninterrupted result.
    ``executor=uqdiff.estimators.distributed.RayExecutor(...)`` spreads groups over Ray workers
    with the same result, bit for bit.

    >>> from uqdiff.samplers import LinearGenerator
    >>> g = LinearGenerator(np.array([0.5]), np.array([[0.1, 0.2]]))
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=1)
    >>> r["<lambda>"].estimate, r["<lambda>"].width   # a linear statistic cancels exactly in pairs
    (0.5, 0.0)
    >>> r = estimate(g, lambda x: x[:, 0] ** 2, target_halfwidth=0.01, max_budget=10_000, seed=1)
    >>> r.config["sequential"]["target_met"], r["<lambda>"].width <= 0.02
    ({'<lambda>': True}, True)
    """
    design = as_design(design)
    stats = named_statistics(statistics)
    noise_shape = noise_shape_of(generator, noise_shape)
    design.check_dim(math.prod(noise_shape))
    staged = target_halfwidth is not None or rel_tol is not None
    if staged:
        if budget is not None:
            raise ValueError(
                "give budget (fixed run) or target_halfwidth/rel_tol with max_budget (sequential), not both"
            )
        sequential.validate(target_halfwidth, rel_tol, inflation)
        if max_budget is None:
            raise ValueError("a sequential run needs max_budget=... (model evaluations at most, pilot included)")
        n_pilot = _groups_for_budget(
            pilot_budget if pilot_budget is not None else sequential.DEFAULT_PILOT_GROUPS * design.group_size,
            design,
            "pilot_budget",
        )
        n_max = _groups_for_budget(max_budget, design, field="max_budget")
        if n_max < n_pilot + 2:
            raise ValueError(
                f"max_budget {max_budget} leaves no room for the pilot ({n_pilot} groups) and 2 more groups"
            )
    else:
        if budget is None:
            raise ValueError("give budget=... (model evaluations) or target_halfwidth=.../rel_tol=... with max_budget")
        n_groups = _groups_for_budget(budget, design)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=path (the file to continue from)")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int (batches), got {checkpoint_every!r}")
    quantile(confidence_level, 1, interval)  # validates both before any model call
    entropy(seed)
    evaluator = _Evaluator(generator, stats, design, noise_shape, seed, batch_size, device_of(generator, device), dtype)
    config = {
        "design": design.name,
        "noise_shape": list(noise_shape),
        "seed": entropy(seed),
        "dtype": str(dtype),
        "statistics": list(stats),
        "confidence_level": confidence_level,
        "interval": interval,
        "budget": budget,
        "target_halfwidth": target_halfwidth,
        "rel_tol": rel_tol,
        "max_budget": max_budget,
        "pilot_budget": pilot_budget,
        "inflation": inflation if staged else None,
    }
    run = _Run(evaluator, config, checkpoint, resume, checkpoint_every, callback, executor, progress)
    k = design.group_size
    try:
        if not staged:
            main = run.stage("main", 0, n_groups)
            results = {
                name: StatisticResult.from_moments(
                    acc.moments(),
                    statistic=name,
                    design=design.name,
                    group_size=k,
                    confidence_level=confidence_level,
                    interval=interval,
                )
                for name, acc in main.accumulators.items()
            }
            extra = {}
        else:
            results, extra = _two_stage(
                run, n_pilot, n_max, target_halfwidth, rel_tol, inflation, confidence_level, interval
            )
        run.save()
    finally:
        run.close()
    config = {
        "noise_shape": list(noise_shape),
        "batch_size": batch_size,
        "confidence_level": confidence_level,
        "interval": interval,
        "group_size": k,
        **extra,
    }
    return EstimateResult(results=results, design=design.name, seed=seed, budget=run.n_evaluations, config=config)


def _two_stage(run, n_pilot, n_max, target_halfwidth, rel_tol, inflation, confidence_level, interval):
    """Pilot, plan, main stage; the interval comes from the main stage with the pilot's spread."""
    design = run.evaluator.design
    pilot = {name: acc.moments() for name, acc in run.stage("pilot", 0, n_pilot).accumulators.items()}
    tol = sequential.tolerances(pilot, target_halfwidth=target_halfwidth, rel_tol=rel_tol)
    need = sequential.planned_groups(
        pilot, tol, confidence_level=confidence_level, interval=interval, inflation=inflation
    )
    n_main = int(min(need, n_max - n_pilot))
    main = run.stage("main", n_pilot, n_pilot + n_main)
    results = {
        name: sequential.two_stage_result(
            acc.moments(),
            pilot[name],
            statistic=name,
            design=design.name,
            group_size=design.group_size,
            confidence_level=confidence_level,
            interval=interval,
            inflation=inflation,
        )
        for name, acc in main.accumulators.items()
    }
    met = {name: bool(np.all(np.asarray(r.width) / 2 <= tol[name])) for name, r in results.items()}
    if not all(met.values()):
        missed = ", ".join(
            f"{n} (half-width {np.max(np.asarray(results[n].width) / 2):.3g} > {np.min(tol[n]):.3g})"
            for n, ok in met.items()
            if not ok
        )
        warnings.warn(f"max_budget {n_max * design.group_size} was reached before the target: {missed}", stacklevel=3)
    info = {
        "pilot_groups": n_pilot,
        "main_groups": n_main,
        "planned_groups": need,
        "inflation": inflation,
        "tolerance": {n: plain(t) for n, t in tol.items()},
        "target_met": met,
        "stopped_by": "target" if all(met.values()) else "max_budget",
    }
    return results, {"sequential": info}


class _Evaluator:
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
        self.halved_from: int | None = None

    @property
    def groups_per_batch(self) -> int:
        return max(1, self.batch_size // self.design.group_size)

    def batches(self, lo: int, hi: int):
        """Yield (first group, {name: (means, within)}) for groups lo..hi-1 in order."""
        start = lo
        while start < hi:
            indices = np.arange(start, min(start + self.groups_per_batch, hi))
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
                )
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._halve(exc, start)
                continue
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


class _Run:
    """The stages of one run: fills their accumulators, reports, and keeps the checkpoint current."""

    def __init__(self, evaluator, config, path, resume, every, callback, executor, progress) -> None:
        self.evaluator, self.callback, self.executor, self.every = evaluator, callback, executor, every
        self.path, self.version = path, package_version()
        self.config = dict(config)
        self.stages: dict[str, _checkpoint.Stage] = {}
        self.batches_since_save = 0
        self.consistent = True
        if path is not None:
            e = evaluator
            self.config["design_fingerprint"] = _checkpoint.design_fingerprint(
                e.design, math.prod(e.noise_shape), e.seed
            )
            if os.path.exists(path):
                if not resume:
                    raise _checkpoint.CheckpointError(
                        f"checkpoint {str(path)!r} exists; pass resume=True to continue it, or remove it to start over"
                    )
                meta, self.stages = _checkpoint.load(path)
                _checkpoint.check_matches(path, meta, self.config, self.version)
        total = config["budget"] or config["max_budget"]
        self.bar = _progress_bar(total, evaluator.design.name) if progress else None

    @property
    def n_evaluations(self) -> int:
        return sum(s.n_done for s in self.stages.values()) * self.evaluator.design.group_size

    def stage(self, name: str, lo: int, hi: int) -> _checkpoint.Stage:
        """Fill stage ``name`` with groups lo..hi-1, skipping those a checkpoint already holds."""
        stage = self.stages.setdefault(name, _checkpoint.Stage.empty(list(self.evaluator.stats)))
        try:
            for a, b in stage.missing(lo, hi):
                if self.executor is None:
                    for start, parts in self.evaluator.batches(a, b):
                        self._add(stage, start, parts=parts)
                else:
                    self.executor.run(
                        self.evaluator,
                        a,
                        b,
                        lambda start, accs, shapes: self._add(stage, start, accs=accs, shapes=shapes),
                    )
        except BaseException as exc:
            self._save_after_failure(exc)
            raise
        return stage

    def _add(self, stage, start, accs=None, parts=None, shapes=None) -> None:
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
        k = self.evaluator.design.group_size
        if self.bar is not None:
            self.bar.update(count * k)
            self.bar.set_postfix_str(
                _running(stage.accumulators, self.config["confidence_level"], self.config["interval"])
            )
        if self.callback is not None:
            self.callback(self.n_evaluations, stage.accumulators)
        self.batches_since_save += 1
        if self.batches_since_save >= self.every:
            self.save()

    def save(self) -> None:
        if self.path is not None:
            _checkpoint.save(self.path, self.config, self.stages, self.version)
            self.batches_since_save = 0

    def _save_after_failure(self, exc: BaseException) -> None:
        if self.path is None or not self.stages or not self.consistent:
            return
        self.save()
        done = sum(s.n_done for s in self.stages.values())
        if isinstance(exc, Exception) and hasattr(exc, "add_note"):
            exc.add_note(
                f"checkpoint {str(self.path)!r} holds the {done} groups finished before the failure; "
                "rerun with resume=True to continue"
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
    seed: int = 0,
    **options: Any,
) -> ComparisonResult:
    """Run several designs at the same budget of model evaluations and compare their intervals.

    Plain MC is always run as the baseline (added if missing). Each design
    draws from its own stream, seed ``[seed, crc32(design name)]``, so the runs
    are independent. ``options`` are passed to :func:`estimate`; a
    ``checkpoint`` path becomes one file per design (``run.ckpt`` ->
    ``run.<crc32 of the design name>.ckpt``), so each design resumes on its own.
    """
    runs = {}
    for d in comparison_designs(designs):
        kw = dict(options)
        if kw.get("checkpoint") is not None:
            path = Path(kw["checkpoint"])
            kw["checkpoint"] = path.with_name(f"{path.stem}.{zlib.crc32(d.name.encode()):08x}{path.suffix}")
        runs[d.name] = estimate(generator, statistics, budget=budget, design=d, seed=design_seed(seed, d), **kw)
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


def _groups_for_budget(budget: int, design: NoiseDesign, field: str = "budget") -> int:
    k = design.group_size
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"{field} must be a positive number of model evaluations, got {budget!r}")
    if budget % k:
        lower, upper = budget // k * k, (budget // k + 1) * k
        raise ValueError(
            f"{field} {budget} is not a multiple of the group size {k} of design {design.name!r}; "
            f"use {lower or upper} or {upper}"
        )
    if budget // k < 2:
        raise ValueError(
            f"{field} {budget} gives {budget // k} group(s) of {k} for design {design.name!r}; "
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
