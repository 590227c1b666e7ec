"""RQMCDoubling: extensible scrambled replicates that double their points until the target is met."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from uqdiff import Checkpoint, RQMCDoubling, SobolRQMC, estimate
from uqdiff.designs.seeds import group_rng
from uqdiff.designs.sobol import SobolBlock
from uqdiff.designs.sobol_points import extensible_sobol_normal
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import LinearGenerator

W = np.cos(np.arange(8.0))[None, :]
GEN = LinearGenerator(np.zeros(1), W / np.linalg.norm(W))  # x = w . z ~ N(0, 1)
TANH = {"tanh": lambda x: torch.tanh(x[:, 0].double() + 0.3)}
TANH_TRUTH = float(
    np.sum(np.polynomial.hermite_e.hermegauss(80)[1] * np.tanh(np.polynomial.hermite_e.hermegauss(80)[0] + 0.3))
    / np.sqrt(2 * np.pi)
)


def test_doubling_keeps_the_points_already_drawn_and_stays_a_net():
    rngs = lambda: [group_rng([3], r) for r in range(4)]
    first = extensible_sobol_normal(0, 32, 6, rngs(), dtype=torch.float64)
    second = extensible_sobol_normal(32, 64, 6, rngs(), dtype=torch.float64)
    whole = extensible_sobol_normal(0, 64, 6, rngs(), dtype=torch.float64)
    assert torch.equal(torch.cat([first, second], dim=1), whole)
    cells = np.floor(stats.norm.cdf(whole.numpy()) * 64).astype(int)  # every coordinate: one point per cell
    assert all((np.sort(cells[r], axis=0) == np.arange(64)[:, None]).all() for r in range(4))
    blocks = [SobolBlock(16, j) for j in range(3)]
    assert [b.group_size for b in blocks] == [16, 16, 32]


def test_the_rule_meets_the_target_and_counts_every_point():
    r = estimate(GEN, TANH, design=SobolRQMC(64), stopping=RQMCDoubling(halfwidth=2e-3, max_budget=2**20), seed=1)
    info, res = r.config["stopping"], r["tanh"]
    assert info["target_met"] == {"tanh": True} and info["stopped_by"] == "target"
    assert r.budget == 16 * info["points_per_replicate"] == res.n_noises and res.n_groups == 16
    assert res.width / 2 <= 2e-3  # the reported interval, not only the rule's own check, meets the target
    assert res.low - 1e-3 <= TANH_TRUTH <= res.high + 1e-3


def test_coverage_of_the_doubling_rule_on_a_known_truth():
    hits = 0
    for rep in range(40):
        r = estimate(
            GEN, TANH, design=SobolRQMC(32), stopping=RQMCDoubling(halfwidth=5e-3, max_budget=2**18), seed=[4, rep]
        )
        hits += r["tanh"].low <= TANH_TRUTH <= r["tanh"].high
    assert hits >= 34  # 95% over 40 runs: at least 34 with high probability (binomial 5% quantile 35)


def test_a_resumed_doubling_run_is_the_uninterrupted_run(tmp_path):
    kw = dict(design=SobolRQMC(16), stopping=RQMCDoubling(halfwidth=1e-3, max_budget=2**18), seed=2)
    whole = estimate(GEN, TANH, **kw)
    calls = []

    def stop_midway(n, accs):
        calls.append(n)
        if len(calls) == 40:
            raise RuntimeError("stopped by the test")

    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError, match="stopped by the test"):
        estimate(GEN, TANH, **kw, run=RunSettings(checkpoint=Checkpoint(path, every=1), callback=stop_midway))
    resumed = estimate(GEN, TANH, **kw, run=RunSettings(checkpoint=Checkpoint(path, resume=True)))
    assert resumed.to_json() == whole.to_json()


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="runs on design=SobolRQMC"):
        estimate(GEN, TANH, design="antithetic", stopping=RQMCDoubling(halfwidth=1e-3, max_budget=4096))
    with pytest.raises(ValueError, match="replicates must be an int >= 2"):
        RQMCDoubling(halfwidth=1e-3, max_budget=4096, replicates=1)
    with pytest.raises(ValueError, match="below one level"):
        estimate(GEN, TANH, design=SobolRQMC(64), stopping=RQMCDoubling(halfwidth=1e-3, max_budget=512))
    with pytest.warns(UserWarning, match="max_budget 4096 was reached"):
        estimate(GEN, TANH, design=SobolRQMC(64), stopping=RQMCDoubling(halfwidth=1e-9, max_budget=4096))
