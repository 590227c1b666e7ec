"""The CPU kernels of :mod:`uqdiff.designs.streams`: Philox4x32-10 words and the ziggurat, compiled by numba.

Imported on the first CPU draw, not with the package (numba takes a few tenths of a second to
import, and compiled kernels are cached under ``__pycache__``). The algorithm is the one the
streams docstring defines and :func:`uqdiff.designs.streams._normals_torch` runs in torch
operations; tests/test_streams.py checks the two agree. All words are held in uint64 so no
32 x 32-bit product overflows and numba never promotes a mixed-sign expression to float.

Each row first fills a word buffer in a branch-free loop over Philox blocks (LLVM vectorizes it),
then turns words into normals: one table look-up, a compare and a product per element, the
rare rejected element going to the scalar fallback.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from uqdiff.designs.streams import (
    FALLBACK_BIT,
    FALLBACK_TRIES,
    LAYERS,
    MAGNITUDE_BITS,
    MASK32,
    PHILOX_M,
    PHILOX_W,
    ROUNDS,
)

_MASK = np.uint64(MASK32)
_M0, _M1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
_W0, _W1 = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1])
_S32 = np.uint64(32)
_LAYER_MASK = np.uint64(LAYERS - 1)
_SHIFT = np.uint64(32 - MAGNITUDE_BITS)
_SIGN = np.uint64(7)
_BYTE = np.uint64(255)
_ONE = np.uint64(1)
_BIT = np.uint64(FALLBACK_BIT)
_TRIES = np.uint64(FALLBACK_TRIES)


@numba.njit(inline="always")
def _philox(c0, c1, c2, c3, k0, k1):
    for _ in range(ROUNDS):
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@numba.njit(inline="always")
def _candidate(w, scale):
    """Layer, signed value and magnitude of a word: bits 0-6 the layer, bit 7 the sign, bits 8-31 the magnitude."""
    layer = w & _LAYER_MASK
    magnitude = w >> _SHIFT
    x = (np.float64(magnitude) + 0.5) * scale[layer]
    if (w >> _SIGN) & _ONE:
        x = -x
    return layer, x, np.int64(magnitude)


@numba.njit
def _fallback(w, e, k0, k1, slot, member, group, r, scale, limit, height, rise):
    for attempt in range(FALLBACK_TRIES):
        b0, b1, b2, _ = _philox(_BIT | (np.uint64(e) * _TRIES + np.uint64(attempt)), slot, member, group, k0, k1)
        layer, x, _ = _candidate(w, scale)
        u1 = (np.float64(b1) + 0.5) * 2.0**-32
        if layer == 0:
            tx = -math.log(u1) / r
            u2 = (np.float64(b2) + 0.5) * 2.0**-32
            if 2.0 * -math.log(u2) > tx * tx:
                return -(r + tx) if x < 0 else r + tx
            continue  # the tail is sampled until it accepts: landing there fixed its mass
        elif height[layer] + u1 * rise[layer] < math.exp(-0.5 * x * x):
            return x
        layer, x, magnitude = _candidate(b0, scale)
        if magnitude < limit[layer]:
            return x
        w = b0
    raise RuntimeError("the ziggurat rejected 16 candidates in a row for one coordinate: the tables are broken")


@numba.njit
def _row(k0, k1, slot, member, group, words, out, r, scale, limit, height, rise, signed_scale):
    """One row of normals into ``out`` (any float array; float64 values rounded once on store)."""
    size = out.shape[0]
    for j in range((size + 3) // 4):
        c0, c1, c2, c3 = _philox(np.uint64(j), slot, member, group, k0, k1)
        words[4 * j] = c0
        words[4 * j + 1] = c1
        words[4 * j + 2] = c2
        words[4 * j + 3] = c3
    for e in range(size):  # branch-free (signed scale per low byte): LLVM vectorizes it
        w = words[e]
        out[e] = (np.float64(np.int64(w >> _SHIFT)) + 0.5) * signed_scale[w & _BYTE]
    for e in range(size):
        w = words[e]
        if np.int64(w >> _SHIFT) >= limit[w & _LAYER_MASK]:
            out[e] = _fallback(w, e, k0, k1, slot, member, group, r, scale, limit, height, rise)


@numba.njit(cache=True)
def normals_into(k0, k1, slot, r, scale, limit, height, rise, signed_scale, groups, members, out):
    """Row i of ``out`` (n, size) is slot ``slot`` of basis noise (groups[i], members[i])."""
    words = np.empty(4 * ((out.shape[1] + 3) // 4), dtype=np.uint64)
    for i in range(out.shape[0]):
        _row(k0, k1, slot, members[i], groups[i], words, out[i], r, scale, limit, height, rise, signed_scale)


@numba.njit(cache=True)
def coupled_into(
    k0, k1, slot, r, scale, limit, height, rise, signed_scale, unique, order, starts, members, matrix, equi, a, b, out
):
    """Coupled noises into ``out``: per distinct group, its basis rows once in a (r, size) scratch, then each noise.

    Noises ``order[starts[g]:starts[g + 1]]`` belong to group ``unique[g]``; ``equi`` takes
    z_m = a u_m + b sum_l u_l, else z_m = sum_l matrix[m, l] u_l, both summed over l in order.
    """
    basis = matrix.shape[1]
    size = out.shape[1]
    words = np.empty(4 * ((size + 3) // 4), dtype=np.uint64)
    u = np.empty((basis, size), dtype=np.float64)
    total = np.empty(size, dtype=np.float64)
    for g in range(len(unique)):
        for ell in range(basis):
            _row(k0, k1, slot, np.uint64(ell), unique[g], words, u[ell], r, scale, limit, height, rise, signed_scale)
        if equi:
            total[:] = u[0]
            for ell in range(1, basis):
                for e in range(size):
                    total[e] = total[e] + u[ell, e]
        for at in range(starts[g], starts[g + 1]):
            i = order[at]
            m = members[i]
            if equi:
                for e in range(size):
                    out[i, e] = a * u[m, e] + b * total[e]
            else:
                for e in range(size):
                    z = matrix[m, 0] * u[0, e]
                    for ell in range(1, basis):
                        z = z + matrix[m, ell] * u[ell, e]
                    out[i, e] = z
