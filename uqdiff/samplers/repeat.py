"""The repeat check: is a generator a function of the noise it is handed?

A design controls a generator's output only if the output is a function of the design's noise.
Randomness the design does not serve (torch's global generator in a sampler that was not
captured, Python's ``random``, numpy's global generator, dropout left in training mode) breaks
that silently: intervals stay plausible but repeats differ and couplings hold only in part.

The check runs the generator again on noise it has already seen: the same noise twice must give
the same output, and a noise alone (a batch of one) the same output as inside a larger batch.
Outputs are compared with a tolerance relative to their size, ``max |a - b| <= tolerance *
max |a|`` (default 1e-3, the generator's ``repeat_tolerance`` attribute when it has one), which
absorbs batch-size-dependent kernels and non-deterministic GPU reductions but not a stray draw,
whose effect is of the size of the output itself.

:func:`uqdiff.estimate` (and so ``compare`` and ``evaluate_solver``) runs it on the first batch
of every run, at the cost of one extra sample (two when it fails); a generator with
``repeat_check = False`` is not checked. :func:`check_repeatable` is the same check as a public
function, which also reports how much of the output variance the designed noise explains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from uqdiff._util import to_numpy
from uqdiff.designs import NoiseDesign, as_design
from uqdiff.designs.seeds import SeedLike, entropy
from uqdiff.designs.streams import NoiseStream
from uqdiff.samplers.base import Recording, Sampler, device_of, noise_shape_of
from uqdiff.samplers.capture import DEFAULT_TOLERANCE, Captured

OPT_OUT = (
    "If only part of the randomness is meant to be designed, set `generator.repeat_check = False` to skip this "
    "check (intervals then hold for the undesigned part as extra noise, and couplings only for the designed part)"
)
FIX = (
    "To fix it: wrap the sampler's own code with uqdiff.samplers.Captured(lambda n: ...), which serves every torch "
    "Gaussian draw from the design and refuses other torch randomness; seed any numpy or Python random source "
    f"from fixed inputs; put models in eval mode (dropout). {OPT_OUT}"
)
#: a captured sampler's torch randomness is served or refused already: what is left is outside torch
FIX_CAPTURED = (
    "Every torch draw of a captured sampler comes from the design or is refused, so the stray randomness is "
    "outside torch: seed any numpy or Python random source from fixed inputs (it cannot be intercepted). "
    f"{OPT_OUT}"
)
FIX_BATCH = (
    "To fix it: remove the coupling between the samples of a batch (statistics over the batch such as a "
    "normalisation by its mean, batch-norm in training mode, an operator applied to the flattened batch), or run "
    "one noise at a time: batch_size=1, or Captured(fn, max_batch=1) for a sampler that only supports batch 1. "
    "An iterative sampler that amplifies rounding looks the same: float32 kernels round differently at different "
    "batch sizes, and many guided steps (DPS with a large step size, a truth far from the prior) can grow those "
    "last bits into visible differences; if the samples do not interact, run in float64 or lower the step size. "
    "If the coupling is intended, set `generator.repeat_check = False` to skip this check"
)


def tf32_hint() -> str:
    """A note on TF32 when CUDA has run with it on: cuDNN's default, and a cause of batch dependence."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return ""
    if not (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32):
        return ""
    return (
        ". On CUDA, TF32 is on (torch.backends.cudnn.allow_tf32 is PyTorch's default True): TF32 convolutions "
        "keep 10 mantissa bits and cuDNN picks kernels by batch size, which made a float32 UNet loop on an H200 "
        "differ by 0.006 between batch 1 and 64 (benchmarks/results/gpu/gpu_check.md); set "
        "torch.backends.cudnn.allow_tf32 = False and torch.backends.cuda.matmul.allow_tf32 = False"
    )


class RepeatCheckError(RuntimeError):
    """The generator is not a function of its noise: repeats differ, or a sample depends on its batch."""


def tolerance_of(generator: Any) -> float:
    """The generator's ``repeat_tolerance``, else the default 1e-3 (relative to max |output|)."""
    return float(getattr(generator, "repeat_tolerance", DEFAULT_TOLERANCE))


def wants_check(generator: Any) -> bool:
    """False when the generator opted out with ``repeat_check = False``."""
    return getattr(generator, "repeat_check", True) is not False


