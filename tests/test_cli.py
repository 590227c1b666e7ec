"""The uqdiff command line on the oracle model: files, numbers, configs, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uqdiff import SobolRQMC, compare, estimate
from uqdiff.cli.main import main
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import landscape_oracle
from uqdiff.statistics import Contrast, PixelMap, PixelMean, VerticalCentroid

ROOT = Path(__file__).resolve().parents[1]
ORACLE = ["--model", "oracle", "-O", "size=8"]
NUMBERS = ["estimate", "low", "high", "width", "efficiency", "implied_efficiency", "truth", "covers_truth"]


def _markdown_rows(report: str) -> pd.DataFrame:
    """The results table of report.md back as a DataFrame of strings."""
    lines = report.split("## Results")[1].split("\n## ")[0].strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    return pd.DataFrame(rows, columns=header)


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    argv = [
        "compare",
        *ORACLE,
        "--budget",
        "64",
        "--designs",
        "antithetic",
        "rqmc:8",
        "--statistics",
        "mean",
        "contrast",
        "pixel_map",
        "--seed",
        "3",
        "--pairs",
        "8",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    return out


def test_compare_writes_every_output(compare_run):
    names = [
        "report.md",
        "results.json",
        "results.csv",
        "config.yaml",
        "pixel_maps.npz",
        "ci_width.png",
        "running_estimate.png",
        "pixel_map_maps.png",
        "pn_rr_correlations.png",
    ]
    for name in names:
        assert (compare_run / name).stat().st_size > 0, name
    import matplotlib.image

    assert matplotlib.image.imread(compare_run / "ci_width.png").ndim == 3
    report = (compare_run / "report.md").read_text()
    for needed in ("seed 3", "torch", "onnxruntime", "diffusers", "uqdiff", "ClippedGaussianDDIM", "budget: 64"):
        assert needed in report, needed


def test_compare_numbers_agree_everywhere(compare_run):
    data = json.loads((compare_run / "results.json").read_text())
    from_json = pd.DataFrame(data["results"])
    from_csv = pd.read_csv(compare_run / "results.csv")
    assert list(from_json.columns) == list(from_csv.columns)
    for col in NUMBERS:
        np.testing.assert_array_equal(from_json[col].astype(float), from_csv[col], err_msg=col)
    shown = _markdown_rows((compare_run / "report.md").read_text())
    for col in NUMBERS:
        for text, value in zip(shown[col], from_csv[col]):
            assert text == ("" if np.isnan(value) else f"{value:.4g}"), (col, text, value)
    # the same numbers as the library at the same seed
    direct = compare(
        landscape_oracle(8),
        [PixelMean(), Contrast(), PixelMap()],
        budget=64,
        designs=["antithetic", SobolRQMC(8)],
        seed=3,
        run=RunSettings(batch_size=32),
    ).to_frame()
    for col in ("estimate", "low", "high", "width", "efficiency"):
        np.testing.assert_array_equal(from_csv[col], direct[col], err_msg=col)
    truth = from_csv[(from_csv.statistic == "mean")]["truth"]
    np.testing.assert_allclose(truth, landscape_oracle(8).true_pixel_mean(), rtol=1e-12)
    corr = data["pn_rr_correlations"]
    assert corr["pairs"] == 8 and corr["pn_centralized"]["mean"] < corr["rr_centralized"]["mean"]


def test_estimate_by_subprocess_matches_library(tmp_path):
    out = tmp_path / "est"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uqdiff",
            "estimate",
            *ORACLE,
            "--budget",
            "32",
            "--design",
            "kantithetic:4",
            "--out",
            str(out),
            "--no-plots",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| mean | k-antithetic(k=4) |" in proc.stdout
    assert "k-antithetic(k=4)" in proc.stderr and "mean=" in proc.stderr  # the progress bar and running estimate
    rows = pd.read_csv(out / "results.csv").set_index("statistic")
    direct = estimate(
        landscape_oracle(8), [PixelMean(), Contrast(), VerticalCentroid()], budget=32, design="kantithetic:4", seed=0
    )
    for name in ("mean", "contrast", "centroid"):
        r = direct[name]
        assert (rows.loc[name, "estimate"], rows.loc[name, "low"], rows.loc[name, "high"]) == (
            r.estimate,
            r.low,
            r.high,
        )
    assert "efficiency" not in rows  # no MC run to compare with
    assert not list(out.glob("*.png"))


CONFIG_TOML = """
model = "oracle"
designs = ["mc", "antithetic"]
statistics = ["mean"]
budget = 32
seed = 1
pairs = 0
plots = false
quiet = true
[model_options]
size = 8
"""

CONFIG_YAML = """
model: oracle
designs: [mc, antithetic]
statistics: [mean]
budget: 32
seed: 1
pairs: 0
plots: false
quiet: true
model_options: {size: 8}
"""


def test_toml_and_yaml_configs_give_the_same_run(tmp_path):
    results = []
    for suffix, text in ((".toml", CONFIG_TOML), (".yaml", CONFIG_YAML)):
        path = tmp_path / f"run{suffix}"
        path.write_text(text)
        out = tmp_path / suffix[1:]
        assert main(["compare", "--config", str(path), "--out", str(out)]) == 0
        results.append(pd.read_csv(out / "results.csv"))
    pd.testing.assert_frame_equal(results[0], results[1])
    assert list(results[0].design) == ["mc", "antithetic"] and results[0].budget.eq(32).all()


def test_flags_override_the_file_and_options_merge(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG_TOML)
    out = tmp_path / "o"
    assert main(["compare", "--config", str(path), "--seed", "2", "-O", "steps=10", "--out", str(out)]) == 0
    assert capsys.readouterr() == ("", "")  # quiet = true in the file: no progress bar, no table
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["seed"] == 2 and data["config"]["budget"] == 32
    assert data["model"]["identity"]["steps"] == 10 and data["model"]["identity"]["size"] == 8
    # the written config reproduces the run
    again = tmp_path / "again"
    assert main(["compare", "--config", str(out / "config.yaml"), "--out", str(again)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), pd.read_csv(again / "results.csv"))


@pytest.mark.parametrize(
    "argv, field, allowed",
    [
        (["--budget", "100"], "budget", "multiple of 16"),
        (["--budget", "abc"], "argument --budget", "invalid int"),
        (["--designs", "mc", "foo"], "designs", "antithetic"),
        (["--designs", "rqmc:12"], "designs", "power of two"),
        (["--statistics", "foo"], "statistics", "pixel_map"),
        (["--statistics", "ssim"], "statistics", "reference"),
        (["--model", "nope"], "model", "module:callable"),
        (["--model", "no_such_module:make"], "model", "module:callable"),
        (["-O", "colour=red"], "model_options", "size, std, steps"),
        (["-O", "size=1"], "model_options", ">= 2"),
        (["--confidence-level", "1.5"], "confidence_level", "(0, 1)"),
        (["--interval-method", "z"], "argument --interval-method", "'normal'"),
        (["--interval", "t"], "unrecognized arguments", "--interval"),
        (["--seed", "-1"], "seed", "non-negative"),
        (["--designs", "mc", "coupling:/missing/coupling.json"], "designs", "no coupling file at /missing"),
        (["--frobnicate"], "unrecognized arguments", "--frobnicate"),
    ],
)
def test_bad_flags_give_one_line_naming_the_field(argv, field, allowed, capsys, tmp_path):
    assert main(["compare", *argv, "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"uqdiff: error: {field}") and allowed in err, err
    assert not list(tmp_path.iterdir())


def test_an_unusable_output_folder_is_refused_before_the_model_runs(capsys, tmp_path, monkeypatch):
    import uqdiff.cli.runs

    monkeypatch.setattr(uqdiff.cli.runs, "run", lambda config: pytest.fail("the model ran"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["compare", "--out", str(blocker / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uqdiff: error: out: cannot create the output folder") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "name, text, field, allowed",
    [
        ("run.toml", "budgett = 64\n", "budgett", "allowed fields: batch_size"),
        ("run.toml", 'budget = "many"\n', "budget", "positive integer"),
        ("run.toml", "budget = [\n", "config", "cannot parse"),
        ("run.yaml", "designs: [mc, kantithetic:1]\n", "designs", ">= 2"),
        ("run.yaml", "- just\n- a list\n", "config", "table of fields"),
        ("run.json", "{}", "config", ".toml, .yaml, .yml"),
        ("missing.toml", None, "config", "cannot read"),
    ],
)
def test_bad_configs_give_one_line_naming_the_field(name, text, field, allowed, capsys, tmp_path):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["compare", "--config", str(path), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"uqdiff: error: {field}: ") and allowed in err, err


def test_module_callable_models(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_models.py").write_text(
        "import numpy as np\n"
        "from uqdiff.samplers import LinearGenerator\n"
        "def make(level=0.0):\n"
        "    return LinearGenerator(np.full((1, 2, 2), level), 0.1 * np.eye(4))\n"
        "READY = make(0.5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["--statistics", "mean", "--budget", "16", "--design", "antithetic", "--no-plots", "-q"]
    for spec, options in (("my_models:make", ["-O", "level=0.5"]), ("my_models:READY", [])):
        out = tmp_path / spec.replace(":", "_")
        assert main(["estimate", "--model", spec, *options, *common, "--out", str(out)]) == 0
        row = pd.read_csv(out / "results.csv").iloc[0]
        assert (row.estimate, row.width) == (0.75, 0.0)  # (0.5 + 1) / 2; a linear model cancels in pairs
    assert main(["estimate", "--model", "my_models:READY", "-O", "level=1", *common, "--out", str(tmp_path)]) == 2
    assert "takes no model options" in capsys.readouterr().err


def test_help_lists_every_flag_and_examples(capsys):
    for command in ("estimate", "compare"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        for flag in (
            "--config",
            "--model",
            "--model-option",
            "--statistics",
            "--budget",
            "--batch-size",
            "--device",
            "--seed",
            "--confidence-level",
            "--out",
            "--quiet",
            "examples:",
            "[model_options]",
        ):
            assert flag in text, (command, flag)
        assert f"uqdiff {command} --model oracle" in text
    assert main(["--help"]) == 0 and "compare" in capsys.readouterr().out


def test_model_module_in_the_current_folder_is_found_by_the_console_script(tmp_path):
    script = Path(sys.executable).parent / "uqdiff"
    if not script.exists():
        pytest.skip("the uqdiff console script is not installed next to this Python")
    (tmp_path / "my_models.py").write_text(
        "from uqdiff.samplers import landscape_oracle\n\ndef make(size=8):\n    return landscape_oracle(size)\n"
    )
    proc = subprocess.run(
        [str(script), "estimate", "--model", "my_models:make", "-O", "size=4", "--budget", "16", "--no-plots"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (tmp_path / "uqdiff-output").iterdir()  # a fresh folder per run under the default
    assert run.name.startswith("estimate-") and "my_models:make" in (run / "config.yaml").read_text()


@pytest.mark.parametrize(
    "args, text, match",
    [
        (["-O", "size=4", "-O", "size=5"], None, "size is given twice"),
        (
            [],
            'model = "oracle"\nstatistics = "mean"\n',
            r"must be a list, got the text 'mean': write statistics = \['mean'\]",
        ),
        ([], "model: oracle\ndesigns: antithetic\n", "designs.*must be a list"),
        ([], "model: oracle\ndesign: [mc]\n", "one design spec"),
        ([], "model: oracle\ndesign: mc\ndesigns: [mc]\n", "not both"),
    ],
)
def test_config_mistakes_are_refused_before_the_model_runs(tmp_path, capsys, args, text, match):
    extra = []
    if text is not None:
        path = tmp_path / ("run.toml" if "=" in text else "run.yaml")
        path.write_text(text)
        extra = ["--config", str(path)]
    assert main(["estimate", *ORACLE, *args, *extra, "--out", str(tmp_path / "o")]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_design_in_a_config_file_is_the_flag_design(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: oracle\ndesign: kantithetic:4\nbudget: 32\nplots: false\nquiet: true\n")
    assert main(["estimate", "--config", str(path), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["config"]["designs"] == ["kantithetic:4"]


def test_runs_never_mix_their_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["estimate", *ORACLE, "--budget", "16", "--no-plots", "-q"]
    assert main(args) == 0 and main(args) == 0  # default --out: one fresh folder each
    runs = sorted((tmp_path / "uqdiff-output").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)
    assert main([*args, "--out", "mine"]) == 0
    assert main([*args, "--out", "mine"]) == 2  # a folder holding a run's results is refused
    assert "already holds the results of another run" in capsys.readouterr().err


FASHION_DATA = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION_DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_evaluate_ranks_several_solvers_over_images(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_solvers.py").write_text(
        "class Toy:\n"
        "    noise_shape = (2,)\n"
        "    def __init__(self, truth, spread):\n"
        "        self.truth, self.spread = truth, spread\n"
        "    def __call__(self, z):\n"
        "        return (self.truth + self.spread * z.sum(dim=1).reshape(-1, 1, 1, 1)).clamp(-1, 1)\n"
        "def sharp(m):\n"
        "    return Toy(m.truth, 0.05)\n"
        "def blurry(m):\n"
        "    return Toy(m.truth, 0.3)\n"
    )
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "--model", "fashion", "--solvers", "toy_solvers:sharp", "toy_solvers:blurry"]
    args += ["--statistics", "l1", "--images", "4", "--budget", "8", "--out", "rank", "-q"]
    assert main(args) == 0
    report = (tmp_path / "rank" / "report.md").read_text()
    assert "l1: toy_solvers:sharp > toy_solvers:blurry" in report
    board = pd.read_csv(tmp_path / "rank" / "leaderboard.csv")
    assert set(board.solver) == {"toy_solvers:sharp", "toy_solvers:blurry"} and {"low", "high"} <= set(board.columns)
    assert pd.read_csv(tmp_path / "rank" / "differences.csv").resolved.all()


@pytest.mark.skipif(not FASHION_DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_evaluate_runs_rsd_beside_dds_on_antithetic_particle_sets(tmp_path):
    args = ["evaluate", "--model", "fashion", "--solvers", "dds", "rsd", "--task", "inpainting", "--steps", "2"]
    assert main([*args, "--statistics", "psnr", "--images", "2", "--budget", "16", "--out", str(tmp_path), "-q"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "16 posterior samples per image and solver on common noise (antithetic-sets:4)" in report
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(board.solver) == {"DDS", "RSD"} and (board.samples_per_image == 16).all()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--solvers", "dds"], "two or more different solvers"),
        (["--solvers", "dds", "dds"], "two or more different solvers"),
        (["--solvers", "dds", "nope"], "dps, dds, rsd or module:factory"),
        (["--solvers", "dds", "rsd", "--designs", "antithetic"], "AntitheticSets(4)"),
        (["--solvers", "dds", "rsd", "--designs", "kantithetic:4"], "couples the noises inside a set of 4"),
        (["--solvers", "dps", "dds", "--images", "1"], "at least 2"),
        (["--solvers", "dps", "dds", "--designs", "mc", "antithetic"], "one design"),
    ],
)
def test_evaluate_solvers_flags_are_checked_before_any_model_call(tmp_path, capsys, extra, match):
    assert main(["evaluate", "--model", "fashion", *extra, "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err
