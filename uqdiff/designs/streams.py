"""Counter-based noise streams: every slot of every noise made on demand from (seed, group, slot, member).

A captured sampler (:class:`uqdiff.samplers.Captured`) asks for its Gaussian draws one at a time,
in the order its own code makes them: slot 0 (usually x_T), slot 1 (the first step's noise), ...
A :class:`NoiseStream` answers each request for the noises of a batch, on the device and in the
dtype the draw asked for, without ever holding the whole stream: memory does not grow with the
number of steps.

The randomness is Philox4x32-10 (Salmon et al., 2011), a counter-based generator: block ``j`` of
slot ``s`` of basis noise ``l`` of group ``g`` is ``philox(counter=(j, s, l, g), key=seed key)``,
a pure function of those numbers. It is written in int64 torch operations (the 32 x 32 -> 64-bit
products in 16-bit limbs, so nothing overflows), so a CPU and a CUDA device make the same bits;
:func:`philox4x32` matches the published Random123 known-answer vectors. Each block's four 32-bit
words give two normals by Box-Muller on two 53-bit uniforms (cell midpoints, never 0 or 1), in
float64; the normals of CPU and CUDA agree to float64 rounding of ``log``, ``cos`` and ``sin``.

The fixed-noise path (``NoiseDesign.groups``, numpy PCG64 per group) is unchanged: streams are
what captured generators consume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def normals(
    key: tuple[int, int],
    slot: int,
    rows: Sequence[tuple[int, int]] | np.ndarray,
    size: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normals (len(rows), size) in float64: row i is slot ``slot`` of basis noise ``rows[i] = (group, l)``.

    Element e of a row comes from Philox block e // 2 with counter (e // 2, slot, l, group), so a
    row's values never depend on the other rows, the batch or the device.

    >>> a = normals(stream_key(0), 3, [(5, 0), (6, 0)], 5)
    >>> b = normals(stream_key(0), 3, [(6, 0)], 3)
    >>> bool((a[1, :3] == b[0]).all()), tuple(a.shape)
    (True, (2, 5))
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    _check_index("slot", slot)
    for what, col in (("group", 0), ("member", 1)):
        if rows.size and (rows[:, col].min() < 0 or rows[:, col].max() > MASK32):
            raise ValueError(f"{what} indices must be in 0..{MASK32}, got {rows[:, col].min()}..{rows[:, col].max()}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    blocks = (int(size) + 1) // 2
    _check_index("block", max(blocks - 1, 0))
    if not len(rows) or not size:
        return torch.empty((len(rows), int(size)), dtype=torch.float64, device=device)
    r = torch.from_numpy(rows).to(device)
    j = torch.arange(blocks, dtype=torch.int64, device=device)
    counter = torch.stack(
        [
            j.expand(len(rows), blocks),
            torch.full((len(rows), blocks), int(slot), dtype=torch.int64, device=device),
            r[:, 1:2].expand(len(rows), blocks),
            r[:, 0:1].expand(len(rows), blocks),
        ]
    )
    w = philox4x32(counter, key)
    scale = 2.0**-53
    u1 = (((w[0] << 21) | (w[1] >> 11)).to(torch.float64) + 0.5) * scale  # 53 bits: (0, 1), never 0 or 1
    u2 = (((w[2] << 21) | (w[3] >> 11)).to(torch.float64) + 0.5) * scale
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = (2.0 * math.pi) * u2
    z = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1).reshape(len(rows), 2 * blocks)
    return z[:, : int(size)]


def shared_normals(key: tuple[int, int], slot: int, size: int, *, device=None) -> torch.Tensor:
    """Normals (size,) common to every sample (group and member words 2**32 - 1): a fixed draw."""
    return normals(key, slot, [(SHARED, SHARED)], size, device=device)[0]


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
        values = self.design._stream_slot(self, int(index), int(offset), size, device)
        return values.reshape(len(self), *shape).to(dtype or self.dtype)

    def where(self, row: int) -> str:
        """Which noise row ``row`` is, for messages."""
        return f"group {int(self.groups[row])} (noise {int(self.members[row])} of the group), seed {self.seed!r}"

    def __repr__(self) -> str:
        return f"NoiseStream({self.design.name}, noises={len(self)}, seed={self.seed})"
