"""Diagnostics for antithetic sampling (paper 001, section 3.1).

* :func:`pair_correlation` -- per-pair Pearson correlation of two image batches.
* :func:`pn_rr_correlations` -- standard and centralized correlations of
  PN pairs (G(z), G(-z)) versus RR pairs (two independent images).
* :func:`affine_antisymmetry_score` -- how affine-antisymmetric a scalar
  function f is on [-1, 1] (1 = f(x) + f(-x) constant, 0 = f symmetric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.integrate import simpson

from .base import ArrayLike

__all__ = [
    "MeanSD",
    "PairCorrelations",
    "pair_correlation",
    "pn_rr_correlations",
    "affine_antisymmetry_score",
]


def _to_numpy(x: ArrayLike, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    return np.asarray(x, dtype=np.float64)


def pair_correlation(a: ArrayLike, b: ArrayLike, *, centralize: ArrayLike | None = None) -> np.ndarray:
    """Pearson correlation between flattened ``a[i]`` and ``b[i]`` for each i.

    ``a`` and ``b`` are batches (B, ...) of the same shape.  If ``centralize``
    (an image mu_c of shape a.shape[1:]) is given, ``a[i] - mu_c`` is
    correlated with ``b[i] - mu_c``.  Returns float64 numpy of shape (B,); a
    pair where either side has zero variance gives NaN.

    >>> import numpy as np
    >>> a = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])
    >>> pair_correlation(a, -a)
    array([-1., -1.])
    """
    x = _to_numpy(a, "a")
    y = _to_numpy(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    if x.ndim < 2:
        raise ValueError(f"a and b must be batches of shape (B, ...), got shape {x.shape}")
    if centralize is not None:
        mu = _to_numpy(centralize, "centralize")
        if mu.shape != x.shape[1:]:
            raise ValueError(f"centralize must have the image shape {x.shape[1:]}, got {mu.shape}")
        x = x - mu
        y = y - mu
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", x, y)
    den = np.sqrt(np.einsum("ij,ij->i", x, x) * np.einsum("ij,ij->i", y, y))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


class MeanSD(NamedTuple):
    """Mean and sample standard deviation (ddof=1); prints like ``-0.76 (0.13)``."""

    mean: float
    sd: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} ({self.sd:.2f})"


def _mean_sd(v: np.ndarray) -> MeanSD:
    mean = float(np.mean(v)) if v.size else float("nan")
    sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return MeanSD(mean, sd)


@dataclass(frozen=True, eq=False)
class PairCorrelations:
    """Per-pair correlations of PN pairs and RR pairs, standard and centralized."""

    pn_standard: np.ndarray
    rr_standard: np.ndarray
    pn_centralized: np.ndarray
    rr_centralized: np.ndarray

    def summary(self) -> dict[str, MeanSD]:
        """Mean and SD (ddof=1) of each field; ``str()`` of a value gives ``-0.76 (0.13)``.

        NaN pairs propagate into the mean (they are not dropped).
        """
        return {
            "pn_standard": _mean_sd(self.pn_standard),
            "rr_standard": _mean_sd(self.rr_standard),
            "pn_centralized": _mean_sd(self.pn_centralized),
            "rr_centralized": _mean_sd(self.rr_centralized),
        }

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.summary().items())


def pn_rr_correlations(pos: ArrayLike, neg: ArrayLike, rand1: ArrayLike, rand2: ArrayLike) -> PairCorrelations:
    """Standard and centralized correlations of PN pairs vs RR pairs (paper 001, sec. 3.1).

    ``pos[i] = G(z_i)`` and ``neg[i] = G(-z_i)`` form the K PN pairs;
    ``rand1[i]`` and ``rand2[i]`` (independent noises) form the RR pairs.
    Standard: :func:`pair_correlation` directly.  Centralized: subtract
    mu_c = (sum_i x_i1 + x_i2) / 2K, the mean over all 2K images of that
    scheme, computed separately for PN and for RR, before correlating.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(1, 8, 8))
    >>> z = rng.normal(size=(50, 8, 8))
    >>> res = pn_rr_correlations(base + z, base - z, base + z, base + rng.normal(size=(50, 8, 8)))
    >>> print(res.summary()["pn_centralized"].mean < -0.9, res.summary()["rr_standard"].mean > 0.3)
    True True
    """
    p, n = _to_numpy(pos, "pos"), _to_numpy(neg, "neg")
    r1, r2 = _to_numpy(rand1, "rand1"), _to_numpy(rand2, "rand2")
    if p.shape != n.shape:
        raise ValueError(f"pos and neg must have the same shape, got {p.shape} and {n.shape}")
    if r1.shape != r2.shape:
        raise ValueError(f"rand1 and rand2 must have the same shape, got {r1.shape} and {r2.shape}")
    if p.ndim < 2 or p.shape[0] == 0 or r1.ndim < 2 or r1.shape[0] == 0:
        raise ValueError(
            f"pos/neg and rand1/rand2 must be non-empty batches (K, ...), got shapes {p.shape} and {r1.shape}"
        )
    mu_pn = (p.sum(axis=0) + n.sum(axis=0)) / (2 * p.shape[0])
    mu_rr = (r1.sum(axis=0) + r2.sum(axis=0)) / (2 * r1.shape[0])
    return PairCorrelations(
        pn_standard=pair_correlation(p, n),
        rr_standard=pair_correlation(r1, r2),
        pn_centralized=pair_correlation(p, n, centralize=mu_pn),
        rr_centralized=pair_correlation(r1, r2, centralize=mu_rr),
    )


def affine_antisymmetry_score(f: Callable[[np.ndarray], np.ndarray], *, n: int = 2001) -> float:
    """Affine-antisymmetry score AS(f) on [-1, 1].

    AS(f) = 1 - int (0.5 f(-x) + 0.5 f(x) - fbar)^2 dx / int (f(x) - fbar)^2 dx,
    with fbar = int f dx / 2, all integrals over [-1, 1].  AS = 1 when
    f(x) + f(-x) is constant (e.g. 3x + 2, sin x + 1), AS = 0 when f is
    symmetric (e.g. x^2).  The integrals use composite Simpson's rule on an
    exactly symmetric uniform grid of ``n`` points (odd, >= 3); f is called
    once on that grid and must be vectorized.  A constant f raises ValueError.

    >>> import numpy as np
    >>> print(round(affine_antisymmetry_score(lambda x: 3 * x + 2), 6))
    1.0
    >>> print(round(affine_antisymmetry_score(np.square), 6))
    0.0
    >>> print(round(affine_antisymmetry_score(np.exp), 4))  # in between
    0.9407
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3 or n % 2 == 0:
        raise ValueError(f"n must be an odd integer >= 3, got {n!r}")
    x = np.linspace(-1.0, 1.0, int(n))
    x = 0.5 * (x - x[::-1])  # exactly antisymmetric grid: x[::-1] == -x
    fx = np.asarray(f(x), dtype=np.float64)
    if fx.shape == ():
        fx = np.full_like(x, fx)
    if fx.shape != x.shape:
        raise ValueError(f"f must be vectorized: f(x) for x of shape {x.shape} returned shape {fx.shape}")
    if not np.all(np.isfinite(fx)):
        raise ValueError("f returned non-finite values on [-1, 1]")
    if np.ptp(fx) == 0:
        raise ValueError("score undefined for a constant function")
    fbar = simpson(fx, x=x) / 2.0
    sym = 0.5 * (fx + fx[::-1])
    num = simpson((sym - fbar) ** 2, x=x)
    den = simpson((fx - fbar) ** 2, x=x)
    if not den > 0:
        raise ValueError("score undefined for a constant function")
    return float(1.0 - num / den)
