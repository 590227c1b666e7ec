"""Helpers shared across layers: array conversion, JSON-ready values, names of callables, the version.

The one private module of the package: every layer may import it, it imports no layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch


def to_numpy(values: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a float64 numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def plain(value: Any) -> Any:
    """``value`` with only JSON types: arrays become nested lists, numpy scalars Python ones.

    One rule for numbers that are not finite, everywhere: NaN becomes None (JSON null),
    +-inf the strings "inf" and "-inf", so the JSON stays standard and an infinite
    efficiency (a zero-width interval) is still told apart from a missing one.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return plain(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, torch.dtype):
        return str(value)
    return value


def callable_name(fn: Callable, *, default: str) -> str:
    """A readable name for a callable: its ``name`` attribute, else its ``__name__``, else ``default``.

    A lambda's ``__name__`` is ``<lambda>``, which would show as such in every table and
    plot, so lambdas (and objects without a name) get ``default`` instead.
    """
    name = getattr(fn, "name", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name or name.startswith("<"):
        return default
    return name


def package_version() -> str:
    """uqdiff's installed version (recorded in checkpoints and coupling files)."""
    try:
        return metadata.version("uqdiff")
    except metadata.PackageNotFoundError:
        return "unknown"


def scalar(x: Any) -> float | np.ndarray:
    """A 0-d value as a Python float, anything else unchanged (results hold floats for scalar statistics)."""
    return float(x) if np.ndim(x) == 0 else x
