"""The package's shape: layers import only downwards, no private names cross modules, imports have no side effects.

import-linter checks the layers and ruff the style in the test command (scripts/test.sh); these tests
check what it cannot: imports of the package root from inside, private names taken
from a sibling module, and what merely importing uqdiff does to the process.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "uqdiff"
LAYERS = ["designs", "statistics", "inverse", "samplers", "models", "estimators", "cli"]


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py" and p != PACKAGE / "__init__.py"]


def test_every_layer_is_a_folder_and_no_module_sits_flat():
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in {"__init__.py", "__main__.py", "_util.py"})
    assert flat == [], f"modules outside a layer folder: {flat}"
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_no_module_imports_the_package_root():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{line}"
        for p in _modules()
        for line, module, _ in _imports(p)
        if module == "uqdiff"
    ]
    assert offenders == [], f"these import the package root (a cycle waiting to happen): {offenders}"


def test_no_private_name_is_imported_across_modules():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{line} {module}.{name}"
        for p in _modules()
        for line, module, names in _imports(p)
        if module.startswith("uqdiff")
        for name in names
        if name.startswith("_")
    ]
    assert offenders == [], f"private names imported from another module: {offenders}"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_uqdiff_changes_no_global_state():
    code = (
        "import matplotlib, torch; matplotlib.use('svg'); before = dict(matplotlib.rcParams);"
        "threads, grad = torch.get_num_threads(), torch.is_grad_enabled();"
        "import uqdiff, uqdiff.cli, uqdiff.cli.plots, uqdiff.cli.report, uqdiff.estimators, uqdiff.models;"
        "changed = [k for k, v in matplotlib.rcParams.items() if before.get(k) != v];"
        "print(matplotlib.get_backend(), changed, torch.get_num_threads() == threads, torch.is_grad_enabled() == grad)"
    )
    assert _run(code) == "svg [] True True"


def test_pure_torch_parts_import_without_diffusers():
    # diffusers made unimportable: the samplers (DPS, DDS, oracles, wrappers) and the estimators still import.
    code = (
        "import sys; sys.modules['diffusers'] = None;"
        "import uqdiff; from uqdiff.samplers import DPS, DDS, LinearGenerator, CommonNoise;"
        "from uqdiff.samplers import DiffusersSampler;"
        "import pytest\n"
        "try:\n    DiffusersSampler(None, None)\nexcept ImportError as e:\n    print('needs diffusers' in str(e))"
    )
    assert _run(code) == "True"
