"""Every Python example in README.md and docs/ runs as written.

Each ```python block is one self-contained program: it runs in a fresh Python process, in an empty
folder, with nothing defined beforehand. A block holding ``>>>`` prompts runs as a doctest (its
printed output is checked). A block may be preceded by HTML comments the reader does not see::

    <!-- docs-test: replace "budget=100_000" -> "budget=2_048" -->

which run it with a smaller budget (the text replaced must occur in the block, so a directive
cannot go stale). ``{tiny_stable_diffusion}`` in a replacement is the folder of a small
random-weight Stable Diffusion pipeline saved by this module, for the example that loads one from
disk. Nothing else is changed: a block that needs a name from an earlier block is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?P<directives>(?:<!-- docs-test: [^\n]*-->\n)*)```(?P<lang>[\w-]*)\n(?P<code>.*?)^```", re.S | re.M
)
REPLACE = re.compile(r'<!-- docs-test: replace ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*") -->')
#: Fence languages that are not Python programs (shell commands, tables of output, config files).
NOT_PYTHON = {"bash", "sh", "console", "text", "toml", "yaml", "json", ""}
TIMEOUT_S = 600


def blocks() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(id, code, replacements) of every Python block, id = page:line."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            if m.group("lang") not in ("python", "pycon"):
                continue
            line = text[: m.start("code")].count("\n")
            swaps = [(json.loads(a), json.loads(b)) for a, b in REPLACE.findall(m.group("directives"))]
            found.append((f"{page.relative_to(ROOT)}:{line}", m.group("code"), swaps))
    return found


BLOCKS = blocks()


def test_every_fenced_block_is_known():
    """A block in another fence (```py, ```python3) would silently escape the runner."""
    for page in PAGES:
        for m in BLOCK.finditer(page.read_text()):
            assert m.group("lang") in NOT_PYTHON | {"python", "pycon"}, (page.name, m.group("lang"))
    assert len(BLOCKS) >= 18


@pytest.fixture(scope="session")
def tiny_stable_diffusion(tmp_path_factory) -> str:
    """A random-weight text-conditioned Stable Diffusion pipeline saved as a local folder."""
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    import tiny_diffusers

    folder = tmp_path_factory.mktemp("tiny-sd")
    pipe = diffusers.StableDiffusionPipeline(
        **tiny_diffusers.parts(folder),
        scheduler=diffusers.DDPMScheduler(num_train_timesteps=100, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline")
    return str(folder / "pipeline")


def as_program(code: str) -> str:
    """A doctest block becomes a program that runs it and fails on any mismatch."""
    if ">>>" not in code:
        return code
    return textwrap.dedent(
        f"""
        import doctest, sys
        test = doctest.DocTestParser().get_doctest({code!r}, {{}}, "example", "example", 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        sys.exit(1 if runner.failures else 0)
        """
    )


@pytest.mark.parametrize("block_id, code, swaps", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example_runs_as_written(block_id, code, swaps, tmp_path, request):
    for old, new in swaps:
        assert old in code, f"{block_id}: the docs-test directive replaces {old!r}, which the block does not hold"
        if "{tiny_stable_diffusion}" in new:
            new = new.replace("{tiny_stable_diffusion}", request.getfixturevalue("tiny_stable_diffusion"))
        code = code.replace(old, new)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", as_program(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"{block_id} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
