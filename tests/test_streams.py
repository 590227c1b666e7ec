"""Counter-based noise streams: Philox4x32-10 bits against the published vectors, the ziggurat normals' law,
the numba kernel against its torch twin, and every slot a pure function of (seed, group, slot, member)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff import Antithetic, Equicorrelated, GaussianCoupling, KAntithetic, SobolRQMC
from uqdiff.designs import IID
from uqdiff.designs.sobol_points import MAX_DIM
from uqdiff.designs.streams import (
    MAX_SIZE,
    NoiseStream,
    _coupled_torch,
    _equicorrelated,
    _normals_torch,
    coupled_normals,
    normals,
    philox4x32,
    stream_key,
    ziggurat,
)

# Random123's kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), output (4 words).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _reference_philox(counter, key, rounds=10):
    """Philox4x32 in plain Python integers, straight from the definition (Salmon et al., 2011)."""
    c, (k0, k1) = [int(w) for w in counter], key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
    return tuple(c)


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_matches_the_published_known_answers(counter, key, expected):
    got = philox4x32(torch.tensor(counter, dtype=torch.int64).reshape(4, 1), key)
    assert tuple(int(w) for w in got[:, 0]) == expected
    assert _reference_philox(counter, key) == expected


def test_philox_matches_the_reference_on_random_counters():
    rng = np.random.default_rng(0)
    counters = rng.integers(0, 2**32, size=(4, 500), dtype=np.int64)
    key = (int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)))
    got = philox4x32(torch.from_numpy(counters), key).numpy()
    for i in range(0, 500, 7):
        assert tuple(got[:, i]) == _reference_philox(tuple(counters[:, i]), key)


@pytest.fixture(scope="module")
def law_sample():
    return normals(stream_key(5), 0, [(g, 0) for g in range(50)], 4000).reshape(-1).numpy()


def test_normals_have_the_standard_normal_law(law_sample):
    z, n = law_sample, law_sample.size  # 200k values, a fixed seed
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n) and abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    for t in (3.0, 4.0, ziggurat().r):  # the tails beyond 3 and 4 sigma and beyond the base layer's r
        p = 2 * stats.norm.sf(t)
        assert abs((np.abs(z) > t).sum() - n * p) < 5 * math.sqrt(n * p * (1 - p)) + 1, t
    # every layer's share: a chi-square over 40 equiprobable normal cells
    counts = np.bincount(np.searchsorted(stats.norm.ppf(np.linspace(0, 1, 41)[1:-1]), z), minlength=40)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_ziggurat_tables_match_the_paper():
    z = ziggurat()
    assert abs(z.r - 3.442619855899) < 1e-9  # Marsaglia & Tsang (2000)
    width = z.scale * 2.0**24
    areas = width[1:] * z.rise[1:]  # layers 1..127: equal areas v
    assert np.allclose(areas, 9.91256303526217e-3, rtol=1e-9)
    assert (z.limit[:-1] > 0).all() and z.limit[-1] == 0  # the top layer has no rectangle: always the wedge


def test_rows_slots_and_seeds_are_independent():
    key = stream_key(9)
    a = normals(key, 0, [(g, m) for g in range(20) for m in range(2)], 5000).numpy()
    b = normals(key, 1, [(g, m) for g in range(20) for m in range(2)], 5000).numpy()
    c = normals(stream_key(10), 0, [(g, m) for g in range(20) for m in range(2)], 5000).numpy()
    bound = 5 / math.sqrt(5000)
    corr = np.corrcoef(a)[np.triu_indices(len(a), 1)]  # other groups and other members
    assert np.abs(corr).max() < bound
    for other in (b, c):  # the next slot, the next seed
        assert max(abs(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, other)) < bound
    flat = a.reshape(-1)
    for lag in (1, 2, 3, 4):  # the words of one Philox block, and neighbouring blocks
        assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 5 / math.sqrt(flat.size)


def test_torch_ops_match_the_numba_kernel():
    key = stream_key(3)
    rows = np.array([(g, m) for g in (0, 7, 2**32 - 1) for m in (0, 5)])
    cpu = normals(key, 4, rows, 20_003)
    twin = _normals_torch(key, 4, rows, 20_003, torch.device("cpu"))
    z = ziggurat()
    words = philox4x32(
        torch.stack(
            [
                torch.arange(5001).expand(len(rows), 5001),
                torch.full((len(rows), 5001), 4),
                torch.from_numpy(rows[:, 1:2]).expand(len(rows), 5001),
                torch.from_numpy(rows[:, 0:1]).expand(len(rows), 5001),
            ]
        ),
        key,
    )
    words = words.permute(1, 2, 0).reshape(len(rows), -1)[:, :20_003]
    fast = (words >> 8) < torch.from_numpy(z.limit)[words & 127]
    assert 0.02 < (~fast).float().mean() < 0.035  # the fallback is exercised (the top layer alone: 1/128)
    assert torch.equal(cpu[fast], twin[fast])  # the fast path: bit for bit
    assert (cpu[~fast] - twin[~fast]).abs().max() < 1e-12  # the fallback: log and exp rounding at most
    assert torch.equal(normals(key, 4, rows, 20_003, dtype=torch.float32), cpu.float())  # one rounding
    for matrix in (np.array([[1.0], [-1.0]]), KAntithetic(4).matrix, np.array([[1.0, 0.0], [0.6, 0.8]])):
        groups, members = np.array([3, 1, 3, 1]), np.arange(4) % len(matrix)
        got = coupled_normals(key, 2, groups, members, matrix, 999, dtype=torch.float64)
        ref = _coupled_torch(key, 2, groups, members, matrix, _equicorrelated(matrix), 999, torch.device("cpu"))
        assert (got - ref).abs().max() < 1e-12


def test_coupled_normals_make_each_group_basis_once_and_exactly():
    key, matrix = stream_key(1), KAntithetic(8).matrix
    assert _equicorrelated(matrix) is not None and _equicorrelated(GaussianCoupling([[0.6, 0.8]]).matrix) is None
    z = coupled_normals(key, 0, np.repeat([4, 9], 8), np.tile(np.arange(8), 2), matrix, 64, dtype=torch.float64)
    u = normals(key, 0, [(9, l) for l in range(8)], 64)
    assert torch.allclose(z[8:], torch.from_numpy(matrix) @ u, atol=1e-12)  # z = A u for the group's basis
    alone = coupled_normals(key, 0, np.array([9]), np.array([5]), matrix, 64, dtype=torch.float64)
    assert torch.equal(alone[0], z[13])  # no other noise of the batch changes a bit
    with pytest.raises(ValueError, match="at most 134217728"):
        normals(key, 0, [(0, 0)], MAX_SIZE + 1)


def test_k_antithetic_8_has_the_designed_correlation():
    z = KAntithetic(8).stream(np.arange(4000), seed=2).slot(3, (4,), offset=0, dtype=torch.float64)
    groups = z.reshape(4000, 8, 4)
    assert groups.sum(dim=1).abs().max() < 1e-12
    c = np.corrcoef(groups[:, :, 0].numpy().T)[np.triu_indices(8, 1)]  # 28 pairs of 4000 groups
    assert abs(c.mean() - (-1 / 7)) < 0.02 and np.abs(c - (-1 / 7)).max() < 5 / math.sqrt(4000)
    assert abs(groups.var().item() - 1) < 0.03


def test_each_value_is_a_function_of_seed_group_slot_member_only():
    key = stream_key([1, 2])
    full = normals(key, 3, [(0, 0), (7, 1), (7, 2)], 9)
    assert torch.equal(normals(key, 3, [(7, 2)], 5)[0], full[2, :5])  # other rows and a shorter slot: same bits
    assert not torch.equal(normals(key, 4, [(7, 2)], 9)[0], full[2])  # next slot
    assert not torch.equal(normals(stream_key([1, 3]), 3, [(7, 2)], 9)[0], full[2])  # other seed
    assert not torch.equal(full[1], full[2])  # other member


@pytest.mark.parametrize(
    "design",
    [IID(), Antithetic(), KAntithetic(4), Equicorrelated(3, 0.5), GaussianCoupling([[1.0, 0.0], [0.6, 0.8]])],
    ids=lambda d: d.name,
)
def test_streams_are_batch_and_order_independent(design):
    k = design.group_size
    whole = design.stream(np.arange(6), seed=4)
    ref = whole.slot(2, (3, 5), offset=15)
    assert ref.shape == (6 * k, 3, 5)
    for lo in range(0, 6 * k, 5):  # any cut of the stream, even through a group
        assert torch.equal(whole[lo : lo + 5].slot(2, (3, 5), offset=15), ref[lo : lo + 5])
    later = design.stream([4, 5], seed=4)  # groups 4 and 5 in a batch of their own
    assert torch.equal(later.slot(2, (3, 5), offset=15), ref[4 * k :])


def test_couplings_hold_in_every_slot():
    z = Antithetic().stream(np.arange(100), seed=0).slot(1, (50,), offset=7)
    assert torch.equal(z[0::2], -z[1::2])
    z = KAntithetic(4).stream(np.arange(2000), seed=0).slot(5, (8,), offset=0, dtype=torch.float64)
    groups = z.reshape(2000, 4, 8)
    assert groups.sum(dim=1).abs().max() < 1e-12  # k-antithetic: each group sums to zero
    corr = np.corrcoef(groups[:, 0, 0].numpy(), groups[:, 1, 0].numpy())[0, 1]
    assert abs(corr - (-1 / 3)) < 0.06
    assert abs(groups.var().item() - 1) < 0.05


def test_sobol_stream_puts_the_replicate_on_x_t_and_iid_noise_after():
    design = SobolRQMC(8)
    stream = design.stream([3, 4], seed=2)
    x_t = stream.slot(0, (2, 3), offset=0, dtype=torch.float64)
    fixed = design.groups([3, 4], 6, seed=2, dtype=torch.float64).reshape(16, 2, 3)
    assert torch.equal(x_t, fixed)  # slot 0 is the fixed path's Sobol' replicate, point for point
    later = stream.slot(1, (6,), offset=6, dtype=torch.float64)
    assert torch.equal(later, normals(stream.key, 1, np.stack([stream.groups, stream.members], 1), 6))
    u = stats.norm.cdf(x_t.reshape(2, 8, 6).numpy())
    counts = np.floor(u * 8).astype(int)  # each coordinate of an 8-point replicate: one point per 1/8 interval
    assert all(sorted(counts[r, :, j]) == list(range(8)) for r in range(2) for j in range(6))
    assert torch.equal(stream[5:11].slot(0, (2, 3), offset=0, dtype=torch.float64), x_t[5:11])


def test_sobol_lead_spans_slots_and_is_checked():
    design = SobolRQMC(4, lead=5)
    stream = design.stream([0], seed=1)
    a = stream.slot(0, (3,), offset=0, dtype=torch.float64)
    b = stream.slot(1, (4,), offset=3, dtype=torch.float64)
    points = SobolRQMC(4).groups([0], 5, seed=1, dtype=torch.float64)[0]
    assert torch.equal(torch.cat([a, b[:, :2]], dim=1), points)  # coordinates 0..4 are the Sobol' points
    assert torch.equal(b[:, 2:], normals(stream.key, 1, [(0, i) for i in range(4)], 4)[:, 2:])
    with pytest.raises(ValueError, match=r"lead must be an int in 1\.\.21201"):
        SobolRQMC(4, lead=MAX_DIM + 1)
    with pytest.raises(ValueError, match=r"SobolRQMC\(n, lead=L\) with L <= 21201"):
        SobolRQMC(4).stream([0], seed=0).slot(0, (3, 100, 100), offset=0)
    SobolRQMC(4, lead=100).check_dim(30_000)  # a lead makes any noise length fine
    with pytest.raises(ValueError, match="lead=L"):
        SobolRQMC(4).check_dim(30_000)


def test_sobol_lead_on_fixed_noise_is_rqmc_on_the_leading_coordinates():
    z = SobolRQMC(8, lead=3).groups([0, 1], 10, seed=5, dtype=torch.float64)
    u = stats.norm.cdf(z[..., :3].numpy())
    assert all(sorted(np.floor(u[r, :, j] * 8).astype(int)) == list(range(8)) for r in range(2) for j in range(3))
    assert SobolRQMC(8, lead=3).name == "rqmc(n=8, lms+shift, lead=3)"


def test_streams_are_sliced_not_indexed():
    with pytest.raises(TypeError, match="indexed by a slice"):
        Antithetic().stream([0], seed=0)[0]
    assert isinstance(Antithetic().stream([0], seed=0)[1:], NoiseStream)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_make_the_same_noise():
    key = stream_key(11)
    counters = torch.randint(0, 2**32, (4, 10_000), dtype=torch.int64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(philox4x32(counters, key), philox4x32(counters.cuda(), key).cpu())
    rows = [(g, m) for g in range(8) for m in range(2)]
    cpu = normals(key, 3, rows, 3 * 64 * 64)
    gpu = normals(key, 3, rows, 3 * 64 * 64, device="cuda").cpu()
    same = cpu == gpu
    assert same.float().mean() > 0.97  # the fast path (about 97% of coordinates): bit for bit
    assert (cpu - gpu).abs().max() < 1e-12  # the fallback: log and exp rounding
    for design in (Antithetic(), KAntithetic(4), KAntithetic(8), Equicorrelated(4, 0.3), SobolRQMC(8)):
        s = design.stream([0, 1], seed=3)
        a = s.slot(0, (3, 16, 16), offset=0, dtype=torch.float64)
        b = s.slot(0, (3, 16, 16), offset=0, device="cuda", dtype=torch.float64).cpu()
        assert (a - b).abs().max() < 1e-9, design.name
        a32 = s.slot(1, (3, 16, 16), offset=0, dtype=torch.float32)
        b32 = s.slot(1, (3, 16, 16), offset=0, device="cuda", dtype=torch.float32).cpu()
        assert (a32 - b32).abs().max() < 1e-6, design.name


def test_the_tail_beyond_the_base_strip_has_its_full_mass():
    """A rejected tail point must retry the tail: restarting the ziggurat thinned the tail beyond r by
    about 7 % (found at 16M draws, 9.8 sd). 16M draws: about 9300 beyond r, sd 97, so 7 % is 6.7 sd."""
    z = ziggurat()
    n = 0
    beyond = 0
    for seed in range(4):
        v = normals(stream_key(200 + seed), 0, [(g, 0) for g in range(64)], 62_500).numpy().ravel()
        n += v.size
        beyond += int((np.abs(v) > z.r).sum())
    expected = n * math.erfc(z.r / math.sqrt(2))
    assert abs(beyond - expected) < 4 * math.sqrt(expected), (beyond, expected)
