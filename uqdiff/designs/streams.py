"""Counter-based noise streams: every slot of every noise made on demand from (seed, group, slot, member).

A captured sampler (:class:`uqdiff.samplers.Captured`) asks for its Gaussian draws one at a time,
in the order its own code makes them: slot 0 (usually x_T), slot 1 (the first step's noise), ...
A :class:`NoiseStream` answers each request for the noises of a batch, on the device and in the
dtype the draw asked for, without ever holding the whole stream: memory does not grow with the
number of steps.

The randomness is Philox4x32-10 (Salmon et al., 2011), a counter-based generator: block ``j`` of
slot ``s`` of basis noise ``l`` of group ``g`` is ``philox(counter=(j, s, l, g), key=seed key)``,
a pure function of those numbers; :func:`philox4x32` matches the published Random123
known-answer vectors.

Normals come from a 128-layer ziggurat (Marsaglia & Tsang, 2000; tables from :func:`ziggurat`),
one 32-bit word per normal on the fast path: coordinate ``e`` takes word ``e % 4`` of block
``e // 4``; its low 7 bits pick the layer ``i``, bit 7 the sign and the top 24 bits the magnitude
``m`` (disjoint bits, so the layer and the value are independent: Doornik's (2005) flaw of
reusing the layer bits in the uniform does not arise). If ``m < limit[i]`` the normal is
``+-(m + 1/2) scale[i]`` (about 97% of words). Otherwise the coordinate runs the fallback, at
most ``FALLBACK_TRIES`` tries, try ``t`` reading the one Philox block with counter
``(2**31 | (e * FALLBACK_TRIES + t), s, l, g)`` (top bit set: never a fast-path block),
words (b0, b1, b2, b3):

1. the current candidate (at first the rejected word) in the base layer (i = 0) takes Marsaglia's
   tail: x = -log(u(b1)) / r, accepted if -2 log(u(b2)) > x**2, giving +-(r + x); a rejected tail
   point tries the tail again on the next try (landing in the tail strip fixed its mass: starting
   over would thin the tail by the tail method's rejection rate, about 7 %);
   in a layer i > 0 it takes the wedge: accepted if height[i] + u(b1) rise[i] < exp(-x**2 / 2);
2. else (a rejected wedge point) b0 is the next candidate, accepted if it passes the fast test;
   else the next try.

Here u(w) = (w + 1/2) / 2**32. Each try reads a fixed block (b3 unused), so the torch version
(all rejected coordinates of a batch at once, for CUDA) and the numba CPU kernel
(:mod:`uqdiff.designs.normals`, one coordinate at a time) make the same words and, on the fast
path, the same float64 bits; on the fallback they agree to the rounding of ``log`` and ``exp``.
Values are computed in float64 and rounded once to the dtype asked for.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from uqdiff.designs.seeds import SeedLike, entropy

MASK32 = 0xFFFFFFFF
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10
#: Largest group, slot, member or block index a counter word holds; 2**32 - 1 is kept for draws
#: shared by all samples.
MAX_INDEX = MASK32 - 1
SHARED = MASK32
#: The ziggurat: 128 layers, the low 7 bits of a word pick the layer, bit 7 the sign, the top 24 bits the magnitude.
LAYERS = 128
MAGNITUDE_BITS = 24
#: Fallback blocks set the top bit of counter word 0 and number (coordinate, try) pairs below it.
FALLBACK_BIT = 1 << 31
FALLBACK_TRIES = 16
#: Most coordinates in one slot of one noise: FALLBACK_TRIES * MAX_SIZE fallback counters fit in 31 bits.
MAX_SIZE = FALLBACK_BIT // FALLBACK_TRIES
TABLES = ("scale", "limit", "height", "rise")


class Ziggurat(NamedTuple):
    """The layer tables: the base layer's right end ``r``; per layer i, the magnitude step ``scale[i]``
    (width / 2**24), the fast-path bound ``limit[i]`` on the 24-bit magnitude, the density
    ``height[i]`` at its right edge and ``rise[i]`` to its left edge; ``signed_scale[b]`` is the
    step of the word's low byte b (layer and sign), for the CPU kernel's branch-free fast path."""

    r: float
    scale: np.ndarray
    limit: np.ndarray
    height: np.ndarray
    rise: np.ndarray
    signed_scale: np.ndarray


def stream_key(seed: SeedLike) -> tuple[int, int]:
    """The 64-bit Philox key of a seed, as two 32-bit words (from numpy's SeedSequence of the seed).

    >>> stream_key(0) == stream_key([0]), stream_key(0) != stream_key(1)
    (True, True)
    """
    state = np.random.SeedSequence(entropy(seed)).generate_state(2, dtype=np.uint32)
    return int(state[0]), int(state[1])


def philox4x32(counter: torch.Tensor, key: tuple[int, int], rounds: int = ROUNDS) -> torch.Tensor:
    """Philox4x32 of counters (4, ...) (int64 holding uint32 words) under ``key``: (4, ...) words.

    >>> words = philox4x32(torch.zeros(4, 1, dtype=torch.int64), (0, 0))
    >>> [f"{int(w):08x}" for w in words[:, 0]]   # Random123's first known-answer vector
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    if counter.dtype != torch.int64 or counter.shape[0] != 4:
        raise ValueError(
            f"counter must be an int64 tensor of shape (4, ...), got {counter.dtype} {tuple(counter.shape)}"
        )
    shape = (2,) + (1,) * (counter.ndim - 1)
    m_lo = torch.tensor([m & 0xFFFF for m in PHILOX_M], dtype=torch.int64, device=counter.device).reshape(shape)
    m_hi = torch.tensor([m >> 16 for m in PHILOX_M], dtype=torch.int64, device=counter.device).reshape(shape)
    c0, c1, c2, c3 = counter.unbind(0)
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        a = torch.stack([c0, c2])
        p_lo, p_hi = a * m_lo, a * m_hi  # each below 2**48: no int64 overflow
        low = p_lo + ((p_hi & 0xFFFF) << 16)
        lo = low & MASK32
        hi = (low >> 32) + (p_hi >> 16)
        c0, c1, c2, c3 = hi[1] ^ c1 ^ k0, lo[1], hi[0] ^ c3 ^ k1, lo[0]
    return torch.stack([c0, c1, c2, c3])


@functools.cache
def ziggurat() -> Ziggurat:
    """The 128-layer ziggurat of the standard normal density (Marsaglia & Tsang, 2000), built here.

    Layers of equal area ``v`` cover f(x) = exp(-x**2 / 2): edges x_1 = r > x_2 > ... > x_127 > x_128 = 0
    with x_{i+1} = sqrt(-2 log(v / x_i + f(x_i))), and a base layer 0 of width v / f(r) (the part
    below f(r) plus the tail beyond r). ``r`` is found by bisection so that the top layer's area
    closes the recursion; it matches the paper's r = 3.442619855899 and v = 9.91256303526217e-3.

    >>> z = ziggurat()
    >>> round(z.r, 9), int((z.limit > 0).sum()), len(z.scale)
    (3.442619856, 127, 128)
    """
    f = lambda x: math.exp(-0.5 * x * x)

    def edges(r: float) -> tuple[float, list[float] | None]:
        v = r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
        x = [v / f(r), r]
        for i in range(1, LAYERS - 1):
            arg = v / x[i] + f(x[i])
            if arg >= 1.0:  # the layers reach the mode before the last one: r is too small
                return v, None
            x.append(math.sqrt(-2.0 * math.log(arg)))
        return v, x

    lo, hi = 3.0, 4.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        v, x = edges(mid)
        if x is None or v / x[-1] + f(x[-1]) > 1.0:
            lo = mid
        else:
            hi = mid
    _, x = edges(hi)
    edge = np.array([*x, 0.0])
    scale = edge[:LAYERS] * 2.0**-MAGNITUDE_BITS
    limit = np.zeros(LAYERS, dtype=np.int64)
    for i in range(LAYERS):  # magnitudes m < limit[i] give (m + 1/2) * scale[i] < edge[i + 1]: the fast path
        m = max(int(edge[i + 1] / scale[i]) - 1, 0)
        while (m + 0.5) * scale[i] < edge[i + 1]:
            m += 1
        limit[i] = m
    height = np.exp(-0.5 * edge * edge)
    return Ziggurat(
        r=float(hi),
        scale=scale,
        limit=limit,
        height=height[:LAYERS],
        rise=np.diff(height),
        signed_scale=np.concatenate([scale, -scale]),
    )


def normals(
    key: tuple[int, int],
    slot: int,
    rows: Sequence[tuple[int, int]] | np.ndarray,
    size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Standard normals (len(rows), size): row i is slot ``slot`` of basis noise ``rows[i] = (group, l)``.

    Element e of a row is the ziggurat of word e % 4 of Philox block (e // 4, slot, l, group), with
    the fallback blocks of the module docstring, so a row's values never depend on the other rows,
    the batch, the dtype (computed in float64, rounded once) or the device (bit for bit on the fast
    path). CPU rows come from a compiled numba kernel, other devices from torch operations.

    >>> a = normals(stream_key(0), 3, [(5, 0), (6, 0)], 5)
    >>> b = normals(stream_key(0), 3, [(6, 0)], 3, dtype=torch.float32)
    >>> bool((a[1, :3].float() == b[0]).all()), tuple(a.shape)
    (True, (2, 5))
    """
    rows = _check_rows(rows, slot, size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cpu":
        return _normals_torch(key, slot, rows, int(size), device).to(dtype)
    from uqdiff.designs import normals as kernels

    out = _cpu_out((len(rows), int(size)), dtype)
    kernels.normals_into(*_kernel_args(key, slot), rows[:, 0].astype(np.uint64), rows[:, 1].astype(np.uint64), out)
    return torch.from_numpy(out).to(dtype)


def shared_normals(key: tuple[int, int], slot: int, size: int, *, device=None) -> torch.Tensor:
    """Normals (size,) common to every sample (group and member words 2**32 - 1): a fixed draw."""
    return normals(key, slot, [(SHARED, SHARED)], size, device=device)[0]


def coupled_normals(
    key: tuple[int, int],
    slot: int,
    groups: np.ndarray,
    members: np.ndarray,
    matrix: np.ndarray,
    size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Coupled noises (len(groups), size): z_i = sum_l matrix[members[i], l] u_(groups[i], l), slot ``slot``.

    The basis rows u of each distinct group are made once per call (an antithetic pair costs one
    row of normals), and z is accumulated in float64 in a fixed order (l = 0, 1, ...), so a
    noise's bits never depend on which other noises share the batch. An equicorrelated matrix
    a I + b 11^T (:class:`~uqdiff.designs.Equicorrelated`, :class:`~uqdiff.designs.KAntithetic`)
    takes z_m = a u_m + b (u_0 + ... + u_{k-1}): two products per element instead of k.

    >>> m = np.array([[1.0], [-1.0]])
    >>> z = coupled_normals(stream_key(0), 0, np.array([4, 4]), np.array([0, 1]), m, 3, dtype=torch.float64)
    >>> bool((z[0] == -z[1]).all()), bool((z[0] == normals(stream_key(0), 0, [(4, 0)], 3)[0]).all())
    (True, True)
    """
    groups = np.asarray(groups, dtype=np.int64).reshape(-1)
    members = np.asarray(members, dtype=np.int64).reshape(-1)
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if groups.shape != members.shape:
        raise ValueError("groups and members must have one entry per noise")
    if members.size and (members.min() < 0 or members.max() >= matrix.shape[0]):
        raise ValueError(f"members must index the {matrix.shape[0]} rows of the coupling matrix")
    _check_rows(np.stack([groups, np.zeros_like(groups)], axis=1), slot, size)
    _check_rows([(0, matrix.shape[1] - 1)], slot, size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if matrix.shape == (1, 1) and matrix[0, 0] == 1.0:  # plain MC: each noise is its basis row, no scratch
        return normals(key, slot, np.stack([groups, members], axis=1), size, device=device, dtype=dtype)
    equi = _equicorrelated(matrix)
    if device.type != "cpu":
        return _coupled_torch(key, slot, groups, members, matrix, equi, int(size), device).to(dtype)
    from uqdiff.designs import normals as kernels

    unique, where = np.unique(groups, return_inverse=True)
    order = np.argsort(where, kind="stable")  # the noises of each distinct group, contiguous
    starts = np.searchsorted(where[order], np.arange(len(unique) + 1))
    out = _cpu_out((len(groups), int(size)), dtype)
    a, b = equi if equi is not None else (0.0, 0.0)
    kernels.coupled_into(
        *_kernel_args(key, slot), unique.astype(np.uint64), order, starts, members, matrix, equi is not None, a, b, out
    )
    return torch.from_numpy(out).to(dtype)


def _check_rows(rows, slot: int, size: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    _check_index("slot", slot)
    for what, col in (("group", 0), ("member", 1)):
        if rows.size and (rows[:, col].min() < 0 or rows[:, col].max() > MASK32):
            raise ValueError(f"{what} indices must be in 0..{MASK32}, got {rows[:, col].min()}..{rows[:, col].max()}")
    if not 0 <= int(size) <= MAX_SIZE:
        raise ValueError(
            f"a slot holds at most {MAX_SIZE} (2**27) coordinates per noise (the ziggurat's fallback counters "
            f"number (coordinate, try) pairs in 31 bits), got {size}; draw a larger noise over several slots"
        )
    return rows


def _equicorrelated(matrix: np.ndarray) -> tuple[float, float] | None:
    """(a, b) when ``matrix`` is exactly a I + b 11^T (k >= 2), else None."""
    k = matrix.shape[0]
    if k < 2 or matrix.shape != (k, k):
        return None
    diag, off = matrix[0, 0], matrix[0, 1]
    if not ((np.diag(matrix) == diag).all() and (matrix[~np.eye(k, dtype=bool)] == off).all()):
        return None
    return float(diag - off), float(off)


def _cpu_out(shape: tuple[int, int], dtype: torch.dtype) -> np.ndarray:
    """The kernel's output: the requested dtype where numpy has it (one rounding), else float64."""
    return np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64)


def _kernel_args(key: tuple[int, int], slot: int) -> tuple:
    z = ziggurat()
    words = [np.uint64(int(w) & MASK32) for w in (key[0], key[1], slot)]
    return (*words, z.r, z.scale, z.limit, z.height, z.rise, z.signed_scale)


def _normals_torch(key, slot: int, rows: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """:func:`normals` in torch operations (float64), for devices other than the CPU; the numba kernel's twin."""
    n = len(rows)
    if not n or not size:
        return torch.empty((n, size), dtype=torch.float64, device=device)
    z = ziggurat()
    table = {name: torch.from_numpy(getattr(z, name)).to(device) for name in TABLES}
    r = torch.from_numpy(rows).to(device)
    blocks = (size + 3) // 4
    counter = torch.stack(
        [
            torch.arange(blocks, dtype=torch.int64, device=device).expand(n, blocks),
            torch.full((n, blocks), int(slot), dtype=torch.int64, device=device),
            r[:, 1:2].expand(n, blocks),
            r[:, 0:1].expand(n, blocks),
        ]
    )
    words = philox4x32(counter, key).permute(1, 2, 0).reshape(n, 4 * blocks)[:, :size]
    value, fast = _layer_value(words, table)
    row, element = (~fast).nonzero(as_tuple=True)
    if len(row):
        value[row, element] = _fallback_torch(key, slot, words[row, element], element, r[row], table, z.r)
    return value


def _layer_value(words: torch.Tensor, table: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The ziggurat candidate of each word (signed, float64) and whether it lies inside its layer's rectangle."""
    layer = words & (LAYERS - 1)
    magnitude = words >> (32 - MAGNITUDE_BITS)
    x = (magnitude.to(torch.float64) + 0.5) * table["scale"][layer]
    x = torch.where(((words >> 7) & 1).bool(), -x, x)
    return x, magnitude < table["limit"][layer]


def _fallback_torch(key, slot, words, element, rows, table, r: float) -> torch.Tensor:
    """The fallback loop of the module docstring on the rejected elements, all at once per try."""
    value = torch.empty(len(words), dtype=torch.float64, device=words.device)
    pending = torch.arange(len(words), device=words.device)
    for attempt in range(FALLBACK_TRIES):
        w, e, rw = words[pending], element[pending], rows[pending]
        counter = torch.stack(
            [FALLBACK_BIT | (e * FALLBACK_TRIES + attempt), torch.full_like(e, int(slot)), rw[:, 1], rw[:, 0]]
        )
        block = philox4x32(counter, key)
        layer = w & (LAYERS - 1)
        x, _ = _layer_value(w, table)
        u1 = (block[1].to(torch.float64) + 0.5) * 2.0**-32
        u2 = (block[2].to(torch.float64) + 0.5) * 2.0**-32
        tail = layer == 0
        tx = -torch.log(u1) / r
        ok_tail = 2.0 * -torch.log(u2) > tx * tx
        y = table["height"][layer] + u1 * table["rise"][layer]
        ok_wedge = y < torch.exp(-0.5 * x * x)
        tail_x = torch.where(x < 0, -(r + tx), r + tx)
        accepted = torch.where(tail, ok_tail, ok_wedge)
        fresh, fresh_ok = _layer_value(block[0], table)
        fresh_ok = fresh_ok & ~tail  # a tail point is redrawn in the tail until it is accepted
        done = accepted | fresh_ok
        value[pending[done]] = torch.where(accepted, torch.where(tail, tail_x, x), fresh)[done]
        keep = ~done & ~tail  # a rejected wedge point starts over from the next word; a tail point stays
        words[pending[keep]] = block[0][keep]
        pending = pending[~done]
        if not len(pending):
            return value
    raise RuntimeError(
        f"the ziggurat rejected {FALLBACK_TRIES} candidates in a row for one coordinate (probability below "
        "1e-30): the generator or its tables are broken"
    )


def _coupled_torch(key, slot, groups, members, matrix, equi, size: int, device: torch.device) -> torch.Tensor:
    """:func:`coupled_normals` in torch operations, for devices other than the CPU; the numba kernel's twin."""
    k, r = matrix.shape
    unique, where = np.unique(groups, return_inverse=True)
    rows = np.stack([np.repeat(unique, r), np.tile(np.arange(r), len(unique))], axis=1)
    u = _normals_torch(key, slot, rows, size, device).reshape(len(unique), r, size)
    at = torch.from_numpy(where.reshape(-1)).to(device)
    m = torch.from_numpy(members).to(device)
    if equi is not None:
        total = u[:, 0]
        for ell in range(1, r):
            total = total + u[:, ell]
        return equi[0] * u[at, m] + equi[1] * total[at]
    a = torch.from_numpy(matrix).to(device)[m]
    z = a[:, 0, None] * u[at, 0]
    for ell in range(1, r):
        z = z + a[:, ell, None] * u[at, ell]
    return z


@functools.cache
def _takes_dtype(design_type: type) -> bool:
    """Whether a design class's ``_stream_slot`` takes ``dtype`` (designs gain the keyword one by one)."""
    return "dtype" in inspect.signature(design_type._stream_slot).parameters


def _check_index(what: str, value: int) -> None:
    if not 0 <= int(value) <= MAX_INDEX:
        raise ValueError(f"{what} index must be in 0..{MAX_INDEX} (one 32-bit counter word), got {value}")


class NoiseStream:
    """The noises of a batch of group members, produced one slot at a time.

    ``len(stream)`` is the number of noises; ``stream[a:b]`` is the stream of noises a..b-1
    (the same values, as each noise is a pure function of its group, member and slot).
    :meth:`slot` makes slot ``index`` of every noise of the batch: shape (len, *shape),
    starting at flat coordinate ``offset`` of each noise's stream (designs that treat the
    leading coordinates differently, Sobol' RQMC, need it). Designs build streams with
    :meth:`uqdiff.designs.NoiseDesign.stream`.
    """

    def __init__(self, design, groups: np.ndarray, members: np.ndarray, *, seed: SeedLike, dtype=torch.float32):
        self.design = design
        self.groups = np.asarray(groups, dtype=np.int64).reshape(-1)
        self.members = np.asarray(members, dtype=np.int64).reshape(-1)
        if self.groups.shape != self.members.shape:
            raise ValueError("groups and members must have one entry per noise")
        if self.groups.size and self.groups.max() > MAX_INDEX:
            raise ValueError(f"group indices must be at most {MAX_INDEX} in a stream")
        self.seed = entropy(seed)
        self.key = stream_key(self.seed)
        self.dtype = dtype
        self.cache: dict = {}  # per-batch values a design reuses across slots (Sobol' points)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: slice) -> NoiseStream:
        if not isinstance(index, slice):
            raise TypeError(f"a noise stream is indexed by a slice of noises, got {type(index).__name__}")
        part = NoiseStream.__new__(NoiseStream)
        part.__dict__.update(self.__dict__)
        part.groups, part.members = self.groups[index], self.members[index]
        return part

    def slot(
        self,
        index: int,
        shape: Sequence[int],
        *,
        offset: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Slot ``index`` of every noise, shape (len, *shape), each row exactly N(0, I)."""
        shape = tuple(int(s) for s in shape)
        size = math.prod(shape)
        device = torch.device(device) if device is not None else torch.device("cpu")
        dtype = dtype or self.dtype
        if _takes_dtype(type(self.design)):  # made in the wanted dtype: no float64 copy to cast
            values = self.design._stream_slot(self, int(index), int(offset), size, device, dtype=dtype)
        else:
            values = self.design._stream_slot(self, int(index), int(offset), size, device)
        return values.reshape(len(self), *shape).to(dtype)

    def where(self, row: int) -> str:
        """Which noise row ``row`` is, for messages."""
        return f"group {int(self.groups[row])} (noise {int(self.members[row])} of the group), seed {self.seed!r}"

    def __repr__(self) -> str:
        return f"NoiseStream({self.design.name}, noises={len(self)}, seed={self.seed})"
