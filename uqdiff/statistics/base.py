"""Base class for image statistics.

A *statistic* maps a batch of images to one number per image (or to one map
per image).  The uncertainty-quantification estimators only ever see those
numbers, so all conversion and validation of the images lives here, once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
_T = TypeVar("_T", torch.Tensor, np.ndarray)

__all__ = ["ArrayLike", "Statistic", "as_tensor"]


def as_tensor(images: ArrayLike) -> torch.Tensor:
    """Convert a torch tensor or numpy array to a floating torch tensor.

    numpy inputs become float64; floating torch tensors keep their dtype;
    integer/bool torch tensors become float32.  Complex inputs are rejected.
    """
    if isinstance(images, torch.Tensor):
        if images.is_complex():
            raise ValueError(f"complex images are not supported (dtype {images.dtype})")
        return images if images.is_floating_point() else images.to(torch.float32)
    if isinstance(images, np.ndarray):
        if np.iscomplexobj(images):
            raise ValueError(f"complex images are not supported (dtype {images.dtype})")
        return torch.from_numpy(np.asarray(images, dtype=np.float64))
    raise TypeError(f"images must be a torch.Tensor or numpy.ndarray, got {type(images).__name__}")


class Statistic(ABC):
    """Abstract image statistic: a batch of images -> one value (or map) per image.

    Subclasses set ``name`` and implement ``_compute(x)`` for ``x`` of shape
    (B, C, H, W), returning shape (B,) for scalar statistics or (B, *shape)
    for maps.  ``__call__`` accepts torch or numpy input of shape (B, C, H, W)
    or (B, H, W) (single channel) and returns the same array type it got
    (numpy in -> numpy out, float64; torch in -> torch out on the same device).

    ``value_range`` is the declared range of the pixel values (e.g. (-1, 1)
    for diffusion outputs, (0, 1), or (0, 255)).  Statistics are computed on
    the image mapped to [0, 1] by :meth:`to_unit`; values outside the declared
    range are not clipped.

    >>> import numpy as np
    >>> from uqdiff.statistics import PixelMean
    >>> stat = PixelMean(value_range=(0.0, 255.0))
    >>> stat
    PixelMean(name='mean', value_range=(0.0, 255.0), scale=1.0)
    >>> stat(np.full((2, 3, 4, 4), 51.0))
    array([0.2, 0.2])
    """

    name: ClassVar[str]

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The range the statistic's values lie in when the images respect ``value_range``; None if unbounded.

        Bounded statistics get an interval valid at every sample size
        (:func:`uqdiff.estimators.betting.betting_interval`), which needs these bounds.
        """
        return None

    def __init__(self, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError) as err:
            raise ValueError(f"value_range must be a pair of numbers (lo, hi), got {value_range!r}") from err
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise ValueError(f"value_range must be finite with lo < hi, got ({lo}, {hi})")
        self.value_range: tuple[float, float] = (lo, hi)

    # ------------------------------------------------------------------ helpers
    def to_unit(self, x: _T) -> _T:
        """Map values from the declared ``value_range`` to [0, 1]: (x - lo) / (hi - lo)."""
        lo, hi = self.value_range
        return (x - lo) / (hi - lo)

    @staticmethod
    def _as_bchw(images: ArrayLike) -> torch.Tensor:
        x = as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W) or (B, H, W), got shape {tuple(x.shape)}")
        return x

    # -------------------------------------------------------------------- API
    def __call__(self, images: ArrayLike) -> ArrayLike:
        """Evaluate the statistic on a batch; numpy in -> numpy out, torch in -> torch out."""
        x = self._as_bchw(images)
        out = self._compute(x)
        if isinstance(images, np.ndarray):
            return out.detach().cpu().numpy()
        return out

    @abstractmethod
    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the statistic for ``x`` of shape (B, C, H, W) (floating)."""

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._extra_repr()
        extra = f", {extra}" if extra else ""
        return f"{type(self).__name__}(name={self.name!r}, value_range={self.value_range}{extra})"
