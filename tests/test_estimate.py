"""Estimators on oracle generators with known answers: values, intervals, coverage, errors."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff import (
    Antithetic,
    Equicorrelated,
    GaussianCoupling,
    KAntithetic,
    SobolRQMC,
    SubspaceCoupling,
    compare,
    estimate,
)
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.engine import evaluate_groups, named_statistics
from uqdiff.estimators.results import StatisticResult
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import GaussianDDIM, LinearGenerator, NumpyGenerator

RNG = np.random.default_rng(2024)
ORACLE = GaussianDDIM(RNG.uniform(-0.6, 0.6, size=(8,)), std=RNG.uniform(0.2, 0.9, size=(8,)), num_steps=20)
ALPHA, BETA = ORACLE.output_mean, ORACLE.output_std
THRESHOLD = 0.1


def second_moment(x):
    return (x**2).mean(dim=1)


def share_above(x):
    return (x > THRESHOLD).to(torch.float64).mean(dim=1)


TRUTH = {
    "second_moment": float(np.mean(ALPHA**2 + BETA**2)),
    "share_above": float(np.mean(stats.norm.sf((THRESHOLD - ALPHA) / BETA))),
}

COVERAGE_DESIGNS = [
    ("mc", 32),
    (Antithetic(), 32),
    (KAntithetic(4), 32),
    (Equicorrelated(3, 0.5), 32),
    (GaussianCoupling([[1.0, 0.0], [0.6, -0.8], [0.0, 1.0]]), 32),
    (SubspaceCoupling(KAntithetic(4), mask=np.arange(8) < 3), 32),
    (SobolRQMC(8), 32),
    (SobolRQMC(8, scramble="owen"), 32),
]
REPS = 1000
# RQMC uses 32 replicates: with 16, a discontinuous statistic (share_above) covered about 94%
# over several seeds, the known small-R limit of the Student-t interval on skewed replicate means.


@pytest.mark.parametrize("design, groups", COVERAGE_DESIGNS, ids=lambda d: getattr(d, "name", str(d)))
def test_interval_coverage_on_oracle(design, groups):
    """1000 independent runs of `groups` groups each: 95% intervals must cover 93-97% of the time."""
    from uqdiff.designs import as_design

    design = as_design(design)
    stats_ = named_statistics([second_moment, share_above])
    parts = evaluate_groups(
        ORACLE,
        stats_,
        design,
        np.arange(REPS * groups),
        noise_shape=(8,),
        seed=99,
        batch_size=4096,
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    for name, (means, within) in parts.items():
        hits = 0
        for r in range(REPS):
            acc = GroupAccumulator()
            sl = slice(r * groups, (r + 1) * groups)
            acc.add(0, means[sl], within[sl])
            res = StatisticResult.from_moments(
                acc.moments(), statistic=name, design=design.name, group_size=design.group_size
            )
            hits += res.low <= TRUTH[name] <= res.high
        assert abs(hits / REPS - 0.95) <= 0.02, (design.name, name, hits / REPS)


def test_antithetic_cancels_linear_statistic_of_linear_generator():
    g = LinearGenerator(np.array([0.3, -0.2]), RNG.standard_normal((2, 5)))
    for design in (Antithetic(), KAntithetic(6)):
        r = estimate(
            g,
            {"lin": lambda x: x @ torch.tensor([1.0, 2.0], dtype=x.dtype)},
            budget=120,
            design=design,
            run=RunSettings(dtype=torch.float64),
        )["lin"]
        assert r.estimate == pytest.approx(0.3 - 0.4, abs=1e-12)
        assert r.width < 1e-12
    mc = estimate(g, {"lin": lambda x: x[:, 0]}, budget=120, design="mc")["lin"]
    assert mc.width > 0.1


def test_pair_correlation_and_efficiency_are_reported():
    # G(z) = z, S = z + z^2: Corr(S(z), S(-z)) = 1/3, so efficiency vs MC is 1 / (1 + 1/3) = 0.75
    g = LinearGenerator(np.zeros(1), np.ones((1, 1)))
    r = estimate(
        g,
        {"s": lambda x: x[:, 0] + x[:, 0] ** 2},
        budget=200_000,
        design="antithetic",
        seed=5,
        run=RunSettings(batch_size=20_000, dtype=torch.float64),
    )["s"]
    assert r.rho == pytest.approx(1 / 3, abs=0.02)
    assert r.implied_efficiency == pytest.approx(0.75, abs=0.02)
    assert r.marginal_variance == pytest.approx(3.0, rel=0.03)
    assert r.estimate == pytest.approx(1.0, abs=4 * r.standard_error)
    mc = estimate(g, {"s": lambda x: x[:, 0] + x[:, 0] ** 2}, budget=1000, design="mc")["s"]
    assert mc.rho is None and mc.implied_efficiency is None


def test_result_fields_and_student_t_vs_normal():
    kw = dict(budget=64, design="antithetic", seed=3)
    t = estimate(ORACLE, second_moment, interval_method="t", **kw)["second_moment"]
    z = estimate(ORACLE, second_moment, interval_method="normal", **kw)["second_moment"]
    assert (t.n_noises, t.n_groups, t.df, t.group_size, t.design) == (64, 32, 31, 2, "antithetic")
    assert t.estimate == z.estimate
    assert t.width / z.width == pytest.approx(stats.t.ppf(0.975, 31) / stats.norm.ppf(0.975))
    assert t.width == pytest.approx(2 * stats.t.ppf(0.975, 31) * t.standard_error)
    assert (t.low, t.high) == tuple(t.confidence_interval)
    ninety = estimate(ORACLE, second_moment, confidence_level=0.9, interval_method="t", **kw)["second_moment"]
    assert ninety.width < t.width
    # the default corrects for the right skew of a second moment: the interval reaches further up
    skew = estimate(ORACLE, second_moment, **kw)["second_moment"]
    assert skew.interval_method == "skew-t" and skew.skewness > 0
    assert skew.high - skew.estimate > t.high - t.estimate and skew.estimate - skew.low < t.estimate - t.low


@pytest.mark.parametrize("batch_size", [1, 3, 8, 50, 512])
def test_batching_gives_bit_identical_results(batch_size):
    kw = dict(budget=512, seed=17, run=RunSettings(dtype=torch.float64))
    for design in ("mc", KAntithetic(4), SobolRQMC(8)):
        ref = estimate(
            ORACLE, [second_moment, share_above], design=design, **{**kw, "run": kw["run"].replace(batch_size=64)}
        )
        got = estimate(
            ORACLE,
            [second_moment, share_above],
            design=design,
            **{**kw, "run": kw["run"].replace(batch_size=batch_size)},
        )
        for name in ("second_moment", "share_above"):
            assert got[name] == ref[name]


def test_split_runs_merge_to_the_single_run_bit_for_bit():
    stats_ = named_statistics([second_moment])
    design = Antithetic()
    kw = dict(noise_shape=(8,), seed=4, batch_size=37, device=torch.device("cpu"), dtype=torch.float64)
    whole = estimate(ORACLE, second_moment, budget=2 * 700, design=design, seed=4, run=RunSettings(dtype=torch.float64))
    cuts = [0, 130, 131, 300, 555, 700]
    shards = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        means, within = evaluate_groups(ORACLE, stats_, design, np.arange(lo, hi), **kw)["second_moment"]
        acc = GroupAccumulator()
        acc.add(lo, means, within)
        shards.append(acc)
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        merged = GroupAccumulator()
        for i in order:
            merged.merge(shards[i])
        m = merged.moments()
        res = StatisticResult.from_moments(m, statistic="second_moment", design=design.name, group_size=2)
        assert res == whole["second_moment"]


def test_merge_matches_one_pass_numerically():
    x = RNG.standard_normal((1000, 3))
    w = RNG.random((1000, 3))
    a, b, one = GroupAccumulator(), GroupAccumulator(), GroupAccumulator()
    a.add(0, x[:417], w[:417])
    b.add(417, x[417:], w[417:])
    one.add(0, x, w)
    m, ref = a.merge(b).moments(), one.moments()
    assert m.count == 1000
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m.m2, ((x - x.mean(0)) ** 2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(m.within, w.sum(0), rtol=1e-13)
    np.testing.assert_array_equal(m.mean, ref.mean)


def test_accumulator_memory_does_not_grow_with_groups():
    acc = GroupAccumulator()
    for start in range(0, 100_000, 999):
        n = min(999, 100_000 - start)
        acc.add(start, np.zeros((n, 2)), np.zeros((n, 2)))
    assert acc.count == 100_000
    assert len(acc._nodes) <= 17 and sum(len(r) for r in acc._pending.values()) < 64


def test_accumulator_rejects_double_counting_and_shape_changes():
    acc = GroupAccumulator()
    acc.add(0, np.zeros((128, 1)), np.zeros((128, 1)))
    with pytest.raises(ValueError, match="already counted"):
        acc.add(64, np.zeros((64, 1)), np.zeros((64, 1)))
    with pytest.raises(ValueError, match="already counted"):
        acc.add(5, np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"shape changed from \(1,\) to \(2,\)"):
        acc.add(200, np.zeros((1, 2)), np.zeros((1, 2)))
    other = GroupAccumulator()
    other.add(100, np.zeros((3, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="already counted"):
        acc.merge(other)


def test_pixel_map_uses_the_same_path_and_covers():
    g = GaussianDDIM(RNG.uniform(-0.5, 0.5, (1, 6, 6)), std=0.5, num_steps=10)
    r = estimate(
        g, {"map": lambda x: x**2}, budget=400, design=KAntithetic(4), seed=8, run=RunSettings(dtype=torch.float64)
    )["map"]
    assert np.shape(r.estimate) == (1, 6, 6) and np.shape(r.width) == (1, 6, 6)
    frame = estimate(g, {"map": lambda x: x}, budget=40, design="mc").to_frame()
    assert len(frame) == 36 and "element" in frame
    truth = g.output_mean**2 + g.output_std**2
    inside = (r.low <= truth) & (truth <= r.high)
    assert inside.mean() >= 0.8


def test_numpy_generator_and_conversions():
    g = NumpyGenerator(lambda z: np.tanh(z), noise_shape=(2, 2))
    res = estimate(g, {"m": lambda x: x.mean(axis=(1, 2))}, budget=64, design="antithetic")
    assert res["m"].estimate == pytest.approx(0.0, abs=1e-12)  # tanh is odd: pairs cancel
    d = json.loads(res.to_json())
    assert d["results"]["m"]["n_groups"] == 32 and d["design"] == "antithetic"
    frame = res.to_frame()
    assert list(frame["statistic"]) == ["m"] and frame["width"].iloc[0] == pytest.approx(res["m"].width)
    assert "m [antithetic]" in str(res)


def test_compare_reports_efficiency_against_mc():
    g = LinearGenerator(np.zeros(1), np.ones((1, 1)))
    stat = {"s": lambda x: torch.tanh(x[:, 0]) + 0.05 * x[:, 0] ** 2}
    c = compare(g, stat, budget=2048, designs=["antithetic", KAntithetic(8), SobolRQMC(64)], seed=1)
    assert list(c.estimates) == ["mc", "antithetic", "k-antithetic(k=8)", "rqmc(n=64, lms+shift)"]
    frame = c.to_frame().set_index("design")
    assert frame.loc["mc", "efficiency"] == pytest.approx(1.0)
    assert frame.loc["antithetic", "efficiency"] > 10
    assert c.efficiency("s", "antithetic") == pytest.approx(
        (c.estimates["mc"]["s"].width / c.estimates["antithetic"]["s"].width) ** 2
    )
    assert json.loads(c.to_json())["baseline"] == "mc"
    for est in c.estimates.values():
        assert est["s"].n_noises == 2048


class _Bad:
    noise_shape = (3,)

    def __init__(self, mode):
        self.mode = mode

    def __call__(self, z):
        x = z.clone().to(torch.float64)
        if self.mode == "nan":
            x[(z[:, 0] > 1.5)] = float("nan")
        if self.mode == "short":
            x = x[:-1]
        return x


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(sampler=_Bad("nan"), budget=400),
            FloatingPointError,
            r"generator output has NaN or Inf at group \d+ .*seed 0",
        ),
        (dict(sampler=_Bad("short"), budget=64), ValueError, "returned 63 outputs for a batch of 64"),
        (
            dict(statistics={"bad": lambda x: torch.log(x[:, 0])}),
            FloatingPointError,
            r"statistic 'bad' is NaN or Inf at group \d+",
        ),
        (
            dict(statistics={"bad": lambda x: x[:3, 0]}),
            ValueError,
            r"statistic 'bad' returned shape \(3,\) for a batch of 64",
        ),
        (
            dict(budget=65, design="antithetic"),
            ValueError,
            "budget 65 is not a multiple of the group size 2 .* use 64 or 66",
        ),
        (dict(budget=100, design=KAntithetic(8)), ValueError, "use 96 or 104"),
        (dict(budget=2, design="antithetic"), ValueError, "at least 2 groups"),
        (dict(budget=64, design=SobolRQMC(64)), ValueError, "at least 2 groups"),
        (dict(budget=0), ValueError, "budget must be a positive number of noises"),
        (dict(confidence_level=95), ValueError, r"confidence_level must be a number in \(0, 1\)"),
        (dict(interval_method="wald"), ValueError, "interval_method must be one of"),
        (dict(run=dict(batch_size=0)), ValueError, "batch_size must be a positive int"),
        (dict(seed=-1), ValueError, "seed must be non-negative"),
        (dict(sampler=lambda z: z), ValueError, "noise_shape"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = dict(sampler=_Bad("ok"), statistics={"s": lambda x: x[:, 0]}, budget=128)
    args.update(kwargs)
    gen, st = args.pop("sampler"), args.pop("statistics")
    with pytest.raises(error, match=match):
        if "run" in args:  # run settings are checked where they are made, before any model call
            args["run"] = RunSettings(**args["run"])
        estimate(gen, st, **args)


def test_sobol_requires_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        SobolRQMC(48)


def test_statistic_shape_changing_between_batches():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        return x[:, :1] if calls["n"] == 1 else x[:, :2]

    with pytest.raises(ValueError, match=r"shape changed from \(1,\) to \(2,\)"):
        estimate(_Bad("ok"), {"flaky": flaky}, budget=256, run=RunSettings(batch_size=64))


def test_callback_sees_running_counts_and_final_moments():
    g = LinearGenerator(np.array([0.5]), np.array([[0.1, 0.2]]))
    seen = []
    r = estimate(
        g,
        lambda x: x[:, 0],
        budget=40,
        design="antithetic",
        seed=3,
        run=RunSettings(
            batch_size=8,
            callback=lambda n, accs: seen.append((n, accs["statistic"].count, float(accs["statistic"].moments().mean))),
        ),
    )
    assert [n for n, _, _ in seen] == [8, 16, 24, 32, 40]
    assert [c for _, c, _ in seen] == [4, 8, 12, 16, 20]
    assert seen[-1][2] == r["statistic"].estimate
