"""Sobol' points in base 2 with linear matrix and nested uniform scrambling.

Points are kept as integers of ``bits`` binary digits (most significant digit
first) so scrambles are exact bit operations; they become uniforms only at the
end, as cell midpoints ``(x + 1/2) / 2**bits``, which can never be 0 or 1 and
so never map to an infinite Gaussian value.

The direction numbers are Joe and Kuo's (new-joe-kuo-6.21201), read from the
copy that SciPy installs with ``scipy.stats.qmc``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

import numpy as np
import torch

MAX_DIM = 21201
DEFAULT_BITS = 52  # a float64 holds x + 1/2 exactly for x < 2**52
SCRAMBLES = ("lms+shift", "owen")


@functools.lru_cache(maxsize=1)
def _joe_kuo() -> tuple[np.ndarray, np.ndarray]:
    path = resources.files("scipy.stats") / "_sobol_direction_numbers.npz"
    with resources.as_file(path) as p, np.load(p) as data:
        return data["poly"].astype(np.int64), data["vinit"].astype(np.int64)


@functools.lru_cache(maxsize=8)
def _m_table(m: int) -> np.ndarray:
    """Odd integers m_k (k < m) of every dimension, shape (MAX_DIM, m)."""
    poly, vinit = _joe_kuo()
    degree = np.zeros_like(poly)
    nz = poly > 1
    degree[nz] = np.floor(np.log2(poly[nz])).astype(np.int64)
    table = np.zeros((MAX_DIM, m), dtype=np.int64)
    table[0, :] = 1  # the first coordinate is the van der Corput sequence
    for k in range(m):
        init = (k < degree) & nz
        table[init, k] = vinit[init, k]
        rec = (k >= degree) & nz
        if not rec.any():
            continue
        s = degree[rec]
        rows = np.flatnonzero(rec)
        back = table[rows, k - s]
        value = back ^ (back << s)
        for ell in range(1, int(s.max())):
            use = (ell < s) & (((poly[rec] >> (s - ell)) & 1) == 1)
            value = np.where(use, value ^ (table[rows, np.maximum(k - ell, 0)] << ell), value)
        table[rows, k] = value
    return table


def generating_columns(m: int, dim: int, *, bits: int = DEFAULT_BITS) -> np.ndarray:
    """Columns v_k = m_k * 2**(bits-1-k) of the generating matrices, shape (m, dim)."""
    _check(m, dim, bits)
    table = _m_table(m)[:dim]
    shifts = np.array([bits - 1 - k for k in range(m)], dtype=np.int64)
    return (table << shifts).T.copy()


def _check(m: int, dim: int, bits: int) -> None:
    if not 0 <= m <= bits:
        raise ValueError(f"2**m points with m={m} need 0 <= m <= bits={bits}")
    _check_bits(bits)
    if not 1 <= dim <= MAX_DIM:
        raise ValueError(
            f"Sobol' points exist for 1..{MAX_DIM} dimensions (Joe-Kuo direction numbers), got {dim}; "
            "for larger noises apply RQMC to a subspace with SubspaceCoupling"
        )


def _check_bits(bits: int) -> None:
    """Digits per coordinate: at most 52, so the cell midpoint x + 1/2 is exact in float64."""
    if not 1 <= bits <= DEFAULT_BITS:
        raise ValueError(f"bits must be in 1..{DEFAULT_BITS} (a float64 must hold x + 1/2 exactly), got {bits}")


def _expand(columns: torch.Tensor) -> torch.Tensor:
    """All 2**m XOR combinations of the columns, in natural order: (..., m, d) -> (..., 2**m, d)."""
    points = torch.zeros((*columns.shape[:-2], 1, columns.shape[-1]), dtype=columns.dtype, device=columns.device)
    for k in range(columns.shape[-2]):
        points = torch.cat([points, points ^ columns[..., k : k + 1, :]], dim=-2)
    return points


def sobol_integers(m: int, dim: int, *, bits: int = DEFAULT_BITS, order: str = "natural") -> torch.Tensor:
    """Unscrambled Sobol' points as integers, shape (2**m, dim).

    ``order="natural"`` indexes point i by the binary digits of i (qmcpy's
    radical-inverse order); ``order="gray"`` follows the Gray code, as
    ``scipy.stats.qmc.Sobol`` does.
    """
    points = _expand(torch.from_numpy(generating_columns(m, dim, bits=bits)))
    if order == "gray":
        i = torch.arange(2**m)
        return points[i ^ (i >> 1)]
    if order != "natural":
        raise ValueError(f"order must be 'natural' or 'gray', got {order!r}")
    return points


def scrambled_sobol(
    m: int,
    dim: int,
    rngs: Sequence[np.random.Generator],
    *,
    scramble: str = "lms+shift",
    bits: int = DEFAULT_BITS,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One independently scrambled copy of the 2**m-point set per generator.

    Returns integers of shape (len(rngs), 2**m, dim). ``"lms+shift"`` is a
    random lower-triangular (unit diagonal) linear matrix scramble followed by
    a random digital shift; ``"owen"`` is Owen's nested uniform scramble. Both
    keep every (t, m, s)-net property of the unscrambled points and make each
    point uniform on the grid of 2**bits cells.
    """
    columns = _columns(m, dim, bits, scramble, device)
    return torch.stack([_scramble(columns, rng, scramble, bits) for rng in rngs])


