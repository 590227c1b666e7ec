"""The benchmark scripts run from a fresh checkout: --help, and --quick runs that write their tables."""

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FASHION_DATA = Path(os.environ.get("FASHION_MNIST_ROOT", "/usr/share/datasets/fashion-mnist"))
needs_fashion_data = pytest.mark.skipif(
    not FASHION_DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist (or FASHION_MNIST_ROOT)"
)
SCRIPTS = [
    "table1",
    "table2",
    "interval_coverage",
    "overhead",
    "sobol_speed",
    "gallery_ablation",
    "variations",
    "beyond_paper",
    "subspace_points",
    "gradient_subspace",
    "bounded_coverage",
    "hard_coverage",
    "noise_speed",
    "solver_population",
    "solver_designs",
    "sequential_coverage",
    "comparison_coverage",
    "efficiency_interval_coverage",
    "audit_examples",
    "dps_step_size",
    "ray_throughput",
    "terrain_demo",
    "terrain_sr_diagnosis",
    "capture_overhead",
    "gpu_check",
    "fixed_object",
    "learned_coupling",
    "dps_vs_dds",
    "inverse_solvers",
    "rqmc_stopping",
    "sequential_hard_cases",
    "within_run_diagnostics",
    "repulsive",
]


@pytest.fixture
def load(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load_script(name):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load_script


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_cleanly(load, name, capsys):
    with pytest.raises(SystemExit) as stop:
        load(name).main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_table2_quick_writes_every_design_and_statistic(load, tmp_path):
    frame = load("table2").main(["--model", "fashion", "--quick", "--out", str(tmp_path)])
    assert sorted(set(frame["statistic"])) == ["centroid", "contrast", "mean"]
    assert list(frame["design"].unique()) == ["MC", "AMC k=2", "AMC k=8", "RQMC 2 x 16", "RQMC 4 x 8", "RQMC 8 x 4"]
    assert (frame["CI width"] > 0).all()
    saved = json.loads((tmp_path / "fashion_quick.json").read_text())
    assert saved["budget"] == 32 and saved["command"].startswith("python ")
    assert "| statistic | design |" in (tmp_path / "fashion_quick.md").read_text()


def test_table1_quick_reports_our_rows_beside_the_papers(load, tmp_path):
    frame = load("table1").main(["--quick", "--out", str(tmp_path)])
    ours = frame[frame["model"].str.startswith("ours")]
    assert len(ours) == 1 and ours["pairs"].iloc[0] == 4
    assert (tmp_path / "table1_quick.md").is_file()


def test_coverage_quick_covers_every_design(load, tmp_path):
    frame = load("interval_coverage").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) == 8 * 6  # eight designs x six (problem, statistic) cells
    assert frame["coverage skew-t"].between(0, 1).all()
    assert (frame["coverage t"] >= frame["coverage normal"]).all()  # t quantiles are wider
    assert set(frame["groups"]) >= {8, 16}  # RQMC with 8 and 16 replicates


def test_gallery_ablation_quick_fills_both_tables_and_the_marginal_check(load, tmp_path):
    frame = load("gallery_ablation").main(["--quick", "--out", str(tmp_path)])
    cells = set(zip(frame["K"], frame["c"].round(4)))
    assert {(k, 0.0) for k in (2, 3, 4, 5)} <= cells and {(3, c) for c in (-0.125, -0.25, -0.375, -0.5)} <= cells
    assert set(frame["statistic"]) == {"L2", "SSIM", "MSS", "Vendi", "brightness", "contrast", "confidence"}
    assert frame.loc[frame["c"] != 0, "p"].between(0, 1).all()
    text = (tmp_path / "ablation_quick.md").read_text()
    assert "## Table 5" in text and "## Table 6" in text and "Prop. 3.2" in text
    assert (tmp_path / "ablation_quick.png").stat().st_size > 10_000


