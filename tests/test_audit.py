"""Bias audits: proportion and difference intervals on oracles with known truth, Holm as statsmodels does it."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from uqdiff.designs import SobolRQMC
from uqdiff.estimators.audit import audit, difference_interval, difference_p_value, proportion_interval
from uqdiff.estimators.paired import paired_estimate
from uqdiff.samplers import LinearGenerator

J = np.array([[0.6, 0.8]])  # |J| = 1: x = offset + N(0, 1)
PROBS = {"rare": 0.02, "mid": 0.3, "mid2": 0.45, "common": 0.98}
GENS = {c: LinearGenerator([-stats.norm.isf(p)], J) for c, p in PROBS.items()}  # P(x > 0) = p


def positive(x):
    return x[:, 0] > 0


@pytest.mark.parametrize("design,budget", [("mc", 64), ("antithetic", 64), (SobolRQMC(16), 128)])
def test_intervals_cover_near_0_and_1_with_few_groups(design, budget):
    """Wilson-n_eff for proportions, Newcombe for differences; measured (300 runs each):
    proportions 0.94-1.0, differences 0.90-1.0; the t interval covers p = 0.02 only ~0.7 of the time."""
    reps = 300
    hit = {c: 0 for c in PROBS}
    hit_t = 0
    hit_d = {}
    for i in range(reps):
        run = paired_estimate(GENS, positive, budget=budget, design=design, seed=[11, i])
        arms = run.arms["positive"]
        for c, r in arms.items():
            lo, hi = proportion_interval(r.estimate, r.standard_error, n_noises=r.n_noises, df=r.df)
            assert 0.0 <= lo <= r.estimate <= hi <= 1.0
            hit[c] += lo <= PROBS[c] <= hi
        hit_t += arms["rare"].low <= PROBS["rare"] <= arms["rare"].high
        for name, c in run.contrasts["positive"].items():
            a, b = name.split(" - ")
            lo, hi = difference_interval(arms[a], arms[b], c.result)
            assert -1.0 <= lo <= hi <= 1.0
            hit_d[name] = hit_d.get(name, 0) + (lo <= PROBS[a] - PROBS[b] <= hi)
    coverage = {c: h / reps for c, h in hit.items()}
    assert min(coverage.values()) >= 0.92, coverage
    assert min(h / reps for h in hit_d.values()) >= 0.88, hit_d
    assert np.mean([h / reps for h in hit_d.values()]) >= 0.93, hit_d
    if design == "mc":
        assert hit_t / reps < 0.85  # the plain t interval fails where this one holds


def test_degenerate_proportions_use_the_image_count():
    lo, hi = proportion_interval(0.0, 0.0, n_noises=64, df=31)
    q = stats.t.ppf(0.975, 31)
    assert (lo, hi) == (0.0, pytest.approx(q**2 / (64 + q**2)))
    lo, hi = proportion_interval(1.0, 0.0, n_noises=64, df=31)
    assert (lo, hi) == (pytest.approx(64 / (64 + q**2)), 1.0)


def test_holm_and_bonferroni_match_statsmodels_and_the_intervals():
    gens = {c: GENS[c] for c in ("rare", "mid", "mid2")}
    r = audit(gens, positive, budget=128, design="antithetic", seed=4)
    d = r.differences
    reject, p_holm, _, _ = multipletests(d.p_value.to_numpy(), alpha=0.05, method="holm")
    np.testing.assert_array_equal(d.p_holm.to_numpy(), p_holm)
    np.testing.assert_array_equal(d.reject.to_numpy(), reject)
    assert d.reject.any() and not d.reject.all() or d.reject.all()
    run = paired_estimate(gens, positive, budget=128, design="antithetic", seed=4)
    arms = run.arms["positive"]
    for row in d.itertuples():
        a, b, c = arms[row.condition_a], arms[row.condition_b], run.contrast(row.contrast).result
        assert (row.low, row.high) == pytest.approx(difference_interval(a, b, c))
        assert (row.low_adjusted, row.high_adjusted) == pytest.approx(
            difference_interval(a, b, c, confidence_level=1 - 0.05 / len(d))
        )
        assert row.p_value == pytest.approx(difference_p_value(a, b, c))
        if 1e-12 < row.p_value < 1:  # the interval at level 1 - p touches 0
            lo, hi = difference_interval(a, b, c, confidence_level=1 - row.p_value)
            assert min(abs(lo), abs(hi)) < 1e-6


def test_vector_attributes_reference_trend_and_tables(tmp_path):
    onehot = lambda x: np.stack([(x[:, 0] <= 0).numpy(), (x[:, 0] > 0).numpy()], axis=1)
    r = audit(
        {c: GENS[c] for c in ("rare", "mid", "common")},
        onehot,
        budget=64,
        reference="mid",
        attribute_names=["no", "yes"],
        trend=[0, 1, 2],
        seed=2,
    )
    assert r.matrix().shape == (3, 2)
    np.testing.assert_allclose(r.matrix().sum(axis=1), 1.0)
    assert sorted(set(r.differences.contrast)) == ["common - mid", "rare - mid"]
    assert len(r.differences) == 4 and len(r.trend) == 2
    assert r.proportions.low_simultaneous.le(r.proportions.low).all()
    assert "### Trend" in r.to_markdown() and '"conditions"' in r.to_json()
    for result in (r, audit({c: GENS[c] for c in ("rare", "mid")}, positive, budget=32, seed=0)):
        fig = result.plot()
        fig.savefig(tmp_path / "audit.png")
    assert (tmp_path / "audit.png").stat().st_size > 10_000


def test_bad_input_errors():
    with pytest.raises(ValueError, match="must return booleans or probabilities in \\[0, 1\\]"):
        audit(GENS, lambda x: x[:, 0], budget=8)
    with pytest.raises(ValueError, match="attribute_names must be 1 distinct names"):
        audit(GENS, positive, budget=8, attribute_names=["a", "b"])
    with pytest.raises(ValueError, match="trend must give 4 finite"):
        audit(GENS, positive, budget=8, trend=[1, 2])
