"""Two-fidelity control variates on oracles with known means: coverage, variance, budget, errors, exports.

The expensive oracle is G(z) = 1 + z0 + 0.5 z1 + c (z0^2 - 1) + d (z1^2 - 1) + s z2, so E[G] = 1 exactly;
the cheap one, G_lo(z) = 0.3 + z0 + 0.5 z1 + 0.8 d (z1^2 - 1), has another mean (0.3) and misses the
z0^2 and z2 parts, like a few-step sampler missing detail. For plain MC (d = 0)
rho^2 = Cov^2 / (Var G Var G_lo) = 1.25 / (1.25 + 2 c^2 + s^2).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from uqdiff import RunSettings, estimate
from uqdiff.designs import KAntithetic
from uqdiff.estimators import TwoFidelityResult, estimate_two_fidelity
from uqdiff.estimators.engine import GeneratorError
from uqdiff.estimators.multifidelity import MIN_PILOT_GROUPS

TRUTH = 1.0
X = lambda y: y[:, 0]


class Oracle:
    """A generator (B, 3) -> (B, 1) from a formula in z; counts the noises it is handed."""

    noise_shape = (3,)
    device = torch.device("cpu")

    def __init__(self, formula, *, repeat_check: bool = False, sleep: float = 0.0) -> None:
        self.formula, self.calls, self.sleep = formula, 0, sleep
        self.repeat_check = repeat_check

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += len(z)
        if self.sleep:
            time.sleep(self.sleep)
        return self.formula(z.to(torch.float64))[:, None]


def expensive(c=0.2, d=0.0, s=0.235, **kw) -> Oracle:
    return Oracle(
        lambda z: 1 + z[:, 0] + 0.5 * z[:, 1] + c * (z[:, 0] ** 2 - 1) + d * (z[:, 1] ** 2 - 1) + s * z[:, 2], **kw
    )


def cheap(d=0.0, **kw) -> Oracle:
    return Oracle(lambda z: 0.3 + z[:, 0] + 0.5 * z[:, 1] + 0.8 * d * (z[:, 1] ** 2 - 1), **kw)


def _runs(reps, hi, lo, **options):
    return [
        estimate_two_fidelity(hi, lo, X, seed=[7, r], **options, run=RunSettings(batch_size=512)) for r in range(reps)
    ]


# 330 repetitions: binomial sd of a 95 % coverage sqrt(0.95 * 0.05 / 330) = 1.2 %; the band 0.92-0.98 is +-2.5 sd.
COVERAGE_REPS = 330


@pytest.mark.parametrize(
    ("design", "c", "d", "budget"),
    # antithetic pairs cancel the linear parts, so the pair means are 1 + c (z0^2 - 1) + d (z1^2 - 1) and
    # 0.3 + 0.8 d (z1^2 - 1): with c = 0.05, d = 0.3 their correlation is 0.986
    [("mc", 0.2, 0.0, 120), ("antithetic", 0.05, 0.3, 160)],
)
def test_intervals_cover_the_known_mean_at_a_small_budget(design, c, d, budget):
    runs = _runs(COVERAGE_REPS, expensive(c=c, d=d), cheap(d=d), budget=budget, design=design, cost_ratio=0.2)
    covered = np.mean([r["statistic"].low <= TRUTH <= r["statistic"].high for r in runs])
    assert 0.92 <= covered <= 0.98, covered
    assert np.mean([r.extra_groups >= 2 for r in runs]) > 0.9  # the control variate was used (a pilot may miss it)
    # the mean of the estimates is the truth although the cheap mean (0.3 + const) differs: unbiased
    est = np.array([r["statistic"].estimate for r in runs])
    assert abs(est.mean() - TRUTH) < 4 * est.std() / np.sqrt(len(est))


@pytest.mark.parametrize(
    ("c", "s", "w", "theory", "bound"),
    [
        # rho^2 = 1.25 / (1.25 + 0.08 + 0.055) = 0.9025 (rho = 0.95), w = 0.2. Per unit cost the optimal
        # two-fidelity variance is Var G (sqrt(1 - rho^2) + rho sqrt(w))^2 = (0.312 + 0.425)^2 = 0.543 Var G
        # against Var G for plain MC; 10 % of the budget goes to a pilot that is not reused: 0.543 / 0.9 = 0.60
        # (a little more in practice: the allocation is fitted on a 16-group pilot).
        (0.2, 0.235, 0.2, 0.60, 0.8),
        # rho = 0.99 (2 c^2 + s^2 = 0.0254), w = 0.05: (0.141 + 0.221)^2 / 0.9 = 0.146.
        (0.1, 0.0735, 0.05, 0.146, 0.3),
    ],
)
def test_variance_is_clearly_below_plain_mc_at_the_same_cost(c, s, w, theory, bound):
    reps, budget = 500, 200
    runs = _runs(reps, expensive(c=c, s=s), cheap(), budget=budget, cost_ratio=w)
    assert max(r.total_cost for r in runs) <= budget
    two = np.array([r["statistic"].estimate for r in runs])
    plain = np.array(
        [estimate(expensive(c=c, s=s), X, budget=budget, seed=[7, r])["statistic"].estimate for r in range(reps)]
    )
    exact_plain = (1.25 + 2 * c**2 + s**2) / budget  # Var G / budget: plain MC's variance, known for the oracle
    # plain runs agree with that variance (measured 0.88 and 0.90 of it: these 500 runs happen to fall low),
    # so the ratio is taken against the exact value, which has no sampling error of its own
    assert 0.8 < plain.var(ddof=1) / exact_plain < 1.25
    ratio = two.var(ddof=1) / exact_plain  # measured 0.673 and 0.155
    assert ratio < bound, (ratio, theory)
    assert 0.7 * theory < ratio < 1.4 * theory, (ratio, theory)
    # the reported standard errors match the spread they claim
    reported = np.mean([r["statistic"].standard_error ** 2 for r in runs])
    assert 0.8 < reported / two.var(ddof=1) < 1.25
    # and the predicted efficiency (vs MC at equal cost) agrees with the measured one, 1 / ratio
    efficiency = np.median([r["statistic"].efficiency for r in runs])
    assert 0.7 / ratio < efficiency < 1.4 / ratio, (efficiency, 1 / ratio)


@pytest.mark.parametrize("design", ["mc", "antithetic", KAntithetic(4)], ids=str)
def test_budget_accounting_matches_the_calls_the_generators_received(design):
    hi, lo = expensive(c=0.05, d=0.3), cheap(d=0.3)
    r = estimate_two_fidelity(
        hi, lo, X, budget=400, design=design, cost_ratio=0.25, seed=3, run=RunSettings(batch_size=32)
    )
    k = r.group_size
    assert r.extra_groups >= 2
    assert (hi.calls, lo.calls) == (r.n_expensive_calls, r.n_cheap_calls)
    assert r.n_expensive_calls == (r.pilot_groups + r.main_groups) * k
    assert r.n_cheap_calls == (r.pilot_groups + r.main_groups + r.extra_groups) * k
    assert r.total_cost == pytest.approx(r.n_expensive_calls + 0.25 * r.n_cheap_calls)
    assert r.total_cost <= r.budget == 400
    assert r.pilot_cost == pytest.approx(r.pilot_groups * k * 1.25) and r.pilot_cost <= 0.1 * 400
    assert r.total_cost > 400 - k  # the leftover is less than one cheap group
    # the repeat check, on by default, costs one uncounted extra sample per generator (as in uqdiff.estimate)
    hi, lo = expensive(c=0.05, d=0.3, repeat_check=True), cheap(d=0.3, repeat_check=True)
    r = estimate_two_fidelity(
        hi, lo, X, budget=400, design=design, cost_ratio=0.25, seed=3, run=RunSettings(batch_size=32)
    )
    assert (hi.calls, lo.calls) == (r.n_expensive_calls + 1, r.n_cheap_calls + 1)


def test_measured_cost_ratio_is_timed_on_the_pilot_and_kept_within_budget():
    hi, lo = expensive(sleep=0.02), cheap(sleep=0.002)
    r = estimate_two_fidelity(hi, lo, X, budget=200, seed=0, run=RunSettings(batch_size=4))
    assert r.cost_ratio_measured and 0 < r.cost_ratio < 0.5, r.cost_ratio
    assert (hi.calls, lo.calls) == (r.n_expensive_calls, r.n_cheap_calls)
    assert r.n_expensive_calls + r.cost_ratio * r.n_cheap_calls == pytest.approx(r.total_cost)
    assert r.total_cost <= 200 and r.extra_groups >= 2
    # the pilot was sized as if w were 1: within its 10 % share at any w < 1
    assert r.pilot_groups * 2 <= 0.1 * 200 or r.pilot_groups == MIN_PILOT_GROUPS


def test_same_seed_same_result_and_stages_on_their_own_streams():
    a = estimate_two_fidelity(expensive(), cheap(), X, budget=150, cost_ratio=0.2, seed=[1, 2])
    b = estimate_two_fidelity(expensive(), cheap(), X, budget=150, cost_ratio=0.2, seed=[1, 2])
    assert a.to_dict() == b.to_dict()
    assert a.seeds == {"pilot": [1, 2, 0], "main": [1, 2, 1], "extra": [1, 2, 2]}


def test_several_statistics_alpha_per_statistic_allocation_for_the_first():
    stats = {"x": X, "x_cubed": lambda y: y[:, 0] ** 3, "flat": lambda y: torch.zeros(len(y))}
    with pytest.warns(UserWarning, match="'flat' did not vary"):
        r = estimate_two_fidelity(expensive(), cheap(), stats, budget=300, cost_ratio=0.2, seed=0)
    assert r.target == "x" and list(r.results) == ["x", "x_cubed", "flat"]
    assert r["x"].alpha != r["x_cubed"].alpha and r["x_cubed"].alpha > 0
    assert r["flat"].alpha == 0 and r["flat"].estimate == 0 and np.isnan(r["flat"].rho)
    assert r["x"].low <= TRUTH <= r["x"].high
    with pytest.raises(KeyError, match="this run has"):
        r["nope"]


def _no_call(**options):
    """Run with counting generators and assert the error came before any model call."""
    hi, lo = expensive(), cheap()
    if "run" in options:
        options["run"] = RunSettings(**options["run"])
    try:
        estimate_two_fidelity(
            options.pop("sampler", hi), options.pop("cheap_sampler", lo), options.pop("statistics", X), **options
        )
    finally:
        assert hi.calls == 0 and lo.calls == 0, "a model was called before the error"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"budget": 0}, ValueError, "budget must be a positive int"),
        ({"budget": 100.0}, ValueError, "budget must be a positive int"),
        ({"budget": True}, ValueError, "budget must be a positive int"),
        ({"budget": 9}, ValueError, r"too small.*use budget >= 10"),  # pilot 4 x 2 (w = 1 until measured) + 2
        ({"budget": 6, "cost_ratio": 0.2}, ValueError, r"too small.*use budget >= 7"),  # 4 x 1.2 + 2 = 6.8
        # 4 x 8 x 2 + 16 = 80
        ({"budget": 79, "design": KAntithetic(8)}, ValueError, r"4 groups of 8 noise.*use budget >= 80"),
        ({"budget": 100, "pilot_share": 0}, ValueError, r"pilot_share must be a number in \(0, 0.5\]"),
        ({"budget": 100, "pilot_share": 0.6}, ValueError, "pilot_share"),
        ({"budget": 100, "pilot_share": "0.1"}, ValueError, "pilot_share"),
        ({"budget": 100, "cost_ratio": 1.0}, ValueError, "no control variate"),
        ({"budget": 100, "cost_ratio": 1.5}, ValueError, "no control variate"),
        ({"budget": 100, "cost_ratio": 0}, ValueError, r"cost_ratio must be a number in \(0, 1\)"),
        ({"budget": 100, "cost_ratio": True}, ValueError, "cost_ratio"),
        ({"budget": 100, "sampler": "model"}, TypeError, "sampler must be a callable"),
        ({"budget": 100, "cheap_sampler": None}, TypeError, "cheap_sampler must be a callable"),
        ({"budget": 100, "seed": -1}, ValueError, "seed must be non-negative"),
        ({"budget": 100, "seed": "1"}, TypeError, "seed must be"),
        ({"budget": 100, "confidence_level": 95}, ValueError, "confidence_level"),
        ({"budget": 100, "run": {"batch_size": 0}}, ValueError, "batch_size"),
        ({"budget": 100, "statistics": "mean"}, TypeError, "registry names"),
        ({"budget": 100, "run": {"dtype": torch.int64}}, TypeError, "dtype"),
    ],
)
def test_bad_input_fails_with_a_helpful_message_before_any_model_call(options, error, match):
    with pytest.raises(error, match=match):
        _no_call(**options)


def test_the_minimum_budget_in_the_message_works():
    for budget, options in ((10, {}), (7, {"cost_ratio": 0.2})):
        r = estimate_two_fidelity(expensive(), cheap(), X, budget=budget, seed=0, **options)
        assert r.pilot_groups == MIN_PILOT_GROUPS and r.main_groups >= 2


def test_cheap_generator_with_another_noise_shape_is_refused_before_any_call():
    other = cheap()
    other.noise_shape = (4,)
    with pytest.raises(ValueError, match=r"cheap_sampler draws x_T of shape \(4,\) but sampler \(3,\)"):
        _no_call(budget=100, cheap_sampler=other)


class Undeclared:
    """A cheap generator without a noise_shape attribute: checked on the first pilot batch."""

    def __init__(self, formula) -> None:
        self.formula, self.repeat_check = formula, False

    def __call__(self, z):
        return self.formula(z.to(torch.float64))


def test_cheap_generator_that_does_not_fit_is_caught_on_the_first_pilot_batch():
    hi = expensive()
    wrong_dim = Undeclared(lambda z: z @ torch.ones(2, 1, dtype=torch.float64))  # expects 2 noise coordinates
    with pytest.raises(GeneratorError, match=r"cheap_sampler failed on the first pilot batch.*same noise"):
        estimate_two_fidelity(hi, wrong_dim, X, budget=400, cost_ratio=0.2, run=RunSettings(batch_size=8))
    assert hi.calls == 8  # one batch, not the whole pilot
    hi = expensive()
    short = Undeclared(lambda z: z[:1])
    with pytest.raises(ValueError, match=r"cheap_sampler does not fit sampler.*1 outputs for a batch of 8"):
        estimate_two_fidelity(hi, short, X, budget=400, cost_ratio=0.2, run=RunSettings(batch_size=8))
    assert hi.calls == 8


def test_map_statistics_are_refused_on_the_first_batch():
    hi = expensive()
    with pytest.raises(ValueError, match="scalar statistics"):
        estimate_two_fidelity(hi, cheap(), lambda y: y, budget=400, cost_ratio=0.2, run=RunSettings(batch_size=8))
    assert hi.calls == 8


def test_a_cheap_statistic_without_spread_falls_back_to_plain_estimation_with_a_warning():
    flat = Oracle(lambda z: torch.full((len(z),), 0.5, dtype=torch.float64))
    hi = expensive()
    with pytest.warns(UserWarning, match="did not vary over the .* pilot groups"):
        r = estimate_two_fidelity(hi, flat, X, budget=200, cost_ratio=0.2, seed=0)
    assert r.extra_groups == 0 and r["statistic"].alpha == 0.0 and r["statistic"].df == r.main_groups - 1
    assert flat.calls == r.n_cheap_calls == r.pilot_groups  # after the pilot only the expensive model ran
    assert r.total_cost <= 200 and r["statistic"].low <= TRUTH <= r["statistic"].high


def test_an_uncorrelated_cheap_model_is_dropped_and_the_interval_still_covers():
    # the cheap model sees only z2, the expensive one mostly z0 and z1 (rho = 0.235 / sqrt(1.385) = 0.2):
    # sqrt(1 - rho^2) + rho sqrt(w) = 0.98 + 0.09 > 1, so the pilot (66 groups) should predict no gain.
    unrelated = lambda: Oracle(lambda z: 5 + z[:, 2])
    runs = _runs(COVERAGE_REPS, expensive(), unrelated(), budget=400, pilot_share=0.2, cost_ratio=0.2)
    dropped = np.mean([r.extra_groups == 0 for r in runs])
    assert dropped >= 0.95, dropped
    assert max(abs(r["statistic"].alpha) for r in runs) < 0.3
    covered = np.mean([r["statistic"].low <= TRUTH <= r["statistic"].high for r in runs])
    assert 0.92 <= covered <= 0.98, covered
    r = estimate_two_fidelity(expensive(), Oracle(lambda z: 5 + z[:, 2]), X, budget=100, cost_ratio=0.2, seed=0)
    assert isinstance(r, TwoFidelityResult)


def test_exports_round_trip_through_standard_json():
    stats = {"x": X, "flat": lambda y: torch.zeros(len(y))}
    with pytest.warns(UserWarning, match="did not vary"):
        r = estimate_two_fidelity(expensive(), cheap(), stats, budget=200, cost_ratio=0.2, seed=0)
    text = r.to_json()
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert back == r.to_dict()
    assert back["results"]["x"]["estimate"] == r["x"].estimate and back["results"]["flat"]["rho"] is None
    frame = r.to_frame()
    assert list(frame["statistic"]) == ["x", "flat"] and {"alpha", "rho", "efficiency", "df"} <= set(frame.columns)
    assert r.to_markdown().startswith("| statistic")
    assert str(r).startswith("two-fidelity [mc]") and "x: " in str(r)
    assert r["x"].confidence_interval == (r["x"].low, r["x"].high)


def test_a_cuda_device_is_refused_before_any_call_where_there_is_none():
    from uqdiff.samplers import LinearGenerator

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    g = LinearGenerator(np.zeros(1), np.ones((1, 2)))
    with pytest.raises(ValueError, match="CUDA is not available"):
        estimate_two_fidelity(g, g, lambda x: x[:, 0], budget=200, run=RunSettings(device="cuda"))
