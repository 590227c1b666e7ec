"""design="auto" on oracles with known truths: it picks what the statistic needs and never loses much to MC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqdiff import AutoDesign, CallbackError, Checkpoint, estimate
from uqdiff.designs import DCTFeatures, KAntithetic
from uqdiff.estimators.checkpoint import load
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.stopping import TargetPrecision
from uqdiff.samplers import LinearGenerator

G = LinearGenerator(np.zeros(16))  # the images are the noise: statistics of z with closed-form moments


def even(x):
    """z_0^2 + z_1^2 (mean 2, variance 4): pairs (z, -z) give the same value, so antithetic halves the efficiency."""
    return x[:, 0] ** 2 + x[:, 1] ** 2


def odd(x):
    """z_0 + 0.1 z_1^2 (mean 0.1): mostly odd, so pairs cancel nearly all of it."""
    return x[:, 0] + 0.1 * x[:, 1] ** 2


def test_an_odd_statistic_gets_pairs_and_the_evidence_says_why():
    r = estimate(G, odd, budget=400, design=AutoDesign(control_variates=None), seed=0)
    auto = r.config["auto"]
    assert auto["chosen"] == "antithetic"
    assert r.budget == auto["pilot_budget"] + auto["main_budget"] == 400
    rows = {row["candidate"]: row for row in auto["candidates"]}
    assert rows["antithetic"]["efficiency"]["odd"] > 20 and rows["antithetic"]["chosen"]
    assert r["odd"].design.startswith("auto: antithetic")


def test_an_even_statistic_never_gets_pairs():
    for seed in range(10):
        r = estimate(G, even, budget=400, design=AutoDesign(control_variates=None), seed=seed)
        assert r.config["auto"]["chosen"] == "mc", seed


def test_auto_loses_at_most_its_pilot_share_on_an_even_statistic():
    """300 runs: the variance of auto's estimate times the budget, over Var S = 4, is about 0.9 (MC on 90 %)."""
    estimates = [estimate(G, even, budget=400, design="auto", seed=[7, rep])["even"].estimate for rep in range(300)]
    efficiency = 4.0 / (400 * np.var(estimates, ddof=1))
    assert efficiency > 0.75  # 0.9 expected (pilot share 0.1); the sd of this estimate is about 0.07


def test_auto_intervals_cover_the_known_means():
    hits = {"even": 0, "odd": 0}
    for rep in range(300):
        r = estimate(G, [even, odd], budget=320, design=AutoDesign(target={"even": 1, "odd": 1}), seed=[8, rep])
        hits["even"] += r["even"].low <= 2.0 <= r["even"].high
        hits["odd"] += r["odd"].low <= 0.1 <= r["odd"].high
    for name, h in hits.items():
        assert 0.91 <= h / 300 <= 0.985, (name, h)


def test_control_variates_win_where_the_noise_explains_the_statistic():
    energy = lambda x: x.sum(dim=1) ** 2 / 16 + 0.1 * x[:, 3]  # the square of the constant DCT coefficient
    r = estimate(G, {"energy": energy}, budget=800, design="auto", seed=1)
    assert "control variates" in r.config["auto"]["chosen"]
    assert r["energy"].implied_efficiency > 5
    assert abs(r["energy"].estimate - 1.0) < 3 * r["energy"].standard_error + 1e-9


def test_more_candidates_enter_when_the_pilot_buys_enough_of_their_groups():
    r = estimate(G, odd, budget=4000, design=AutoDesign(candidates=[KAntithetic(4)], control_variates=None), seed=2)
    labels = [row["candidate"] for row in r.config["auto"]["candidates"]]
    assert "k-antithetic(k=4)" in labels
    small = estimate(G, odd, budget=400, design=AutoDesign(candidates=[KAntithetic(8)], control_variates=None), seed=2)
    assert "k-antithetic(k=8)" not in [row["candidate"] for row in small.config["auto"]["candidates"]]


