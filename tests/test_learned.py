"""Learned couplings: projected steps stay on the spheres, known optima are found, files round-trip."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from uqdiff.designs import Equicorrelated, GaussianCoupling, KAntithetic, load_coupling, parse_design, save_coupling
from uqdiff.estimators import learn_coupling
from uqdiff.estimators.gallery import estimate_gallery
from uqdiff.samplers import LinearGenerator, NumpyGenerator, SkipGradient
from uqdiff.statistics import BrightnessContrast, BrightnessGap, BrightnessMargin, MeanPairwiseDistance, MeanPairwiseL2

D = 64
IDENTITY = LinearGenerator(np.zeros(D))  # x = z: the skip gradient is the exact gradient


def off_diagonal(c):
    return c[~np.eye(len(c), dtype=bool)]


def test_projected_updates_keep_unit_norm_rows_at_every_step():
    rng = np.random.default_rng(0)
    init = rng.normal(size=(4, 6))
    init /= np.linalg.norm(init, axis=1, keepdims=True)
    norms = []
    fit = learn_coupling(
        SkipGradient(IDENTITY),
        MeanPairwiseDistance(),
        init=init,
        steps=200,
        lr=0.3,
        galleries_per_step=4,
        seed=1,
        callback=lambda s, v, a: norms.append(np.linalg.norm(a, axis=1)),
    )
    assert fit.design.matrix.shape == (4, 6) and len(norms) == 200
    assert np.abs(np.array(norms) - 1).max() < 1e-6
    assert np.abs(np.diagonal(fit.correlations, axis1=1, axis2=2) - 1).max() < 1e-6
    assert fit.objective.shape == (200,) and fit.correlations.shape == (201, 4, 4)
    assert not np.allclose(fit.design.matrix, init, atol=0.1)  # it did move


def test_diversity_objective_learns_the_repulsive_coupling():
    fit = learn_coupling(SkipGradient(IDENTITY), MeanPairwiseDistance(), k=4, steps=300, seed=0)
    off = off_diagonal(fit.correlation)
    assert np.abs(off + 1 / 3).max() < 0.1, fit.correlation.round(3)
    assert fit.objective[-20:].mean() > fit.objective[:5].mean()


def test_pairwise_l2_only_pins_the_mean_correlation():
    # E[pairwise L2] is linear in C: its optimum is rows summing to zero, mean off-diagonal -1/(K-1)
    fit = learn_coupling(IDENTITY, MeanPairwiseL2(), k=4, steps=150, seed=0)
    assert abs(off_diagonal(fit.correlation).mean() + 1 / 3) < 0.03
    assert np.abs(fit.design.matrix.sum(axis=0)).max() < 0.2


def test_brightness_objective_learns_the_two_block_pattern():
    fit = learn_coupling(
        SkipGradient(IDENTITY), BrightnessContrast(lam=0.35), k=4, steps=200, galleries_per_step=32, seed=0
    )
    c = fit.correlation
    # for Gaussian brightness the optimum has c12 = c34 = (1 - lam^2) / (1 + lam^2) = 0.78, cross mean -0.89
    assert abs(c[0, 1] - 0.782) < 0.15 and abs(c[2, 3] - 0.782) < 0.15, c.round(2)
    assert c[:2, 2:].max() < -0.5 and c[:2, 2:].mean() < -0.75, c.round(2)


def test_minimize_turns_the_objective_around():
    fit = learn_coupling(IDENTITY, MeanPairwiseDistance(), k=3, steps=100, maximize=False, seed=0)
    assert off_diagonal(fit.correlation).min() > 0.9  # least diverse: all noises (nearly) equal


def test_saved_coupling_reloads_to_bit_identical_noise(tmp_path):
    fit = learn_coupling(IDENTITY, MeanPairwiseDistance(), k=4, steps=7, seed=3, name="learned diversity")
    path = save_coupling(fit.design, tmp_path / "sub" / "c.json", provenance=fit.config)
    loaded = load_coupling(path)
    assert np.array_equal(loaded.matrix, fit.design.matrix) and loaded.name == "learned diversity"
    for seed in (0, [5, 2]):
        a = fit.design.groups(np.arange(10), 300, seed=seed)
        assert torch.equal(a, loaded.groups(np.arange(10), 300, seed=seed))
    record = json.loads(path.read_text())
    assert record["format"] == "uqdiff-coupling" and record["provenance"]["steps"] == 7
    assert record["uqdiff_version"]
    spec = parse_design(f"coupling:{path}")
    assert isinstance(spec, GaussianCoupling) and np.array_equal(spec.matrix, fit.design.matrix)


def test_learning_draws_the_designs_basis_noise():
    # step s uses the basis noise GaussianCoupling draws for [seed, s]: with x = z the objective is reproducible
    fit = learn_coupling(IDENTITY, MeanPairwiseL2(), k=4, steps=1, lr=1e-3, galleries_per_step=5, seed=[7])
    z = Equicorrelated(4, 0.0).groups(np.arange(5), D, seed=[7, 0], dtype=torch.float64)
    expected = MeanPairwiseL2()(z.reshape(20, D), gallery_size=4).mean()
    assert fit.objective[0] == pytest.approx(float(expected), rel=1e-6)


def _write(path, record):
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


GOOD = {"format": "uqdiff-coupling", "matrix": [[1.0, 0.0], [0.6, 0.8]]}


@pytest.mark.parametrize(
    "record, message",
    [
        ("{not json", "not a JSON coupling file"),
        ([1, 2], "not a coupling file"),
        ({"matrix": [[1.0]]}, "not a coupling file"),
        ({**GOOD, "matrix": [[[1.0]]]}, "coupling matrix must be 2-D"),
        ({**GOOD, "matrix": [[1.0, 0.0], [1.0]]}, "'matrix' must be a list of rows of numbers"),
        ({**GOOD, "shape": [3, 2]}, r"matrix has shape \[2, 2\] but the file says \[3, 2\]"),
        ({**GOOD, "matrix": [[1.0, 0.0], [0.5, 0.5]]}, "row 1 of the coupling matrix has norm 0.707107"),
        ('{"format": "uqdiff-coupling", "matrix": [[NaN]]}', "NaN or Inf"),
    ],
)
def test_bad_coupling_files_get_clear_errors(tmp_path, record, message):
    path = _write(tmp_path / "bad.json", record)
    with pytest.raises(ValueError, match=message) as err:
        load_coupling(path)
    assert str(path) in str(err.value)


def test_missing_file_and_bare_coupling_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="no coupling file at"):
        parse_design(f"coupling:{tmp_path / 'absent.json'}")
    with pytest.raises(ValueError, match=r"needs a coupling file: coupling:PATH.json"):
        parse_design("coupling")
    with pytest.raises(TypeError, match="must be a GaussianCoupling"):
        save_coupling("mc", tmp_path / "x.json")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "k must be an int >= 2 for init='identity'"),
        ({"k": 3, "init": "random"}, ValueError, "init must be 'identity'"),
        ({"init": [[1.0, 0.0], [0.5, 0.5]]}, ValueError, "row 1 of the coupling matrix"),
        ({"k": 3, "init": np.eye(2)}, ValueError, "k=3 does not match the 2 rows of init"),
        ({"k": 2, "steps": 0}, ValueError, "steps must be a positive int"),
        ({"k": 2, "lr": -1.0}, ValueError, "lr must be a finite positive number"),
    ],
)
def test_learn_coupling_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        learn_coupling(IDENTITY, MeanPairwiseDistance(), **kwargs)


def test_non_differentiable_generator_is_named():
    numpy_generator = NumpyGenerator(lambda z: z, noise_shape=(D,))
    with pytest.raises(ValueError, match="wrap a sampler .* in SkipGradient"):
        learn_coupling(numpy_generator, MeanPairwiseDistance(), k=2, steps=1)
    fit = learn_coupling(SkipGradient(numpy_generator), MeanPairwiseDistance(), k=2, steps=30, seed=0)
    assert fit.correlation[0, 1] < -0.5  # the same generator through the skip gradient learns


def test_skip_gradient_is_the_sample_forward_and_identity_backward():
    z = torch.randn(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    g = SkipGradient(lambda x: x.square(), readout=lambda x: x[..., 1:3, 1:3])
    x = g(z)
    assert torch.allclose(x.detach(), z.detach().square()[..., 1:3, 1:3], rtol=0, atol=1e-12)  # + z - z: rounding
    x.sum().backward()
    expected = torch.zeros_like(z)
    expected[..., 1:3, 1:3] = 1
    assert torch.equal(z.grad, expected)
    with pytest.raises(ValueError, match="samples shaped like the noise"):
        SkipGradient(lambda x: x[:, :2])(torch.zeros(2, 4))


def test_brightness_statistics_share_one_brightness():
    b = torch.tensor([0.9, 0.7, 0.2, 0.0, 0.1, 0.5, 0.4, 0.8]).reshape(8, 1, 1, 1)  # two galleries, [0, 1]
    gap = BrightnessGap(value_range=(0, 1))(b, gallery_size=4)
    contrast = BrightnessContrast(lam=0.35, value_range=(0, 1))(b, gallery_size=4)
    margin = BrightnessMargin(value_range=(0, 1))(b, gallery_size=4)
    assert torch.allclose(gap, torch.tensor([0.7, 0.3]))
    assert torch.allclose(contrast, gap + 0.35 * torch.tensor([(0.2 + 0.2) / 2, (0.4 + 0.4) / 2]))
    assert torch.allclose(margin, torch.tensor([0.5, 0.1]))
    rgb = torch.zeros(4, 3, 2, 2)
    rgb[0, 1] = 1.0  # pure green: value channel 1
    assert BrightnessGap(value_range=(0, 1))(rgb, gallery_size=4).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="gallery_size must be even, got 3"):
        BrightnessGap()(torch.zeros(3, 2), gallery_size=3)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        BrightnessContrast(lam=-1)


@pytest.mark.parametrize("design, c", [(Equicorrelated(4, 0.0), 0.0), (KAntithetic(4), -1 / 3)])
def test_brightness_gap_interval_covers_its_closed_form(design, c):
    # x = z on [-1, 1]: b_i = (mean z_i + 1) / 2, Var b_i = 1 / (4 D); gap = |N(0, (1 - c) / (4 D))|
    r = estimate_gallery(IDENTITY, BrightnessGap(), design=design, budget=4000, seed=2)["brightness_gap"]
    truth = math.sqrt(2 / math.pi) * math.sqrt((1 - c) / (4 * D))
    assert r.low < truth < r.high


def test_pairwise_distance_has_a_finite_gradient_for_equal_images():
    x = torch.ones(4, 8, requires_grad=True)
    MeanPairwiseDistance()(x, gallery_size=4).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_benchmark_quick_saves_and_reloads_couplings(monkeypatch, tmp_path):
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("bench_learned_coupling", bench / "learned_coupling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(["--quick", "--out", str(tmp_path)])
    assert list(table["method"]) == ["i.i.d.", "equicorr.", "learned"]
    for name in ("diversity_k4_quick", "brightness_k4_quick"):
        assert load_coupling(tmp_path / f"{name}.json").group_size == 4
    saved = json.loads((tmp_path / "learned_coupling_quick.json").read_text())
    assert set(saved["comparison"]["estimates"]) == {"equicorrelated(k=4, c=0)", "k-antithetic(k=4)", "brightness K=4"}
    assert (tmp_path / "learned_coupling_quick.png").is_file() and (tmp_path / "galleries_quick.png").is_file()