def test_variations_quick_reports_every_strength(load, tmp_path):
    frame = load("variations").main(["--quick", "--out", str(tmp_path)])
    assert sorted(frame["c"].unique()) == sorted(load("variations").STRENGTHS)
    change = frame[frame["statistic"] == "class change"]
    assert (change["mean low"] >= 0).all() and (change["mean high"] <= 1).all()  # Wilson stays in [0, 1]
    assert (tmp_path / "variations_quick.png").is_file()


@pytest.mark.slow
def test_overhead_quick(load, tmp_path):
    frame = load("overhead").main(["--quick", "--out", str(tmp_path)])
    assert "same estimate: True" in " ".join(frame["detail"])


def test_every_script_is_in_the_manifest():
    """docs/benchmarks.md names every script, so a reader can go from a figure to its command."""
    manifest = (BENCHMARKS.parent / "docs" / "benchmarks.md").read_text()
    scripts = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    scripts += sorted(p.name for p in BENCHMARKS.glob("*.sh"))
    missing = [name for name in scripts if f"benchmarks/{name}" not in manifest]
    assert not missing, f"add to docs/benchmarks.md: {missing}"


@pytest.mark.parametrize(
    "name, written", [("bounded_coverage", "bounded_quick"), ("hard_coverage", "hard_cells_quick")]
)
def test_coverage_benchmarks_quick_write_every_cell(load, tmp_path, name, written):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few groups, on purpose
        frame = load(name).main(["--quick", "--out", str(tmp_path)])
    assert len(frame) >= 8 and frame["coverage skew-t"].between(0, 1).all()
    assert (tmp_path / f"{written}.md").is_file() and (tmp_path / f"{written}.json").is_file()


@pytest.mark.parametrize(
    "name, written", [("sequential_coverage", "sequential_coverage_quick"), ("comparison_coverage", "coverage_quick")]
)
def test_older_coverage_benchmarks_quick(load, tmp_path, name, written):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        load(name).main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / f"{written}.md").is_file() and (tmp_path / f"{written}.json").is_file()


def test_efficiency_interval_coverage_quick_covers_both_cases(load, tmp_path):
    frame = load("efficiency_interval_coverage").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) == 2 and (frame["runs"] == 50).all() and frame["coverage"].between(0, 1).all()
    # the median measured efficiency sits near the closed-form truth in both cases
    assert np.allclose(frame["median efficiency"], frame["true efficiency"], rtol=0.25)
    assert (tmp_path / "efficiency_interval_coverage_quick.md").is_file()