def test_auto_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="raise the budget"):
        estimate(G, odd, budget=100, design="auto")
    with pytest.raises(TypeError, match="budget"):
        estimate(G, odd, stopping=TargetPrecision(halfwidth=0.1, max_budget=1000), design="auto")
    with pytest.raises(TypeError, match="AutoDesign"):
        estimate(G, odd, budget=400, design="auto", control_variates=DCTFeatures())
    with pytest.raises(ValueError, match="not statistics"):
        estimate(G, odd, budget=400, design=AutoDesign(target="mean"))
    with pytest.raises(ValueError, match="pilot_share"):
        AutoDesign(pilot_share=0.9)
    with pytest.raises(ValueError, match="unknown design"):
        AutoDesign(candidates=["sobolx"])
    with pytest.raises(ValueError, match="weights"):
        estimate(G, odd, budget=400, design=AutoDesign(target={"odd": -1.0}))


def test_auto_resumes_from_a_checkpoint_to_the_uninterrupted_result(tmp_path):
    """The pilot is redrawn on resume (same noise, same choice); the main stage continues from the checkpoint."""
    whole = estimate(G, odd, budget=800, design="auto", seed=3, run=RunSettings(batch_size=16))
    path = tmp_path / "auto.ckpt"

    def stop(n, accs):
        if n >= 400:
            raise RuntimeError("stopped by the test")

    with pytest.raises(CallbackError):
        estimate(
            G, odd, budget=800, design="auto", seed=3, run=RunSettings(batch_size=16, checkpoint=path, callback=stop)
        )
    assert 0 < load(path)[1]["main"].n_done
    resumed = estimate(
        G,
        odd,
        budget=800,
        design="auto",
        seed=3,
        run=RunSettings(batch_size=16, checkpoint=Checkpoint(path, resume=True)),
    )
    assert resumed.to_json() == whole.to_json()


def test_auto_is_reproducible_from_its_seed():
    a = estimate(G, odd, budget=400, design="auto", seed=[4, 2])
    b = estimate(G, odd, budget=400, design=AutoDesign(), seed=[4, 2])
    assert a["odd"].estimate == b["odd"].estimate and a.config["auto"] == b.config["auto"]
    assert torch.get_default_dtype() == torch.float32


def test_rqmc_candidates_enter_only_with_enough_points_per_replicate():
    from uqdiff.estimators.auto import MIN_POINTS, default_candidates, pilot_plan

    small = default_candidates(80, 720, (1, 128, 128))  # budget 800: the pilot cannot price RQMC
    assert [d.name for d in small] == ["k-antithetic(k=8)"]
    large = default_candidates(400, 3600, (1, 32, 32))
    assert large[0].name.startswith("subspace(rqmc(n=16") and large[-1].name.startswith("rqmc(n=16")
    assert all(d.group_size >= MIN_POINTS for d in large if "rqmc" in d.name)
    plan = pilot_plan(large, 400)  # pairs keep 60 %: 160 noises buy the subspace's 8 replicates of 16 only
    assert [(d.name, n) for d, n in plan] == [(large[0].name, 8)]
    huge = default_candidates(2000, 18000, (26, 1, 32, 32))  # beyond Sobol's 21201 dimensions: subspace only
    assert [d.name.split("(")[0] for d in huge] == ["subspace", "k-antithetic"]


def test_auto_is_refused_where_only_fixed_designs_run():
    from uqdiff import compare
    from uqdiff.designs import parse_design

    with pytest.raises(ValueError, match="uqdiff.estimate"):
        parse_design("auto")
    with pytest.raises(ValueError, match="fixed designs"):
        compare(G, odd, budget=400, designs=["mc", "auto"])


def test_an_mc_choice_reports_the_pilot_cost_as_its_efficiency():
    """When auto falls back to plain MC its efficiency against MC is the main stage's share of the
    budget (0.9 with the default pilot), read from the main stage itself, not from 16 pilot noises."""
    from uqdiff.samplers import as_sampler

    sampler = as_sampler(lambda z: z, noise_shape=(64,))
    stat = lambda x: (x**4).mean(dim=1) + 3 * x[:, 0] ** 2  # even: pairs lose, features barely help  # noqa: E731
    r = estimate(sampler, stat, budget=160, design="auto", seed=3)
    res = r["statistic"]
    if res.design != "auto: mc":
        pytest.skip(f"the pilot chose {res.design}")
    n = res.n_groups
    assert res.implied_efficiency == pytest.approx(0.9 * (n - 3) / (n - 1), rel=1e-9)
    assert res.implied_efficiency_low < 0.9 < res.implied_efficiency_high
