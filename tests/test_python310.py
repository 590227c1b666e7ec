"""Python 3.10, which pyproject allows: the source uses nothing newer, and TOML configs parse there."""

import subprocess
import sys
from pathlib import Path

import pytest

from uqdiff.cli.config import load_config_file

ROOT = Path(__file__).resolve().parents[1]


def test_source_needs_nothing_newer_than_python_310():
    pytest.importorskip("vermin")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "--no-tips",
            "-t=3.10-",
            "--violations",
            "--eval-annotations",
            "uqdiff",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_toml_config_parses_without_tomllib(tmp_path, monkeypatch):
    """On 3.10 there is no tomllib: the tomli fallback must read the same file."""
    pytest.importorskip("tomli")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib now raises ModuleNotFoundError
    path = tmp_path / "run.toml"
    path.write_text('model = "oracle"\nbudget = 64\nstatistics = ["mean"]\n')
    assert load_config_file(path)["budget"] == 64