def needs_terrain():
    """The terrain consistency model: onnxruntime and the adaptive-terrain-diffusion package (the terrain extra)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("terrain_diffusion")


def test_every_script_is_listed_and_has_a_quick_smoke_test():
    """SCRIPTS covers benchmarks/*.py (so each --help runs), and some test under tests/ runs each with --quick."""
    scripts = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert sorted(SCRIPTS) == scripts
    tests = [p.read_text() for p in Path(__file__).parent.glob("test_*.py")]
    untested = [n for n in scripts if not any(f'"{n}"' in t and '"--quick"' in t for t in tests)]
    assert not untested, f"no --quick smoke test for {untested}"


# The six scripts that got --quick last: each writes *_quick files, never over the committed results.


def test_sobol_speed_quick_times_every_method(load, tmp_path):
    result = load("sobol_speed").main(["--quick", "--out", str(tmp_path)])
    assert result["config"]["dim"] == 256 and result["config"]["reps"] == 4 and result["config"]["quick"]
    rows = {row["method"]: row for row in result["rows"]}
    assert {"uqdiff lms+shift, Gaussian float32", "scipy Sobol LMS+shift, uniform float64"} <= set(rows)
    assert all(row["seconds"] > 0 and row["kind"] in ("uniform", "gaussian") for row in rows.values())
    references = [row for name, row in rows.items() if name.startswith("qmcpy")]
    assert all(row["ratio_qmcpy_over_method"] == 1 for row in references)  # qmcpy against itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sobol_speed_quick.json", "sobol_speed_quick.md"]
    assert "| method | output | seconds |" in (tmp_path / "sobol_speed_quick.md").read_text()


def test_ray_throughput_quick_is_bit_identical_on_one_and_two_workers(load, tmp_path):
    pytest.importorskip("ray")
    result = load("ray_throughput").main(["--quick", "--out", str(tmp_path)])
    assert result["bit_identical_to_in_process"] and result["setup"]["budget"] == 1024
    rates = result["evaluations_per_second"]
    assert set(rates) == {"in_process", "ray_1_worker", "ray_2_workers"} and min(rates.values()) > 0
    assert result["speedup_2_vs_1_workers"] == pytest.approx(rates["ray_2_workers"] / rates["ray_1_worker"])
    saved = json.loads((tmp_path / "ray_throughput_quick.json").read_text())
    assert saved["setup"]["quick"] and "| Ray, 2 workers |" in (tmp_path / "ray_throughput_quick.md").read_text()


def test_terrain_demo_quick_compares_the_four_designs(load, tmp_path):
    needs_terrain()
    saved = load("terrain_demo").main(["--quick", "--out", str(tmp_path)])
    assert list(saved["estimates"]) == ["mc", "antithetic", "k-antithetic(k=4)", "rqmc(n=4, lms+shift)"]
    for design in saved["estimates"].values():
        results = design["results"]
        assert set(results) == {"mean", "contrast", "centroid", "slope"}
        for r in results.values():
            assert r["n_noises"] == 8 and r["low"] <= r["estimate"] <= r["high"]
        assert 0 <= results["mean"]["estimate"] <= 1  # the [0, 1]-scaled heightmap
    assert "| statistic |" in (tmp_path / "comparison_quick.md").read_text()
    assert not (tmp_path / "comparison.json").exists()


def test_terrain_sr_diagnosis_quick_reports_psnrs(load, tmp_path):
    needs_terrain()
    frame = load("terrain_sr_diagnosis").main(["--quick", "--out", str(tmp_path)])
    assert list(frame["factor"]) == [4, 8] and list(frame["steps"]) == [2, 2]
    psnr = frame[["naive_psnr", "sample_psnr", "posterior_mean_psnr", "lowres_of_samples_psnr"]]
    assert psnr.apply(lambda c: c.between(10, 60)).all().all()  # dB against a [-1, 1] terrain: finite, plausible
    assert len(json.loads((tmp_path / "terrain_sr_diagnosis_quick.json").read_text())) == 2
    assert "2 samples per row" in (tmp_path / "terrain_sr_diagnosis_quick.md").read_text()


@needs_fashion_data
def test_dps_step_size_quick_scales_the_step_by_sqrt_1000_over_steps(load, tmp_path):
    frame = load("dps_step_size").main(["--quick", "--out", str(tmp_path)])
    assert list(frame["task"]) == ["inpainting"] * 2 + ["super_resolution"] * 2
    assert list(frame["zeta"]) == ["unscaled", "default"] * 2
    unscaled, default = frame["value"].iloc[0::2].to_numpy(), frame["value"].iloc[1::2].to_numpy()
    assert default == pytest.approx(unscaled * math.sqrt(1000 / 4), abs=1e-3)  # --quick runs 4 steps
    assert frame[["naive_psnr", "sample_psnr", "posterior_mean_psnr"]].apply(lambda c: c.between(0, 60)).all().all()
    assert "DPS step size at 4 steps" in (tmp_path / "dps_step_size_quick.md").read_text()


@pytest.mark.parametrize("model", ["fashion", "terrain"])
def test_audit_examples_quick_writes_the_audit(load, tmp_path, model):
    if model == "terrain":
        needs_terrain()
    summaries = load("audit_examples").main([model, "--quick", "--out", str(tmp_path)])
    out = tmp_path / model
    saved = json.loads((out / "audit_quick.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summaries[model], default=float))
    assert (out / "audit_quick.md").is_file() and (out / "audit_quick.png").stat().st_size > 10_000
    proportions = saved["audit"]["proportions"]
    assert all(0 <= p["low"] <= p["estimate"] <= p["high"] <= 1 for p in proportions)
    if model == "fashion":
        assert saved["summary"]["sampler"] == "DDIM, 2 steps, eta 0" and saved["summary"]["pixel_map"]["pixels"] == 784
        for label in saved["audit"]["conditions"]:  # one verdict per image: each label's proportions sum to 1
            assert sum(p["estimate"] for p in proportions if p["condition"] == label) == pytest.approx(1)
        assert (out / "pixel_bands_quick.png").is_file()
    else:
        summary = saved["summary"]
        assert summary["levels"] == [1, 34, 67, 100] and summary["model_calls_total"] == 4 * (2 + 8)
        trend = summary["trend_per_level"]
        assert trend["low"] <= trend["estimate"] <= trend["high"] and summary["threshold"] > 0


# The older scripts' --quick runs, not tested elsewhere.


def test_subspace_points_quick_reports_each_point_count(load, tmp_path):
    needs_terrain()
    frame = load("subspace_points").main(["--quick", "--out", str(tmp_path)])
    assert sorted(set(frame["points n"])) == [2, 4] and len(frame) == 2 * 5  # five statistics
    assert (frame["replicates"] * frame["points n"] == 8).all() and (frame["efficiency"] > 0).all()
    assert (tmp_path / "terrain_quick.md").is_file()


def test_gradient_subspace_quick_prices_the_pilot(load, tmp_path):
    frame = load("gradient_subspace").main(["--quick", "--out", str(tmp_path)])
    assert list(frame["statistic"]) == ["mean", "std", "slope", "contrast", "centroid"]
    assert (frame["gradient subspace"] > 0).all()
    assert (frame["with the pilot's cost"] < frame["gradient subspace"]).all()  # the pilot costs model calls
    assert json.loads((tmp_path / "fashion_quick.json").read_text())["pilot_cost"] > 0


def test_noise_speed_quick_times_every_design_and_shape(load, tmp_path):
    frame = load("noise_speed").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) == 5 * 2 and (frame["ratio"] > 0).all()
    assert (frame["ratio_q1"] <= frame["ratio"]).all() and (frame["ratio"] <= frame["ratio_q3"]).all()
    assert json.loads((tmp_path / "noise_speed_quick.json").read_text())["pairs"] == 5


def test_within_run_diagnostics_quick(load, tmp_path):
    frame = load("within_run_diagnostics").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) >= 4 and frame["F interval coverage"].between(0, 1).all()
    assert (frame["marginal variance"] > 0).all()
    assert (tmp_path / "diagnostics_quick.md").is_file()


def test_sequential_hard_cases_quick(load, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few groups, on purpose
        frame = load("sequential_hard_cases").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) >= 4 and frame["coverage"].between(0, 1).all() and (frame["mean noises"] > 0).all()
    assert (tmp_path / "hard_cases_quick.json").is_file()


def test_rqmc_stopping_quick_runs_both_rules(load, tmp_path):
    pytest.importorskip("qmcpy")
    frame = load("rqmc_stopping").main(["--quick", "--out", str(tmp_path)])
    assert {"uqdiff RQMCDoubling", "qmcpy CubQMCRepStudentT"} <= set(frame["rule"])
    assert frame["coverage"].between(0, 1).all() and (frame["mean evaluations"] > 0).all()
    assert (tmp_path / "rqmc_stopping_quick.md").is_file()


def test_gpu_check_quick_runs_on_the_cpu_without_cuda(load, tmp_path):
    frame = load("gpu_check").main(["--quick", "--out", str(tmp_path)])
    assert len(frame) == 1 and (frame[["direct", "captured"]] > 0).all().all()
    saved = json.loads((tmp_path / "gpu_check_quick.json").read_text())
    assert saved["time"]["estimate_repeats_bit_identical"] and saved["time"]["repeat_check"]["repeatable"]


@needs_fashion_data
def test_solver_population_quick(load, tmp_path):
    frame = load("solver_population").main(["--quick", "--out", str(tmp_path)])
    means = frame[frame.kind == "mean"]
    assert set(means["solver"]) == {"DPS", "DDS", "RSD", "DiffPIR"} and (frame["low"] <= frame["high"]).all()
    assert len(frame[frame.kind == "difference"]) == 2 * 6  # every pair of 4 solvers, L1 and PSNR
    assert (tmp_path / "solver_population_quick.json").is_file()


def test_solver_population_quick_on_terrain(load, tmp_path):
    needs_terrain()
    frame = load("solver_population").main(["--quick", "--model", "terrain", "--out", str(tmp_path)])
    assert set(frame[frame.kind == "mean"]["solver"]) == {"DDS", "DiffPIR"}
    assert "antithetic pairs" in (tmp_path / "solver_population_terrain_quick.md").read_text()


@needs_fashion_data
def test_solver_designs_quick(load, tmp_path):
    # the captured DiffPIR, the cheapest solver: DPS and DDS run through the same code
    args = ["--quick", "--solvers", "DiffPIR", "--task", "gaussian_blur", "--out", str(tmp_path)]
    frame = load("solver_designs").main(args)
    assert set(frame["solver"]) == {"DiffPIR"} and set(frame["statistic"]) == {"l1", "psnr"}
    assert len(frame) == 2 * 5 and (frame["images"] == 2).all()  # metrics x designs
    assert frame[frame.design.str.startswith("auto")]["chosen"].str.startswith("auto: ").all()
    finite = frame.dropna(subset=["low"])
    assert (
        (finite["low"] <= finite["efficiency (geometric mean)"])
        & (finite["efficiency (geometric mean)"] <= finite["high"])
    ).all()
    assert "goal 2" in (tmp_path / "solver_designs_gaussian_blur_diffpir_quick.md").read_text()


@needs_fashion_data
def test_repulsive_quick(load, tmp_path):
    frame = load("repulsive").main(["--quick", "--out", str(tmp_path)])
    means = frame[~frame["row"].str.contains(" - ")]
    assert set(means["row"]) == {"DPS", "DDS", "RSD0", "RSD3", "RSD10"}
    assert set(frame["statistic"]) == {"l1", "psnr", "diversity"} and (frame["low"] <= frame["high"]).all()
    assert (tmp_path / "repulsive_quick.json").is_file()


@needs_fashion_data
def test_dps_vs_dds_quick(load, tmp_path):
    load("dps_vs_dds").main(["--quick", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "dps_vs_dds.json").read_text())["rows"]
    assert {r["statistic"] for r in rows} == {"l1", "psnr"}
    assert all(r["low"] <= r["difference"] <= r["high"] for r in rows)


@needs_fashion_data
def test_inverse_solvers_quick(load, tmp_path):
    load("inverse_solvers").main(["--model", "fashion", "--quick", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert {r["solver"] for r in summary} == {"DPS", "DDS"} and all(r["budget"] == 8 for r in summary)
    assert all(r["efficiency"] == 1 for r in summary if r["design"] == "mc")


# Quick runs longer than a smoke test should be (measured on 2 shared cores, numba's cache warm).


@pytest.mark.slow
def test_capture_overhead_quick(load, tmp_path):  # about 35 s: memory is measured in fresh processes
    frame = load("capture_overhead").main(["--quick", "--out", str(tmp_path)])
    assert (frame["ratio"] > 0).all() and set(frame["first"]) == {"direct", "captured"}
    saved = json.loads((tmp_path / "capture_overhead_quick.json").read_text())
    assert all(r["peak_ratio"] > 0 for r in saved["memory_ratios"].values())


@pytest.mark.slow
def test_beyond_paper_quick(load, tmp_path):  # about 25 s: 2 seeds x 9 estimators at budget 200
    load("beyond_paper").main(["--model", "fashion", "--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "fashion_200_quick.json").read_text())
    assert {"mc", "amc", "ka8", "rqmc", "subspace"} <= {r["estimator"] for r in saved["table"]}
    assert all(r["efficiency"] > 0 for r in saved["table"] if r["efficiency"] is not None)