def max_difference(a: Any, b: Any) -> tuple[float, float]:
    """(max |a - b|, max |a|) of two outputs as float64 arrays; inf when their shapes differ."""
    x, y = to_numpy(a), to_numpy(b)
    scale = float(np.abs(x).max()) if x.size else 0.0
    if x.shape != y.shape:
        return math.inf, scale
    with np.errstate(invalid="ignore"):
        diff = float(np.abs(x - y).max()) if x.size else 0.0
    return (diff if math.isfinite(diff) else math.inf), scale


def check_first_batch(generator: Callable, noise_one: Any, output_one: Any, *, batch: int, where: str) -> None:
    """Raise :class:`RepeatCheckError` unless ``generator(noise_one)`` reproduces ``output_one``.

    ``output_one`` is the output the noise got as the first of a batch of ``batch`` noises.
    On a mismatch the noise is run alone a second time, to tell a stray random source (two runs
    alone differ) from a batch dependence (they agree with each other, not with the batch).
    """
    tol = tolerance_of(generator)
    if isinstance(generator, Recording):  # its extra calls must not join the kept outputs
        generator = generator.generator
    fix = FIX_CAPTURED if isinstance(generator, Captured) else FIX
    alone = generator(noise_one)
    shape_alone, shape_batch = tuple(to_numpy(alone).shape[1:]), tuple(to_numpy(output_one).shape[1:])
    if shape_alone != shape_batch:  # not a question of values: say so, not "batch dependence"
        raise ValueError(
            f"the generator's per-image output shape depends on the batch: {shape_batch} for {where} as the first "
            f"of a batch of {batch}, {shape_alone} for the same noise alone. Return one output shape per image, "
            f"whatever the batch size"
        )
    diff, scale = max_difference(alone, output_one)
    if diff <= tol * max(scale, 1e-30):
        return
    again = generator(noise_one)
    repeat_diff, _ = max_difference(again, alone)
    limit = f"tolerance {tol:g} x max |output| {scale:.4g}"
    if repeat_diff > tol * max(scale, 1e-30):
        raise RepeatCheckError(
            f"the generator is not a function of its noise: the same noise ({where}) run twice gave outputs that "
            f"differ by up to {repeat_diff:.4g} ({limit}). Randomness that does not come from the design reaches "
            f"the output, so repeats differ and the design's coupling holds only in part. {fix}"
        )
    if batch > 1:
        raise RepeatCheckError(
            f"the generator's output for a noise depends on the rest of its batch (batch dependence): {where} alone "
            f"gave the same output twice, but one that differs by up to {diff:.4g} from the same noise inside a batch "
            f"of {batch} ({limit}). Samples must not interact, or results change with batch_size, sharding and "
            f"resuming. {FIX_BATCH}{tf32_hint()}"
        )
    raise RepeatCheckError(  # batch of one: the first run and the repeat differ, the two repeats agree
        f"the generator is not a function of its noise: the same noise ({where}) gave {diff:.4g} apart on its "
        f"first and second run ({limit}); it keeps state between calls. {fix}"
    )


@dataclass(frozen=True)
class RepeatReport:
    """What :func:`check_repeatable` measured.

    * ``repeat_difference``: max |difference| between two runs on the same noises (same batch);
    * ``batch_difference``: max |difference| between the first noise alone and inside the batch;
    * ``scale``: max |output|; both differences pass when at most ``tolerance * scale``;
    * ``explained_variance``: share of the output variance (summed over output elements) that is
      a function of the designed noise, 1 - E|G1 - G2|^2 / (2 Var G) from the repeat pairs
      (1 for a generator that is a function of its noise, near 0 when the design controls nothing);
    * ``noises``: noises drawn; the generator ran on 2 x noises + 1.
    """

    noises: int
    repeat_difference: float
    batch_difference: float
    scale: float
    tolerance: float
    explained_variance: float
    design: str

    @property
    def repeatable(self) -> bool:
        return self.repeat_difference <= self.tolerance * max(self.scale, 1e-30)

    @property
    def batch_consistent(self) -> bool:
        return self.batch_difference <= self.tolerance * max(self.scale, 1e-30)

    @property
    def ok(self) -> bool:
        """Both checks pass: the output is a function of the designed noise."""
        return self.repeatable and self.batch_consistent

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "repeatable": self.repeatable, "batch_consistent": self.batch_consistent}

    def __str__(self) -> str:
        if self.ok:
            verdict = "a function of its noise"
        elif self.repeatable:  # the same batch repeats exactly: the noise decides, but so does the batch
            verdict = (
                "NOT batch-consistent (batch dependence): the same batch repeats, but a noise alone and inside "
                "its batch give different outputs"
            )
        else:
            verdict = "NOT a function of its noise"
        return (
            f"{verdict}: repeat difference {self.repeat_difference:.3g}, batch difference {self.batch_difference:.3g} "
            f"(tolerance {self.tolerance:g} x max |output| {self.scale:.4g}); the designed noise explains "
            f"{100 * self.explained_variance:.1f}% of the output variance ({self.noises} noises, {self.design})"
        )


