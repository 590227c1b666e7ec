"""Sequential stopping: two-stage coverage on oracles, targets met, max_budget reported, same path as estimate."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff import Antithetic, SobolRQMC, TargetPrecision, estimate
from uqdiff.designs import as_design
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.engine import evaluate_groups, named_statistics
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.stopping import DEFAULT_INFLATION, planned_groups, tolerances, two_stage_result
from uqdiff.samplers import GaussianDDIM

RNG = np.random.default_rng(7)
ORACLE = GaussianDDIM(RNG.uniform(-0.6, 0.6, size=(4,)), std=RNG.uniform(0.2, 0.9, size=(4,)), num_steps=10)
ALPHA, BETA = ORACLE.output_mean, ORACLE.output_std
THRESHOLD = 0.1
TRUTH = {
    "second_moment": float(np.mean(ALPHA**2 + BETA**2)),
    "share_above": float(np.mean(stats.norm.sf((THRESHOLD - ALPHA) / BETA))),
}
STATS = named_statistics(
    {
        "second_moment": lambda x: (x**2).mean(dim=1),
        "share_above": lambda x: (x > THRESHOLD).to(torch.float64).mean(dim=1),
    }
)
REPS, PILOT, MEAN_GROUPS = 1000, 32, 32


def _moments(means, within):
    acc = GroupAccumulator()
    acc.add(0, means, within)
    return acc.moments()


@pytest.mark.parametrize(
    "design",
    ["mc", Antithetic(), pytest.param(SobolRQMC(8), marks=pytest.mark.slow)],  # RQMC: ~40 s; see
    ids=lambda d: as_design(d).name,  # benchmarks/sequential_coverage.py for all designs, results committed
)
def test_two_stage_interval_covers_on_oracle(design):
    """1000 seeded two-stage runs per design (pilot 32 groups, main stage planned): coverage >= 94% at 95%.

    The target is set so that the main stage averages about 32 groups; each run's
    main stage draws from its own slice of fresh groups, as estimate does.
    """
    design = as_design(design)
    kw = dict(noise_shape=(4,), batch_size=1 << 16, device=torch.device("cpu"), dtype=torch.float64)
    pilot = evaluate_groups(ORACLE, STATS, design, np.arange(REPS * PILOT), seed=[3, 0], **kw)
    cap = 3 * MEAN_GROUPS
    main = evaluate_groups(ORACLE, STATS, design, np.arange(REPS * cap), seed=[3, 1], **kw)
    q = stats.t.ppf(0.975, PILOT - 1)
    sd = {n: float(np.std(m, ddof=1)) for n, (m, _) in pilot.items()}
    target = {n: q * DEFAULT_INFLATION * s / math.sqrt(MEAN_GROUPS) for n, s in sd.items()}
    hits = {n: 0 for n in STATS}
    planned = []
    for r in range(REPS):
        p = {n: _moments(m[r * PILOT : (r + 1) * PILOT], w[r * PILOT : (r + 1) * PILOT]) for n, (m, w) in pilot.items()}
        tol = tolerances(p, target_halfwidth=target, rel_tol=None)
        n_main = int(
            min(planned_groups(p, tol, confidence_level=0.95, interval_method="t", inflation=DEFAULT_INFLATION), cap)
        )
        planned.append(n_main)
        for name, (m, w) in main.items():
            res = two_stage_result(
                _moments(m[r * cap : r * cap + n_main], w[r * cap : r * cap + n_main]),
                p[name],
                statistic=name,
                design=design.name,
                group_size=design.group_size,
                confidence_level=0.95,
                interval_method="t",
                inflation=DEFAULT_INFLATION,
            )
            assert res.width / 2 <= tol[name] * (1 + 1e-12) or n_main == cap
            hits[name] += res.low <= TRUTH[name] <= res.high
    assert 16 <= np.mean(planned) <= 64, np.mean(planned)
    for name, h in hits.items():
        assert 0.94 <= h / REPS <= 0.995, (design.name, name, h / REPS)


def test_estimate_runs_the_same_rule_and_meets_the_target():
    target = {"second_moment": 0.01, "share_above": 0.02}
    r = estimate(
        ORACLE,
        STATS,
        stopping=TargetPrecision(halfwidth=target, max_budget=20_000),
        design="antithetic",
        seed=5,
        interval_method="t",
        run=RunSettings(batch_size=50, dtype=torch.float64),
    )
    info = r.config["stopping"]
    assert info["stopped_by"] == "target" and all(info["target_met"].values())
    n0, n1 = info["pilot_groups"], info["main_groups"]
    assert n0 == 1024 // 2 and n1 >= n0 and r.budget == 2 * (n0 + n1)  # default pilot: 1024 noises
    kw = dict(noise_shape=(4,), seed=5, batch_size=50, device=torch.device("cpu"), dtype=torch.float64)
    design = as_design("antithetic")
    pilot = {n: _moments(*v) for n, v in evaluate_groups(ORACLE, STATS, design, np.arange(n0), **kw).items()}
    tol = tolerances(pilot, target_halfwidth=target, rel_tol=None)
    assert planned_groups(pilot, tol, confidence_level=0.95, interval_method="t", inflation=1.2) == n1
    main = evaluate_groups(ORACLE, STATS, design, np.arange(n0, n0 + n1), **kw)
    for name, (m, w) in main.items():
        acc = GroupAccumulator()
        acc.add(n0, m, w)
        want = two_stage_result(
            acc.moments(),
            pilot[name],
            statistic=name,
            design=design.name,
            group_size=2,
            confidence_level=0.95,
            interval_method="t",
            inflation=1.2,
        )
        assert r[name] == want
        assert r[name].width / 2 <= target[name] and r[name].df == n0 - 1


def test_rel_tol_and_rqmc_add_replicates():
    r = estimate(
        ORACLE,
        STATS["second_moment"],
        stopping=TargetPrecision(rel_tol=0.01, max_budget=100_000, pilot_budget=16 * 16),
        design=SobolRQMC(16),
        seed=2,
    )
    res, info = r["statistic"], r.config["stopping"]
    assert info["target_met"] == {"statistic": True} and res.n_groups == info["main_groups"] >= 2
    assert res.width / 2 <= 0.01 * abs(info["tolerance"]["statistic"] / 0.01)  # tolerance = rel_tol * |pilot mean|
    assert abs(res.estimate - TRUTH["second_moment"]) < 0.03 * TRUTH["second_moment"]


def test_max_budget_first_is_reported():
    with pytest.warns(UserWarning, match="max_budget 400 was reached before the target: second_moment"):
        r = estimate(ORACLE, STATS, stopping=TargetPrecision(halfwidth=1e-4, max_budget=400), seed=1)
    info = r.config["stopping"]
    assert info["stopped_by"] == "max_budget" and info["target_met"]["second_moment"] is False
    # max_budget 400 keeps the pilot at 200 groups so the main stage can match it
    assert r.budget == 400 and info["pilot_groups"] == 200 and info["main_groups"] == 200
    assert info["planned_groups"] > 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate(
            ORACLE, STATS, stopping=TargetPrecision(halfwidth=1.0, max_budget=400), seed=1
        )  # easy target: no warning


def test_a_pilot_without_spread_is_never_reported_as_success():
    # An event that never happens (x_0 more than 40 sd above its mean): all group means are 0. uqdiff cannot
    # tell that from a rare event not yet seen: it grows the pilot and reports the target not met.
    never = {"never": lambda x: (x[:, 0] > ALPHA[0] + 40 * BETA[0]).double()}
    with pytest.warns(UserWarning, match="did not vary in a pilot of 1024 groups"):
        r = estimate(ORACLE, never, stopping=TargetPrecision(halfwidth=0.1, max_budget=8000), design="antithetic")
    info = r.config["stopping"]
    assert info["target_met"] == {"never": False} and info["stopped_by"] == "no spread"
    assert info["pilot_groups"] == 1024 and info["main_groups"] >= 1024  # grown from 512, main >= pilot


def test_exact_cancellation_is_met_with_a_main_stage_as_large_as_the_pilot():
    # The oracle's output is affine in z: antithetic pairs cancel x[:, 0] to float precision.
    r = estimate(
        ORACLE,
        {"x0": lambda x: x[:, 0]},
        stopping=TargetPrecision(halfwidth=0.1, max_budget=2000),
        design="antithetic",
        run=RunSettings(dtype=torch.float64),
    )
    info = r.config["stopping"]
    assert info["target_met"] == {"x0": True} and info["main_groups"] == info["pilot_groups"]
    assert r["x0"].estimate == pytest.approx(ALPHA[0], abs=1e-12) and r["x0"].width == pytest.approx(0, abs=1e-12)


def test_a_rare_event_pilot_grows_until_it_sees_the_event():
    # P(x_0 > a + 2.8 sd) = 0.0026: a 512-noise pilot sees no event about a quarter of the time.
    sd0 = BETA[0]
    rare = {"rare": lambda x: (x[:, 0] > ALPHA[0] + 2.8 * sd0).double()}
    truth = float(stats.norm.sf(2.8))
    zero_width = 0
    for rep in range(30):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = estimate(ORACLE, rare, stopping=TargetPrecision(halfwidth=0.002, max_budget=40_000), seed=[8, rep])
        info = r.config["stopping"]
        zero_width += r["rare"].width == 0 and info["target_met"]["rare"]
        assert info["main_groups"] >= info["pilot_groups"]
    assert zero_width == 0
    assert truth > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(halfwidth=0.1), "max_budget"),
        (dict(halfwidth=-1, max_budget=100), "halfwidth must be a positive number"),
        (dict(rel_tol=0, max_budget=100), "rel_tol must be a positive number"),
        (dict(max_budget=100), "give halfwidth=... or rel_tol=..."),
        (dict(halfwidth=0.1, max_budget=100, inflation=0.5), "inflation must be a number >= 1"),
        (dict(halfwidth=0.1, max_budget=0), "max_budget must be a positive number of noises"),
        (dict(halfwidth=0.1, max_budget=100, pilot_budget=1.5), "pilot_budget must be a positive number"),
    ],
)
def test_bad_stopping_rule(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TargetPrecision(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stopping=TargetPrecision(halfwidth=0.1, max_budget=100), budget=64), "not both"),
        (dict(), "give either budget="),
        (dict(stopping=0.1), "stopping must be a StoppingRule"),
    ],
)
def test_budget_and_stopping_are_exclusive(kwargs, match):
    with pytest.raises(TypeError, match=match):
        estimate(ORACLE, {"second_moment": STATS["second_moment"]}, **kwargs)


@pytest.mark.parametrize(
    "rule, match",
    [
        (TargetPrecision(halfwidth=0.1, max_budget=33), "leaves no room for the pilot"),
        (TargetPrecision(halfwidth={"other": 0.1}, max_budget=100), "no entry for statistic 'second_moment'"),
        (TargetPrecision(halfwidth=0.1, max_budget=100, pilot_budget=1), "pilot_budget 1 gives 1 group"),
    ],
)
def test_bad_sequential_input(rule, match):
    with pytest.raises(ValueError, match=match):
        estimate(ORACLE, {"second_moment": STATS["second_moment"]}, stopping=rule)
