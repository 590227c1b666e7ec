"""One vocabulary across the public API: signatures, seeds, names, baselines and result exports.

These tests read the public task functions' signatures, so a later change that brings back
``**options``, a second meaning of ``budget`` or another spelling of a shared option fails here.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest
import torch

import uqdiff
from uqdiff.estimators.results import Exportable
from uqdiff.samplers import LinearGenerator
from uqdiff.statistics import MeanPairwiseL2

#: Task functions that draw noise for a budget: data first, then keyword-only options.
BUDGETED = [
    uqdiff.estimate,
    uqdiff.compare,
    uqdiff.paired_estimate,
    uqdiff.audit,
    uqdiff.estimate_gallery,
    uqdiff.compare_galleries,
    uqdiff.estimate_variations,
    uqdiff.evaluate_solver,
    uqdiff.estimators.group_means,
    uqdiff.estimate_two_fidelity,
    uqdiff.gradient_directions,
]
TASKS = [*BUDGETED, uqdiff.simultaneous_bands, uqdiff.learn_coupling, uqdiff.fixed_object_gallery]
#: The runners: each takes run=RunSettings(...) once and declares no run setting of its own
#: (gradient_directions is not a run: its batch_size is that of its gradient passes).
RUNNERS = [f for f in BUDGETED if f is not uqdiff.gradient_directions] + [uqdiff.evaluate_solvers]
RESULTS = [
    uqdiff.StatisticResult,
    uqdiff.EstimateResult,
    uqdiff.ComparisonResult,
    uqdiff.PairedResult,
    uqdiff.ContrastResult,
    uqdiff.AuditResult,
    uqdiff.GalleryComparison,
    uqdiff.GalleryDifference,
    uqdiff.VariationResult,
    uqdiff.VariationSummary,
    uqdiff.MapBands,
    uqdiff.SolverEvaluation,
    uqdiff.LearnedCoupling,
    uqdiff.FixedObjectResult,
    uqdiff.FixedObjectMetrics,
    uqdiff.TwoFidelityResult,
]
#: Old spellings that must not come back.
RETIRED = {
    "interval",
    "samples_per_image",
    "n_evaluations",
    "target_halfwidth",
    "rel_tol",
    "max_budget",
    "pilot_budget",
    "resume",
    "checkpoint_every",
}


def _params(fn):
    return inspect.signature(fn).parameters


@pytest.mark.parametrize("fn", TASKS, ids=lambda f: f.__name__)
def test_task_functions_spell_out_keyword_only_options(fn):
    params = _params(fn)
    kinds = [p.kind for p in params.values()]
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    positional = [n for n, p in params.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert len(positional) <= 3, positional  # the data: generator(s), statistics, truths, task
    assert not RETIRED & set(params), RETIRED & set(params)
    if "seed" in params:
        assert "SeedLike" in str(params["seed"].annotation), params["seed"].annotation
    if "confidence_level" in params:
        assert params["confidence_level"].default == 0.95
    if "interval_method" in params:
        assert params["interval_method"].default == "skew-t"
    if "design" in params and params["design"].default is not inspect.Parameter.empty:
        assert params["design"].default == "mc"
    assert fn.__doc__ and "Returns" in fn.__doc__, f"{fn.__name__} needs a numpydoc Returns section"
    assert "Raises" in fn.__doc__ and ">>> " in fn.__doc__, f"{fn.__name__} needs Raises and a runnable example"


@pytest.mark.parametrize("fn", BUDGETED, ids=lambda f: f.__name__)
def test_budget_is_a_required_count_of_noises(fn):
    params = _params(fn)
    assert "budget" in params
    assert "noises" in fn.__doc__ or "noise" in fn.__doc__


@pytest.mark.parametrize("fn", [uqdiff.compare, uqdiff.compare_galleries, uqdiff.evaluate_solver])
def test_comparisons_take_designs_and_a_baseline(fn):
    params = _params(fn)
    assert "designs" in params and "design" not in params and "baseline" in params


def test_every_task_function_and_result_type_is_exported():
    for obj in [*TASKS, *RESULTS, uqdiff.Checkpoint, uqdiff.TargetPrecision, uqdiff.StoppingRule]:
        assert getattr(uqdiff, obj.__name__) is obj, obj.__name__
        assert obj.__name__ in uqdiff.__all__


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_every_result_type_exports_the_same_way(cls):
    assert issubclass(cls, Exportable)
    for method in ("to_dict", "to_frame", "to_json", "to_markdown"):
        assert callable(getattr(cls, method))


G = LinearGenerator(np.array([0.5, 0.0]), np.array([[0.3, 0.1], [0.2, 0.4]]))
SQ = {"sq": lambda x: x[:, 0] ** 2}


def _exports_cleanly(result):
    text = result.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    assert result.to_markdown().startswith("|") or result.to_markdown().startswith("#")
    assert isinstance(result.to_dict(), dict)


def test_results_of_real_runs_export_to_standard_json_and_tables():
    r = uqdiff.estimate(G, SQ, budget=64, design="antithetic", seed=1)
    c = uqdiff.compare(G, SQ, budget=64, seed=1)
    p = uqdiff.paired_estimate({"a": G, "b": LinearGenerator([0.0, 0.0])}, SQ, budget=64, seed=1)
    a = uqdiff.audit({"a": G, "b": LinearGenerator([0.0, 0.0])}, lambda x: x[:, 0] > 0.5, budget=64, seed=1)
    gal = uqdiff.compare_galleries(G, MeanPairwiseL2(value_range=(0, 1)), budget=64, designs=["k-antithetic:4"])
    v = uqdiff.estimate_variations(G, torch.zeros(2), SQ, c=0.5, budget=32, seed=1)
    res, means = uqdiff.estimators.group_means(G, lambda x: x, budget=32, seed=1)
    bands = uqdiff.simultaneous_bands(res, group_means=means)
    for result in (r, r["sq"], c, p, p.contrast("a - b", "sq"), a, gal, v, v["sq"], bands):
        _exports_cleanly(result)
    assert r.generator_calls == r.budget == 64
    assert p.budget == 64 and p.generator_calls == 128
    assert a.budget == 64 and a.generator_calls == 128
    assert a.attributes == ["attribute"]  # a lambda attribute is not called '<lambda>'


def test_unnamed_statistics_get_readable_names():
    r = uqdiff.estimate(G, lambda x: x[:, 0], budget=8, seed=0)
    assert list(r.results) == ["statistic"]
    r = uqdiff.estimate(G, [lambda x: x[:, 0], lambda x: x[:, 1]], budget=8, seed=0)
    assert list(r.results) == ["statistic_0", "statistic_1"]


@pytest.mark.parametrize("seed", ["12", [1.7, 2], None, 1.5, "abc", True, [], [1, "2"]])
@pytest.mark.parametrize("fn", [uqdiff.estimate, uqdiff.compare, uqdiff.paired_estimate], ids=lambda f: f.__name__)
def test_bad_seeds_are_refused_naming_the_argument(fn, seed):
    calls = []
    gen = LinearGenerator([0.0, 0.0])
    probe = lambda z: calls.append(len(z)) or gen(z)
    data = {"a": probe, "b": probe} if fn is uqdiff.paired_estimate else probe
    with pytest.raises(TypeError, match="seed must be a non-negative int or a non-empty sequence of them"):
        fn(data, SQ, budget=16, seed=seed, noise_shape=(2,))
    assert calls == []


def test_negative_seed_is_a_value_error():
    with pytest.raises(ValueError, match="seed must be non-negative"):
        uqdiff.estimate(G, SQ, budget=16, seed=[3, -1])


@pytest.mark.parametrize("seed", [7, np.int64(7), [7], (7,), np.array([7])])
def test_every_spelling_of_one_seed_gives_the_same_run(seed):
    assert uqdiff.estimate(G, SQ, budget=16, seed=seed)["sq"] == uqdiff.estimate(G, SQ, budget=16, seed=7)["sq"]


def test_statistic_names_are_refused_in_python():
    with pytest.raises(TypeError, match=r"get_statistic\('mean'\)"):
        uqdiff.estimate(G, "mean", budget=16)


def test_a_misspelled_option_fails_at_the_call_the_user_made():
    with pytest.raises(TypeError, match=r"audit\(\) got an unexpected keyword argument 'interval'"):
        uqdiff.audit({"a": G, "b": G}, lambda x: x[:, 0] > 0, budget=16, interval="normal")


def test_compare_states_each_designs_seed_and_estimate_repeats_it():
    c = uqdiff.compare(G, SQ, budget=64, designs=["antithetic"], seed=3)
    seed = c.estimates["antithetic"].seed
    again = uqdiff.estimate(G, SQ, budget=64, design="antithetic", seed=seed)
    assert again["sq"] == c.estimates["antithetic"]["sq"]
    assert "own seed" in str(c) and "seed" in c.to_frame().columns


def test_the_baseline_is_mc_unless_named():
    c = uqdiff.compare(G, SQ, budget=64, designs=["antithetic", "k-antithetic:4"], seed=0)
    assert c.baseline == "mc" and list(c.estimates)[0] == "mc"
    c = uqdiff.compare(G, SQ, budget=64, designs=["mc", "k-antithetic:4"], baseline="antithetic", seed=0)
    assert c.baseline == "antithetic" and c.efficiency("sq", "antithetic") == 1.0
    gal = uqdiff.compare_galleries(G, MeanPairwiseL2(value_range=(0, 1)), budget=64, designs=["k-antithetic:4"])
    assert gal.baseline == "equicorrelated(k=4, c=0)"


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda f: f.__name__)
def test_every_runner_takes_the_run_settings_once(runner):
    from uqdiff.estimators.settings import MOVED

    parameters = inspect.signature(runner).parameters
    assert "run" in parameters and parameters["run"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not set(MOVED) & set(parameters), "a run setting declared again"
    assert "generator" not in parameters and "cheap_generator" not in parameters
