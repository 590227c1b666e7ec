"""Capture: run a sampler you did not write with every Gaussian draw taken from the design.

:class:`Captured` wraps a callable ``fn(batch_size) -> images`` (a diffusers pipeline call, a
research DPS loop, a solver with ``torch.randn_like`` inside its loop) as a uqdiff generator. While
``fn`` runs, a :class:`torch.overrides.TorchFunctionMode` answers every Gaussian draw
(``torch.randn``, ``torch.randn_like``, ``torch.normal``, ``Tensor.normal_``,
``torch.nn.init.normal_``, and so diffusers' ``randn_tensor`` and torchsde's Brownian tree, which
call them) with the next slot of the design's noise stream for the batch's groups: whatever name
the code imported the function under, with or without a ``torch.Generator``, on any device.

What it checks:

* the *layout*, the sequence of draws' per-sample shapes, is traced on the first call, at that
  call's batch size; a later call whose draws differ in number or shape raises
  :class:`CaptureError` naming the first differing draw and where the code made it;
* a draw whose leading dimension is the batch size is per-sample (row i belongs to sample i).
  diffusers' per-sample list of generators (B draws of leading dimension 1, one generator each)
  is one per-sample draw. Any other draw raises, showing its shape and call site, unless it is
  declared shared (``shared=``): then it is a fixed draw, the same for every sample of every
  run (part of the generator, not of the design);
* other randomness (uniform draws, integers, permutations, Bernoulli, multinomial, exponential,
  dropout in training mode, ...) raises :class:`CaptureError` naming the operation, or with
  ``allow_other_randomness=True`` runs with a warning that the result is no longer a function of
  the design's noise. After each call, torch's default generators are compared with their state
  before: an unseen draw from them (C++ code, a Python-level torch function that draws inside)
  is reported the same way.

An exception the sampler's own code raises comes back as :class:`CapturedCallError`, which says
what uqdiff was doing (tracing the layout or running a batch, at which batch size) and chains the
original (``__cause__``); out-of-memory errors pass unchanged, so the estimators can halve the
batch. A solver that only runs at batch 1 declares it with ``max_batch=1``.

Python's and numpy's random modules cannot be intercepted: the repeat check
(:mod:`uqdiff.samplers.repeat`) catches them.

Seeds inside ``fn`` have no effect: no draw reaches torch's generators. One exception keeps
seeded re-draws consistent: a generator seeded and not yet used in this call that draws a shape
it already drew under the same seed gets the same noise again (torchsde's Brownian tree re-makes
evicted nodes this way).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from uqdiff.designs.gaussian import IID
from uqdiff.designs.streams import NoiseStream, shared_normals, stream_key
from uqdiff.samplers.base import Sampler, is_out_of_memory

F = torch.nn.functional


class CaptureError(RuntimeError):
    """A captured sampler drew noise the design cannot serve, or its layout changed between calls."""


class CapturedCallError(CaptureError):
    """The sampler's own code raised while uqdiff traced or ran it; the original is ``__cause__``.

    A subclass of :class:`CaptureError`, so one ``except CaptureError`` covers both; the message
    says what uqdiff was doing (tracing the layout at batch B, or running a batch of B), because a
    solver's raw error (an ``if t != 0`` on a batch tensor, a reshape against a batch-1 operator)
    rarely says that the batch size is the cause.
    """


@dataclass(frozen=True)
class Draw:
    """One entry of a captured generator's noise layout.

    ``kind`` is ``"sample"`` (a new per-sample slot of ``shape`` per sample), ``"shared"`` (a
    fixed draw of ``shape``, common to all samples) or ``"repeat"`` (a re-draw of slot ``slot``
    under the same seed). ``op`` and ``site`` say which function drew it and where.
    """

    kind: str
    shape: tuple[int, ...]
    slot: int
    op: str
    site: str

    def same_as(self, other: Draw) -> bool:
        return (self.kind, self.shape, self.slot) == (other.kind, other.shape, other.slot)

    def describe(self) -> str:
        what = {"sample": "per-sample", "shared": "shared", "repeat": f"re-draw of slot {self.slot},"}[self.kind]
        return f"{what} {self.op} of shape {self.shape} at {self.site}"


#: Default tolerance of the repeat check: max |difference| / max |output| (see repeat.py).
DEFAULT_TOLERANCE = 1e-3


class Captured(Sampler):
    """A sampler's own code as a uqdiff generator: every Gaussian draw inside comes from the design.

    Parameters
    ----------
    fn : callable
        ``fn(batch_size)`` returns the outputs of ``batch_size`` samples (a tensor or array with
        one row per sample). Fixed inputs (a prompt, a measurement, a model) go in a closure.
    shared : bool or sequence of shapes
        Draws that are not per-sample: ``True`` allows every draw whose leading dimension is not
        the batch size; a list of full shapes allows those shapes only (always shared, even if
        the leading dimension happens to equal the batch size). Shared draws are fixed: the same
        values for every sample, run and design (keyed by ``shared_seed``).
    allow_other_randomness : bool
        Run uniform, integer, Bernoulli, ... draws (from torch's generator) with a warning
        instead of refusing them.
    shared_seed : int
        Seed of the shared draws.
    repeat_tolerance : float
        Tolerance of the repeat check that estimators run on the first batch.
    name : str, optional
        Name in messages (default: the callable's name).
    max_batch : int, optional
        The largest batch ``fn`` supports (``max_batch=1`` for solvers written for one sample at a
        time, such as code that branches on ``if t != 0`` with a batch tensor ``t``). A call with
        more noises runs ``fn`` on consecutive chunks of at most ``max_batch`` and concatenates the
        outputs (``torch.cat`` for tensors, else ``numpy.concatenate``); estimators read the
        ``max_batch`` attribute to cap their batch size.

    Notes
    -----
    The layout is recorded by the first call, at that call's batch size. Reading ``noise_shape``,
    ``noise_size`` or ``layout`` before any call traces it by running ``fn(1)`` once on throwaway
    noise: batch 1 is the one batch size every solver runs at, including those that support no
    other, and the cheapest; :meth:`trace` traces at another batch size. A draw is per-sample when
    its leading dimension is the batch size, so at batch 1 a draw of leading dimension 1 meant to be
    common to all samples is taken for a per-sample one: declare it with ``shared=[shape]`` (a
    later call at a larger batch refuses it otherwise, naming it). ``noise_shape`` is the
    per-sample shape of the first draw (x_T for a sampler): the part a Sobol' design covers by
    default.
    A call takes a :class:`uqdiff.designs.streams.NoiseStream` (what the estimators hand it), or a
    tensor (B, noise_size) holding each sample's whole stream flat, draw after draw; with a single
    draw, (B, *noise_shape) works too, so a deterministic sampler is an ordinary generator.

    Examples
    --------
    >>> import torch
    >>> from uqdiff import estimate
    >>> def sampler(n):  # third-party code: draws its own noise at every step
    ...     x = torch.randn(n, 2)
    ...     for _ in range(3):
    ...         x = 0.5 * x + torch.randn_like(x)
    ...     return x
    >>> g = Captured(sampler)
    >>> g.noise_shape, g.noise_size, len(g.layout)
    ((2,), 8, 4)
    >>> r = estimate(g, lambda x: x[:, 0], budget=64, design="antithetic", seed=0)
    >>> r["statistic"].width   # linear in the noise: antithetic pairs cancel exactly
    0.0
    """

    def __init__(
        self,
        fn: Callable[[int], Any],
        *,
        shared: bool | Sequence[Sequence[int]] = False,
        allow_other_randomness: bool = False,
        shared_seed: int = 0,
        repeat_tolerance: float = DEFAULT_TOLERANCE,
        name: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be a callable fn(batch_size) -> outputs, got {type(fn).__name__}")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        self.max_batch = max_batch
        if isinstance(shared, bool):
            self.shared_shapes: frozenset[tuple[int, ...]] | None = None
            self.share_all = shared
        else:
            self.shared_shapes = frozenset(tuple(int(s) for s in shape) for shape in shared)
            self.share_all = False
        self.fn = fn
        self.allow_other_randomness = bool(allow_other_randomness)
        self.shared_key = stream_key(shared_seed)
        self.repeat_tolerance = float(repeat_tolerance)
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self._layout: tuple[Draw, ...] | None = None
        #: draws of the last call by kind, and the undesigned random operations it ran (allowed ones)
        self.last_draws: dict[str, int] = {}
        self.last_undesigned: list[str] = []

    # -- layout ---------------------------------------------------------------------------------
    @property
    def layout(self) -> tuple[Draw, ...]:
        """The traced draws, in order (traces at batch 1 on first use, if no call has run yet)."""
        if self._layout is None:
            self.trace()
        return self._layout

    def trace(self, batch_size: int = 1) -> tuple[Draw, ...]:
        """Record the layout by running ``fn`` once on throwaway noise, unless a call has recorded it already.

        Parameters
        ----------
        batch_size : int
            Batch of the tracing call (at most ``max_batch``): 1 by default, the batch every solver
            supports; a run's own batch size traces the draws the run will make.
        """
        if self._layout is None:
            b = min(batch_size, self.max_batch or batch_size)
            self(IID().stream(np.arange(b), seed=0))
        return self._layout

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the first draw (x_T for a sampler)."""
        first = next((d for d in self.layout if d.kind == "sample"), None)
        if first is None:
            raise CaptureError(f"{self.name} made no per-sample Gaussian draw: there is no noise to design")
        return first.shape

    @property
    def draws(self) -> tuple[tuple[int, ...], ...]:
        """The per-sample shapes of the draws, slot by slot (x_T first)."""
        return tuple(d.shape for d in self.layout if d.kind == "sample")

    @property
    def noise_size(self) -> int:
        """Length of one sample's whole stream: every per-sample draw, flattened."""
        return sum(math.prod(d.shape) for d in self.layout if d.kind == "sample")

    # -- calls ----------------------------------------------------------------------------------
    def __call__(self, noise: NoiseStream | torch.Tensor) -> Any:
        """Outputs of ``fn(len(noise))`` with the draws served from ``noise`` (in chunks of ``max_batch``)."""
        n, step = len(noise), self.max_batch or len(noise)
        self.last_undesigned = []
        if n <= step:
            return self._run(noise)
        outs = [self._run(noise[lo : lo + step]) for lo in range(0, n, step)]
        if all(isinstance(o, torch.Tensor) for o in outs):
            return torch.cat(outs)
        return np.concatenate([np.asarray(o) for o in outs])

    def _run(self, noise: NoiseStream | torch.Tensor) -> Any:
        """One call of ``fn`` under capture; the sampler's own exceptions come back with uqdiff's context."""
        source = noise if isinstance(noise, NoiseStream) else _TensorSource(noise, self)
        tracing = self._layout is None
        mode = _CaptureMode(self, source)
        before = _rng_states()
        try:
            with mode:
                out = self.fn(len(source))
        except Exception as exc:
            if isinstance(exc, CaptureError) or exc is mode.raised or is_out_of_memory(exc):
                raise
            raise CapturedCallError(self._failure(exc, len(source), tracing)) from exc
        mode.finish()
        _check_rng_states(before, self, mode)
        if self._layout is None:
            self._layout = tuple(mode.events)
        if isinstance(source, _TensorSource):
            source.finish(mode.offset)
        self.last_draws = {k: sum(e.kind == k for e in mode.events) for k in ("sample", "shared", "repeat")}
        self.last_undesigned += mode.undesigned
        return out

    def _failure(self, exc: Exception, batch: int, tracing: bool) -> str:
        """The message of a :class:`CapturedCallError`: what uqdiff was doing, and what to try."""
        doing = f"tracing its noise layout (its first call) at batch {batch}" if tracing else f"running batch {batch}"
        hint = (
            "If the solver only supports batch 1, pass Captured(fn, max_batch=1) or batch_size=1"
            if batch > 1
            else f"It fails at batch 1 too: call the sampler directly ({self.name}(1)) to debug it"
        )
        return (
            f"{self.name} raised {type(exc).__name__} while uqdiff was {doing}: {exc}. {hint}; the original "
            "exception is chained (__cause__)"
        )

    def __repr__(self) -> str:
        n = "untraced" if self._layout is None else f"{len(self._layout)} draws"
        return f"Captured({self.name}, {n})"


class _TensorSource:
    """A flat noise tensor (B, N) read draw by draw, for calls outside the estimators."""

    def __init__(self, noise: Any, owner: Captured) -> None:
        noise = torch.as_tensor(noise)
        if noise.ndim < 2:
            raise ValueError(f"noise must be a batch (B, ...), got shape {tuple(noise.shape)}")
        self.flat = noise.reshape(len(noise), -1)
        self.owner = owner

    def __len__(self) -> int:
        return len(self.flat)

    def slot(self, index: int, shape, *, offset: int, device=None, dtype=None) -> torch.Tensor:
        size = math.prod(shape)
        if offset + size > self.flat.shape[1]:
            raise ValueError(
                f"the noise tensor holds {self.flat.shape[1]} values per sample but draw {index} of "
                f"{self.owner.name} needs values {offset}..{offset + size - 1}; pass (B, noise_size) "
                "with each sample's whole stream, or run it through uqdiff.estimate (which streams it)"
            )
        return self.flat[:, offset : offset + size].reshape(len(self.flat), *shape).to(device=device, dtype=dtype)

    def finish(self, used: int) -> None:
        if used != self.flat.shape[1]:
            raise ValueError(
                f"the noise tensor holds {self.flat.shape[1]} values per sample but {self.owner.name} drew {used}"
            )


_Default = object()


class _CaptureMode(TorchFunctionMode):
    """Serves Gaussian draws from the source during one call; refuses (or reports) other randomness."""

    def __init__(self, owner: Captured, source: Any) -> None:
        super().__init__()
        self.owner, self.source, self.batch = owner, source, len(source)
        self.events: list[Draw] = []
        self.slots = 0  # per-sample slots made
        self.offsets: dict[int, int] = {}  # flat offset of each slot in a sample's stream
        self.offset = 0  # flat coordinates of the per-sample stream used so far
        self.shared = 0  # shared draws made
        self.memo: dict[tuple, Draw] = {}
        self.seen: weakref.WeakSet = weakref.WeakSet()  # generators that drew in this call
        self.rows: dict | None = None  # an open per-sample draw made row by row (a list of generators)
        self.undesigned: list[str] = []
        self.raised: Exception | None = None  # an error of the noise source (not of the sampler's code)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # Every torch call of the sampler passes here (properties included): the common case, an
        # operation that draws nothing, costs one dict lookup on top of torch's own dispatch.
        handler = _RANDOM.get(func)
        if handler is None:
            return func(*args, **kwargs) if kwargs else func(*args)
        return handler(self, func, args, kwargs or {})

    # -- Gaussian draws -------------------------------------------------------------------------
    def draw(self, shape, *, dtype, device, generator, op: str) -> torch.Tensor:
        """Standard normals of ``shape`` for this draw, from the design (per-sample) or the fixed shared stream."""
        shape = tuple(int(s) for s in shape)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not dtype.is_floating_point:
            raise CaptureError(
                f"{op} asked for {dtype} normals at {_call_site()}; only real floating dtypes are designed"
            )
        device = torch.device(device) if device is not None else _default_device()
        owner, b = self.owner, self.batch
        if self.rows is not None and not self._continues_rows(shape, generator):
            self._close_rows(op)
        if self.rows is not None:
            return self._next_row(dtype, device, generator)
        declared = owner.shared_shapes is not None and shape in owner.shared_shapes
        if not declared and len(shape) >= 1 and shape[0] == b:
            kind, per = "sample", shape[1:]
        elif not declared and b > 1 and len(shape) >= 1 and shape[0] == 1 and generator is not None:
            return self._open_rows(shape[1:], generator, dtype, device, op)
        elif declared or owner.share_all:
            kind, per = "shared", shape
        else:
            raise CaptureError(
                f"{op} drew shape {shape} at {_call_site()}: its leading dimension is not the batch size {b}, so "
                "it is not one draw per sample. If the draw is meant to be the same for all samples (a fixed "
                f"random input), declare it: Captured(..., shared=[{shape}]) or shared=True"
            )
        key = self._fresh_key(kind, per, generator)
        earlier = self.memo.get(key) if key is not None else None
        if earlier is not None:
            self._record(Draw("repeat", per, earlier.slot, op, ""))
            return self._values(earlier, dtype, device)
        event = self._new(kind, per, op)
        if key is not None:
            self.memo[key] = event
        return self._values(event, dtype, device)

    def _fresh_key(self, kind, per, generator) -> tuple | None:
        """For a generator's first draw in this call, the key of a seeded re-draw: (kind, shape, seed, device type)."""
        if generator is None or generator in self.seen:
            return None
        self.seen.add(generator)
        return (kind, per, generator.initial_seed(), generator.device.type)

    def _new(self, kind: str, per: tuple[int, ...], op: str) -> Draw:
        index = self.slots if kind == "sample" else self.shared
        event = Draw(kind, per, index, op, "")
        self._record(event)
        if kind == "sample":
            self.offsets[index] = self.offset
            self.slots += 1
            self.offset += math.prod(per)
        else:
            self.shared += 1
        return event

    def _record(self, event: Draw) -> None:
        i = len(self.events)
        layout = self.owner._layout
        if layout is None:  # tracing: keep where each draw is made, for later messages
            event = Draw(event.kind, event.shape, event.slot, event.op, _call_site())
        elif i >= len(layout) or not event.same_as(layout[i]):
            traced = layout[i].describe() if i < len(layout) else f"nothing (its layout has {len(layout)} draws)"
            now = Draw(event.kind, event.shape, event.slot, event.op, _call_site()).describe()
            raise CaptureError(
                f"{self.owner.name}: draw {i} differs from the traced layout: this call drew a {now}; the first "
                f"call drew {traced}. The noise layout must not depend on the batch or the noise (same steps, "
                "same shapes, same order)"
            )
        self.events.append(event)

    def _values(self, event: Draw, dtype, device) -> torch.Tensor:
        if event.kind == "shared":
            z = shared_normals(self.owner.shared_key, event.slot, math.prod(event.shape), device=device)
            return z.reshape(event.shape).to(dtype)
        offset = self.offsets[event.slot]
        try:
            return self.source.slot(event.slot, event.shape, offset=offset, device=device, dtype=dtype)
        except Exception as exc:  # the noise's fault, not the sampler's: reported as it is
            self.raised = exc
            raise

    # -- diffusers' list of per-sample generators: B draws of (1, ...) ----------------------------
    def _open_rows(self, per, generator, dtype, device, op) -> torch.Tensor:
        event = self._new("sample", per, op)
        self.seen.add(generator)
        self.rows = {"event": event, "values": self._values(event, dtype, device), "next": 0, "op": op}
        self.rows["generators"] = [generator]
        return self._next_row(dtype, device)

    def _continues_rows(self, shape, generator) -> bool:
        r = self.rows
        return (
            generator is not None
            and tuple(shape) == (1, *r["event"].shape)
            and r["next"] < self.batch
            and all(generator is not g for g in r["generators"])
        )

    def _next_row(self, dtype, device, generator=None) -> torch.Tensor:
        r = self.rows
        if generator is not None:
            r["generators"].append(generator)
            self.seen.add(generator)
        row = r["values"][r["next"] : r["next"] + 1].to(device=device, dtype=dtype)
        r["next"] += 1
        if r["next"] == self.batch:
            self.rows = None
        return row

    def _close_rows(self, op: str) -> None:
        r, self.rows = self.rows, None
        raise CaptureError(
            f"{r['op']} drew {r['next']} of the {self.batch} rows of a per-sample draw one row at a time (a list "
            f"of generators) before {op} at {_call_site()} drew something else: with a list of generators, "
            "give one generator per sample and draw every row"
        )

    def finish(self) -> None:
        if self.rows is not None:
            self._close_rows("the end of the call")
        layout = self.owner._layout
        if layout is not None and len(self.events) < len(layout):
            raise CaptureError(
                f"{self.owner.name}: this call made {len(self.events)} draws, the traced layout has {len(layout)}; "
                f"the first missing one is the {layout[len(self.events)].describe()}. The noise layout must not "
                "depend on the batch or the noise (same steps, same shapes, same order)"
            )

    # -- everything else ------------------------------------------------------------------------
    def other_randomness(self, op: str) -> None:
        site = _call_site()
        if not self.owner.allow_other_randomness:
            raise CaptureError(
                f"{op} at {site} is randomness the design does not control (only Gaussian draws come from the "
                "design), so the result would not be a function of the design's noise. Remove it (e.g. put the "
                "model in eval mode for dropout, pass fixed class labels or seeds as inputs), or pass "
                "Captured(..., allow_other_randomness=True) to run it with a warning"
            )
        self.undesigned.append(op)
        warnings.warn(
            f"{op} at {site} draws from torch's generator, not from the design: the result is no longer a "
            "function of the design's noise",
            stacklevel=3,
        )


# -- handlers of the Gaussian draws: the signatures of torch's, so every positional and keyword form parses --
def _finish(z: torch.Tensor, out, requires_grad: bool, pin_memory: bool = False) -> torch.Tensor:
    if out is not None:
        with torch.no_grad():
            out.resize_(z.shape).copy_(z)
        return out
    if pin_memory:
        z = z.pin_memory()
    return z.requires_grad_() if requires_grad else z


def _randn(
    mode, *args, size=None, generator=None, out=None, dtype=None, layout=None, device=None, requires_grad=False,
    pin_memory=False, names=None,
):  # fmt: skip
    # torch.randn(2, 3), randn((2, 3)), randn([2, 3]), randn(torch.Size(...)) or randn(size=(2, 3)); a dense
    # (strided) result is the only layout torch draws normals in, so ``layout`` needs nothing
    if size is None:
        size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
    elif args:
        raise TypeError("torch.randn got a size both by position and as size=")
    if out is not None:
        dtype, device = dtype or out.dtype, device or out.device
    z = mode.draw(size, dtype=dtype, device=device, generator=generator, op="torch.randn")
    if names is not None:  # named tensors (torch versions whose randn accepts names=)
        z = z.refine_names(*names)
    return _finish(z, out, requires_grad, pin_memory)


def _randn_like(
    mode, input, *, generator=None, dtype=None, layout=None, device=None, requires_grad=False,
    memory_format=torch.preserve_format, pin_memory=False,
):  # fmt: skip
    z = mode.draw(
        input.shape,
        dtype=dtype or input.dtype,
        device=device or input.device,
        generator=generator,
        op="torch.randn_like",
    )
    if memory_format is torch.preserve_format:  # the input's strides, as torch.randn_like keeps them
        if not input.is_contiguous():
            z = torch.empty_like(input, dtype=z.dtype, device=z.device).copy_(z)
    elif memory_format is not torch.contiguous_format:
        z = z.contiguous(memory_format=memory_format)
    return _finish(z, None, requires_grad, pin_memory)


def _normal(
    mode, mean=0.0, std=1.0, size=None, *, generator=None, out=None, dtype=None, layout=None, device=None,
    pin_memory=False, requires_grad=False,
):  # fmt: skip
    # torch.normal(Tensor mean, float std=1), (float mean, Tensor std), (Tensor, Tensor), (float, float, size)
    tensors = [t for t in (mean, std) if isinstance(t, torch.Tensor)]
    if size is not None:
        shape = size
    elif tensors:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    else:
        raise TypeError("torch.normal with two numbers needs size=")
    if tensors:
        dtype = dtype or torch.promote_types(tensors[0].dtype, tensors[-1].dtype)
        device = device or tensors[0].device
    if out is not None:
        dtype, device = out.dtype, out.device
    z = mode.draw(shape, dtype=dtype, device=device, generator=generator, op="torch.normal")
    return _finish(z * std + mean, out, requires_grad, pin_memory)


def _normal_(mode, tensor, mean=0.0, std=1.0, *, generator=None, op="Tensor.normal_"):
    z = mode.draw(tensor.shape, dtype=tensor.dtype, device=tensor.device, generator=generator, op=op)
    with torch.no_grad():
        tensor.copy_(z * std + mean)
    return tensor


def _init_normal_(mode, tensor, mean=0.0, std=1.0, generator=None):
    return _normal_(mode, tensor, mean, std, generator=generator, op="torch.nn.init.normal_")


# -- other randomness: always, or only when a flag says the op is random -------------------------
def _arg(args, kwargs, position: int, name: str, default):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def _always(args, kwargs) -> bool:
    return True


def _dropout(training_default: bool, p_pos: int = 1, train_pos: int = 2, train_name: str = "training"):
    def random(args, kwargs) -> bool:
        p = _arg(args, kwargs, p_pos, "p", 0.5)
        return bool(_arg(args, kwargs, train_pos, train_name, training_default)) and float(p) > 0

    return random


def _attention(args, kwargs) -> bool:
    return float(_arg(args, kwargs, 4, "dropout_p", 0.0)) > 0


def _rrelu(args, kwargs) -> bool:
    return bool(_arg(args, kwargs, 3, "training", False))


_OTHER: dict[Any, Callable] = {
    f: _always
    for f in (
        torch.rand,
        torch.rand_like,
        torch.randint,
        torch.randint_like,
        torch.randperm,
        torch.bernoulli,
        torch.multinomial,
        torch.poisson,
        torch.binomial,
        torch.Tensor.bernoulli,
        torch.Tensor.bernoulli_,
        torch.Tensor.multinomial,
        torch.Tensor.uniform_,
        torch.Tensor.exponential_,
        torch.Tensor.random_,
        torch.Tensor.cauchy_,
        torch.Tensor.log_normal_,
        torch.Tensor.geometric_,
        torch.nn.init.uniform_,
        torch.nn.init.trunc_normal_,
        F.gumbel_softmax,
    )
}
_OTHER.update(
    {
        F.dropout: _dropout(True),
        F.dropout1d: _dropout(True),
        F.dropout2d: _dropout(True),
        F.dropout3d: _dropout(True),
        F.alpha_dropout: _dropout(False),
        F.feature_alpha_dropout: _dropout(False),
        torch.dropout: _dropout(False, train_name="train"),
        torch.feature_dropout: _dropout(False, train_name="train"),
        torch.alpha_dropout: _dropout(False, train_name="train"),
        torch.feature_alpha_dropout: _dropout(False, train_name="train"),
        F.rrelu: _rrelu,
        F.scaled_dot_product_attention: _attention,
    }
)
for _name in ("_standard_gamma", "_sample_dirichlet", "rrelu", "rrelu_"):
    if hasattr(torch, _name):
        _OTHER[getattr(torch, _name)] = _always if _name.startswith("_") else _rrelu


def _gaussian(draw: Callable) -> Callable:
    def handler(mode, func, args, kwargs):
        return draw(mode, *args, **kwargs)

    return handler


def _undesigned(random: Callable) -> Callable:
    def handler(mode, func, args, kwargs):
        if random(args, kwargs):
            mode.other_randomness(_op_name(func))
        return func(*args, **kwargs)

    return handler


#: every operation capture acts on, Gaussian or not, in one table: the mode looks each call up once
_RANDOM: dict[Any, Callable] = {f: _undesigned(random) for f, random in _OTHER.items()}
_RANDOM.update(
    {
        torch.randn: _gaussian(_randn),
        torch.randn_like: _gaussian(_randn_like),
        torch.normal: _gaussian(_normal),
        torch.Tensor.normal_: _gaussian(_normal_),
        torch.nn.init.normal_: _gaussian(_init_normal_),
    }
)


def _op_name(func) -> str:
    name = getattr(func, "__name__", repr(func))
    owner = getattr(func, "__qualname__", "")
    if "TensorBase" in repr(func) or owner.startswith(("Tensor.", "TensorBase.")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    module = "torch" if module.startswith("torch._C") else module
    return f"{module}.{name}"


# -- torch's default generators: an unseen draw from them is caught after the call ----------------
def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"cpu": (torch.initial_seed(), torch.random.get_rng_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return states


def _check_rng_states(before: dict[str, Any], owner: Captured, mode: _CaptureMode) -> None:
    after = _rng_states()
    seed, state = before["cpu"]
    moved = []
    if not torch.equal(state, after["cpu"][1]):
        reseeded = after["cpu"][0] != seed and torch.equal(
            torch.Generator().manual_seed(after["cpu"][0]).get_state(), after["cpu"][1]
        )
        if not reseeded:
            moved.append("cpu")
    if "cuda" in before and "cuda" in after:
        if any(not torch.equal(a, b) for a, b in zip(before["cuda"], after["cuda"])):
            moved.append("cuda")
    if not moved or mode.undesigned:  # allowed operations already warned (and moved the generator)
        return
    message = (
        f"{owner.name} drew from torch's default {' and '.join(moved)} generator through an operation capture "
        "does not see (C++ code, or a torch function that draws inside): part of the result is not a function "
        "of the design's noise. Find it with torch.random.get_rng_state() before and after its steps"
    )
    if not owner.allow_other_randomness:
        raise CaptureError(message + ", or pass Captured(..., allow_other_randomness=True) to accept it")
    mode.undesigned.append("an unseen draw from torch's default generator")
    warnings.warn(message, stacklevel=3)


# -- where a draw is made ------------------------------------------------------------------------
_SKIP = (
    os.path.dirname(torch.__file__) + os.sep,
    os.path.abspath(__file__),
    os.path.join("diffusers", "utils", "torch_utils.py"),
)


def _call_site() -> str:
    """The first frame outside torch, this module and diffusers' randn_tensor: 'file:line in function'."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith(_SKIP[0]) or os.path.abspath(path) == _SKIP[1] or path.endswith(_SKIP[2])):
            return f"{_short(path)}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "<unknown>"


def _short(path: str) -> str:
    parts = path.split(os.sep)
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return os.sep.join(parts[parts.index(anchor) + 1 :])
    return os.path.relpath(path) if not path.startswith("<") and os.path.isabs(path) else path


def _default_device() -> torch.device:
    get = getattr(torch, "get_default_device", None)
    return get() if get is not None else torch.device("cpu")


def flat_noise(stream: NoiseStream, generator: Captured) -> np.ndarray:
    """Each noise's whole stream for a captured generator, flattened: (len(stream), noise_size), float64.

    For tests and diagnostics on small layouts (it holds every slot at once).
    """
    parts = []
    offset = 0
    for d in generator.layout:
        if d.kind == "sample":
            z = stream.slot(d.slot, d.shape, offset=offset, dtype=torch.float64)
            parts.append(z.reshape(len(stream), -1).numpy())
            offset += math.prod(d.shape)
    return np.concatenate(parts, axis=1)
