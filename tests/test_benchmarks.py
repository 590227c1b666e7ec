"""The benchmark scripts run from a fresh checkout: --help, and --quick runs that write their tables."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
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
    "sequential_coverage",
    "comparison_coverage",
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
