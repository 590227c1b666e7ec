"""evaluate_solvers: two-level intervals over images on a known-truth problem, common noise, Holm, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from uqdiff import evaluate_solvers
from uqdiff.samplers import LinearGenerator
from uqdiff.statistics import L1

# Known truth: image i is the constant u_i, u ~ Uniform(0, 1), 4x4 pixels. Solver "A" returns the
# truth shifted by 0.3 u_i plus noise; "B" by 0.1 + 0.1 u_i. The statistic is the mean signed error,
# so image i's expected value is 0.3 u_i (A) and 0.1 + 0.1 u_i (B): population means 0.15 and 0.15,
# difference 0, and the per-image spread of the truth (0.09 / 12) is half of each interval.
SHAPE = (1, 4, 4)


def solver(slope, offset, noise):
    def make(m):
        u = float(m.truth.mean())
        return LinearGenerator((m.truth + offset + slope * u).reshape(-1).numpy(), noise * np.ones((16, 3)))

    return make


def signed_error(truth):
    return lambda x: (torch.as_tensor(x).reshape(len(x), *SHAPE) - truth).mean(dim=(1, 2, 3))


def images(rng, n):
    return torch.from_numpy(rng.random(n)).float().reshape(n, 1, 1, 1).expand(n, *SHAPE).contiguous() * 0.9


SOLVERS = {"A": solver(0.3, 0.0, 0.2), "B": solver(0.1, 0.1, 0.2), "C": solver(0.3, 0.1, 0.2)}
TRUTH = {"A": 0.3 * 0.45, "B": 0.1 + 0.1 * 0.45, "C": 0.1 + 0.3 * 0.45}  # u = 0.9 Uniform(0, 1): mean 0.45


def run(rng, n_images=10, design="mc", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few images, on purpose
        return evaluate_solvers(
            SOLVERS,
            images(rng, n_images),
            "box_inpainting",
            budget=8,
            design=design,
            statistics=[signed_error],
            sigma_y=0.0,
            seed=int(rng.integers(2**31)),
            **kw,
        )


def test_two_level_intervals_cover_the_population_mean_and_difference():
    rng = np.random.default_rng(0)
    reps, hit, hit_d, family_error = 150, {s: 0 for s in SOLVERS}, 0, 0
    for _ in range(reps):
        c = run(rng)
        stat = next(iter(c.means))
        for s, m in c.means[stat].items():
            hit[s] += m.low <= TRUTH[s] <= m.high
        d = c.differences[stat]["A - B"]
        truth_d = TRUTH["A"] - TRUTH["B"]
        hit_d += d.confidence_interval.low <= truth_d <= d.confidence_interval.high
        family_error += d.resolved  # A and B have the same population mean: a resolved A-B is an error
    for s in SOLVERS:
        assert 0.90 <= hit[s] / reps <= 0.99, (s, hit[s] / reps)
    assert 0.90 <= hit_d / reps <= 0.99
    assert family_error / reps <= 0.05 + 2 * 0.018  # Holm keeps the family-wise error (here, one true null)


def test_components_ranking_and_common_noise():
    rng = np.random.default_rng(1)
    c = run(rng, n_images=40, design="antithetic")
    stat = next(iter(c.means))
    a = c.means[stat]["A"]
    # between images: Var(0.3 u) = 0.09 * 0.81 / 12; within: per-sample noise of the signed error, 0.2^2 * 3
    assert a.between_variance == pytest.approx(0.09 * 0.81 / 12, rel=0.5)
    assert np.isfinite(a.recommended_samples_per_image)
    assert c.ranking[stat].startswith("C >")  # C has the largest mean, resolved against both
    assert c.differences[stat]["A - C"].resolved and c.differences[stat]["B - C"].resolved
    assert "slot by slot" in c.common_noise
    # common noise: the solvers' noise parts cancel in a difference, so it beats independent MC
    assert c.differences[stat]["A - B"].noise_efficiency > 10
    assert "C >" in c.conclusion() and "Population means" in c.to_markdown()
    frame = c.to_frame()
    assert {"kind", "solver", "statistic", "estimate", "low", "high"} <= set(frame.columns)
    # the exported ends are the intervals' numbers (0.3's first export wrote the words "low" and "high")
    row = frame[(frame.kind == "mean") & (frame.solver == "A") & (frame.statistic == stat)].iloc[0]
    assert (row.low, row.high) == (a.low, a.high) and row.low < row.estimate < row.high
    diff = c.differences[stat]["A - C"]
    exported = next(d for d in c.to_dict()["differences"][stat].values() if d["estimate"] == diff.estimate)
    assert (exported["low"], exported["high"]) == (diff.low, diff.high)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solvers={"A": SOLVERS["A"]}), "at least two solvers"),
        (dict(images=torch.zeros(1, *SHAPE)), "at least 2 images"),
        (dict(images=torch.full((3, *SHAPE), 3.0)), r"\[-1, 1\] scale"),
        (dict(statistics=["l1"]), "callables"),
        (dict(image_cost=0), "image_cost"),
    ],
)
def test_bad_input_is_refused_before_any_solver_call(kwargs, match):
    calls = []

    def counted(m):
        calls.append(1)
        return SOLVERS["A"](m)

    args = dict(solvers={"A": counted, "B": counted}, images=torch.zeros(3, *SHAPE), statistics=[L1])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate_solvers(args.pop("solvers"), args.pop("images"), "box_inpainting", budget=8, **args)
    assert not calls


def test_stopping_early_over_images_keeps_coverage():
    """Looks at 4, 8, 16, 32 images, stopping when every pair is resolved: intervals at alpha / 4 each."""
    rng = np.random.default_rng(2)
    reps, hit, stopped_early = 150, {s: 0 for s in SOLVERS}, 0
    for _ in range(reps):
        c = run(rng, n_images=32, initial_images=4)
        stat = next(iter(c.means))
        assert c.looks[0] == 4 and c.n_images == c.looks[-1] and c.confidence_level == pytest.approx(1 - 0.05 / 4)
        stopped_early += c.n_images < 32
        for s, m in c.means[stat].items():
            hit[s] += m.low <= TRUTH[s] <= m.high
    for s in SOLVERS:
        assert hit[s] / reps >= 0.95 - 2 * 0.018, (s, hit[s] / reps)
    # A and B are equal: a run stops early only by falsely resolving them, at most alpha over all looks
    assert stopped_early / reps <= 0.05 + 2 * 0.018


def test_clear_winners_stop_at_the_first_look():
    rng = np.random.default_rng(3)
    clear = {"A": solver(0.0, 0.0, 0.05), "B": solver(0.0, 0.5, 0.05)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        c = evaluate_solvers(
            clear,
            images(rng, 32),
            "box_inpainting",
            budget=8,
            statistics=[signed_error],
            sigma_y=0.0,
            initial_images=8,
            seed=0,
        )
    assert c.looks == [8] and c.n_images == 8 and c.differences["statistic"]["A - B"].resolved
    with pytest.raises(ValueError, match="initial_images must be an int from 2"):
        evaluate_solvers(clear, images(rng, 4), "box_inpainting", budget=8, initial_images=8)