def check_repeatable(
    generator: Callable,
    *,
    budget: int = 8,
    design: NoiseDesign | str = "mc",
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    tolerance: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> RepeatReport:
    """Check that a generator is a function of its noise, and how much of its variance the noise explains.

    Parameters
    ----------
    generator : callable
        Any uqdiff generator: noise batch -> outputs, or a sampler (a :class:`Captured` one), which reads
        the noise stream itself.
    budget : int
        Noises drawn (at least 2); the generator runs on them twice as one batch, and on the first alone.
    design : NoiseDesign or str
        The design the noises come from.
    noise_shape : tuple of int, optional
        Shape of one noise; default the generator's ``noise_shape``.
    seed : int or sequence of int
        Seed of the noises.
    tolerance : float, optional
        Relative tolerance (default: the generator's ``repeat_tolerance``, else 1e-3).
    device, dtype
        Where and in which dtype fixed-size noise is made (a captured sampler's draws say their own).

    Returns
    -------
    RepeatReport
        The two differences, the tolerance and the share of the output variance the noise explains.

    Examples
    --------
    >>> import numpy as np
    >>> from uqdiff.samplers import LinearGenerator
    >>> check_repeatable(LinearGenerator([0.0, 1.0]), seed=0).ok
    True
    >>> leaky = lambda z: z + torch.randn_like(z)   # half its variance comes from outside the design
    >>> r = check_repeatable(leaky, noise_shape=(64,), budget=16, seed=0)
    >>> r.ok, 0.3 < r.explained_variance < 0.7
    (False, True)
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2:
        raise ValueError(f"budget must be an int >= 2 (noises), got {budget!r}")
    design = as_design(design)
    entropy(seed)
    groups = np.arange(math.ceil(budget / design.group_size))
    stream = design.stream(groups, seed=seed, dtype=dtype)[:budget]
    noise = _noise_for(generator, stream, noise_shape=noise_shape, device=device, dtype=dtype)
    one = _noise_for(generator, stream[0:1], noise_shape=noise_shape, device=device, dtype=dtype)
    first = to_numpy(generator(noise))
    second = to_numpy(generator(noise))
    alone = generator(one)
    repeat_diff, scale = max_difference(second, first)
    batch_diff, _ = max_difference(alone, first[:1])
    var = float(first.reshape(len(first), -1).var(axis=0, ddof=1).sum())
    spread = float((((first - second) ** 2).reshape(len(first), -1).mean(axis=0) / 2).sum())
    explained = float(np.clip(1.0 - spread / var, 0.0, 1.0)) if var > 0 else math.nan
    return RepeatReport(
        noises=len(first),
        repeat_difference=repeat_diff,
        batch_difference=batch_diff,
        scale=scale,
        tolerance=tolerance_of(generator) if tolerance is None else float(tolerance),
        explained_variance=explained,
        design=design.name,
    )


def _noise_for(generator: Any, stream: NoiseStream, *, noise_shape, device, dtype: torch.dtype) -> Any:
    """What ``generator`` is called with: the stream itself for a sampler, which reads its draws from it;
    for a plain generator, the stream's first slot as a tensor (B, *noise_shape) on the generator's device."""
    if isinstance(generator, Sampler):
        return stream
    shape = noise_shape_of(generator, noise_shape)
    return stream.slot(0, shape, offset=0, device=device_of(generator, device), dtype=dtype)