def scrambled_sobol_normal(
    m: int,
    dim: int,
    rngs: Sequence[np.random.Generator],
    *,
    scramble: str = "lms+shift",
    bits: int = DEFAULT_BITS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian RQMC points: ndtri of the scrambled cell midpoints, shape (R, 2**m, dim).

    Works one replicate at a time in a float64 buffer, so memory stays at one
    replicate beyond the output and the work stays in cache-sized pieces.
    """
    columns = _columns(m, dim, bits, scramble, device)
    out = torch.empty((len(rngs), 2**m, dim), dtype=dtype, device=device)
    buf = torch.empty((2**m, dim), dtype=torch.float64, device=device)
    for r, rng in enumerate(rngs):
        buf.copy_(_scramble(columns, rng, scramble, bits))
        buf.add_(0.5).mul_(2.0**-bits)
        torch.special.ndtri(buf, out=buf)
        out[r].copy_(buf)
    return out


def extensible_sobol_normal(
    start: int,
    stop: int,
    dim: int,
    rngs: Sequence[np.random.Generator],
    *,
    bits: int = DEFAULT_BITS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian points with natural-order indices start..stop-1 of extensible LMS+shift replicates: (R, stop - start, dim).

    Unlike :func:`scrambled_sobol_normal`, whose scramble draws depend on the number of
    points, each replicate here draws its linear scramble for all ``bits`` digits and its
    digital shift once, so the first 2**m points of a replicate are the same whatever
    total is asked for: a stopping rule can double a replicate's points and keep the
    ones it already evaluated. ``start`` is 0 or a power of two and ``stop`` a power of
    two with stop > start and stop <= 2 * start when start > 0 (one doubling).
    """
    if stop < 1 or stop & (stop - 1) or (start and (start & (start - 1) or not start < stop <= 2 * start)):
        raise ValueError(f"need start 0 or a power of two and stop a power of two up to 2 * start, got {start}, {stop}")
    m = stop.bit_length() - 1
    columns = _columns(m, dim, bits, "lms+shift", device)
    out = torch.empty((len(rngs), stop - start, dim), dtype=dtype, device=device)
    for r, rng in enumerate(rngs):
        draw = torch.from_numpy(rng.integers(0, (1 << bits) - 1, size=(bits + 1, dim), dtype=np.int64, endpoint=True))
        draw = draw.to(columns.device)
        diag = torch.tensor([1 << (bits - 1 - p) for p in range(bits)], dtype=torch.int64, device=columns.device)
        lower = (draw[:bits] & (diag[:, None] - 1)) | diag[:, None]
        scrambled = torch.zeros_like(columns)
        for k in range(m):
            for p in range(k + 1):
                hit = ((columns[k] >> (bits - 1 - p)) & 1).bool()
                scrambled[k] ^= torch.where(hit, lower[p], 0)
        if start == 0:
            points = _expand(scrambled)
        else:  # indices 2**a .. 2**(a+1) - 1: column a set, every combination of the columns below it
            a = start.bit_length() - 1
            points = _expand(scrambled[:a]) ^ scrambled[a]
        points = points ^ draw[bits]
        out[r].copy_(torch.special.ndtri((points.to(torch.float64) + 0.5) * 2.0**-bits))
    return out


def _columns(m: int, dim: int, bits: int, scramble: str, device) -> torch.Tensor:
    if scramble not in SCRAMBLES:
        raise ValueError(f"scramble must be one of {SCRAMBLES}, got {scramble!r}")
    return torch.from_numpy(generating_columns(m, dim, bits=bits)).to(device)


def _scramble(columns: torch.Tensor, rng: np.random.Generator, scramble: str, bits: int) -> torch.Tensor:
    """One scrambled copy (2**m, d) of the points spanned by ``columns`` (m, d)."""
    m, dim = columns.shape
    device = columns.device
    if scramble == "lms+shift":
        draw = torch.from_numpy(rng.integers(0, (1 << bits) - 1, size=(m + 1, dim), dtype=np.int64, endpoint=True))
        draw = draw.to(device)
        diag = torch.tensor([1 << (bits - 1 - p) for p in range(m)], dtype=torch.int64, device=device)[:, None]
        lower = (draw[:m] & (diag - 1)) | diag  # column p of L: unit diagonal, random digits below it
        scrambled = torch.zeros_like(columns)
        for k in range(m):
            for p in range(k + 1):  # column k only has digits 0..k (most significant first)
                hit = ((columns[k] >> (bits - 1 - p)) & 1).bool()
                scrambled[k] ^= torch.where(hit, lower[p], 0)
        points = _expand(scrambled)
        return points.bitwise_xor_(draw[m])
    # Owen: digit b is flipped by a random bit attached to the node of its first b digits
    base = _expand(columns)
    n = 2**m
    table = torch.from_numpy(rng.integers(0, 2, size=(dim, max(n - 1, 1)), dtype=np.int64)).to(device)
    tail = rng.integers(0, (1 << (bits - m)) - 1, size=(n, dim), dtype=np.int64, endpoint=True)
    out = torch.from_numpy(tail).to(device)  # below depth m each point is alone in its cell: iid digits
    flat = table.reshape(-1)
    row = torch.arange(dim, device=device) * table.shape[1]
    for b in range(m):
        prefix = (base >> (bits - b)) if b else torch.zeros_like(base)
        out ^= flat[row + (2**b - 1) + prefix] << (bits - 1 - b)
    return out ^ base


def to_uniform(points: torch.Tensor, *, bits: int = DEFAULT_BITS) -> torch.Tensor:
    """Cell midpoints (x + 1/2) / 2**bits in float64: strictly inside (0, 1)."""
    _check_bits(bits)
    return (points.to(torch.float64) + 0.5) * (2.0**-bits)


def to_gaussian(points: torch.Tensor, *, bits: int = DEFAULT_BITS) -> torch.Tensor:
    """Coordinate-wise inverse normal CDF of the cell midpoints, float64."""
    return torch.special.ndtri(to_uniform(points, bits=bits))
