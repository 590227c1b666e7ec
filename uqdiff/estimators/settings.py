"""How a run executes, said once: :class:`RunSettings`.

Every public runner (``estimate``, ``compare``, ``paired_estimate``, the galleries, the solver
evaluations, ...) takes the same execution settings: batch size, device, dtype, progress bar,
checkpoint, executor and callback. Until 0.3 each runner declared, forwarded and documented
them again (11 copies, already drifting). They now live in one frozen object passed as
``run=RunSettings(...)``, the way botorch passes ``sampler=``: declared, validated and documented
here only, and forwarded as one value. What a run *estimates* (budget, design, seed,
``confidence_level``, ``interval_method``) stays a keyword of each function, scipy's style,
because it is part of the question, not of the machinery.

Why an object and not keywords: the settings never change a result (the noise of group g is a
pure function of (seed, g), so batch size, executor, checkpoint and progress leave every estimate
bit for bit the same), so they travel together from the command line through every strategy to
the engine; one object is one place to add a setting, and a script can keep one for all its runs.

The old keywords (``estimate(..., batch_size=16)``) and the old name of the first argument
(``generator=``) still work in 0.3 with a :class:`DeprecationWarning` that says the new spelling;
they go in 0.4. :func:`takes_run_settings` is that one shim.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from uqdiff.estimators.checkpoint import Checkpoint

F = TypeVar("F", bound=Callable[..., Any])
CheckpointLike = Checkpoint | str | os.PathLike


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How a run executes; none of these changes an estimate.

    Parameters
    ----------
    batch_size : int
        Noises per sampler call (halved once, with a warning, on out-of-memory). Results do not
        depend on it: noise is a pure function of (seed, group, slot, member).
    device : torch.device or str, optional
        Where the noise is made; default the sampler's device (its parameters'), else the CPU.
    dtype : torch.dtype
        Floating dtype of the noise (float32; float64 for samplers that need it).
    progress : bool
        Show a progress bar counting sampler calls, with the running estimates.
    checkpoint : Checkpoint or path, optional
        Save the run's state as it goes; ``Checkpoint(path, resume=True)`` continues one and gives
        exactly the uninterrupted result. A bare path starts a new checkpoint (refused if it exists).
        Runners of several designs or samplers keep one file each next to it.
    executor : RayExecutor, optional
        Spread groups over Ray workers; the result is the same, bit for bit.
    callback : callable, optional
        ``callback(n_noises, accumulators)`` after every batch (running traces); must not modify them.

    Examples
    --------
    >>> from uqdiff import RunSettings, estimate
    >>> from uqdiff.samplers import LinearGenerator
    >>> fast = RunSettings(batch_size=256)
    >>> r = estimate(LinearGenerator([0.5], [[0.1]]), lambda x: x[:, 0], budget=512, seed=0, run=fast)
    >>> r.budget, round(r["statistic"].estimate, 2)
    (512, 0.5)
    """

    batch_size: int = 64
    device: torch.device | str | None = None
    dtype: torch.dtype = torch.float32
    progress: bool = False
    checkpoint: CheckpointLike | None = None
    executor: Any = None
    callback: Callable[[int, Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        b = self.batch_size
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"batch_size must be a positive int, got {b!r}")
        object.__setattr__(self, "batch_size", int(b))
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be True or False, got {self.progress!r}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch dtype (the noise is Gaussian), got {self.dtype!r}")
        if self.device is not None and not isinstance(self.device, torch.device):
            try:
                object.__setattr__(self, "device", torch.device(self.device))
            except (RuntimeError, TypeError) as exc:
                raise ValueError(
                    f"device must be a torch device or its name ('cpu', 'cuda:0'), got {self.device!r}"
                ) from exc
        object.__setattr__(self, "checkpoint", Checkpoint.of(self.checkpoint))
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable(n_noises, accumulators), got {type(self.callback).__name__}")
        if self.executor is not None and not callable(getattr(self.executor, "run", None)):
            raise TypeError(
                f"executor must be a RayExecutor (an object with run(...)), got {type(self.executor).__name__}"
            )

    @classmethod
    def of(cls, run: RunSettings | None) -> RunSettings:
        """``run`` itself, the defaults for ``None``; anything else is refused with the fix."""
        if run is None:
            return cls()
        if isinstance(run, cls):
            return run
        hint = f"RunSettings(**{dict(run)!r})" if isinstance(run, Mapping) else "RunSettings(batch_size=..., ...)"
        raise TypeError(f"run must be a uqdiff.RunSettings, got {type(run).__name__}; pass run={hint}")

    def for_part(self, name: str) -> RunSettings:
        """The settings of one part of a larger run (a design, an image, a sampler): its own checkpoint file.

        ``run.ckpt`` becomes ``run.<crc32 of name>.ckpt``, so every part resumes alone.
        """
        if self.checkpoint is None:
            return self
        return self.replace(checkpoint=self.checkpoint.for_design(name))

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with some settings changed (e.g. each design's own checkpoint)."""
        return dataclasses.replace(self, **changes)


#: The keywords that moved into :class:`RunSettings` in 0.3.
MOVED = tuple(f.name for f in dataclasses.fields(RunSettings))
#: Old names of arguments renamed in 0.3 (a torch user reads ``generator`` as a ``torch.Generator``).
RENAMED = {"generator": "sampler", "cheap_generator": "cheap_sampler", "generators": "samplers"}


def takes_run_settings(func: F) -> F:
    """Accept 0.2's spellings for one release, with a DeprecationWarning naming the new one.

    ``f(..., batch_size=16, device="cuda")`` becomes ``f(..., run=RunSettings(batch_size=16,
    device="cuda"))`` and ``generator=`` becomes ``sampler=``. The wrapped function's signature (for
    help() and editors) is the new one.
    """
    parameters = inspect.signature(func).parameters

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        old = {k: kwargs.pop(k) for k in [k for k in kwargs if k in MOVED and k not in parameters]}
        renamed = [k for k in kwargs if k in RENAMED and k not in parameters and RENAMED[k] in parameters]
        for k in renamed:
            kwargs[RENAMED[k]] = kwargs.pop(k)
        if old:
            if kwargs.get("run") is not None:
                raise TypeError(
                    f"{func.__name__}() got run= and the old keywords {', '.join(old)}; put them all in run=RunSettings(...)"
                )
            kwargs["run"] = RunSettings(**old)
        if old or renamed:
            said = ", ".join(f"{k}=" for k in old)
            fix = f"run=RunSettings({', '.join(f'{k}=...' for k in old)})" if old else ""
            names = ", ".join(f"{k}= -> {RENAMED[k]}=" for k in renamed)
            warnings.warn(
                f"{func.__name__}(): "
                + "; ".join(
                    part
                    for part in (f"{said} moved into {fix}" if old else "", f"renamed {names}" if renamed else "")
                    if part
                )
                + " (since uqdiff 0.3; the old spelling goes in 0.4)",
                DeprecationWarning,
                stacklevel=2,
            )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
