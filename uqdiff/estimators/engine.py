"""The engine: runs groups of a design through a sampler, in stages, batch by batch.

The estimate is the mean of iid group means. A group is one sample (MC), a pair (antithetic),
k coupled noises (K-antithetic, any coupling) or one scrambled Sobol' replicate (RQMC); the
design only decides how a group's noises are drawn, so one loop serves every design.
:class:`Engine` is that loop and everything a run needs around it: batching, the device and
dtype of the noise, the repeat check on the first batch, out-of-memory halving, the progress
bar, the callback, checkpoint and resume, and the Ray executor. It knows nothing of *how many*
groups to draw: a :class:`Strategy` decides that and asks for stages (a fixed budget, the
stopping rules, noise control variates, the automatic choice, two fidelities). Every strategy so
gets checkpoint/resume, Ray, progress and the same intervals.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from uqdiff._util import callable_name, package_version, to_numpy
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.designs.features import NoiseFeatures
from uqdiff.designs.seeds import SeedLike, entropy
from uqdiff.designs.streams import MAX_INDEX
from uqdiff.estimators import checkpoint as _checkpoint
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.intervals import quantile, trust_warning
from uqdiff.estimators.results import EstimateResult, StatisticResult
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers.base import Recording, Sampler, as_sampler, device_of, is_out_of_memory
from uqdiff.samplers.repeat import check_first_batch, tolerance_of, wants_check

StatisticsLike = Callable | Sequence[Callable] | Mapping[str, Callable]


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


def check_particle_sets(design: NoiseDesign, particles: int) -> None:
    """Refuse a design that breaks the particle sets of a sampler moving ``particles`` outputs together.

    Each set of K consecutive noises must lie inside one group (or groups would not be independent)
    and its K noises must be independent N(0, I): a particle solver is defined on independent
    starts, so a coupling inside a set (K-antithetic, Sobol' points) would change what is estimated:
    spread-out starts inflate a set's diversity even without repulsion. Couplings between sets are
    fine (:class:`~uqdiff.designs.gaussian.AntitheticSets` mirrors one set by the next).
    """
    if particles <= 1:
        return
    k = design.group_size
    fix = (
        f"Use uqdiff.AntitheticSets({particles}) (a set of {particles} independent noises and its negation) or "
        f"uqdiff.Equicorrelated({particles}, 0.0) ({particles} independent noises per group)"
    )
    if k % particles:
        raise ValueError(
            f"the sampler moves {particles} particles together (its `particles`), so each set of {particles} "
            f"noises must lie inside one group, or groups would not be independent; design {design.name} has "
            f"groups of {k}. {fix}"
        )
    corr = design.correlation() if hasattr(design, "correlation") else None
    blocks = [] if corr is None else [corr[i : i + particles, i : i + particles] for i in range(0, k, particles)]
    if corr is None or not all(np.allclose(b, np.eye(particles), atol=1e-9) for b in blocks):
        raise ValueError(
            f"the sampler moves {particles} particles together (its `particles`) and is defined on independent "
            f"starts, but design {design.name} couples the noises inside a set of {particles}: that changes what "
            f"is estimated (spread-out starts inflate a set's diversity). {fix}"
        )


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
    particles = int(getattr(generator, "particles", None) or 1)  # outputs that interact in sets of K noises
    check_particle_sets(design, particles)
    batch_size = max(particles, batch_size - batch_size % particles)  # whole particle sets per call
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


def warn_if_skewed(results: Mapping[str, StatisticResult]) -> None:
    """Warn, naming the remedy, where an interval may not keep its level (see :func:`trust_warning`)."""
    for name, r in results.items():
        if r.skewness is None:
            continue
        spread = bool(np.any(np.asarray(r.standard_error) > 0))  # no spread at all is warned elsewhere
        message = trust_warning(name, r.n_groups, r.skewness, r.interval_method, spread, r.kurtosis)
        if message:
            warnings.warn(message, stacklevel=5)


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
        # shared by every variant of this evaluator (another design, seed or control variates): the
        # repeat check runs once per run, on its first batch, whichever stage that is
        self.shared = {"check_pending": wants_check(generator)}
        self.halved_from: int | None = None

    @property
    def check_pending(self) -> bool:
        return self.shared["check_pending"]

    @check_pending.setter
    def check_pending(self, value: bool) -> None:
        self.shared["check_pending"] = value

    def probe_output(self) -> np.ndarray:
        """The sampler's output for group 0's first noise, run alone (batch 1, or its first particle set):
        a fingerprint of the sampler."""
        generator = self.generator.generator if isinstance(self.generator, Recording) else self.generator
        sampler = as_sampler(generator, noise_shape=self.noise_shape, device=self.device)
        noise = self.design.stream(np.arange(1), seed=self.seed, dtype=self.dtype)
        rows = int(getattr(sampler, "particles", None) or 1)  # a particle sampler runs whole sets
        return to_numpy(sampler(noise[0:rows]))[:1]

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


class Strategy(ABC):
    """How many groups a run draws, in which stages: :meth:`Engine.stage` draws them.

    A fixed budget (:class:`FixedBudget`), the stopping rules (``TargetPrecision``,
    ``RQMCDoubling``), noise control variates and the automatic choice are strategies; each asks
    the engine for named stages of groups (a stage a checkpoint already holds is not redrawn) and
    turns their accumulators into results.
    """

    #: The most noises the strategy may draw, pilots included (the progress bar's length).
    max_budget: int
    #: True for a rule that may stop before ``max_budget`` (the engine then projects no run time).
    stops_early: bool = False

    def check(self, engine: Engine) -> None:  # noqa: B027 (a hook: most strategies have nothing to check)
        """Refuse what cannot work before any model call (default: nothing to check)."""

    @abstractmethod
    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        """Draw the stages; return one result per statistic and what the strategy did (``result.config``)."""


def groups_for_budget(budget: int, design: Any, field: str = "budget") -> int:
    """The number of groups ``budget`` noises make under ``design``; refuses a budget that does not fit."""
    k = design.group_size
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"{field} must be a positive number of noises, got {budget!r}")
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
    if budget // k > MAX_INDEX + 1:
        raise ValueError(
            f"{field} {budget} gives {budget // k:.3g} groups of {k}; the noise stream numbers groups with one 32-bit "
            f"word, at most {MAX_INDEX + 1} groups ({(MAX_INDEX + 1) * k:.4g} noises), and no model runs that many "
            f"calls: use a smaller budget, or a stopping rule (TargetPrecision) to stop at a precision"
        )
    return int(budget // k)


class FixedBudget(Strategy):
    """Draw ``budget`` noises in one stage: the plain run."""

    def __init__(self, budget: int) -> None:
        self.max_budget = budget

    def __repr__(self) -> str:
        return f"FixedBudget({self.max_budget})"

    def check(self, engine: Engine) -> None:
        groups_for_budget(self.max_budget, engine.design)

    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        accumulators = engine.stage("main", 0, groups_for_budget(self.max_budget, engine.design))
        return engine.results(accumulators), {}


class Engine:
    """Runs the stages a :class:`Strategy` asks for; fills their accumulators, reports, checkpoints.

    Parameters
    ----------
    sampler : callable
        Noise -> outputs (any :class:`~uqdiff.samplers.base.SamplerLike`).
    statistics : callable, list or dict of callables
        Outputs (B, ...) -> values (B,) or maps (B, ...).
    design : NoiseDesign or str
        The design of the run's stages (a strategy may run a stage under another).
    seed : int or sequence of int
        The noise of group g is a pure function of (seed, g).
    noise_shape : tuple of int, optional
        Shape of the sampler's first draw; default the sampler's ``noise_shape``.
    settings : RunSettings
        How to run (batching, device, dtype, progress, checkpoint, executor, callback).
    confidence_level, interval_method
        Of every interval the strategies make.
    strategy : Strategy
        What the run will draw: it names the run in a checkpoint and sizes the progress bar.
    """

    def __init__(
        self,
        sampler: Callable,
        statistics: StatisticsLike,
        *,
        design: NoiseDesign | str,
        seed: SeedLike,
        noise_shape: tuple[int, ...] | None,
        settings: RunSettings,
        confidence_level: float,
        interval_method: str,
        strategy: Strategy,
    ) -> None:
        if not callable(sampler):
            raise TypeError(f"sampler must be a callable from a noise batch to outputs, got {type(sampler).__name__}")
        design = as_design(design)
        stats = named_statistics(statistics)
        sampler = as_sampler(sampler, noise_shape=noise_shape, device=settings.device)
        design.check_dim(math.prod(sampler.noise_shape))
        quantile(confidence_level, 1, interval_method)  # validates both before any model call
        entropy(seed)
        self.settings, self.strategy = settings, strategy
        self.confidence_level, self.interval_method = confidence_level, interval_method
        self.evaluator = GroupEvaluator(
            sampler, stats, design, sampler.noise_shape, seed, settings.batch_size,
            noise_device(sampler, settings.device), settings.dtype,
        )  # fmt: skip
        self.checkpoint, self.version = settings.checkpoint, package_version()
        self.config = {
            "design": design.name,
            "noise_shape": list(sampler.noise_shape),
            "seed": entropy(seed),
            "dtype": str(settings.dtype),
            "statistics": list(stats),
            "confidence_level": confidence_level,
            "interval_method": interval_method,
            "strategy": repr(strategy),
        }
        self.stages: dict[str, _checkpoint.Stage] = {}
        self.group_sizes: dict[str, int] = {}  # per stage, where a strategy runs a stage under its own design
        self.batches_since_save = 0
        self.consistent = True
        self.pilot_noises = 0  # noises of pilots (values()): not checkpointed, redrawn on resume
        self.sampler_output: dict | None = None  # the sampler's fingerprint, checked before new groups run
        self.started, self.timed = None, False  # the time projection after the first batch
        self.bar = None
        # a sampler exempt from the repeat check may keep undesigned randomness: its output cannot fingerprint it
        self.fingerprint_pending = self.checkpoint is not None and wants_check(sampler)

    @property
    def sampler(self) -> Sampler:
        return self.evaluator.generator

    @property
    def design(self) -> NoiseDesign:
        return self.evaluator.design

    @property
    def seed(self) -> SeedLike:
        return self.evaluator.seed

    @property
    def statistics(self) -> dict[str, Callable]:
        return self.evaluator.stats

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return self.evaluator.noise_shape

    @property
    def n_noises(self) -> int:
        """Noises drawn so far (checkpointed stages and pilots)."""
        k = self.design.group_size
        return self.pilot_noises + sum(s.n_done * self.group_sizes.get(name, k) for name, s in self.stages.items())

    def run(self) -> EstimateResult:
        """Run the strategy; the result counts every noise it drew, pilots included."""
        self.open()
        try:
            results, info = self.strategy.run(self)
            self.save()
        finally:
            self.close()
        warn_if_skewed(results)
        config = {
            "noise_shape": list(self.noise_shape),
            "batch_size": self.settings.batch_size,
            "confidence_level": self.confidence_level,
            "interval_method": self.interval_method,
            "group_size": self.design.group_size,
            **info,
        }
        return EstimateResult(
            results=results,
            design=next(iter(results.values())).design,
            seed=self.seed,
            budget=self.n_noises,
            generator_calls=self.n_noises * calls_per_noise(self.sampler),
            config=config,
        )

    def open(self) -> None:
        """Check the strategy, load a checkpoint to resume, show the progress bar: before any stage."""
        self.strategy.check(self)
        self._open_checkpoint()
        if self.settings.progress and self.bar is None:
            per_noise = calls_per_noise(self.sampler)
            self.bar = _progress_bar(self.strategy.max_budget * per_noise, self.design.name)

    def close(self) -> None:
        """Close the progress bar (the checkpoint is saved by :meth:`save`)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def results(
        self,
        accumulators: Mapping[str, GroupAccumulator],
        *,
        design: NoiseDesign | None = None,
        label: str | None = None,
    ) -> dict[str, StatisticResult]:
        """Each statistic's result from a stage of iid group means (``label`` names the design in it)."""
        design = design or self.design
        return stage_results(
            accumulators, label or design.name, design.group_size, self.confidence_level, self.interval_method
        )

    def evaluator_for(
        self,
        design: NoiseDesign | None = None,
        seed: SeedLike | None = None,
        control: tuple[NoiseFeatures, Mapping[str, np.ndarray] | None] | None = None,
    ) -> GroupEvaluator:
        """The run's evaluator, or a variant of it under another design, seed or noise control variates."""
        if design is None and seed is None and control is None:
            return self.evaluator
        other = copy.copy(self.evaluator)
        other.design = design or other.design
        other.seed = self.evaluator.seed if seed is None else seed
        if control is not None:
            other.features, other.coefficients = control
        return other

    def stage(
        self,
        name: str,
        lo: int,
        hi: int,
        *,
        design: NoiseDesign | None = None,
        seed: SeedLike | None = None,
        control: tuple[NoiseFeatures, Mapping[str, np.ndarray] | None] | None = None,
    ) -> dict[str, GroupAccumulator]:
        """Fill stage ``name`` with groups lo..hi-1, skipping those a checkpoint already holds.

        A strategy may run a stage under its own ``design`` (a block of RQMC points), ``seed`` (a
        stream of its own) or noise ``control`` variates (features, coefficients).
        """
        stage = self.stages.setdefault(name, _checkpoint.Stage.empty(list(self.statistics)))
        evaluator = self.evaluator_for(design, seed, control)
        k = evaluator.design.group_size
        self.group_sizes[name] = k
        try:
            for a, b in stage.missing(lo, hi):
                self._check_sampler()
                self.started = self.started or (time.perf_counter(), self.n_noises)
                if self.settings.executor is None:
                    for start, parts in evaluator.batches(a, b):
                        self._add(stage, start, parts=parts, k=k)
                else:
                    self.settings.executor.run(
                        evaluator,
                        a,
                        b,
                        lambda start, accs, shapes: self._add(stage, start, accs=accs, shapes=shapes, k=k),
                    )
        except BaseException as exc:
            self._save_after_failure(exc)
            raise
        return stage.accumulators

    def values(
        self,
        lo: int,
        hi: int,
        *,
        design: NoiseDesign | None = None,
        seed: SeedLike | None = None,
        features: NoiseFeatures | None = None,
    ) -> dict[str, np.ndarray]:
        """Each statistic's values (and with ``features`` the noise features', key :data:`FEATURES`), per member.

        Arrays of shape (groups, group size, ...) for groups lo..hi-1: a pilot that fits or
        compares needs the values themselves, not moments. Pilots run here, in this process, and
        are not checkpointed: they are redrawn on resume (the same noise, so the same choice).
        """
        evaluator = self.evaluator_for(design, seed, None if features is None else (features, None))
        k = evaluator.design.group_size
        members: dict[str, list[np.ndarray]] = {}
        for _, parts in evaluator.batches(lo, hi, members=members):
            count = len(next(iter(parts.values()))[0])
            self.pilot_noises += count * k
            self._report(count * k, None)
        return {key: np.concatenate(parts) for key, parts in members.items()}

    def _open_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        e, path = self.evaluator, self.checkpoint.path
        self.config["design_fingerprint"] = _checkpoint.design_fingerprint(e.design, math.prod(e.noise_shape), e.seed)
        _checkpoint.remove_stray_temporaries(path)
        if path.exists():
            if not self.checkpoint.resume:
                raise _checkpoint.CheckpointError(
                    f"checkpoint {str(path)!r} exists; pass Checkpoint(path, resume=True) to continue it, "
                    "or remove it to start over"
                )
            meta, self.stages = _checkpoint.load(path)
            _checkpoint.check_matches(path, meta, self.config, self.version)
            self.sampler_output = meta.get("sampler_output")

    def _check_sampler(self) -> None:
        """Before a checkpointed run adds groups: the sampler's output on one fixed noise, kept or compared.

        A checkpoint cannot store the sampler (it is code), but it can store what the sampler
        does: resuming with another model of the same output shape would otherwise mix the two.
        One extra model call per run that has groups left, none for a finished checkpoint.
        """
        if not self.fingerprint_pending:
            return
        now = _checkpoint.sampler_fingerprint(self.evaluator.probe_output(), tolerance_of(self.sampler))
        if self.sampler_output is not None:
            where = f"group 0's first noise under seed {self.seed!r}"
            _checkpoint.check_sampler(self.checkpoint.path, self.sampler_output, now, where)
        else:
            self.sampler_output = now
        self.fingerprint_pending = False

    def _add(self, stage, start, *, k: int, accs=None, parts=None, shapes=None) -> None:
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
        self._report(count * k, stage.accumulators)
        self._project_time()
        self.batches_since_save += 1
        if self.checkpoint is not None and self.batches_since_save >= self.checkpoint.every:
            self.save()

    def _report(self, noises: int, accumulators: Mapping[str, GroupAccumulator] | None) -> None:
        """The progress bar, and the callback after a batch of a stage."""
        if self.bar is not None:
            self.bar.update(noises * calls_per_noise(self.sampler))
            if accumulators is not None:
                self.bar.set_postfix_str(_running(accumulators, self.confidence_level, self.interval_method))
        callback = self.settings.callback
        if callback is not None and accumulators is not None:
            try:
                callback(self.n_noises, accumulators)
            except Exception as exc:
                raise CallbackError(
                    f"the callback raised {type(exc).__name__}: {exc} after {self.n_noises} noises; the run stopped "
                    f"there (the model was fine). Fix the callback, or catch errors inside it to let runs go on"
                ) from exc

    def _project_time(self) -> None:
        """After the first batch: refuse a budget that cannot finish, warn of a long one without a checkpoint.

        The first batch includes one-time costs (the repeat check, a capture's trace, warm-up),
        so the projection errs long.
        """
        if self.timed or self.started is None or self.strategy.stops_early:  # a rule may stop long before its cap
            return
        self.timed = True
        t0, n0 = self.started
        done, left = self.n_noises - n0, self.strategy.max_budget - self.n_noises
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
                f"run=RunSettings(checkpoint=Checkpoint(path, resume=True)), or a smaller budget",
                stacklevel=8,
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
