"""The capture benchmark scripts and the GPU suite run from a checkout (their CUDA parts skip without CUDA)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(monkeypatch, name):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["capture_overhead", "gpu_check"])
def test_help_exits_cleanly(monkeypatch, capsys, name):
    with pytest.raises(SystemExit) as stop:
        _load(monkeypatch, name).main(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out


def test_gpu_suite_is_valid_bash():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_suite.sh")], check=True)


@pytest.mark.slow
def test_gpu_suite_runs_without_cuda(tmp_path):
    out = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_suite.sh"), "--quick"],
        env={**__import__("os").environ, "GPU_OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "gpu_check_quick.json").is_file() and (tmp_path / "cuda_tests.txt").is_file()
